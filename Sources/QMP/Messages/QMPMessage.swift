/// The kinds of message that cross a QMP socket (docs/QEMU-FACTS.md, "Wire protocol").
/// Raw values are the names used in `.qmprec` records (`"k"`) and in `--json` output.
public enum MessageKind: String, Sendable, CaseIterable, Codable {
    case greeting
    case command
    case `return`
    case error
    case event
    /// Anything else that arrived: invalid JSON, a non-object, an object with no QMP meaning.
    case other
}

/// Which side of the socket sent the bytes.
public enum Direction: String, Sendable, CaseIterable, Codable {
    case qemu
    case client

    public var arrow: String { self == .qemu ? "<-" : "->" }
}

/// QEMU's version from the greeting: `{"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": "..."}`.
public struct QEMUVersion: Sendable, Hashable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var micro: Int
    public var package: String

    public init(major: Int, minor: Int, micro: Int, package: String = "") {
        self.major = major; self.minor = minor; self.micro = micro; self.package = package
    }

    public var description: String { "\(major).\(minor).\(micro)" }
}

public struct Greeting: Sendable, Hashable {
    public var version: QEMUVersion?
    public var capabilities: [String]
    public var offersOOB: Bool { capabilities.contains("oob") }
}

/// `{"execute": NAME, "arguments": {...}, "id": ANY}`, or `exec-oob` for out-of-band.
public struct Command: Sendable, Hashable {
    public var name: String
    public var arguments: JSONObject?
    /// Any JSON value; `nil` when the client sent none (then the reply carries none).
    public var id: JSONValue?
    public var outOfBand: Bool
}

public struct ReturnReply: Sendable, Hashable {
    public var value: JSONValue
    public var id: JSONValue?
}

public struct ErrorReply: Sendable, Hashable {
    /// GenericError, CommandNotFound, DeviceNotActive, DeviceNotFound, KVMMissingCap,
    /// or a class this tool has never heard of (clients must accept unknown classes).
    public var errorClass: String
    public var desc: String
    public var id: JSONValue?
}

/// QEMU's event timestamp: the host wall clock when the event was *created*
/// (docs/QEMU-FACTS.md: it can lag the delivery by up to a throttle window).
public struct EventTimestamp: Sendable, Hashable {
    public var seconds: Int64
    public var microseconds: Int64
    public var totalMicroseconds: Int64 { seconds &* 1_000_000 &+ microseconds }
}

public struct Event: Sendable, Hashable {
    public var name: String
    public var data: JSONObject?
    public var timestamp: EventTimestamp?
}

/// One message as it crossed the socket: its exact bytes and what they mean.
///
/// `bytes` holds exactly what was sent, including any whitespace or line terminator
/// that belonged to it; `payload` is the range of `bytes` holding the JSON text.
public struct QMPMessage: Sendable, Hashable {
    public enum Body: Sendable, Hashable {
        case greeting(Greeting)
        case command(Command)
        case `return`(ReturnReply)
        case error(ErrorReply)
        case event(Event)
        /// Not a QMP message; `reason` says why, `json` holds the value when it parsed.
        case other(reason: String, json: JSONValue?)
    }

    public let bytes: [UInt8]
    public let payload: Range<Int>
    public let body: Body
    /// The parsed JSON, when the payload was valid JSON (or valid in QEMU's dialect).
    public let json: JSONValue?
    /// `json` came from QEMU's input dialect (single-quoted strings), not strict JSON: the
    /// bytes cannot be stored as a JSON member verbatim.
    public let dialect: Bool

    public var kind: MessageKind {
        switch body {
        case .greeting: return .greeting
        case .command: return .command
        case .return: return .return
        case .error: return .error
        case .event: return .event
        case .other: return .other
        }
    }

    /// The event name, command name or error class: what the index calls a record's name.
    public var name: String? {
        switch body {
        case .event(let e): return e.name
        case .command(let c): return c.name
        case .error(let e): return e.errorClass
        default: return nil
        }
    }

    /// The `id` of a command or reply.
    public var id: JSONValue? {
        switch body {
        case .command(let c): return c.id
        case .return(let r): return r.id
        case .error(let e): return e.id
        default: return nil
        }
    }

    /// Why the message is not QMP (for `.other`), else its kind: what a one-line view shows.
    public var reasonOrKind: String {
        if case .other(let reason, _) = body { return reason }
        return kind.rawValue
    }

    public var payloadBytes: ArraySlice<UInt8> { bytes[payload] }
    public var payloadText: String { String(decoding: bytes[payload], as: UTF8.self) }

    public init(bytes: [UInt8], payload: Range<Int>? = nil) {
        self.bytes = bytes
        let range = payload ?? QMPMessage.trimmedRange(bytes)
        self.payload = range
        if range.isEmpty {
            self.json = nil
            self.dialect = false
            self.body = .other(reason: "no JSON text", json: nil)
            return
        }
        do {
            let v = try bytes.withUnsafeBufferPointer { buf throws(JSONParseError) in
                try JSONParser.parse(UnsafeBufferPointer(rebasing: buf[range]))
            }
            self.json = v
            self.dialect = false
            self.body = QMPMessage.classify(v)
        } catch {
            // QEMU's parser also takes single-quoted strings, and executes what it parsed.
            if let parsed = bytes.withUnsafeBufferPointer({ QEMUDialect.parse(UnsafeBufferPointer(rebasing: $0[range])) }) {
                self.json = parsed.value
                self.dialect = true
                self.body = QMPMessage.classify(parsed.value)
            } else {
                self.json = nil
                self.dialect = false
                self.body = .other(reason: "invalid JSON: \(error)", json: nil)
            }
        }
    }

    public init(text: String) { self.init(bytes: Array(text.utf8)) }

    /// Builds a message from an already parsed value (importers, synthesis).
    public init(json: JSONValue, bytes: [UInt8], payload: Range<Int>) {
        self.bytes = bytes
        self.payload = payload
        self.json = json
        self.dialect = false
        self.body = QMPMessage.classify(json)
    }

    /// The JSON text without surrounding whitespace.
    public static func trimmedRange(_ bytes: [UInt8]) -> Range<Int> {
        var lo = 0, hi = bytes.count
        while lo < hi, isJSONSpace(bytes[lo]) { lo += 1 }
        while hi > lo, isJSONSpace(bytes[hi - 1]) { hi -= 1 }
        return lo..<hi
    }

    /// What a JSON value means in QMP (qmp-spec: greeting, command, reply, event).
    public static func classify(_ v: JSONValue) -> Body {
        guard case .object(let o) = v else {
            // QEMU answers this with GenericError "QMP input must be a JSON object".
            return .other(reason: "QMP input must be a JSON object", json: v)
        }
        if let q = o["QMP"] {
            var version: QEMUVersion?
            if let qv = q["version"]?["qemu"] {
                version = QEMUVersion(
                    major: Int(qv["major"]?.int64Value ?? 0), minor: Int(qv["minor"]?.int64Value ?? 0),
                    micro: Int(qv["micro"]?.int64Value ?? 0),
                    package: q["version"]?["package"]?.stringValue ?? "")
            }
            let caps = q["capabilities"]?.arrayValue?.compactMap(\.stringValue) ?? []
            return .greeting(Greeting(version: version, capabilities: caps))
        }
        if o["execute"] != nil || o["exec-oob"] != nil {
            // The checks QEMU's dispatcher makes (qapi/qmp-dispatch.c), with its wording.
            if o["execute"] != nil && o["exec-oob"] != nil {
                return .other(reason: "QMP input member 'execute' clashes with 'exec-oob'", json: v)
            }
            let member = o["execute"] != nil ? "execute" : "exec-oob"
            guard let name = o[member]?.stringValue else {
                return .other(reason: "QMP input member '\(member)' must be a string", json: v)
            }
            if let args = o["arguments"], args.objectValue == nil {
                return .other(reason: "QMP input member 'arguments' must be an object", json: v)
            }
            return .command(Command(
                name: name, arguments: o["arguments"]?.objectValue, id: o["id"], outOfBand: member == "exec-oob"))
        }
        if let r = o["return"] {
            return .return(ReturnReply(value: r, id: o["id"]))
        }
        if let e = o["error"]?.objectValue {
            return .error(ErrorReply(
                errorClass: e["class"]?.stringValue ?? "", desc: e["desc"]?.stringValue ?? "", id: o["id"]))
        }
        if let name = o["event"]?.stringValue {
            var ts: EventTimestamp?
            if let t = o["timestamp"], let s = t["seconds"]?.int64Value, let us = t["microseconds"]?.int64Value {
                ts = EventTimestamp(seconds: s, microseconds: us)
            }
            return .event(Event(name: name, data: o["data"]?.objectValue, timestamp: ts))
        }
        return .other(reason: "object has no QMP meaning (no QMP, execute, return, error or event member)", json: v)
    }
}

@inline(__always) public func isJSONSpace(_ c: UInt8) -> Bool {
    c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09
}

/// Shows arbitrary bytes on one line for people: printable ASCII as is, CR/LF/TAB as
/// escapes, everything else as `\xNN`; cut after `limit` bytes.
public func escapedBytes<C: Collection>(_ bytes: C, limit: Int = 400) -> String where C.Element == UInt8 {
    var s = ""
    for (n, b) in bytes.enumerated() {
        if n >= limit { s += "..."; break }
        switch b {
        case 0x0A: s += "\\n"
        case 0x0D: s += "\\r"
        case 0x09: s += "\\t"
        case 0x20..<0x7F: s += String(UnicodeScalar(b))
        default: s += "\\x" + hexByte(b).dropFirst(2)
        }
    }
    return s
}
