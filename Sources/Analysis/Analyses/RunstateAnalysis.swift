import QMP
import Recording

/// `runstate`: running / paused / shut down / suspended over time (QMP-NOTES.md, "Other
/// events with meaning across events"), from STOP, RESUME, SHUTDOWN, RESET, SUSPEND,
/// WAKEUP, GUEST_PANICKED and `query-status` replies.
///
/// Each paused period gets its cause: the `stop` or `migrate` command in flight (STOP
/// comes before their reply, QMP-NOTES.md "Ordering"), else a BLOCK_IO_ERROR with action
/// "stop", a WATCHDOG with action "pause" or a GUEST_PANICKED shortly before. Documented
/// follow-ups that never came are reported: BLOCK_IO_ERROR(stop) → STOP, WATCHDOG
/// reset/shutdown/pause → RESET/SHUTDOWN/STOP (none expected when already paused).
public struct RunstateAnalysis: Analysis {
    public static let name = "runstate"
    public static let summary = "running / paused / shutdown timeline, paused periods and their causes, missing follow-up events"
    public static let clock = AnalysisClock.receive
    public static let interest = Interest(
        events: ["STOP", "RESUME", "SHUTDOWN", "RESET", "SUSPEND", "SUSPEND_DISK", "WAKEUP", "GUEST_PANICKED",
                 "BLOCK_IO_ERROR", "WATCHDOG", "POWERDOWN"],
        commands: ["query-status", "stop", "cont", "migrate", "system_reset", "quit", "system_powerdown"])

    /// A trigger explains a STOP arriving within this time.
    static let causeWindow: Int64 = 2_000_000_000
    /// A follow-up may be this late; missing ones closer to the end are not reported.
    static let followUpGrace: Int64 = 1_000_000_000

    public struct Segment: Sendable, Hashable {
        /// `running`, `paused`, `shutdown`, `suspended`, `unknown`.
        public var state: String
        public var startRecord: Int?
        public var start: Int64
        public var end: Int64
        public var cause: String
        public var causeRecord: Int?
        public var duration: Int64 { end - start }
    }

    public struct Expectation: Sendable, Hashable {
        public var trigger: String
        public var record: Int
        public var time: Int64
        public var expected: String
        public var detail: String
        public var metRecord: Int?
    }

    public struct Mark: Sendable, Hashable {
        public var record: Int
        public var time: Int64
        public var event: String
        public var detail: String
    }

    let context: AnalysisContext
    var segments: [Segment] = []
    var current: Segment
    var trigger: (text: String, record: Int, time: Int64)?
    var inFlight: [(name: String, record: Int, time: Int64)] = []
    var expectations: [Expectation] = []
    /// Indices into `expectations` not met yet, oldest first, by expected event.
    var unmet: [String: [Int]] = [:]
    var marks: [Mark] = []

    public init(context: AnalysisContext) {
        self.context = context
        current = Segment(state: "unknown", startRecord: nil, start: context.rangeStart, end: context.rangeStart, cause: "state before the first run-state event or query-status")
    }

    mutating func enter(_ state: String, _ record: Int, _ t: Int64, cause: String, causeRecord: Int?) {
        if state == current.state { return }
        current.end = t
        if current.state != "unknown" || current.duration > 0 { segments.append(current) }
        current = Segment(state: state, startRecord: record, start: t, end: t, cause: cause, causeRecord: causeRecord)
    }

    mutating func expect(_ trigger: String, _ record: Int, _ t: Int64, _ then: String, _ detail: String) {
        expectations.append(Expectation(trigger: trigger, record: record, time: t, expected: then, detail: detail))
        unmet[then, default: []].append(expectations.count - 1)
    }

    /// The oldest unmet expectation of `event` is met (kept per event: a long recording has
    /// thousands of expectations, nearly all met at once).
    mutating func met(_ event: String, _ record: Int) {
        guard var list = unmet[event], let k = list.first else { return }
        expectations[k].metRecord = record
        list.removeFirst()
        unmet[event] = list
    }

    public mutating func consume(_ input: AnalysisInput) {
        switch input {
        case .command(let c):
            inFlight.append((c.name, c.record, c.time))
        case .reply(let r):
            inFlight.removeAll { $0.record == r.command.record }
            guard r.command.name == "query-status", !r.isError, let ret = r.view.object("return"), let status = ret.string("status") else { return }
            let state = Self.state(ofStatus: status, running: ret.bool("running"))
            if state != current.state {
                enter(state, r.record, r.time, cause: "query-status says \(status)", causeRecord: r.record)
            }
        case .event(let e):
            event(e)
        case .close:
            break
        }
    }

    static func state(ofStatus s: String, running: Bool?) -> String {
        switch s {
        case "running": return "running"
        case "shutdown": return "shutdown"
        case "suspended": return "suspended"
        default: return running == true ? "running" : "paused"
        }
    }

    mutating func event(_ e: EventInput) {
        let t = e.time, i = e.record
        // Found once; each member read from it (events here have at most a flat `data`).
        let data = e.view.object("data")
        switch e.name {
        case "STOP":
            met("STOP", i)
            var cause = "STOP event (no command or trigger seen)"
            var causeRecord: Int? = nil
            if let cmd = inFlight.last(where: { $0.name == "stop" || $0.name == "migrate" }) {
                cause = "\(cmd.name) command"
                causeRecord = cmd.record
            } else if let trig = trigger, t - trig.time <= Self.causeWindow {
                cause = trig.text
                causeRecord = trig.record
            }
            trigger = nil
            if current.state == "shutdown" {
                // -no-shutdown: QEMU stays up, stopped, in its shutdown state.
                marks.append(Mark(record: i, time: t, event: "STOP", detail: "after SHUTDOWN (-no-shutdown)"))
                return
            }
            enter("paused", i, t, cause: cause, causeRecord: causeRecord)
        case "RESUME":
            let cmd = inFlight.last { $0.name == "cont" }
            enter("running", i, t, cause: cmd != nil ? "cont command" : "RESUME event", causeRecord: cmd?.record ?? i)
        case "SHUTDOWN":
            met("SHUTDOWN", i)
            let reason = data?.string("reason")
            let guest = data?.bool("guest")
            var cause = "SHUTDOWN" + (reason.map { " (\($0))" } ?? "") + (guest == true ? " by the guest" : "")
            var causeRecord = i
            if let trig = trigger, t - trig.time <= Self.causeWindow, trig.text.hasPrefix("WATCHDOG") || trig.text.hasPrefix("GUEST_PANICKED") {
                cause = trig.text + " → " + cause
                causeRecord = trig.record
                trigger = nil
            }
            enter("shutdown", i, t, cause: cause, causeRecord: causeRecord)
        case "RESET":
            met("RESET", i)
            let reason = data?.string("reason")
            marks.append(Mark(record: i, time: t, event: "RESET", detail: reason ?? ""))
            // A reset after a shutdown with -no-shutdown leaves QEMU stopped; the run state
            // does not change by itself.
        case "SUSPEND":
            enter("suspended", i, t, cause: "guest suspended (S3)", causeRecord: i)
        case "SUSPEND_DISK":
            marks.append(Mark(record: i, time: t, event: "SUSPEND_DISK", detail: "guest asked for S4"))
        case "WAKEUP":
            enter("running", i, t, cause: "guest woke up", causeRecord: i)
        case "POWERDOWN":
            marks.append(Mark(record: i, time: t, event: "POWERDOWN", detail: "ACPI power button"))
        case "GUEST_PANICKED":
            let action = data?.string("action") ?? "?"
            marks.append(Mark(record: i, time: t, event: "GUEST_PANICKED", detail: "action \(action)"))
            trigger = ("GUEST_PANICKED (action \(action))", i, t)
        case "BLOCK_IO_ERROR":
            let action = data?.string("action") ?? "?"
            let dev = [data?.string("device"), data?.string("node-name"), data?.string("qom-path")]
                .compactMap { $0 }.first { !$0.isEmpty } ?? "?"
            let op = data?.string("operation") ?? ""
            let nospace = data?.bool("nospace") == true ? ", no space" : ""
            marks.append(Mark(record: i, time: t, event: "BLOCK_IO_ERROR", detail: "\(dev) \(op) action \(action)\(nospace)"))
            if action == "stop" {
                trigger = ("BLOCK_IO_ERROR on \(dev) (\(op)\(nospace))", i, t)
                // Already paused: QEMU emits no second STOP.
                if current.state != "paused" { expect("BLOCK_IO_ERROR", i, t, "STOP", "on \(dev), action stop") }
            }
        case "WATCHDOG":
            let action = data?.string("action") ?? "?"
            marks.append(Mark(record: i, time: t, event: "WATCHDOG", detail: "action \(action)"))
            trigger = ("WATCHDOG (action \(action))", i, t)
            switch action {
            case "reset": expect("WATCHDOG", i, t, "RESET", "action reset")
            case "shutdown": expect("WATCHDOG", i, t, "SHUTDOWN", "action shutdown")
            case "pause": if current.state != "paused" { expect("WATCHDOG", i, t, "STOP", "action pause") }
            default: break
            }
        default:
            break
        }
    }

    public func finish() -> RunstateResult {
        var segs = segments
        var last = current
        last.end = max(context.rangeEnd, last.start)
        segs.append(last)
        let missing = expectations.filter { $0.metRecord == nil && context.rangeEnd - $0.time > Self.followUpGrace }
        return RunstateResult(context: context, segments: segs, marks: marks, expectations: expectations, missing: missing)
    }
}

public struct RunstateResult: AnalysisResult {
    public let context: AnalysisContext
    public let segments: [RunstateAnalysis.Segment]
    public let marks: [RunstateAnalysis.Mark]
    public let expectations: [RunstateAnalysis.Expectation]
    public let missing: [RunstateAnalysis.Expectation]

    public var paused: [RunstateAnalysis.Segment] { segments.filter { $0.state == "paused" } }

    public var totals: [(state: String, time: Int64)] {
        var d: [String: Int64] = [:]
        for s in segments { d[s.state, default: 0] += s.duration }
        return d.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    public var jsonMembers: [JSONObject.Member] {
        func seg(_ s: RunstateAnalysis.Segment) -> JSONValue {
            var o = JSONObject()
            o["state"] = .string(s.state)
            o["record"] = jopt(s.startRecord)
            o["start_ns"] = .int(s.start)
            o["end_ns"] = .int(s.end)
            o["start_wall"] = jopt(context.wall(s.start))
            o["end_wall"] = jopt(context.wall(s.end))
            o["duration_ns"] = .int(s.duration)
            o["cause"] = .string(s.cause)
            o["cause_record"] = jopt(s.causeRecord)
            return .object(o)
        }
        var tot = JSONObject()
        for (s, t) in totals { tot[s] = .int(t) }
        return [
            .init(key: "segments", value: .array(segments.map(seg))),
            .init(key: "paused", value: .array(paused.map(seg))),
            .init(key: "time_in_state_ns", value: .object(tot)),
            .init(key: "final_state", value: .string(segments.last?.state ?? "unknown")),
            .init(key: "events", value: .array(marks.map { m in
                var o = JSONObject(point: context, m.record, m.time)
                o["event"] = .string(m.event)
                o["detail"] = .string(m.detail)
                return .object(o)
            })),
            .init(key: "missing_follow_ups", value: .array(missing.map { x in
                var o = JSONObject(point: context, x.record, x.time)
                o["trigger"] = .string(x.trigger)
                o["expected"] = .string(x.expected)
                o["detail"] = .string(x.detail)
                return .object(o)
            })),
        ]
    }

    /// What a pause is grouped by: its cause without per-occurrence detail
    /// ("BLOCK_IO_ERROR on drive-virtio-disk1 (write, no space)" -> "BLOCK_IO_ERROR on drive-virtio-disk1").
    static func causeSubject(_ cause: String) -> String {
        if cause.hasPrefix("BLOCK_IO_ERROR on "), let paren = cause.firstIndex(of: "(") {
            return String(cause[..<paren]).trimmingTrailingSpace()
        }
        return cause
    }

    public var findings: [AnalysisFinding] {
        var out: [AnalysisFinding] = []
        for p in paused {
            let open = p.end >= context.rangeEnd && p.startRecord == segments.last?.startRecord
            let byUser = p.cause.hasSuffix("command")
            let fault = ["BLOCK_IO_ERROR", "WATCHDOG", "GUEST_PANICKED", "query-status says io-error", "query-status says watchdog",
                         "query-status says guest-panicked", "query-status says internal-error"].contains { p.cause.hasPrefix($0) }
            // Found paused by a query (prelaunch with -S, incoming migration): how it started is not recorded.
            let sev: FindingSeverity = fault ? .error : (byUser || p.cause.hasPrefix("query-status") ? .info : .warning)
            let what = p.cause.hasPrefix("query-status") ? "found paused (\(p.cause))" : "after \(p.cause)"
            var f = AnalysisFinding(sev, "runstate", "paused",
                "VM paused for \(DurationFormat.short(p.duration))\(open ? " (still paused at the end)" : "") \(what)",
                subject: Self.causeSubject(p.cause), records: [p.causeRecord, p.startRecord].compactMap { $0 }.uniqued(), time: p.start,
                weight: Double(p.duration) / 1e9, value: Double(p.duration) / 1e9)
            f.end = p.end
            out.append(f)
        }
        for s in segments where s.state == "shutdown" {
            out.append(AnalysisFinding(.info, "runstate", "shutdown", "VM shut down: \(s.cause)", subject: s.cause,
                records: [s.causeRecord, s.startRecord].compactMap { $0 }.uniqued(), time: s.start))
        }
        for m in missing {
            out.append(AnalysisFinding(.warning, "runstate", "missing-follow-up",
                "\(m.trigger) (\(m.detail)) is documented to be followed by \(m.expected), which never came",
                subject: "\(m.trigger) (\(m.detail)) → \(m.expected)", records: [m.record], time: m.time, weight: 1))
        }
        return out
    }

    /// "VM paused 1072 times after BLOCK_IO_ERROR on drive-virtio-disk1: 5h02m in total, longest 42.000s (#1234)".
    public func describe(_ g: FindingGroup) -> String? {
        switch g.code {
        case "paused":
            let l = g.largest
            let longest = "longest \(seconds(l.value ?? 0)) (#\(l.records.last ?? 0))"
            let how = g.subject.hasPrefix("query-status") ? "found paused \(times(g.count)) (\(g.subject))" : "paused \(times(g.count)) after \(g.subject)"
            return "VM \(how): \(seconds(g.totalValue)) in total, \(longest)"
        case "shutdown":
            return "VM shut down \(times(g.count)): \(g.subject)"
        case "missing-follow-up":
            return "\(g.subject.replacingOccurrencesOfArrow()) never came, \(times(g.count))"
        default:
            return nil
        }
    }

    public func table(colors: Bool, width: Int) -> String {
        let st = TextStyle(colors)
        var t = TextTable(["record", "from", "state", "duration", "cause"])
        for s in segments {
            let state: String
            switch s.state {
            case "running": state = st.green(s.state)
            case "paused": state = st.yellow(s.state)
            case "shutdown": state = st.red(s.state)
            default: state = s.state
            }
            t.row([s.startRecord.map { "#\($0)" } ?? "", context.wallOrClock(s.start), state, DurationFormat.short(s.duration),
                   s.cause + (s.causeRecord.map { " (#\($0))" } ?? "")])
        }
        var out = st.bold("Timeline") + "\n" + t.render(colors: colors, width: width)
        out += "\n  " + totals.map { "\($0.state) \(DurationFormat.short($0.time))" }.joined(separator: ", ") + "\n"
        if !marks.isEmpty {
            var mt = TextTable(["record", "time", "event", "detail"])
            for m in marks { mt.row(["#\(m.record)", context.wallOrClock(m.time), m.event, m.detail]) }
            out += "\n" + st.bold("Related events") + "\n" + mt.render(colors: colors, width: width)
        }
        if !missing.isEmpty {
            out += "\n" + st.bold("Missing follow-ups") + "\n"
            for m in missing { out += "  #\(m.record) \(m.trigger) (\(m.detail)): no \(m.expected)\n" }
        }
        return out
    }

    public func csv() -> String {
        var c = CSV(["state", "record", "start_ns", "end_ns", "start_wall", "duration_ns", "cause", "cause_record"])
        for s in segments {
            c.add([s.state, s.startRecord.map { "\($0)" } ?? "", "\(s.start)", "\(s.end)", context.wall(s.start) ?? "", "\(s.duration)", s.cause,
                   s.causeRecord.map { "\($0)" } ?? ""])
        }
        return c.string
    }

    static let colors = ["running": "#2ca02c", "paused": "#ff7f0e", "shutdown": "#d62728", "suspended": "#9467bd", "unknown": "#cccccc"]

    func plot() -> TimePlot? {
        guard segments.contains(where: { $0.state != "unknown" }) else { return nil }
        var p = TimePlot(title: "Run state — \(context.recording.path.split(separator: "/").last.map(String.init) ?? "")",
                         yLabel: "state", clockNote: "receive clock", startMicros: context.startMicros,
                         tMin: context.rangeStart, tMax: max(context.rangeEnd, context.rangeStart + 1))
        let level = ["shutdown": 0.0, "paused": 1.0, "suspended": 1.5, "running": 2.0]
        p.yMin = -0.3
        p.yMax = 2.3
        p.yFormat = { v in v == 0 ? "shutdown" : v == 1 ? "paused" : v == 2 ? "running" : "" }
        p.series.append(.band(segments: segments.map { ($0.start, $0.end, $0.state) }, colors: Self.colors))
        p.series.append(.step(label: "run state", points: segments.filter { $0.state != "unknown" }.map { ($0.start, level[$0.state] ?? 1) }, color: "#333"))
        return p
    }

    public func svg() -> String? { plot()?.svg() }

    /// A one-line band: `█` running, `▒` paused, `▁` shut down, `░` suspended, `·` unknown.
    public func terminalChart(width: Int, height: Int) -> String? {
        guard plot() != nil else { return nil }
        let cols = max(10, width - 2)
        let span = Double(max(context.rangeEnd - context.rangeStart, 1))
        var line = ""
        var k = 0
        for c in 0..<cols {
            let t = context.rangeStart + Int64((Double(c) + 0.5) / Double(cols) * span)
            while k + 1 < segments.count, segments[k].end <= t { k += 1 }
            switch segments[k].state {
            case "running": line += "█"
            case "paused": line += "▒"
            case "shutdown": line += "▁"
            case "suspended": line += "░"
            default: line += "·"
            }
        }
        let a = context.wallOrClock(context.rangeStart), b = context.wallOrClock(context.rangeEnd)
        return " " + line + "\n " + a + String(repeating: " ", count: max(1, cols - a.count - b.count)) + b + "\n █ running  ▒ paused  ░ suspended  ▁ shutdown  · unknown  (receive clock)\n"
    }
}

extension String {
    func trimmingTrailingSpace() -> String {
        var s = Substring(self)
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }

    /// "WATCHDOG (action reset) → RESET" as a sentence: "WATCHDOG (action reset) followed by RESET".
    func replacingOccurrencesOfArrow() -> String {
        guard let r = firstRange(of: " → ") else { return self }
        return String(self[..<r.lowerBound]) + ": the documented follow-up " + String(self[r.upperBound...])
    }
}

extension Array where Element: Hashable {
    func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
