import QMP
import Recording

/// `commands`: per command name, how often it was sent, how long QEMU took to answer
/// (command receive time to reply receive time; replies paired by id per connection,
/// docs/QEMU-FACTS.md "Reply"), and how it failed, by error class.
public struct CommandsAnalysis: Analysis {
    public static let name = "commands"
    public static let summary = "per command: count, reply latency p50/p99/max, error classes, unanswered"
    public static let clock = AnalysisClock.receive
    public static let interest = Interest(allCommands: true, closes: true)

    public struct Stats: Sendable {
        public var name: String
        /// The first command record in range (findings without a better record start there).
        public var firstRecord: Int?
        public var count = 0
        public var ok = 0
        public var errors: [String: Int] = [:]
        public var unanswered = 0
        var latency = LatencyStats()
        /// A few error replies to jump to.
        public var errorRecords: [Int] = []
        /// A few commands that never got a reply (connection closed, new greeting).
        public var unansweredRecords: [Int] = []
        public var slowestRecord: Int?
        public var p50: Int64? { latency.percentile(50) }
        public var p99: Int64? { latency.percentile(99) }
        public var max: Int64? { latency.count > 0 ? latency.max : nil }
        public var latencyExact: Bool { latency.isExact }
    }

    let context: AnalysisContext
    /// Per command, in order of first appearance; `slot` finds one by name. Mutated in place
    /// through the array: a copy of a `Stats` alive while it changes would copy its samples.
    var list: [Stats] = []
    var slot: [String: Int] = [:]

    public init(context: AnalysisContext) { self.context = context }

    mutating func index(_ name: String) -> Int {
        if let k = slot[name] { return k }
        list.append(Stats(name: name))
        slot[name] = list.count - 1
        return list.count - 1
    }

    public mutating func consume(_ input: AnalysisInput) {
        switch input {
        case .command(let c):
            let k = index(c.name)
            list[k].count += 1
            if list[k].firstRecord == nil { list[k].firstRecord = c.record }
        case .reply(let r):
            let k = index(r.command.name)
            let l = r.latency
            if l >= (list[k].latency.count > 0 ? list[k].latency.max : -1) { list[k].slowestRecord = r.command.record }
            list[k].latency.add(l)
            if let cls = r.errorClass {
                list[k].errors[cls, default: 0] += 1
                if list[k].errorRecords.count < 5 { list[k].errorRecords.append(r.record) }
            } else {
                list[k].ok += 1
            }
        case .greeting:
            break
        case .close(_, _, _, let unanswered):
            for p in unanswered {
                guard let k = slot[p.name] else { continue }
                list[k].unanswered += 1
                if list[k].unansweredRecords.count < 5 { list[k].unansweredRecords.append(p.record) }
            }
        case .event:
            break
        }
    }

    public func finish() -> CommandsResult {
        // Commands still waiting at the end of the range count as unanswered too.
        var all = list
        for k in all.indices {
            let answered = all[k].ok + all[k].errors.values.reduce(0, +)
            all[k].unanswered = Swift.max(all[k].unanswered, all[k].count - answered)
        }
        all.sort { $0.count != $1.count ? $0.count > $1.count : $0.name < $1.name }
        return CommandsResult(context: context, commands: all)
    }
}

public struct CommandsResult: StreamedJSONResult {
    public let context: AnalysisContext
    public let commands: [CommandsAnalysis.Stats]

    /// Whether reply latencies mean anything: not in recordings imported from formats without
    /// command times (plain QMP lines and libvirt .replies take a command's time from the
    /// record before it; virsh output has no commands), where they are artifacts of the import.
    public var latencyMeasured: Bool {
        guard let h = context.recording.header, h.mode == .import else { return true }
        let format = h.labels.first { $0.key == "format" }?.value
        return !["qmp-lines", "libvirt-replies", "virsh-events"].contains(format ?? "")
    }

    public var streamedMembers: [StreamedMember] {
        let commands = self.commands
        return [.value("latency_measured", .bool(latencyMeasured)), .objects("commands", count: commands.count) { k in
            let c = commands[k]
            var o = JSONObject()
            o["name"] = .string(c.name)
            o["count"] = .int(c.count)
            o["ok"] = .int(c.ok)
            o["errors"] = .object(JSONObject(c.errors.sorted { $0.key < $1.key }.map { .init(key: $0.key, value: .int($0.value)) }))
            o["unanswered"] = .int(c.unanswered)
            o["latency_p50_ns"] = jopt(c.p50)
            o["latency_p99_ns"] = jopt(c.p99)
            o["latency_max_ns"] = jopt(c.max)
            o["latency_exact"] = .bool(c.latencyExact)
            o["slowest_record"] = jopt(c.slowestRecord)
            return StreamedMember.values(o) + [.array("error_records", count: c.errorRecords.count) { .int(c.errorRecords[$0]) }]
        }]
    }

    /// When a finding about a command happened: its first record (receive clock).
    func time(_ records: [Int], _ c: CommandsAnalysis.Stats) -> Int64 {
        guard let r = records.first ?? c.firstRecord, r < context.recording.count else { return context.rangeStart }
        return context.recording.time(r)
    }

    public var findings: [AnalysisFinding] {
        var out: [AnalysisFinding] = []
        for c in commands {
            let failed = c.errors.values.reduce(0, +)
            if failed > 0 {
                let classes = c.errors.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                // CommandNotFound before negotiation or a missing device is a client bug;
                // GenericError can be an expected answer.
                out.append(AnalysisFinding(.info, "commands", "errors",
                    "\(c.name): \(failed) of \(c.count) failed (\(classes))", subject: c.name, records: c.errorRecords,
                    time: time(c.errorRecords, c), weight: Double(failed)))
            }
            if latencyMeasured, let m = c.max, m >= 1_000_000_000 {
                let recs = c.slowestRecord.map { [$0] } ?? []
                out.append(AnalysisFinding(.warning, "commands", "slow",
                    "\(c.name): slowest reply took \(DurationFormat.short(m)) (p99 \(DurationFormat.short(c.p99 ?? 0)))",
                    subject: c.name, records: recs, time: time(recs, c), weight: Double(m) / 1e9))
            }
            if c.unanswered > 0 {
                let recs = c.unansweredRecords.isEmpty ? (c.firstRecord.map { [$0] } ?? []) : c.unansweredRecords
                out.append(AnalysisFinding(.info, "commands", "unanswered", "\(c.name): \(c.unanswered) never answered",
                    subject: c.name, records: recs, time: time(recs, c), weight: Double(c.unanswered)))
            }
        }
        return out
    }

    public func table(colors: Bool, width: Int) -> String {
        if commands.isEmpty { return "  no commands\n" }
        var t = TextTable(["command", "count", "ok", "errors", "unanswered", "p50", "p99", "max"])
        let note = latencyMeasured ? "" : "  (latencies not measured: this recording was imported from a format without command times)\n"
        func d(_ v: Int64?) -> String { v.map { DurationFormat.short($0) } ?? "" }
        for c in commands {
            let errs = c.errors.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            t.row([c.name, "\(c.count)", "\(c.ok)", errs, c.unanswered > 0 ? "\(c.unanswered)" : "", d(c.p50), d(c.p99), d(c.max)])
        }
        return note + t.render(colors: colors, width: width)
    }

    public func csv() -> String {
        var c = CSV(["command", "count", "ok", "errors", "unanswered", "latency_p50_ns", "latency_p99_ns", "latency_max_ns"])
        for x in commands {
            c.add([x.name, "\(x.count)", "\(x.ok)", x.errors.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ";"),
                   "\(x.unanswered)", x.p50.map { "\($0)" } ?? "", x.p99.map { "\($0)" } ?? "", x.max.map { "\($0)" } ?? ""])
        }
        return c.string
    }
}
