/// Where a catalog fact comes from, so a finding can say which document it rests on.
public enum CatalogSource: String, Sendable, Codable, CaseIterable {
    /// `shared/seeds/000_…txt`: QEMU's QMP/qmp-events.txt, about the 1.7/2.0 era (26 events).
    case eventsDoc = "qmp-events.txt (QEMU 1.7/2.0)"
    /// `shared/seeds/002_…txt`: an older copy of the same file (10 events).
    case olderEventsDoc = "qmp-events.txt (older fork)"
    /// `docs/QEMU-FACTS.md`: later changes (SHUTDOWN/RESET guest+reason, qom-path, jobs, throttling).
    case notes = "docs/QEMU-FACTS.md"
    /// A later QEMU addition (QAPI schema) that real captures carry; accepted, never required.
    case laterQEMU = "later QEMU (QAPI schema)"
}

/// The JSON type of an event member as the documents write it (`json-string`, `json-int`, ...).
public indirect enum MemberType: Sendable, Hashable, CustomStringConvertible {
    case string
    /// `json-int`: an integer.
    case int
    /// `json-number`: any number (an integer qualifies).
    case number
    case bool
    case object([CatalogMember])
    /// Shape not documented here (later additions such as GUEST_PANICKED `info`).
    case any

    public var description: String {
        switch self {
        case .string: return "json-string"
        case .int: return "json-int"
        case .number: return "json-number"
        case .bool: return "json-bool"
        case .object: return "json-object"
        case .any: return "any"
        }
    }

    /// Whether a value has this type (members of objects are checked separately).
    public func accepts(_ v: JSONValue) -> Bool {
        switch (self, v) {
        case (.any, _): return true
        case (.string, .string), (.bool, .bool), (.object, .object), (.number, .number): return true
        case (.int, .number(let n)): return n.isInteger
        default: return false
        }
    }
}

/// One member of an event's `data` (or of a nested object such as VNC's `server`).
public struct CatalogMember: Sendable, Hashable {
    public var name: String
    public var type: MemberType
    public var optional: Bool
    /// The documented values, when the documents give a closed set.
    public var allowed: [String]?
    /// Values added after the documents (accepted, reported as such by `qmpreplay info --catalog`).
    public var laterValues: [String]
    public var source: CatalogSource
    public var doc: String

    public init(
        _ name: String, _ type: MemberType, optional: Bool = false, allowed: [String]? = nil,
        later laterValues: [String] = [], source: CatalogSource = .eventsDoc, doc: String = ""
    ) {
        self.name = name; self.type = type; self.optional = optional; self.allowed = allowed
        self.laterValues = laterValues; self.source = source; self.doc = doc
    }

    /// Every value that validation accepts for this member, when the set is closed.
    public var acceptedValues: Set<String>? {
        guard let allowed else { return nil }
        return Set(allowed).union(laterValues)
    }
}

/// A documented consequence: "If action is "stop", a STOP event will eventually follow".
public struct FollowUp: Sendable, Hashable {
    /// The member and value that trigger it; `nil` means every occurrence.
    public var when: (member: String, value: String)?
    public var then: String
    /// A condition the recording cannot see (`-no-shutdown`): such follow-ups are documented
    /// but not enforced by validation.
    public var onlyIf: String?
    public var source: CatalogSource

    public static func == (a: FollowUp, b: FollowUp) -> Bool {
        a.when?.member == b.when?.member && a.when?.value == b.when?.value && a.then == b.then
            && a.onlyIf == b.onlyIf && a.source == b.source
    }

    public func hash(into h: inout Hasher) {
        h.combine(when?.member); h.combine(when?.value); h.combine(then); h.combine(onlyIf)
    }
}

/// QEMU's per-event rate limit (docs/QEMU-FACTS.md, "Event throttling", monitor/monitor.c):
/// one delivery per second per key.
public struct Throttle: Sendable, Hashable {
    /// Dotted paths of the members forming the key; empty means the event name alone.
    public var keyPaths: [String]
    /// A member value that exempts an event from throttling (BLOCK_IO_ERROR action "stop").
    public var exemptWhen: [String: String]
    public var windowNanoseconds: Int64 = 1_000_000_000

    public init(keyPaths: [String] = [], exemptWhen: [String: String] = [:]) {
        self.keyPaths = keyPaths; self.exemptWhen = exemptWhen
    }

    /// The throttle key of an event, or `nil` when this event is exempt.
    public func key(for event: Event) -> String? {
        let data = JSONValue.object(event.data ?? JSONObject())
        for (member, value) in exemptWhen where data[member]?.stringValue == value { return nil }
        if keyPaths.isEmpty { return event.name }
        var parts: [String] = []
        for p in keyPaths {
            // No key member (BLOCK_IO_ERROR before qom-path existed): QEMU did not throttle it.
            guard let v = data.value(atPath: p) else { return nil }
            parts.append(v.serialized())
        }
        return event.name + "|" + parts.joined(separator: "|")
    }
}

/// Everything the catalog knows about one event.
public struct CatalogEvent: Sendable {
    public var name: String
    public var summary: String
    /// `nil` when the documents do not describe the members (throttled events named only
    /// in docs/QEMU-FACTS.md): then members are not checked.
    public var members: [CatalogMember]?
    public var followUps: [FollowUp]
    public var throttle: Throttle?
    public var sources: [CatalogSource]
    /// Differences between the documents, and other remarks worth showing a user.
    public var remarks: [String]

    public init(
        _ name: String, _ summary: String, members: [CatalogMember]?, followUps: [FollowUp] = [],
        throttle: Throttle? = nil, sources: [CatalogSource] = [.eventsDoc], remarks: [String] = []
    ) {
        self.name = name; self.summary = summary; self.members = members; self.followUps = followUps
        self.throttle = throttle; self.sources = sources; self.remarks = remarks
    }
}
