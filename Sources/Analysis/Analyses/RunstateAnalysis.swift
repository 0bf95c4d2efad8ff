import QMP
import Recording

/// `runstate`: running / paused / shut down / suspended / panicked over time, as the VM
/// model (`VMModel`, the same rules as the shell's `state`) follows it through STOP,
/// RESUME, SHUTDOWN, RESET, SUSPEND, WAKEUP, GUEST_PANICKED, MIGRATION and `query-status`
/// replies (docs/QEMU-FACTS.md, "Run states").
///
/// Each period gets the model's cause: the `stop` command in flight, a migration's
/// switch-over, a BLOCK_IO_ERROR (action stop), WATCHDOG (pause) or guest panic just
/// before, a SHUTDOWN's reason. Documented follow-ups that never came are reported.
public struct RunstateAnalysis: Analysis {
    public static let name = "runstate"
    public static let summary = "running / paused / shutdown / panicked timeline, paused periods and their causes, missing follow-up events"
    public static let clock = AnalysisClock.receive
    public static let interest = Interest.model()
    public static let usesModel = true

    public struct Segment: Sendable, Hashable {
        /// `running`, `paused`, `shutdown`, `suspended`, `panicked`, `unknown`.
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
    }

    public struct Mark: Sendable, Hashable {
        public var record: Int
        public var time: Int64
        public var event: String
        public var detail: String
    }

    static let markedEvents: Set<String> = ["RESET", "POWERDOWN", "BLOCK_IO_ERROR", "WATCHDOG", "GUEST_PANICKED", "GUEST_CRASHLOADED",
                                            "SUSPEND_DISK", "MIGRATION"]

    let context: AnalysisContext
    var segments: [Segment] = []
    var current: Segment
    var marks: [Mark] = []

    public init(context: AnalysisContext) {
        self.context = context
        current = Segment(state: "unknown", startRecord: nil, start: context.rangeStart, end: context.rangeStart,
                          cause: "state before the first run-state event or query-status")
    }

    public mutating func consume(_ input: AnalysisInput) {
        if case .event(let e) = input, Self.markedEvents.contains(e.name) { mark(e) }
        let vm = context.vm
        guard let since = vm.model.state.runStateSince else { return }
        let record = vm.model.state.runStateRecord
        let state = vm.model.state.runState.rawValue
        if state != current.state || (record != current.startRecord && since != current.start) {
            let cause = vm.model.state.runStateCause ?? ""
            if state == current.state && cause == current.cause { return }
            current.end = since
            if current.state != "unknown" || current.duration > 0 { segments.append(current) }
            current = Segment(state: state, startRecord: record, start: since, end: since, cause: cause,
                              causeRecord: vm.model.state.runStateCauseRecord)
        } else if let cause = vm.model.state.runStateCause, cause != current.cause {
            // Same period, better explained (a migration completed, -no-shutdown's STOP).
            current.cause = cause
        }
    }

    mutating func mark(_ e: EventInput) {
        let data = e.view.object("data")
        var detail = ""
        switch e.name {
        case "RESET": detail = data?.string("reason") ?? ""
        case "POWERDOWN": detail = "ACPI power button"
        case "SUSPEND_DISK": detail = "guest asked for S4"
        case "GUEST_PANICKED", "GUEST_CRASHLOADED", "WATCHDOG": detail = "action \(data?.string("action") ?? "?")"
        case "MIGRATION": detail = "status \(data?.string("status") ?? "?")"
        case "BLOCK_IO_ERROR":
            let dev = [data?.string("device"), data?.string("node-name"), data?.string("qom-path")].compactMap { $0 }.first { !$0.isEmpty } ?? "?"
            detail = "\(dev) \(data?.string("operation") ?? "") action \(data?.string("action") ?? "?")\(data?.bool("nospace") == true ? ", no space" : "")"
        default: break
        }
        marks.append(Mark(record: e.record, time: e.time, event: e.name, detail: detail))
    }

    public func finish() -> RunstateResult {
        var segs = segments
        var last = current
        last.end = max(context.rangeEnd, last.start)
        segs.append(last)
        let missing = context.vm.model.expectations.filter { context.rangeEnd - $0.time > VMModel.followUpGrace }.map {
            Expectation(trigger: $0.trigger, record: $0.record, time: $0.time, expected: $0.expected, detail: $0.detail)
        }
        return RunstateResult(context: context, segments: segs, marks: marks, missing: missing)
    }
}

public struct RunstateResult: StreamedJSONResult {
    public let context: AnalysisContext
    public let segments: [RunstateAnalysis.Segment]
    public let marks: [RunstateAnalysis.Mark]
    public let missing: [RunstateAnalysis.Expectation]

    public var paused: [RunstateAnalysis.Segment] { segments.filter { $0.state == "paused" } }

    public var totals: [(state: String, time: Int64)] {
        var d: [String: Int64] = [:]
        for s in segments { d[s.state, default: 0] += s.duration }
        return d.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    public var streamedMembers: [StreamedMember] {
        let segments = self.segments, paused = self.paused, marks = self.marks, missing = self.missing, context = self.context
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
            .array("segments", count: segments.count) { seg(segments[$0]) },
            .array("paused", count: paused.count) { seg(paused[$0]) },
            .value("time_in_state_ns", .object(tot)),
            .value("final_state", .string(segments.last?.state ?? "unknown")),
            .array("events", count: marks.count) { k in
                let m = marks[k]
                var o = JSONObject(point: context, m.record, m.time)
                o["event"] = .string(m.event)
                o["detail"] = .string(m.detail)
                return .object(o)
            },
            .array("missing_follow_ups", count: missing.count) { k in
                let x = missing[k]
                var o = JSONObject(point: context, x.record, x.time)
                o["trigger"] = .string(x.trigger)
                o["expected"] = .string(x.expected)
                o["detail"] = .string(x.detail)
                return .object(o)
            },
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
        for p in segments where p.state == "paused" || p.state == "panicked" {
            let open = p.end >= context.rangeEnd && p.startRecord == segments.last?.startRecord
            let fault = p.state == "panicked" || VMModel.isFault(p.cause)
            // Paused on purpose: a command, a migration's switch-over (the source stays paused
            // when it completes), or found paused by a query (-S, incoming migration).
            let expected = p.cause.hasSuffix("command") || p.cause.hasPrefix("migration") || p.cause.hasPrefix("query-status")
                || p.cause.hasPrefix("RESET after")
            let sev: FindingSeverity = fault ? .error : (expected ? .info : .warning)
            let what = p.cause.hasPrefix("query-status") ? "found paused (\(p.cause))" : "after \(p.cause)"
            let verb = p.state == "panicked" ? "held panicked" : "paused"
            var f = AnalysisFinding(sev, "runstate", "paused",
                "VM \(verb) for \(DurationFormat.short(p.duration))\(open ? " (still at the end)" : "") \(what)",
                subject: Self.causeSubject(p.cause), records: [p.causeRecord, p.startRecord].compactMap { $0 }.uniqued(), time: p.start,
                weight: Double(p.duration) / 1e9, value: Double(p.duration) / 1e9)
            f.end = p.end
            out.append(f)
        }
        for s in segments where s.state == "shutdown" {
            // A shutdown the guest did not ask for in an orderly way is an incident.
            let fault = s.cause.contains("guest panic") || s.cause.hasPrefix("WATCHDOG") || s.cause.contains("host-error")
            out.append(AnalysisFinding(fault ? .error : .info, "runstate", "shutdown", "VM shut down: \(s.cause)", subject: s.cause,
                records: [s.causeRecord, s.startRecord].compactMap { $0 }.uniqued(), time: s.start, weight: fault ? 5 : 0))
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

    public static let colors = ["running": "#2ca02c", "paused": "#ff7f0e", "panicked": "#8c1c13", "shutdown": "#d62728", "suspended": "#9467bd",
                                "unknown": "#cccccc"]

    func plot() -> TimePlot? {
        guard segments.contains(where: { $0.state != "unknown" }) else { return nil }
        var p = TimePlot(title: "Run state — \(context.recording.path.split(separator: "/").last.map(String.init) ?? "")",
                         yLabel: "state", clockNote: "receive clock", startMicros: context.startMicros,
                         tMin: context.rangeStart, tMax: max(context.rangeEnd, context.rangeStart + 1))
        let level = ["shutdown": 0.0, "panicked": 0.5, "paused": 1.0, "suspended": 1.5, "running": 2.0]
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
            case "panicked": line += "▓"
            case "paused": line += "▒"
            case "shutdown": line += "▁"
            case "suspended": line += "░"
            default: line += "·"
            }
        }
        let a = context.wallOrClock(context.rangeStart), b = context.wallOrClock(context.rangeEnd)
        return " " + line + "\n " + a + String(repeating: " ", count: max(1, cols - a.count - b.count)) + b + "\n █ running  ▒ paused  ▓ panicked  ░ suspended  ▁ shutdown  · unknown  (receive clock)\n"
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
