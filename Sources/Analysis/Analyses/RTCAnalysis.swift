import QMP
import Recording

/// `rtc`: the guest RTC's offset over time from RTC_CHANGE (QMP-NOTES.md, "RTC_CHANGE"),
/// one series per `qom-path` (QEMU 7.1+; older events go to the series "").
///
/// Offsets are absolute (the total so far, not increments), whole seconds, so a correct
/// guest jitters between 0 and -1: a change of at most 1 s is truncation noise. A change
/// of 3600 s (±1) is flagged as a possible DST switch with `-rtc base=localtime`;
/// |offset| > 1e9 is an anomaly (the 2022 PL031 epoch bug), never drift. Other changes are
/// drift when slow (at most 500 ppm, 43.2 s/day, beyond any real crystal) and steps (the
/// guest set its clock) otherwise. The least-squares drift is fitted over the series with
/// steps, DST jumps and anomalies taken out.
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
        /// Change since the previous sample of the series (`nil` for the first).
        public var delta: Int64?
        public var interval: Int64?
        /// `first`, `unchanged`, `noise` (±1 s truncation), `drift`, `step`, `dst`, `anomaly`.
        public var kind: String
        /// Drift rate between this write and the previous one, s/day (drift and noise only).
        public var driftPerDay: Double?
    }

    public struct Series: Sendable {
        public var qomPath: String
        public var samples: [Sample] = []
        /// Least-squares slope over the continuous series, s/day; `nil` with fewer than two points.
        public var driftPerDay: Double?
        /// Per sample (same order), the offset the fitted line gives; `nil` for anomalies.
        public var fitted: [Double?] = []
    }

    let context: AnalysisContext
    var series: [Series] = []
    var lastValid: [Int: Sample] = [:]

    public init(context: AnalysisContext) { self.context = context }

    public mutating func consume(_ input: AnalysisInput) {
        guard case .event(let e) = input, let offset = e.view.int("data", "offset") else { return }
        let path = e.view.string("data", "qom-path") ?? ""
        let k: Int
        if let found = series.firstIndex(where: { $0.qomPath == path }) { k = found } else { series.append(Series(qomPath: path)); k = series.count - 1 }
        var s = Sample(record: e.record, time: e.time, qemuMicros: e.qemuMicros, offset: offset, delta: nil, interval: nil, kind: "first", driftPerDay: nil)
        if abs(offset) > Self.anomalyLimit {
            s.kind = "anomaly"
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
        } else if let prev = series[k].samples.last {
            // After an anomaly with nothing valid before: no delta to speak of.
            s.interval = e.time - prev.time
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
            guard xs.count >= 2, let x0 = xs.first, let x1 = xs.last, x1 > x0 else {
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

public struct RTCResult: AnalysisResult {
    public let context: AnalysisContext
    public let series: [RTCAnalysis.Series]

    public var jsonMembers: [JSONObject.Member] {
        [.init(key: "series", value: .array(series.map { sr in
            var o = JSONObject()
            o["qom_path"] = .string(sr.qomPath)
            o["drift_s_per_day"] = sr.driftPerDay.map { jnum($0, 3) } ?? .null
            o["steps"] = .int(sr.samples.filter { $0.kind == "step" }.count)
            o["dst_jumps"] = .int(sr.samples.filter { $0.kind == "dst" }.count)
            o["anomalies"] = .int(sr.samples.filter { $0.kind == "anomaly" }.count)
            o["samples"] = .array(zip(sr.samples, sr.fitted).map { s, f in
                var p = JSONObject(point: context, s.record, s.time)
                p["qemu_us"] = jopt(s.qemuMicros)
                p["offset"] = .int(s.offset)
                p["delta"] = jopt(s.delta)
                p["interval_ns"] = jopt(s.interval)
                p["kind"] = .string(s.kind)
                p["drift_s_per_day"] = s.driftPerDay.map { jnum($0, 3) } ?? .null
                p["fitted_offset"] = f.map { jnum($0, 3) } ?? .null
                return .object(p)
            })
            return .object(o)
        }))]
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
                    out.append(AnalysisFinding(.info, "rtc", "step",
                        "\(label): guest set its clock by \(signed(s.delta!)) s (offset now \(s.offset) s)",
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
            return "\(g.subject): guest set its clock \(times(g.count)) (steps from \(signed(Int64(lo))) s to \(signed(Int64(hi))) s)"
        case "dst":
            return "\(g.subject): offset jumped by about an hour \(times(g.count)) (\(signed(Int64(lo))) s to \(signed(Int64(hi))) s): possibly DST switches with -rtc base=localtime"
        case "anomaly":
            return "\(g.subject): \(g.count) epoch-sized offsets (|offset| > 1e9, \(Int64(lo)) s to \(Int64(hi)) s): broken RTC writes, not drift"
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
            s += "  drift (least squares): " + (sr.driftPerDay.map { fmt($0, 3) + " s/day" } ?? "n/a (fewer than two writes)") + "\n"
            var t = TextTable(["record", "time", "offset", "Δ", "interval", "kind", "drift s/day"])
            for x in sr.samples {
                let kind: String
                switch x.kind {
                case "anomaly": kind = st.red(x.kind)
                case "step", "dst": kind = st.yellow(x.kind)
                default: kind = x.kind
                }
                t.row(["#\(x.record)", context.wallOrClock(x.time), "\(x.offset)", x.delta.map(signed) ?? "",
                       x.interval.map { DurationFormat.short($0) } ?? "", kind, x.driftPerDay.map { fmt($0, 3) } ?? ""])
            }
            s += t.render(colors: colors, width: width) + "\n"
        }
        return s
    }

    public func csv() -> String {
        var c = CSV(["qom_path", "record", "t_ns", "wall", "qemu_us", "offset", "delta", "interval_ns", "kind", "drift_s_per_day", "fitted_offset"])
        for sr in series {
            for (x, f) in zip(sr.samples, sr.fitted) {
                c.add([sr.qomPath, "\(x.record)", "\(x.time)", context.wall(x.time) ?? "", x.qemuMicros.map { "\($0)" } ?? "", "\(x.offset)",
                       x.delta.map { "\($0)" } ?? "", x.interval.map { "\($0)" } ?? "", x.kind, x.driftPerDay.map { fmt($0, 3) } ?? "",
                       f.map { fmt($0, 3) } ?? ""])
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
