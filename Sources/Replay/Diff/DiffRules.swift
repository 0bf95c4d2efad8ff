import QMP

/// Why a reply or event of a real QEMU may differ from the recorded one without anything
/// being wrong (docs/DIFF-QEMU.md, "Explained differences"). Each kind is one reason a
/// person can check; `unexplained` is everything else.
public enum DifferenceKind: String, Sendable, CaseIterable, Comparable {
    /// QEMU stamps each event with the time it was raised.
    case timestamp
    /// The reply's `id` is the client's; the comparison sends the recorded one.
    case id
    /// The version or build of QEMU (greeting, `query-version`).
    case version
    /// A value that names the recording's host: a path in its temporary directory, a port,
    /// a host thread id.
    case hostSpecific = "host-specific"
    /// How far something asynchronous had got when the command ran (a job's offset, a
    /// migration's counters): a race the recording won one way and this run another.
    case timing
    /// An event no command of this connection raised (the guest, its firmware, a timer, another
    /// client): sending the recorded commands cannot make it happen again, or keep it away.
    case external
    /// A value or event the guest's own driver produces (the balloon's size, a NIC's
    /// filters), when the real QEMU's guest showed none of that activity: the recording has
    /// the driver's events, the real QEMU raised none of them.
    case guest
    case unexplained

    public var explained: Bool { self != .unexplained }

    public static func < (a: DifferenceKind, b: DifferenceKind) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// The rules that explain a difference: pure functions of where it is and what it is.
///
/// Example: `DiffRules.explain(command: "query-block-jobs", path: "return[0].offset", ...)`
/// is `.timing` ("a job's progress when the command ran").
public enum DiffRules {
    /// Members whose value is a host thread, process or socket detail.
    static let hostKeys: Set<String> = ["thread-id", "pid", "host", "service", "port", "family", "websocket"]
    /// Members that hold file names (the recording's were in its own temporary directory).
    static let fileKeys: Set<String> = ["filename", "backing-filename", "file", "path", "image", "backing_file"]
    /// Progress counters of asynchronous work, per command.
    static let progress: [String: Set<String>] = [
        "query-block-jobs": ["offset", "len", "busy", "speed", "status", "ready", "paused", "io-status"],
        "query-jobs": ["current-progress", "total-progress", "status"],
        "query-migrate": ["total-time", "setup-time", "downtime", "expected-downtime", "transferred", "remaining", "total",
                          "duplicate", "skipped", "normal", "normal-bytes", "dirty-pages-rate", "mbps", "dirty-sync-count",
                          "postcopy-requests", "page-size", "multifd-bytes", "pages-per-second", "precopy-bytes",
                          "downtime-bytes", "postcopy-bytes", "dirty-sync-missed-zero-copy", "status"],
    ]
    /// Events whose data reports asynchronous progress.
    static let progressEvents: [String: Set<String>] = [
        "BLOCK_JOB_COMPLETED": ["offset", "len"], "BLOCK_JOB_CANCELLED": ["offset", "len"],
        "BLOCK_JOB_READY": ["offset", "len"], "BLOCK_JOB_ERROR": [], "MIGRATION_PASS": ["pass"],
    ]

    /// Guest-driven state: the event a guest driver's activity raises, and the command
    /// whose reply reports that state.
    static let guestDriven: [(event: String, command: String)] = [
        ("BALLOON_CHANGE", "query-balloon"), ("NIC_RX_FILTER_CHANGED", "query-rx-filter"),
    ]

    /// The events whose guest activity the real QEMU did not show: recorded at least once,
    /// raised there never.
    public static func absentGuestActivity(recorded: [String], live: [String]) -> Set<String> {
        Set(guestDriven.map(\.event).filter { e in recorded.contains(e) && !live.contains(e) })
    }

    /// `explain`'s verdict, overridden for guest-driven replies and events when the guest
    /// activity behind them is absent from the real QEMU (`absent`).
    public static func explain(command: String?, event: String?, path: String, expected: JSONValue?, actual: JSONValue?,
                               absent: Set<String>) -> (DifferenceKind, String) {
        let v = explain(command: command, event: event, path: path, expected: expected, actual: actual)
        guard v.0 == .unexplained else { return v }
        for g in guestDriven where absent.contains(g.event) && (command == g.command || event == g.event) {
            return (.guest, "set by the guest's driver, which raised \(g.event) in the recording and never in this QEMU")
        }
        return v
    }

    /// The kind of one difference in the reply to `command` (or in event `event`, or in the
    /// greeting when both are nil), with the reason shown to the user.
    public static func explain(command: String?, event: String?, path: String, expected: JSONValue?,
                               actual: JSONValue?) -> (DifferenceKind, String) {
        let parts = path.split(separator: ".").map { String($0.split(separator: "[").first ?? "") }
        let last = parts.last ?? path
        if parts.contains("timestamp") { return (.timestamp, "the time QEMU raised the event") }
        if path == "id" { return (.id, "the client's id") }
        if command == nil && event == nil && parts.first == "QMP" && parts.contains("version") {
            return (.version, "another QEMU build")
        }
        if command == "query-version" { return (.version, "another QEMU build") }
        if hostKeys.contains(last) { return (.hostSpecific, "'\(last)' names a detail of the host") }
        if let e = expected?.stringValue, let a = actual?.stringValue, hostPath(e) || hostPath(a) || fileKeys.contains(last) {
            return (.hostSpecific, "a file of the host" + (hostPath(e) ? " (\(e) was in the recording's temporary directory)" : ""))
        }
        if let c = command, progress[c]?.contains(last) == true {
            return (.timing, "how far asynchronous work had got when \(c) ran")
        }
        if let e = event, progressEvents[e]?.contains(last) == true {
            return (.timing, "how far the job had got when \(e) was raised")
        }
        return (.unexplained, "")
    }

    /// A path under a temporary or per-run directory.
    static func hostPath(_ s: String) -> Bool {
        s.hasPrefix("/tmp/") || s.hasPrefix("/var/tmp/") || s.hasPrefix("/run/") || s.hasPrefix("/dev/shm/")
            || s.contains("/tmp/gl-") || s.contains("unix:/tmp/")
    }
}
