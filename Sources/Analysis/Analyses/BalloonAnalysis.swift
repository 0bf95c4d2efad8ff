import QMP
import Recording

/// `balloon`: the guest's logical memory size over time (docs/QEMU-FACTS.md, "BALLOON_CHANGE"),
/// from BALLOON_CHANGE events and `query-balloon` replies, with the host's `balloon`
/// targets alongside.
///
/// BALLOON_CHANGE follows what the guest did, not the target, and is throttled to one per
/// second (docs/QEMU-FACTS.md, "Event throttling"), so the series is a sampled step function:
/// a delivery the throttle held (`ThrottleRule`, the rule `throttle` and `rtc` use too) may
/// stand for several changes, of which only the last was delivered. A guest alternating
/// between two levels a page apart at that cadence is the arm64 64 K-page balloon bug
/// (flapping); a long run of deliveries at the cadence that is not the guest converging on
/// a host target is a flood.
///
/// Clocks: every time is the receive clock, except `latency_qemu_ns`, which is QEMU's
/// clock against the recorder's wall clock (see `Target.latencyQemu`).
public struct BalloonAnalysis: Analysis {
    public static let name = "balloon"
    public static let summary = "guest memory (balloon) over time, host targets and how long the guest took to reach them, flapping, floods"
    public static let clock = AnalysisClock.receive
    public static let interest = Interest(events: ["BALLOON_CHANGE"], commands: ["balloon", "query-balloon"], closes: true)

    /// Consecutive deliveries at most this far apart (receive clock) keep a flapping episode
    /// or a flood going: the 1 s throttle cadence with room for a late guest.
    static let runGap: Int64 = 1_500_000_000
    /// Changes needed to call it flapping (A B A B A B A: 6 changes; repeats in between allowed).
    static let flapMinChanges = 6
    /// Deliveries needed to call a run at the cadence a flood.
    static let floodMinDeliveries = 8
    /// A target is reached when the guest is within this many bytes (the guest works in
    /// pages: 4 KiB, or 64 KiB on 64 K-page guests).
    static let reachTolerance: UInt64 = 65_536

    public struct Sample: Sendable, Hashable {
        public var record: Int
        public var time: Int64
        public var actual: Int64
        /// `event` or `query`.
        public var source: String
        public var qemuMicros: Int64?
        /// Held by QEMU's throttle (`ThrottleRule`): changes before it in its window were
        /// replaced and never delivered. Always false for `query` samples.
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
        /// When the target stopped being in force (receive clock): reached, superseded by
        /// the next `balloon`, rejected by its reply, or left behind by a new QEMU process;
        /// `nil` while still in force at the end of the recording.
        public var until: Int64?
        public var error: String?
        /// Receive clock: command received to the reaching sample received. Includes the up
        /// to 1 s QEMU's throttle held the reaching event.
        public var latency: Int64? { reachedTime.map { $0 - time } }
        /// QEMU's clock against the recorder's wall clock (ns): the reaching event's QEMU
        /// timestamp (when the guest wrote the size) minus the command's wall time (header
        /// start + the command's receive time). The guest's own latency, without the
        /// throttle's hold. Meaningful when QEMU and the recorder read one host clock (a
        /// recording made on QEMU's host); `nil` when reached by a query, at once, or
        /// without a header or timestamp.
        public var latencyQemu: Int64?
    }

    public struct Flapping: Sendable, Hashable {
        public var firstRecord: Int
        /// The last delivery that changed the level.
        public var lastRecord: Int
        public var start: Int64
        public var end: Int64
        /// The two levels, the first seen first.
        public var values: [Int64]
        public var changes: Int
        /// Deliveries from the first to the last change, repeats included.
        public var deliveries: Int
        /// The run's last delivery (repeats after the last change included): floods up to
        /// here are the flapping's.
        var coveredUntil: Int64
        public var duration: Int64 { end - start }
    }

    public struct Flood: Sendable, Hashable {
        public var firstRecord: Int
        public var lastRecord: Int
        public var start: Int64
        public var end: Int64
        public var deliveries: Int
        /// Of those, deliveries that were a step towards the host target in force.
        public var converging: Int
        public var duration: Int64 { end - start }
    }

    let context: AnalysisContext
    var samples: [Sample] = []
    var targets: [Target] = []
    var pendingTarget: Int?
    /// Where a new QEMU process started (its greeting's time): the old process's level ends there.
    var processStarts: [Int64] = []
    /// BALLOON_CHANGE is throttled on its name alone: one key.
    var throttle: ThrottleRule.Key

    public init(context: AnalysisContext) {
        self.context = context
        throttle = ThrottleRule.Key(receiveIsDelivery: context.receiveTimesAreDeliveryTimes)
    }

    public mutating func consume(_ input: AnalysisInput) {
        switch input {
        case .event(let e):
            guard let actual = e.view.int("data", "actual") else { return }
            let q = e.qemuMicros
            let held = throttle.deliver(Delivery(receive: e.time, qemuMicros: q))
            add(Sample(record: e.record, time: e.time, actual: actual, source: "event", qemuMicros: q, possiblyMerged: held))
        case .command(let c):
            guard c.name == "balloon", let v = c.view.int("arguments", "value") else { return }
            if let k = pendingTarget { targets[k].outcome = "superseded"; targets[k].until = c.time; pendingTarget = nil }
            var t = Target(record: c.record, time: c.time, value: v, outcome: "pending")
            // Already there: the guest will not write a new size, so no event will come.
            if let last = samples.last, last.actual.absoluteDifference(v) < Self.reachTolerance {
                t.outcome = "reached"
                t.reachedRecord = c.record
                t.reachedTime = c.time
                t.until = c.time
            }
            targets.append(t)
            if t.outcome == "pending" { pendingTarget = targets.count - 1 }
        case .reply(let r):
            if r.command.name == "query-balloon" {
                guard !r.isError, let actual = r.view.int("return", "actual") else { return }
                add(Sample(record: r.record, time: r.time, actual: actual, source: "query", qemuMicros: nil, possiblyMerged: false))
            } else if r.command.name == "balloon", r.isError,
                      let k = pendingTarget.flatMap({ targets[$0].record == r.command.record ? $0 : nil }) ?? target(r.command.record) {
                targets[k].outcome = "rejected"
                targets[k].until = r.time
                if pendingTarget == k { pendingTarget = nil }
                targets[k].error = (r.errorClass ?? "") + (r.errorDesc.map { ": " + $0 } ?? "")
            }
        case .greeting(_, let time, _, true):
            // A new QEMU process (the VM model's rule): the old level and target end here,
            // and the new process starts a new throttle window.
            processStarts.append(time)
            if let k = pendingTarget { targets[k].outcome = "never"; targets[k].until = time; pendingTarget = nil }
            throttle = ThrottleRule.Key(receiveIsDelivery: context.receiveTimesAreDeliveryTimes)
        default:
            break
        }
    }

    /// The target set by the command at `record` (targets are in command order).
    func target(_ record: Int) -> Int? {
        let k = targets.partitionPoint { $0.record >= record }
        return k < targets.count && targets[k].record == record ? k : nil
    }

    mutating func add(_ s: Sample) {
        samples.append(s)
        // Only the latest target can be pending: a new one supersedes the previous.
        if let k = pendingTarget, s.actual.absoluteDifference(targets[k].value) < Self.reachTolerance, s.time >= targets[k].time {
            targets[k].outcome = "reached"
            targets[k].reachedRecord = s.record
            targets[k].reachedTime = s.time
            targets[k].until = s.time
            if let q = s.qemuMicros, let start = context.startMicros {
                targets[k].latencyQemu = q.subtractingSaturating(start.addingSaturating(targets[k].time / 1000)).multipliedSaturating(by: 1000)
            }
            pendingTarget = nil
        }
    }

    /// Flapping among the BALLOON_CHANGE deliveries: a run of deliveries, consecutive ones at
    /// most `runGap` apart, whose values take exactly two levels, with at least
    /// `flapMinChanges` changes between them. Repeats keep the run going: behind the
    /// throttle, a guest alternating A, B every half second delivers A A B B A A ... (the
    /// arm64 64 K-page bug). A third level ends the run; a new one starts from the
    /// deliveries of the level before it.
    static func flapping(_ events: [Sample]) -> [Flapping] {
        struct Run {
            var firstRecord: Int, start: Int64, a: Int64, b: Int64?
            var changes = 0, deliveries = 1, deliveriesAtChange = 1
            var lastChangeRecord: Int, lastChangeTime: Int64
            var lastTime: Int64, lastValue: Int64
            // The deliveries of the current level so far: where a new run starts.
            var sinceRecord: Int, sinceTime: Int64, sinceCount = 1
        }
        var out: [Flapping] = []
        var run: Run?
        func close(_ r: Run?) {
            guard let r, let b = r.b, r.changes >= flapMinChanges else { return }
            out.append(Flapping(firstRecord: r.firstRecord, lastRecord: r.lastChangeRecord, start: r.start, end: r.lastChangeTime,
                                values: [r.a, b], changes: r.changes, deliveries: r.deliveriesAtChange, coveredUntil: r.lastTime))
        }
        func fresh(_ s: Sample) -> Run {
            Run(firstRecord: s.record, start: s.time, a: s.actual, b: nil, lastChangeRecord: s.record, lastChangeTime: s.time,
                lastTime: s.time, lastValue: s.actual, sinceRecord: s.record, sinceTime: s.time)
        }
        for s in events {
            guard var r = run, s.time - r.lastTime <= runGap else {
                close(run)
                run = fresh(s)
                continue
            }
            r.lastTime = s.time
            r.deliveries += 1
            if s.actual == r.lastValue {
                r.sinceCount += 1
                run = r
                continue
            }
            if r.b == nil || s.actual == r.a || s.actual == r.b {
                if r.b == nil { r.b = s.actual }
                r.changes += 1
                r.deliveriesAtChange = r.deliveries
            } else {
                // A third level: the alternation, if any, ended with the previous level.
                close(r)
                r = Run(firstRecord: r.sinceRecord, start: r.sinceTime, a: r.lastValue, b: s.actual, changes: 1,
                        deliveries: r.sinceCount + 1, deliveriesAtChange: r.sinceCount + 1, lastChangeRecord: s.record,
                        lastChangeTime: s.time, lastTime: s.time, lastValue: s.actual, sinceRecord: s.record, sinceTime: s.time)
                run = r
                continue
            }
            r.lastChangeRecord = s.record
            r.lastChangeTime = s.time
            r.lastValue = s.actual
            r.sinceRecord = s.record
            r.sinceTime = s.time
            r.sinceCount = 1
            run = r
        }
        close(run)
        return out
    }

    /// Floods: runs of at least `floodMinDeliveries` BALLOON_CHANGE deliveries, consecutive
    /// ones at most `runGap` apart (the throttle cadence), that are not the guest converging
    /// on a host target. A delivery converges when it is at the target in force (the latest
    /// `balloon` not rejected, within `reachTolerance`), closer to it than the level before,
    /// or at that level still (a held event repeating what a `query-balloon` already showed);
    /// one created just before a new target may still be heading for the previous one, so
    /// within a throttle window (`ThrottleRule.cadence`) of a new target either counts. A
    /// run whose every delivery converges is the guest following the host (the burst in
    /// Recordings/guest-balloon.qmprec); a run whose wandering deliveries all lie inside a
    /// flapping episode is reported as flapping only.
    static func floods(_ samples: [Sample], _ targets: [Target], flapping: [Flapping]) -> [Flood] {
        var out: [Flood] = []
        let ordered = targets.filter { $0.outcome != "rejected" }.sorted { $0.record < $1.record }
        var ti = 0
        var inForce: Target?, before: Target?
        var level: Int64?
        struct Run { var first: Sample, last: Sample, count = 1, converging: Int, wanderingOutsideFlaps: Int }
        var run: Run?
        func close(_ r: Run?) {
            guard let r, r.count >= floodMinDeliveries, r.converging < r.count, r.wanderingOutsideFlaps > 0 else { return }
            out.append(Flood(firstRecord: r.first.record, lastRecord: r.last.record, start: r.first.time, end: r.last.time,
                             deliveries: r.count, converging: r.converging))
        }
        func towards(_ t: Target?, _ v: Int64, from p: Int64?) -> Bool {
            guard let t else { return false }
            if v.absoluteDifference(t.value) < reachTolerance { return true }
            guard let p else { return true }
            return v == p || v.absoluteDifference(t.value) < p.absoluteDifference(t.value)
        }
        for s in samples {
            while ti < ordered.count, ordered[ti].record < s.record {
                before = inForce
                inForce = ordered[ti]
                ti += 1
            }
            defer { level = s.actual }
            guard s.source == "event" else { continue }
            var converges = towards(inForce, s.actual, from: level)
            if !converges, let t = inForce, s.time - t.time <= ThrottleRule.cadence.upperBound {
                converges = towards(before, s.actual, from: level)
            }
            let wandersOutside = !converges && !flapping.contains { $0.start <= s.time && s.time <= $0.coveredUntil }
            if var r = run, s.time - r.last.time <= runGap {
                r.count += 1
                r.last = s
                if converges { r.converging += 1 }
                if wandersOutside { r.wanderingOutsideFlaps += 1 }
                run = r
            } else {
                close(run)
                run = Run(first: s, last: s, converging: converges ? 1 : 0, wanderingOutsideFlaps: wandersOutside ? 1 : 0)
            }
        }
        close(run)
        return out
    }

    public func finish() -> BalloonResult {
        var targets = self.targets
        for k in targets.indices where targets[k].outcome == "pending" { targets[k].outcome = "never" }
        let flaps = Self.flapping(samples.filter { $0.source == "event" })
        return BalloonResult(context: context, samples: samples, targets: targets, flapping: flaps,
                             floods: Self.floods(samples, targets, flapping: flaps), processStarts: processStarts)
    }
}

public struct BalloonResult: StreamedJSONResult {
    public let context: AnalysisContext
    public let samples: [BalloonAnalysis.Sample]
    public let targets: [BalloonAnalysis.Target]
    public let flapping: [BalloonAnalysis.Flapping]
    public let floods: [BalloonAnalysis.Flood]
    /// Times (ns) where a new QEMU process started: a level holds until the next sample or
    /// the next of these, whichever is first (after it the level is unknown).
    public var processStarts: [Int64] = []

    /// The level at record `i` (the last sample at or before it, unless a new QEMU process
    /// started since); `nil` when unknown. What the shell's `state` shows there.
    public func level(atRecord i: Int, time t: Int64) -> Int64? {
        guard let s = samples.last(where: { $0.record <= i }) else { return nil }
        if processStarts.contains(where: { $0 > s.time && $0 <= t }) { return nil }
        return s.actual
    }

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
        guard !samples.isEmpty else { return nil }
        var at: [Int64: Int64] = [:]
        var order: [Int64] = []
        var weighted = 0.0
        let end = max(context.rangeEnd, samples.last!.time)
        // Samples and process starts are both in time order: one cursor walks the starts
        // (a search per sample was quadratic on a recording with many QEMU restarts).
        var next = 0
        for (k, s) in samples.enumerated() {
            var until = k + 1 < samples.count ? samples[k + 1].time : end
            while next < processStarts.count && processStarts[next] <= s.time { next += 1 }
            if next < processStarts.count && processStarts[next] < until { until = processStarts[next] }
            let d = until - s.time
            if at[s.actual] == nil { order.append(s.actual) }
            at[s.actual, default: 0] += d
            weighted += Double(s.actual) * Double(d)
        }
        // Time covered (a new QEMU process leaves a gap with no known level).
        let span = at.values.reduce(0, +)
        let mean = span > 0 ? weighted / Double(span) : Double(samples.last!.actual)
        let levels = order.map { ($0, at[$0]!) }.sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
        return Stats(min: samples.map(\.actual).min()!, max: samples.map(\.actual).max()!, final: samples.last!.actual,
                     timeWeightedMean: mean, timeAtLevel: levels)
    }

    public var streamedMembers: [StreamedMember] {
        let samples = self.samples, steps = self.steps, targets = self.targets, flapping = self.flapping, floods = self.floods
        let context = self.context
        var m: [StreamedMember] = []
        m.append(.rows("samples", count: samples.count) { i, row in
            let s = samples[i]
            row.point(context, s.record, s.time)
            row.int("actual", s.actual)
            row.string("source", s.source)
            row.int("qemu_us", s.qemuMicros)
            row.bool("possibly_merged", s.possiblyMerged)
        })
        m.append(.rows("steps", count: steps.count) { i, row in
            row.point(context, steps[i].record, steps[i].time)
            row.int("actual", steps[i].actual)
        })
        if let st = stats {
            var o = JSONObject()
            o["min"] = .int(st.min)
            o["max"] = .int(st.max)
            o["final"] = .int(st.final)
            o["time_weighted_mean"] = jnum(st.timeWeightedMean, 0)
            let levels = st.timeAtLevel
            m.append(.object("stats", StreamedMember.values(o) + [.rows("time_at_level", count: levels.count) { k, row in
                row.int("actual", levels[k].level)
                row.int("duration_ns", levels[k].time)
            }]))
        } else {
            m.append(.value("stats", .null))
        }
        m.append(.rows("targets", count: targets.count) { k, row in
            let t = targets[k]
            row.point(context, t.record, t.time)
            row.int("value", t.value)
            row.string("outcome", t.outcome)
            row.int("reached_record", t.reachedRecord)
            row.int("reached_t_ns", t.reachedTime)
            row.int("until_t_ns", t.until)
            row.int("latency_ns", t.latency)
            row.int("latency_qemu_ns", t.latencyQemu)
            row.string("error", t.error)
        })
        /// A run of deliveries (a flapping episode, a flood): where it starts and ends.
        func run(_ first: Int, _ last: Int, _ start: Int64, _ end: Int64) -> JSONObject {
            var o = JSONObject()
            o["first_record"] = .int(first)
            o["last_record"] = .int(last)
            o["start_ns"] = .int(start)
            o["end_ns"] = .int(end)
            o["start_wall"] = jopt(context.wall(start))
            o["duration_ns"] = .int(end - start)
            return o
        }
        m.append(.array("flapping", count: flapping.count) { k in
            let f = flapping[k]
            var o = run(f.firstRecord, f.lastRecord, f.start, f.end)
            o["values"] = .array(f.values.map { .int($0) })
            o["changes"] = .int(f.changes)
            o["deliveries"] = .int(f.deliveries)
            return .object(o)
        })
        m.append(.array("floods", count: floods.count) { k in
            let f = floods[k]
            var o = run(f.firstRecord, f.lastRecord, f.start, f.end)
            o["deliveries"] = .int(f.deliveries)
            o["converging"] = .int(f.converging)
            return .object(o)
        })
        return m
    }

    public var findings: [AnalysisFinding] {
        var out: [AnalysisFinding] = []
        for f in flapping {
            out.append(AnalysisFinding(.warning, "balloon", "flapping",
                "balloon flapping for \(DurationFormat.short(f.duration)) between \(exactBytesText(f.values[0])) and \(exactBytesText(f.values[1])) (\(f.changes) changes in \(f.deliveries) deliveries at the 1 s throttle cadence)",
                records: [f.firstRecord, f.lastRecord], time: f.start, weight: Double(f.duration) / 1e9, value: Double(f.duration) / 1e9))
        }
        for f in floods {
            let wandering = f.deliveries - f.converging
            out.append(AnalysisFinding(.warning, "balloon", "flood",
                "BALLOON_CHANGE flood: \(f.deliveries) deliveries at the 1 s throttle cadence for \(DurationFormat.short(f.duration)) (receive clock), not the guest converging on a host target (\(wandering) moved away from the target or came without one)",
                records: [f.firstRecord, f.lastRecord], time: f.start, weight: Double(f.duration) / 1e9, value: Double(f.duration) / 1e9))
        }
        for t in targets where t.outcome == "never" {
            let wait = context.rangeEnd - t.time
            out.append(AnalysisFinding(.warning, "balloon", "target-never-reached",
                "balloon target \(exactBytesText(t.value)) never reached (\(DurationFormat.short(wait)) until the end; last level \(samples.last.map { exactBytesText($0.actual) } ?? "unknown"))",
                records: [t.record], time: t.time, weight: Double(wait) / 1e9))
        }
        for t in targets where t.outcome == "rejected" {
            out.append(AnalysisFinding(.info, "balloon", "target-rejected", "balloon target \(exactBytesText(t.value)) rejected: \(t.error ?? "")",
                subject: t.error ?? "", records: [t.record], time: t.time))
        }
        return out
    }

    public func describe(_ g: FindingGroup) -> String? {
        switch g.code {
        case "flapping":
            let l = g.largest
            return "balloon flapping \(times(g.count)), \(seconds(g.totalValue)) in total (longest: \(l.message.dropFirst("balloon flapping ".count)))"
        case "flood":
            let l = g.largest
            return "\(g.count) BALLOON_CHANGE floods, \(seconds(g.totalValue)) in total (longest: \(l.message.dropFirst("BALLOON_CHANGE flood: ".count)))"
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
            s += "  min \(exactBytesText(stats.min)), max \(exactBytesText(stats.max)), final \(exactBytesText(stats.final)), time-weighted mean \(bytesText(Int64(saturating: stats.timeWeightedMean)))\n\n"
        } else {
            s += "  no balloon samples (no BALLOON_CHANGE events or query-balloon replies)\n\n"
        }
        var t = TextTable(["record", "time", "actual", "source", "note"])
        for x in samples {
            t.row(["#\(x.record)", context.wallOrClock(x.time), exactBytesText(x.actual) + " (\(x.actual))", x.source,
                   x.possiblyMerged ? st.yellow("possibly merged (held)") : ""])
        }
        if !samples.isEmpty {
            s += st.bold("Samples") + "\n" + t.render(colors: colors, width: width)
            if samples.contains(where: \.possiblyMerged) {
                s += "  possibly merged: held by QEMU's 1 s throttle; changes before it in its window were not delivered\n"
            }
            s += "\n"
        }
        if let stats, !stats.timeAtLevel.isEmpty {
            var lt = TextTable(["level", "time at level"])
            for l in stats.timeAtLevel { lt.row([exactBytesText(l.level) + " (\(l.level))", DurationFormat.short(l.time)]) }
            s += st.bold("Time at each level") + "\n" + lt.render(colors: colors, width: width) + "\n"
        }
        if !targets.isEmpty {
            var tt = TextTable(["record", "time", "target", "outcome", "took (receive)", "took (QEMU)"])
            for x in targets {
                let outcome = x.outcome == "reached" ? st.green(x.outcome) : x.outcome == "never" ? st.red(x.outcome) : x.outcome
                tt.row(["#\(x.record)", context.wallOrClock(x.time), exactBytesText(x.value), outcome + (x.reachedRecord.map { " at #\($0)" } ?? ""),
                        x.latency.map { DurationFormat.short($0) } ?? (x.error ?? ""),
                        x.latencyQemu.map { DurationFormat.short($0) } ?? (x.latency == nil ? "" : "n/a")])
            }
            s += st.bold("Targets (balloon command)") + "\n" + tt.render(colors: colors, width: width)
            s += "  took (receive): receive clock, command received to the reaching sample received, including up to\n"
            s += "  1 s the throttle held the event; took (QEMU): QEMU's clock, the reaching event's timestamp minus the\n"
            s += "  command's wall time (header start + receive time), the guest's own latency (one host clock assumed)\n\n"
        }
        if !flapping.isEmpty {
            var ft = TextTable(["records", "from", "duration", "between", "changes"])
            for f in flapping {
                ft.row(["#\(f.firstRecord)..#\(f.lastRecord)", context.wallOrClock(f.start), DurationFormat.short(f.duration),
                        f.values.map(exactBytesText).joined(separator: " / "), "\(f.changes) in \(f.deliveries) deliveries"])
            }
            s += st.bold("Flapping") + "\n" + ft.render(colors: colors, width: width) + "\n"
        }
        if !floods.isEmpty {
            var ft = TextTable(["records", "from", "duration", "deliveries", "converging on a target"])
            for f in floods {
                ft.row(["#\(f.firstRecord)..#\(f.lastRecord)", context.wallOrClock(f.start), DurationFormat.short(f.duration),
                        "\(f.deliveries)", "\(f.converging)"])
            }
            s += st.bold("Floods (deliveries at the throttle cadence, not converging on a target)") + "\n" + ft.render(colors: colors, width: width)
        }
        return s
    }

    public func csv() -> String {
        // Levels in bytes: exact already.
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
        // Ticks with the decimals their spacing needs: levels a page apart (64 KiB, 0.0625 MiB)
        // must not share a label.
        let step = TimePlot.niceStep((p.yMax - p.yMin) / 5)
        var digits = 0
        var unit = step
        while unit < 0.999_999, digits < 6 { unit *= 10; digits += 1 }
        let decimals = digits
        p.yFormat = { fmt($0, decimals) }
        p.series.append(.step(label: "actual", points: samples.map { ($0.time, Double($0.actual) / mib) }, color: "#1f77b4"))
        p.series.append(.markers(label: "possibly merged", points: samples.filter(\.possiblyMerged).map { ($0.time, Double($0.actual) / mib) }, color: "#ff7f0e", shape: .circle))
        p.series.append(.markers(label: "target", points: targets.map { ($0.time, Double($0.value) / mib) }, color: "#d62728", shape: .triangle))
        for f in flapping {
            p.series.append(.markers(label: "flapping \(exactBytesText(f.values[0])) / \(exactBytesText(f.values[1]))",
                                     points: [(f.start, Double(f.values[0]) / mib), (f.end, Double(f.values[1]) / mib)], color: "#9467bd", shape: .cross))
        }
        return p
    }

    public func svg() -> String? { plot()?.svg() }
    public func terminalChart(width: Int, height: Int) -> String? { plot()?.terminal(width: width, height: height) }
}
