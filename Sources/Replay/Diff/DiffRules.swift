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
    /// State the guest sets, when the real QEMU's guest did less of it than the recorded
    /// one (the recording has more of the events that activity raises): the balloon's size
    /// and a NIC's filters (set by the guest's drivers), the run state after a STOP the
    /// guest caused (a panic, a starved watchdog, an I/O error with werror=stop), and what
    /// `cont` brought after such a STOP.
    case guest
    /// What the real QEMU did while a command ran that the recording has no reply for: the
    /// recording ended there (QEMU was killed, the recorder stopped), so there is nothing
    /// to compare it with.
    case recordingEnded = "recording-ended"
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
        // How far the guest's driver had got towards the balloon target when asked.
        "query-balloon": ["actual"],
        "query-migrate": ["total-time", "setup-time", "downtime", "expected-downtime", "transferred", "remaining", "total",
                          "duplicate", "skipped", "normal", "normal-bytes", "dirty-pages-rate", "mbps", "dirty-sync-count",
                          "postcopy-requests", "page-size", "multifd-bytes", "pages-per-second", "precopy-bytes",
                          "downtime-bytes", "postcopy-bytes", "dirty-sync-missed-zero-copy", "status"],
    ]
    /// Events whose data reports asynchronous progress.
    static let progressEvents: [String: Set<String>] = [
        "BLOCK_JOB_COMPLETED": ["offset", "len"], "BLOCK_JOB_CANCELLED": ["offset", "len"],
        "BLOCK_JOB_READY": ["offset", "len"], "BLOCK_JOB_ERROR": [], "MIGRATION_PASS": ["pass"],
        // Throttled (one per second, the last value wins): which intermediate size is
        // reported depends on where the guest's driver was when the window closed.
        "BALLOON_CHANGE": ["actual"],
    ]

    /// What the real QEMU showed less of than the recording: event names with fewer
    /// occurrences there, and whether a STOP raised outside any command (by the guest or a
    /// device) is missing.
    public struct Evidence: Sendable {
        public var fewer: [String: Int] = [:]
        public var externalStopMissing = false
        public init() {}
    }

    /// Replies whose members report state that an activity outside QMP sets: the event that
    /// activity raises, the command, its members (empty: all of them), the kind.
    static let stateSetOutside: [(event: String, command: String, members: Set<String>, kind: DifferenceKind, why: String)] = [
        ("BALLOON_CHANGE", "query-balloon", [], .guest, "the guest's balloon driver sets it"),
        ("NIC_RX_FILTER_CHANGED", "query-rx-filter", [], .guest, "the guest's NIC driver sets a NIC's filters and MAC"),
        ("VNC_CONNECTED", "query-vnc", ["clients"], .external, "VNC clients of the recorded host connected"),
    ]

    /// `explain`'s verdict, or, for what it leaves unexplained, the state an activity outside
    /// QMP sets when `evidence` shows the real QEMU had less of that activity.
    public static func explain(command: String?, event: String?, path: String, expected: JSONValue?, actual: JSONValue?,
                               evidence: Evidence) -> (DifferenceKind, String) {
        let v = explain(command: command, event: event, path: path, expected: expected, actual: actual)
        guard v.0 == .unexplained else { return v }
        let parts = path.split(separator: ".").map { String($0.split(separator: "[").first ?? "") }
        for r in stateSetOutside where evidence.fewer[r.event] != nil {
            let member = parts.count > 1 ? parts[1] : ""
            if command == r.command && (r.members.isEmpty || r.members.contains(member)) {
                return (r.kind, "\(r.why): the recording has \(evidence.fewer[r.event]!) \(r.event) more than this QEMU raised")
            }
            if event == r.event { return (r.kind, "\(r.why); which one came first is the recorded guest's doing") }
        }
        if evidence.externalStopMissing, (command == "query-status" && ["status", "running"].contains(parts.last ?? ""))
            || (command == "query-block" && parts.last == "io-status") {
            return (.guest, "the recording's VM had been stopped by its guest or a device (a STOP no command raised); this one was not")
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
        if command == "query-block" && last == "writeback" {
            // docs/QEMU-FACTS.md, "State a guest's drivers set".
            return (.guest, "the guest's virtio-blk driver sets write caching")
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
