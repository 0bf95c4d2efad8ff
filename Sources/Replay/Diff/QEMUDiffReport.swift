import QMP

/// What `diff-qemu` found: for the greeting, each recorded command's reply and each event,
/// the differences between the recording and a real QEMU, each with its kind and reason
/// (`DiffRules`). Only items with differences are kept.
///
/// Example (text): `line 9 stop: reply ok; line 10 STOP: timestamp.seconds differs (timestamp)`.
public struct QEMUDiffReport: Sendable {
    public struct Difference: Sendable {
        public var path: String
        public var expected: JSONValue?
        public var actual: JSONValue?
        public var kind: DifferenceKind
        public var reason: String
    }

    /// One compared thing: the greeting, a reply, an event (recorded, seen live, or both).
    public struct Item: Sendable {
        public enum What: String, Sendable { case greeting, reply, event }
        public var what: What
        /// The recording's line (nil for an event only the real QEMU sent).
        public var line: Int?
        /// The command (for a reply) or the event's name.
        public var name: String
        public var differences: [Difference]
    }

    public var file: String
    public var connection: UInt32
    /// The real QEMU's command line (with the `-qmp` added).
    public var argv: [String]
    public var recordedVersion: String?
    public var liveVersion: String?
    public var commandsSent = 0
    public var repliesCompared = 0
    public var eventsRecorded = 0
    public var eventsLive = 0
    /// Why the comparison stopped before the recording's end, if it did.
    public var stoppedEarly: String?
    /// Commands not compared, and why (no recorded reply).
    public var notes: [String] = []
    public var items: [Item] = []

    public var differences: [Difference] { items.flatMap(\.differences) }
    public var unexplained: Int { differences.filter { !$0.kind.explained }.count }
    /// How many differences of each explained kind.
    public var explainedCounts: [(DifferenceKind, Int)] {
        let d = differences
        return DifferenceKind.allCases.filter(\.explained).compactMap { k in
            let n = d.filter { $0.kind == k }.count
            return n > 0 ? (k, n) : nil
        }
    }

    public var json: JSONValue {
        var o = JSONObject()
        o["file"] = .string(file)
        o["connection"] = .int(Int(connection))
        o["qemu"] = .array(argv.map { .string($0) })
        o["recorded_version"] = recordedVersion.map { .string($0) } ?? .null
        o["live_version"] = liveVersion.map { .string($0) } ?? .null
        o["commands_sent"] = .int(commandsSent)
        o["replies_compared"] = .int(repliesCompared)
        o["events_recorded"] = .int(eventsRecorded)
        o["events_live"] = .int(eventsLive)
        if let s = stoppedEarly { o["stopped_early"] = .string(s) }
        o["notes"] = .array(notes.map { .string($0) })
        o["unexplained"] = .int(unexplained)
        var counts = JSONObject()
        for (k, n) in explainedCounts { counts[k.rawValue] = .int(n) }
        o["explained"] = .object(counts)
        o["items"] = .array(items.map { it in
            var io = JSONObject()
            io["what"] = .string(it.what.rawValue)
            io["line"] = it.line.map { .int($0) } ?? .null
            io["name"] = .string(it.name)
            io["differences"] = .array(it.differences.map { d in
                var dd = JSONObject()
                dd["path"] = .string(d.path)
                if let e = d.expected { dd["recorded"] = e }
                if let a = d.actual { dd["live"] = a }
                dd["kind"] = .string(d.kind.rawValue)
                if !d.reason.isEmpty { dd["reason"] = .string(d.reason) }
                return .object(dd)
            })
            return .object(io)
        })
        return .object(o)
    }

    /// The report for a person, one difference per line.
    public var lines: [String] {
        var out: [String] = []
        for it in items {
            let at = it.line.map { "\(file):\($0)" } ?? "(live only)"
            for d in it.differences {
                let what: String
                switch (d.expected, d.actual) {
                case (nil, nil): what = ""
                case (nil, let a?): what = "live \(a.serialized(.compact))"
                case (let e?, nil): what = "recorded \(e.serialized(.compact)), live: none"
                case (let e?, let a?): what = "recorded \(e.serialized(.compact)), live \(a.serialized(.compact))"
                }
                let why = d.reason.isEmpty ? d.kind.rawValue : "\(d.kind.rawValue): \(d.reason)"
                out.append("\(at) \(it.what.rawValue) \(it.name): \(d.path) \(what) [\(why)]")
            }
        }
        return out
    }
}
