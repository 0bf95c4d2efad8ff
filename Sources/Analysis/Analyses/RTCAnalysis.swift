import QMP
import Recording

/// `rtc`: the guest RTC's offset over time from RTC_CHANGE (docs/QEMU-FACTS.md, "RTC_CHANGE"),
/// one series per `qom-path` (QEMU 7.1+; older events go to the series "").
///
/// Offsets are absolute (the total so far, not increments), whole seconds, so a correct
/// guest jitters between 0 and -1: a change of at most 1 s is truncation noise. A change
/// of 3600 s (±1) is flagged as a possible DST switch with `-rtc base=localtime`;
/// |offset| > 1e9 is an anomaly (the 2022 PL031 epoch bug), never drift. Other changes are
/// drift when slow (at most 500 ppm, 43.2 s/day, beyond any real crystal) and steps (the
/// guest set its clock) otherwise. The least-squares drift is fitted over the series with
/// steps, DST jumps and anomalies taken out, and only when some interval between writes
/// measured drift (a series of steps alone has none: `nil`).
///
/// The first RTC_CHANGE of a series is a change too: from the offset QEMU started with, 0
/// (the offset is relative to the `-rtc base` clock), *assumed*, since the recording may
/// start after QEMU did, and after earlier writes. How long the offset had been 0 is not
/// known, so that change is `unchanged`, `noise` or `step`, never drift or DST.
///
/// Every RTC_CHANGE is at least one guest write (QEMU emits one per write of the clock).
/// RTC_CHANGE is throttled on its name (docs/QEMU-FACTS.md, "Event throttling"), so a
/// delivery held by the throttle (`ThrottleRule`, as `balloon` and `throttle` decide it)
/// means the guest wrote again within a second of its previous write; writes before it in
/// that window, if there were any, were replaced and left no trace.
public struct RTCAnalysis: Analysis {
    public static let name = "rtc"
    public static let summary = "guest RTC offset per RTC device: steps vs drift, least-squares drift (s/day), DST jumps, anomalies"
    public static let clock = AnalysisClock.receive
    public static let interest = Interest(events: ["RTC_CHANGE"])

    static let anomalyLimit: Int64 = 1_000_000_000
    static let maxDriftRate = 0.0005   // 500 ppm
    static let dst: Int64 = 3600

    public struct Sample: Sendable, Hashable {
        public var record: Int
        public var time: Int64
        public var qemuMicros: Int64?
        public var offset: Int64
        /// Change since the previous valid sample of the series (for the first, since 0,
        /// assumed: `previousAssumed`); `nil` for anomalies.
        public var delta: Int64?
        /// Receive time since the previous valid sample; `nil` for the first and anomalies.
        public var interval: Int64?
        /// `unchanged`, `noise` (±1 s truncation), `drift`, `step`, `dst`, `anomaly`.
        public var kind: String
        /// The change is from the offset QEMU started with, 0, assumed (the series' first
        /// valid write; `interval` is then unknown, `nil`).
        public var previousAssumed = false
        /// Held by QEMU's 1 s throttle (`ThrottleRule`): earlier writes in its window, if
        /// any, were replaced.
        public var possiblyMerged = false
        /// Drift rate between this write and the previous one, s/day (drift and noise only).
        public var driftPerDay: Double?
    }

    public struct Series: Sendable {
        public var qomPath: String
        public var samples: [Sample] = []
        /// Least-squares slope over the continuous series, s/day; `nil` when no interval
        /// between two writes measured drift (only steps, DST jumps or anomalies).
        public var driftPerDay: Double?
        /// Guest writes the recording shows: one per delivery (anomalies included).
        public var writes: Int { samples.count }
        /// Of those, deliveries held by the throttle.
        public var writesHeld: Int { samples.filter(\.possiblyMerged).count }
        /// Per sample (same order), the offset the fitted line gives; `nil` for anomalies.
        public var fitted: [Double?] = []
    }

    let context: AnalysisContext
    var series: [Series] = []
    var lastValid: [Int: Sample] = [:]
    /// RTC_CHANGE is throttled on its name alone: one key for every RTC.
    var throttle: ThrottleRule.Key

    public init(context: AnalysisContext) {
        self.context = context
        throttle = ThrottleRule.Key(receiveIsDelivery: context.receiveTimesAreDeliveryTimes)
    }

    public mutating func consume(_ input: AnalysisInput) {
        guard case .event(let e) = input, let offset = e.view.int("data", "offset") else { return }
        let path = e.view.string("data", "qom-path") ?? ""
        let k: Int
        if let found = series.firstIndex(where: { $0.qomPath == path }) { k = found } else { series.append(Series(qomPath: path)); k = series.count - 1 }
        var s = Sample(record: e.record, time: e.time, qemuMicros: e.qemuMicros, offset: offset, delta: nil, interval: nil, kind: "step", driftPerDay: nil)
        s.possiblyMerged = throttle.deliver(Delivery(receive: e.time, qemuMicros: e.qemuMicros))
        if offset.magnitude > Self.anomalyLimit.magnitude {   // abs() traps on Int64.min
            s.kind = "anomaly"
        } else if lastValid[k] == nil {
            // The first valid write: a change from the offset at QEMU's start, 0, assumed.
            s.previousAssumed = true
            s.delta = offset
            s.kind = offset == 0 ? "unchanged" : abs(offset) <= 1 ? "noise" : "step"
        } else if let prev = lastValid[k] {
            let d = offset - prev.offset
            let dt = e.time - prev.time
            s.delta = d
            s.interval = dt
            let seconds = Double(dt) / 1e9
            if d == 0 {
                s.kind = "unchanged"
            } else if abs(d) <= 1 {
                s.kind = "noise"
            } else if abs(abs(d) - Self.dst) <= 1 {
                s.kind = "dst"
            } else if seconds > 0, Double(abs(d)) / seconds <= Self.maxDriftRate {
                s.kind = "drift"
            } else {
                s.kind = "step"
            }
            if ["unchanged", "noise", "drift"].contains(s.kind), seconds > 0 {
                s.driftPerDay = Double(d) / seconds * 86_400
            }
        }
        if s.kind != "anomaly" { lastValid[k] = s }
        series[k].samples.append(s)
    }

    public func finish() -> RTCResult {
        var out = series
        for k in out.indices {
            // The continuous series: offsets minus the steps and DST jumps so far.
            var shift: Int64 = 0
            var xs: [Double] = [], ys: [Double] = []
            var adjusted: [Int64?] = []
            for s in out[k].samples {
                if s.kind == "anomaly" { adjusted.append(nil); continue }
                if s.kind == "step" || s.kind == "dst" { shift += s.delta ?? 0 }
                let a = s.offset - shift
                adjusted.append(a)
                xs.append(Double(s.time) / 1e9)
                ys.append(Double(a))
            }
            // Drift is measured over intervals between writes that did not set the clock;
            // with none (a series of steps), a slope of 0 would claim a perfect clock.
            let measured = out[k].samples.contains { !$0.previousAssumed && $0.interval != nil && ["unchanged", "noise", "drift"].contains($0.kind) }
            guard measured, xs.count >= 2, let x0 = xs.first, let x1 = xs.last, x1 > x0 else {
                out[k].fitted = adjusted.map { $0.map(Double.init) }
                continue
            }
            let n = Double(xs.count)
            let mx = xs.reduce(0, +) / n, my = ys.reduce(0, +) / n
            var sxy = 0.0, sxx = 0.0
            for (x, y) in zip(xs, ys) { sxy += (x - mx) * (y - my); sxx += (x - mx) * (x - mx) }
            let slope = sxx > 0 ? sxy / sxx : 0
            out[k].driftPerDay = slope * 86_400
            // The fitted line drawn over the raw offsets: shifted back by each segment's steps.
            var shiftAgain: Int64 = 0
            out[k].fitted = out[k].samples.map { s in
                if s.kind == "anomaly" { return nil }
                if s.kind == "step" || s.kind == "dst" { shiftAgain += s.delta ?? 0 }
                return my + slope * (Double(s.time) / 1e9 - mx) + Double(shiftAgain)
            }
        }
        return RTCResult(context: context, series: out)
    }
}

public struct RTCResult: StreamedJSONResult {
    public let context: AnalysisContext
    public let series: [RTCAnalysis.Series]

    public var streamedMembers: [StreamedMember] {
        let series = self.series, context = self.context
        return [.objects("series", count: series.count) { k in
            let sr = series[k]
            var o = JSONObject()
            o["qom_path"] = .string(sr.qomPath)
            o["drift_s_per_day"] = sr.driftPerDay.map { jnum($0, 3) } ?? .null
            o["steps"] = .int(sr.samples.filter { $0.kind == "step" }.count)
            o["dst_jumps"] = .int(sr.samples.filter { $0.kind == "dst" }.count)
            o["anomalies"] = .int(sr.samples.filter { $0.kind == "anomaly" }.count)
            o["writes"] = .int(sr.writes)
            o["writes_held"] = .int(sr.writesHeld)
            return StreamedMember.values(o) + [.array("samples", count: min(sr.samples.count, sr.fitted.count)) { i in
                let s = sr.samples[i], f = sr.fitted[i]
                var p = JSONObject(point: context, s.record, s.time)
                p["qemu_us"] = jopt(s.qemuMicros)
                p["offset"] = .int(s.offset)
                p["delta"] = jopt(s.delta)
                p["interval_ns"] = jopt(s.interval)
                p["kind"] = .string(s.kind)
                p["previous_assumed"] = .bool(s.previousAssumed)
                p["possibly_merged"] = .bool(s.possiblyMerged)
                p["drift_s_per_day"] = s.driftPerDay.map { jnum($0, 3) } ?? .null
                p["fitted_offset"] = f.map { jnum($0, 3) } ?? .null
                return .object(p)
            }]
        }]
    }

    public var findings: [AnalysisFinding] {
        var out: [AnalysisFinding] = []
        for sr in series {
            let label = sr.qomPath.isEmpty ? "RTC" : "RTC \(sr.qomPath)"
            for s in sr.samples {
                switch s.kind {
                case "anomaly":
                    out.append(AnalysisFinding(.error, "rtc", "anomaly",
                        "\(label): offset \(s.offset) s is epoch-sized (|offset| > 1e9): a broken RTC write, not drift",
                        subject: label, records: [s.record], time: s.time, weight: 1, value: Double(s.offset)))
                case "dst":
                    out.append(AnalysisFinding(.info, "rtc", "dst",
                        "\(label): offset jumped \(signed(s.delta!)) s: possibly a DST switch with -rtc base=localtime",
                        subject: label, records: [s.record], time: s.time, value: Double(s.delta!)))
                case "step":
                    let from = s.previousAssumed
                        ? " from 0, assumed" + (abs(abs(s.delta!) - RTCAnalysis.dst) <= 1 ? " (an hour: with -rtc base=localtime, possibly DST)" : "")
                        : ""
                    out.append(AnalysisFinding(.info, "rtc", "step",
                        "\(label): guest set its clock by \(signed(s.delta!)) s\(from) (offset now \(s.offset) s)",
                        subject: label, records: [s.record], time: s.time, weight: Double(abs(s.delta!)), value: Double(s.delta!)))
                default:
                    break
                }
            }
            if let d = sr.driftPerDay, abs(d) >= 1, sr.samples.count >= 3 {
                out.append(AnalysisFinding(.warning, "rtc", "drift",
                    "\(label): drifting \(fmt(d, 2)) s/day (least squares over \(sr.samples.count) writes)",
                    subject: label, records: sr.samples.map(\.record), time: sr.samples.first!.time, weight: abs(d)))
            }
        }
        return out
    }

    /// "RTC /machine/...: guest set its clock 412 times (steps from -65 s to +65 s)".
    public func describe(_ g: FindingGroup) -> String? {
        let v = g.values
        guard let lo = v.min(), let hi = v.max() else { return nil }
        switch g.code {
        case "step":
            return "\(g.subject): guest set its clock \(times(g.count)) (steps from \(signed(Int64(saturating: lo))) s to \(signed(Int64(saturating: hi))) s)"
        case "dst":
            return "\(g.subject): offset jumped by about an hour \(times(g.count)) (\(signed(Int64(saturating: lo))) s to \(signed(Int64(saturating: hi))) s): possibly DST switches with -rtc base=localtime"
        case "anomaly":
            // Anomalies are any Int64 the guest wrote; as Double, Int64.max rounds past it.
            return "\(g.subject): \(g.count) epoch-sized offsets (|offset| > 1e9, \(Int64(saturating: lo)) s to \(Int64(saturating: hi)) s): broken RTC writes, not drift"
        default:
            return nil
        }
    }

    public func table(colors: Bool, width: Int) -> String {
        let st = TextStyle(colors)
        if series.isEmpty { return "  no RTC_CHANGE events\n" }
        var s = ""
        for sr in series {
            s += st.bold(sr.qomPath.isEmpty ? "RTC (no qom-path)" : sr.qomPath)
            s += "  drift (least squares, receive clock): " + (sr.driftPerDay.map { fmt($0, 3) + " s/day" } ?? "n/a (no interval between writes without a step)") + "\n"
            s += "  writes: \(sr.writes) (one per RTC_CHANGE delivery)"
            if sr.writesHeld > 0 {
                s += "; \(sr.writesHeld) held by QEMU's 1 s throttle: the guest wrote again within a second, and earlier writes in those windows, if any, were replaced and are not visible"
            }
            s += "\n"
            var t = TextTable(["record", "time", "offset", "Δ", "interval", "kind", "drift s/day"])
            for x in sr.samples {
                let kind: String
                switch x.kind {
                case "anomaly": kind = st.red(x.kind)
                case "step", "dst": kind = st.yellow(x.kind)
                default: kind = x.kind
                }
                let delta = (x.delta.map(signed) ?? "") + (x.previousAssumed ? " (from 0, assumed)" : "")
                t.row(["#\(x.record)", context.wallOrClock(x.time), "\(x.offset)", delta,
                       x.interval.map { DurationFormat.short($0) } ?? "", kind + (x.possiblyMerged ? " (held)" : ""),
                       x.driftPerDay.map { fmt($0, 3) } ?? ""])
            }
            s += t.render(colors: colors, width: width) + "\n"
        }
        return s
    }

    public func csv() -> String {
        var c = CSV(["qom_path", "record", "t_ns", "wall", "qemu_us", "offset", "delta", "interval_ns", "kind", "drift_s_per_day", "fitted_offset",
                     "previous_assumed", "possibly_merged"])
        for sr in series {
            for (x, f) in zip(sr.samples, sr.fitted) {
                c.add([sr.qomPath, "\(x.record)", "\(x.time)", context.wall(x.time) ?? "", x.qemuMicros.map { "\($0)" } ?? "", "\(x.offset)",
                       x.delta.map { "\($0)" } ?? "", x.interval.map { "\($0)" } ?? "", x.kind, x.driftPerDay.map { fmt($0, 3) } ?? "",
                       f.map { fmt($0, 3) } ?? "", x.previousAssumed ? "true" : "false", x.possiblyMerged ? "true" : "false"])
            }
        }
        return c.string
    }

    func plot() -> TimePlot? {
        let all = series.flatMap(\.samples)
        guard !all.isEmpty else { return nil }
        var p = TimePlot(title: "Guest RTC offset — \(context.recording.path.split(separator: "/").last.map(String.init) ?? "")",
                         yLabel: "RTC offset (s)", clockNote: "receive clock", startMicros: context.startMicros,
                         tMin: context.rangeStart, tMax: max(context.rangeEnd, all.map(\.time).max()! + 1))
        // Anomalies would flatten everything else; they are marked at the top instead.
        let normal = all.filter { $0.kind != "anomaly" }
        p.fitY(normal.map { Double($0.offset) } + [0], includeZero: true)
        p.yFormat = { fmt($0, 0) }
        let colors = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b"]
        for (k, sr) in series.enumerated() {
            let c = colors[k % colors.count]
            let label = sr.qomPath.isEmpty ? "offset" : "offset " + (sr.qomPath.split(separator: "/").last.map(String.init) ?? sr.qomPath)
            p.series.append(.step(label: label, points: sr.samples.filter { $0.kind != "anomaly" }.map { ($0.time, Double($0.offset)) }, color: c))
            if sr.driftPerDay != nil {
                // The fit is one slope; a step (the guest setting its clock) shifts it. Draw each
                // segment on its own: end the previous one at the step, lift the pen, go on.
                var pts: [(t: Int64, y: Double?)] = []
                for (s, f) in zip(sr.samples, sr.fitted) {
                    if (s.kind == "step" || s.kind == "dst"), let f, !pts.isEmpty {
                        pts.append((s.time, f - Double(s.delta ?? 0)))
                        pts.append((s.time, nil))
                    }
                    pts.append((s.time, f))
                }
                p.series.append(.line(label: "drift fit \(fmt(sr.driftPerDay!, 2)) s/day", points: pts, color: "#d62728", dashed: true))
            }
        }
        let anomalies = all.filter { $0.kind == "anomaly" }
        if !anomalies.isEmpty {
            p.series.append(.markers(label: "anomaly (|offset| > 1e9)", points: anomalies.map { ($0.time, p.yMax) }, color: "#d62728", shape: .cross))
        }
        let marked = all.filter { $0.kind == "step" || $0.kind == "dst" }
        if !marked.isEmpty {
            p.series.append(.markers(label: "step / DST", points: marked.map { ($0.time, Double($0.offset)) }, color: "#ff7f0e", shape: .triangle))
        }
        return p
    }

    public func svg() -> String? { plot()?.svg() }
    public func terminalChart(width: Int, height: Int) -> String? { plot()?.terminal(width: width, height: height) }
}

/// `+65`, `-65`, `0`.
func signed(_ v: Int64) -> String { v > 0 ? "+\(v)" : "\(v)" }
