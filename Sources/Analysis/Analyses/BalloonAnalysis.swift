import QMP
import Recording

/// `balloon`: the guest's logical memory size over time (QMP-NOTES.md, "BALLOON_CHANGE"),
/// from BALLOON_CHANGE events and `query-balloon` replies, with the host's `balloon`
/// targets alongside.
///
/// BALLOON_CHANGE follows what the guest did, not the target, and is throttled to one per
/// second (QMP-NOTES.md, "Event throttling"), so the series is a sampled step function: an
/// event arriving about 1 s after the previous one was sent at the end of a throttle window
/// and may stand for several merged changes. A guest flapping between two values at that
/// cadence is the arm64 64 K-page balloon bug.
public struct BalloonAnalysis: Analysis {
    public static let name = "balloon"
    public static let summary = "guest memory (balloon) over time, host targets and how long the guest took to reach them, flapping"
    public static let clock = AnalysisClock.receive
    public static let interest = Interest(events: ["BALLOON_CHANGE"], commands: ["balloon", "query-balloon"])

    /// Deliveries this close to 1 s after the previous one came at the end of a throttle window.
    static let cadence: ClosedRange<Int64> = 950_000_000...1_050_000_000
    /// Gaps up to this long keep a flapping episode going.
    static let flapGap: Int64 = 1_500_000_000
    /// Changes needed to call it flapping (A B A B A B A: 6 changes).
    static let flapMinChanges = 6
    /// A target is reached when the guest is within this many bytes (the guest works in
    /// pages: 4 KiB, or 64 KiB on 64 K-page guests).
    static let reachTolerance: Int64 = 65_536

    public struct Sample: Sendable, Hashable {
        public var record: Int
        public var time: Int64
        public var actual: Int64
        /// `event` or `query`.
        public var source: String
        public var qemuMicros: Int64?
        /// Arrived at the throttle cadence: intermediate values may have been merged away.
        public var possiblyMerged: Bool
    }

    public struct Target: Sendable, Hashable {
        public var record: Int
        public var time: Int64
        public var value: Int64
        /// `reached`, `superseded` (a new target came first), `never`, `rejected` (error reply), `pending`.
        public var outcome: String
        public var reachedRecord: Int?
        public var reachedTime: Int64?
        public var error: String?
        public var latency: Int64? { reachedTime.map { $0 - time } }
    }

    public struct Flapping: Sendable, Hashable {
        public var firstRecord: Int
        public var lastRecord: Int
        public var start: Int64
        public var end: Int64
        public var values: [Int64]
        public var changes: Int
        public var duration: Int64 { end - start }
    }

    let context: AnalysisContext
    var samples: [Sample] = []
    var targets: [Target] = []
    var pendingTarget: Int?
    var flaps: [Flapping] = []
    var lastEventTime: Int64?
    // The alternation run being followed.
    var run: (first: Int, start: Int64, a: Int64, b: Int64, changes: Int, last: Int, lastTime: Int64)?
    var prevEvent: (record: Int, time: Int64, value: Int64)?

    public init(context: AnalysisContext) { self.context = context }

    public mutating func consume(_ input: AnalysisInput) {
        switch input {
        case .event(let e):
            guard let actual = e.view.int("data", "actual") else { return }
            var merged = false
            if let prev = lastEventTime { merged = Self.cadence.contains(e.time - prev) }
            lastEventTime = e.time
            add(Sample(record: e.record, time: e.time, actual: actual, source: "event", qemuMicros: e.qemuMicros, possiblyMerged: merged))
            trackFlapping(e.record, e.time, actual)
        case .command(let c):
            guard c.name == "balloon", let v = c.view.int("arguments", "value") else { return }
            if let k = pendingTarget { targets[k].outcome = "superseded"; pendingTarget = nil }
            var t = Target(record: c.record, time: c.time, value: v, outcome: "pending")
            // Already there: the guest will not write a new size, so no event will come.
            if let last = samples.last, abs(last.actual - v) < Self.reachTolerance {
                t.outcome = "reached"
                t.reachedRecord = c.record
                t.reachedTime = c.time
            }
            targets.append(t)
            if t.outcome == "pending" { pendingTarget = targets.count - 1 }
        case .reply(let r):
            if r.command.name == "query-balloon" {
                guard !r.isError, let actual = r.view.int("return", "actual") else { return }
                add(Sample(record: r.record, time: r.time, actual: actual, source: "query", qemuMicros: nil, possiblyMerged: false))
            } else if r.command.name == "balloon", r.isError,
                      let k = pendingTarget.flatMap({ targets[$0].record == r.command.record ? $0 : nil })
                    ?? targets.lastIndex(where: { $0.record == r.command.record }) {
                targets[k].outcome = "rejected"
                if pendingTarget == k { pendingTarget = nil }
                targets[k].error = (r.errorClass ?? "") + (r.errorDesc.map { ": " + $0 } ?? "")
            }
        case .close:
            break
        }
    }

    mutating func add(_ s: Sample) {
        samples.append(s)
        // Only the latest target can be pending: a new one supersedes the previous.
        if let k = pendingTarget, abs(s.actual - targets[k].value) < Self.reachTolerance, s.time >= targets[k].time {
            targets[k].outcome = "reached"
            targets[k].reachedRecord = s.record
            targets[k].reachedTime = s.time
            pendingTarget = nil
        }
    }

    /// Follows A, B, A, B, ... among events no more than `flapGap` apart; a repeated value
    /// is not a change and leaves the run alone.
    mutating func trackFlapping(_ record: Int, _ t: Int64, _ v: Int64) {
        defer { prevEvent = (record, t, v) }
        guard let p = prevEvent, p.value != v else { return }
        if var r = run, t - r.lastTime <= Self.flapGap, (v == r.a && p.value == r.b) || (v == r.b && p.value == r.a) {
            r.changes += 1
            r.last = record
            r.lastTime = t
            run = r
            return
        }
        closeRun()
        if t - p.time <= Self.flapGap {
            run = (first: p.record, start: p.time, a: p.value, b: v, changes: 1, last: record, lastTime: t)
        }
    }

    mutating func closeRun() {
        if let r = run, r.changes >= Self.flapMinChanges {
            flaps.append(Flapping(firstRecord: r.first, lastRecord: r.last, start: r.start, end: r.lastTime, values: [r.a, r.b], changes: r.changes))
        }
        run = nil
    }

    public func finish() -> BalloonResult {
        var me = self
        me.closeRun()
        var targets = me.targets
        for k in targets.indices where targets[k].outcome == "pending" { targets[k].outcome = "never" }
        return BalloonResult(context: context, samples: samples, targets: targets, flapping: me.flaps)
    }
}

public struct BalloonResult: AnalysisResult {
    public let context: AnalysisContext
    public let samples: [BalloonAnalysis.Sample]
    public let targets: [BalloonAnalysis.Target]
    public let flapping: [BalloonAnalysis.Flapping]

    /// The step series: samples where the level changed (the first sample included).
    public var steps: [BalloonAnalysis.Sample] {
        var out: [BalloonAnalysis.Sample] = []
        for s in samples where out.last?.actual != s.actual { out.append(s) }
        return out
    }

    public struct Stats: Sendable, Hashable {
        public var min: Int64
        public var max: Int64
        public var final: Int64
        /// Over [first sample, end of range], each level weighted by how long it held.
        public var timeWeightedMean: Double
        /// Per level, the time it held (ns), most time first.
        public var timeAtLevel: [(level: Int64, time: Int64)]
        public static func == (a: Stats, b: Stats) -> Bool { a.min == b.min && a.max == b.max && a.final == b.final }
        public func hash(into h: inout Hasher) { h.combine(min); h.combine(max); h.combine(final) }
    }

    public var stats: Stats? {
        guard let first = samples.first else { return nil }
        var at: [Int64: Int64] = [:]
        var order: [Int64] = []
        var weighted = 0.0
        let end = max(context.rangeEnd, samples.last!.time)
        for (k, s) in samples.enumerated() {
            let until = k + 1 < samples.count ? samples[k + 1].time : end
            let d = until - s.time
            if at[s.actual] == nil { order.append(s.actual) }
            at[s.actual, default: 0] += d
            weighted += Double(s.actual) * Double(d)
        }
        let span = end - first.time
        let mean = span > 0 ? weighted / Double(span) : Double(samples.last!.actual)
        let levels = order.map { ($0, at[$0]!) }.sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
        return Stats(min: samples.map(\.actual).min()!, max: samples.map(\.actual).max()!, final: samples.last!.actual,
                     timeWeightedMean: mean, timeAtLevel: levels)
    }

    public var jsonMembers: [JSONObject.Member] {
        var m: [JSONObject.Member] = []
        m.append(.init(key: "samples", value: .array(samples.map { s in
            var o = JSONObject(point: context, s.record, s.time)
            o["actual"] = .int(s.actual)
            o["source"] = .string(s.source)
            o["qemu_us"] = jopt(s.qemuMicros)
            o["possibly_merged"] = .bool(s.possiblyMerged)
            return .object(o)
        })))
        m.append(.init(key: "steps", value: .array(steps.map { s in
            var o = JSONObject(point: context, s.record, s.time)
            o["actual"] = .int(s.actual)
            return .object(o)
        })))
        if let st = stats {
            var o = JSONObject()
            o["min"] = .int(st.min)
            o["max"] = .int(st.max)
            o["final"] = .int(st.final)
            o["time_weighted_mean"] = jnum(st.timeWeightedMean, 0)
            o["time_at_level"] = .array(st.timeAtLevel.map { .object(JSONObject(["actual": .int($0.level), "duration_ns": .int($0.time)])) })
            m.append(.init(key: "stats", value: .object(o)))
        } else {
            m.append(.init(key: "stats", value: .null))
        }
        m.append(.init(key: "targets", value: .array(targets.map { t in
            var o = JSONObject(point: context, t.record, t.time)
            o["value"] = .int(t.value)
            o["outcome"] = .string(t.outcome)
            o["reached_record"] = jopt(t.reachedRecord)
            o["reached_t_ns"] = jopt(t.reachedTime)
            o["latency_ns"] = jopt(t.latency)
            o["error"] = jopt(t.error)
            return .object(o)
        })))
        m.append(.init(key: "flapping", value: .array(flapping.map { f in
            var o = JSONObject()
            o["first_record"] = .int(f.firstRecord)
            o["last_record"] = .int(f.lastRecord)
            o["start_ns"] = .int(f.start)
            o["end_ns"] = .int(f.end)
            o["start_wall"] = jopt(context.wall(f.start))
            o["duration_ns"] = .int(f.duration)
            o["values"] = .array(f.values.map { .int($0) })
            o["changes"] = .int(f.changes)
            return .object(o)
        })))
        return m
    }

    public var findings: [AnalysisFinding] {
        var out: [AnalysisFinding] = []
        for f in flapping {
            out.append(AnalysisFinding(.warning, "balloon", "flapping",
                "balloon flapping for \(DurationFormat.short(f.duration)) between \(bytesText(f.values[0])) and \(bytesText(f.values[1])) (\(f.changes) changes at the 1 s throttle cadence)",
                records: [f.firstRecord, f.lastRecord], time: f.start, weight: Double(f.duration) / 1e9, value: Double(f.duration) / 1e9))
        }
        for t in targets where t.outcome == "never" {
            let wait = context.rangeEnd - t.time
            out.append(AnalysisFinding(.warning, "balloon", "target-never-reached",
                "balloon target \(bytesText(t.value)) never reached (\(DurationFormat.short(wait)) until the end; last level \(samples.last.map { bytesText($0.actual) } ?? "unknown"))",
                records: [t.record], time: t.time, weight: Double(wait) / 1e9))
        }
        for t in targets where t.outcome == "rejected" {
            out.append(AnalysisFinding(.info, "balloon", "target-rejected", "balloon target \(bytesText(t.value)) rejected: \(t.error ?? "")",
                subject: t.error ?? "", records: [t.record], time: t.time))
        }
        return out
    }

    public func describe(_ g: FindingGroup) -> String? {
        switch g.code {
        case "flapping":
            let l = g.largest
            return "balloon flapping \(times(g.count)), \(seconds(g.totalValue)) in total (longest: \(l.message.dropFirst("balloon flapping ".count)))"
        case "target-never-reached":
            return "\(g.count) balloon targets never reached (the last: \(g.members.last!.message.dropFirst("balloon target ".count)))"
        case "target-rejected":
            return "\(g.count) balloon targets rejected: \(g.subject)"
        default:
            return nil
        }
    }

    public func table(colors: Bool, width: Int) -> String {
        let st = TextStyle(colors)
        var s = ""
        if let stats {
            s += "  min \(bytesText(stats.min)), max \(bytesText(stats.max)), final \(bytesText(stats.final)), time-weighted mean \(bytesText(Int64(stats.timeWeightedMean)))\n\n"
        } else {
            s += "  no balloon samples (no BALLOON_CHANGE events or query-balloon replies)\n\n"
        }
        var t = TextTable(["record", "time", "actual", "source", "note"])
        for x in samples {
            t.row(["#\(x.record)", context.wallOrClock(x.time), bytesText(x.actual) + " (\(x.actual))", x.source,
                   x.possiblyMerged ? st.yellow("possibly merged (1 s throttle cadence)") : ""])
        }
        if !samples.isEmpty { s += st.bold("Samples") + "\n" + t.render(colors: colors, width: width) + "\n" }
        if let stats, !stats.timeAtLevel.isEmpty {
            var lt = TextTable(["level", "time at level"])
            for l in stats.timeAtLevel { lt.row([bytesText(l.level) + " (\(l.level))", DurationFormat.short(l.time)]) }
            s += st.bold("Time at each level") + "\n" + lt.render(colors: colors, width: width) + "\n"
        }
        if !targets.isEmpty {
            var tt = TextTable(["record", "time", "target", "outcome", "took"])
            for x in targets {
                let outcome = x.outcome == "reached" ? st.green(x.outcome) : x.outcome == "never" ? st.red(x.outcome) : x.outcome
                tt.row(["#\(x.record)", context.wallOrClock(x.time), bytesText(x.value), outcome + (x.reachedRecord.map { " at #\($0)" } ?? ""),
                        x.latency.map { DurationFormat.short($0) } ?? (x.error ?? "")])
            }
            s += st.bold("Targets (balloon command)") + "\n" + tt.render(colors: colors, width: width) + "\n"
        }
        if !flapping.isEmpty {
            var ft = TextTable(["records", "from", "duration", "between", "changes"])
            for f in flapping {
                ft.row(["#\(f.firstRecord)..#\(f.lastRecord)", context.wallOrClock(f.start), DurationFormat.short(f.duration),
                        f.values.map(bytesText).joined(separator: " / "), "\(f.changes)"])
            }
            s += st.bold("Flapping") + "\n" + ft.render(colors: colors, width: width)
        }
        return s
    }

    public func csv() -> String {
        var c = CSV(["record", "t_ns", "wall", "actual", "source", "possibly_merged", "qemu_us"])
        for s in samples {
            c.add(["\(s.record)", "\(s.time)", context.wall(s.time) ?? "", "\(s.actual)", s.source, s.possiblyMerged ? "true" : "false",
                   s.qemuMicros.map { "\($0)" } ?? ""])
        }
        return c.string
    }

    func plot() -> TimePlot? {
        guard !samples.isEmpty else { return nil }
        let mib = 1_048_576.0
        var p = TimePlot(title: "Guest memory (balloon) — \(context.recording.path.split(separator: "/").last.map(String.init) ?? "")",
                         yLabel: "guest memory (MiB)", clockNote: "receive clock", startMicros: context.startMicros,
                         tMin: context.rangeStart, tMax: max(context.rangeEnd, samples.last!.time + 1))
        p.fitY(samples.map { Double($0.actual) / mib } + targets.map { Double($0.value) / mib })
        p.yFormat = { fmt($0, $0.magnitude >= 100 ? 0 : 1) }
        p.series.append(.step(label: "actual", points: samples.map { ($0.time, Double($0.actual) / mib) }, color: "#1f77b4"))
        p.series.append(.markers(label: "possibly merged", points: samples.filter(\.possiblyMerged).map { ($0.time, Double($0.actual) / mib) }, color: "#ff7f0e", shape: .circle))
        p.series.append(.markers(label: "target", points: targets.map { ($0.time, Double($0.value) / mib) }, color: "#d62728", shape: .triangle))
        return p
    }

    public func svg() -> String? { plot()?.svg() }
    public func terminalChart(width: Int, height: Int) -> String? { plot()?.terminal(width: width, height: height) }
}
