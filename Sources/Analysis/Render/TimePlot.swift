import QMP
import Recording

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A chart over time, drawn by us as standalone SVG or as Unicode blocks for a terminal.
/// Time is ns since the recording's start; labels show the wall clock when the header
/// gives one.
///
/// Example: the balloon step series with its targets as markers, y in MiB.
struct TimePlot {
    enum Series {
        /// A step function: each value holds until the next point.
        case step(label: String, points: [(t: Int64, y: Double)], color: String)
        /// Straight segments between points (a drift line); `nil` y breaks the line.
        case line(label: String, points: [(t: Int64, y: Double?)], color: String, dashed: Bool)
        /// Points (targets, samples).
        case markers(label: String, points: [(t: Int64, y: Double)], color: String, shape: Shape)
        /// Coloured intervals in a band under the title (runstate).
        case band(segments: [(from: Int64, to: Int64, label: String)], colors: [String: String])
    }

    enum Shape { case circle, triangle, cross }

    var title: String
    var yLabel: String
    var clockNote: String
    var startMicros: Int64?
    var tMin: Int64
    var tMax: Int64
    var yMin: Double = 0
    var yMax: Double = 1
    var yFormat: (Double) -> String = { fmt($0, 0) }
    var series: [Series] = []

    // MARK: Scales

    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        let mag = pow(10, floor(log10(raw)))
        let f = raw / mag
        let n: Double = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10
        return n * mag
    }

    static func yTicks(_ lo: Double, _ hi: Double, count: Int = 5) -> [Double] {
        let step = niceStep((hi - lo) / Double(max(1, count)))
        var v = ceil(lo / step) * step
        var out: [Double] = []
        while v <= hi + step * 1e-9, out.count < 50 { out.append(v); v += step }
        return out
    }

    static let timeSteps: [Int64] = [
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000,
        60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000,
        10_800_000, 21_600_000, 43_200_000, 86_400_000,
    ].map { $0 * 1_000_000 }  // ms -> ns

    static func timeTicks(_ lo: Int64, _ hi: Int64, count: Int = 6) -> [Int64] {
        let span = max(hi - lo, 1)
        let step = timeSteps.first { span / $0 <= Int64(count) } ?? 86_400_000_000_000
        var out: [Int64] = []
        var t = (lo + step - 1) / step * step
        if lo < 0 { t = lo / step * step }
        while t <= hi, out.count < 40 { out.append(t); t += step }
        return out
    }

    func timeLabel(_ t: Int64, step: Int64) -> String {
        let digits = step < 1_000_000_000 ? 3 : 0
        if let s = startMicros { return WallClock.timeOfDay(micros: s + t / 1000, fractionDigits: digits) }
        let c = DurationFormat.clock(t)
        return digits == 0 ? String(c.dropLast(4)) : c
    }

    /// Makes the y range include every value, with some air.
    mutating func fitY(_ values: [Double], includeZero: Bool = false) {
        var lo = values.min() ?? 0
        var hi = values.max() ?? 1
        if includeZero { lo = min(lo, 0); hi = max(hi, 0) }
        if hi - lo < 1e-9 { lo -= 1; hi += 1 }
        let pad = (hi - lo) * 0.08
        yMin = lo - pad
        yMax = hi + pad
    }

    // MARK: SVG

    func svg(width: Int = 960, height: Int = 420) -> String {
        let W = Double(width), H = Double(height)
        let hasBand = series.contains { if case .band = $0 { return true } else { return false } }
        let left = 90.0, right = 24.0, top = hasBand ? 96.0 : 48.0, bottom = 64.0
        let pw = W - left - right, ph = H - top - bottom
        let span = Double(max(tMax - tMin, 1))
        func x(_ t: Int64) -> Double { left + Double(t - tMin) / span * pw }
        func y(_ v: Double) -> Double { top + ph - (v - yMin) / max(yMax - yMin, 1e-12) * ph }
        func f(_ v: Double) -> String { fmt(v, 1) }
        var s = """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)" font-family="sans-serif" font-size="12">
        <title>\(xml(title))</title>
        <rect x="0" y="0" width="\(width)" height="\(height)" fill="white"/>
        <text x="\(f(W / 2))" y="22" text-anchor="middle" font-size="15" font-weight="bold">\(xml(title))</text>

        """
        // Axes and grid.
        s += "<g stroke=\"#ddd\" stroke-width=\"1\">\n"
        let yt = TimePlot.yTicks(yMin, yMax)
        for v in yt { s += "<line x1=\"\(f(left))\" y1=\"\(f(y(v)))\" x2=\"\(f(left + pw))\" y2=\"\(f(y(v)))\"/>\n" }
        let tt = TimePlot.timeTicks(tMin, tMax)
        for t in tt { s += "<line x1=\"\(f(x(t)))\" y1=\"\(f(top))\" x2=\"\(f(x(t)))\" y2=\"\(f(top + ph))\"/>\n" }
        s += "</g>\n"
        s += "<g stroke=\"#333\" stroke-width=\"1\"><line x1=\"\(f(left))\" y1=\"\(f(top + ph))\" x2=\"\(f(left + pw))\" y2=\"\(f(top + ph))\"/><line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + ph))\"/></g>\n"
        s += "<g fill=\"#333\">\n"
        for v in yt { s += "<text x=\"\(f(left - 6))\" y=\"\(f(y(v) + 4))\" text-anchor=\"end\">\(xml(yFormat(v)))</text>\n" }
        let step = tt.count > 1 ? tt[1] - tt[0] : max(tMax - tMin, 1)
        for t in tt { s += "<text x=\"\(f(x(t)))\" y=\"\(f(top + ph + 16))\" text-anchor=\"middle\">\(xml(timeLabel(t, step: step)))</text>\n" }
        let xTitle = (startMicros != nil ? "time of day (UTC)" : "time since start") + ", " + clockNote
        s += "<text x=\"\(f(left + pw / 2))\" y=\"\(f(H - 14))\" text-anchor=\"middle\">\(xml(xTitle))</text>\n"
        s += "<text transform=\"translate(18,\(f(top + ph / 2))) rotate(-90)\" text-anchor=\"middle\">\(xml(yLabel))</text>\n"
        s += "</g>\n"
        // Series.
        var legend: [(String, String)] = []
        for sr in series {
            switch sr {
            case .step(let label, let pts, let color):
                guard let first = pts.first else { continue }
                var d = "M\(f(x(first.t))),\(f(y(first.y)))"
                for p in pts.dropFirst() { d += " H\(f(x(p.t))) V\(f(y(p.y)))" }
                d += " H\(f(x(tMax)))"
                s += "<path d=\"\(d)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
                legend.append((label, color))
            case .line(let label, let pts, let color, let dashed):
                var d = ""
                var pen = false
                for p in pts {
                    guard let v = p.y else { pen = false; continue }
                    d += (pen ? " L" : " M") + "\(f(x(p.t))),\(f(y(v)))"
                    pen = true
                }
                if !d.isEmpty {
                    s += "<path d=\"\(d)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\"\(dashed ? " stroke-dasharray=\"6 4\"" : "")/>\n"
                    legend.append((label, color))
                }
            case .markers(let label, let pts, let color, let shape):
                guard !pts.isEmpty else { continue }
                s += "<g fill=\"\(color)\" stroke=\"\(color)\">\n"
                for p in pts {
                    let cx = x(p.t), cy = y(p.y)
                    switch shape {
                    case .circle: s += "<circle cx=\"\(f(cx))\" cy=\"\(f(cy))\" r=\"3.5\"/>\n"
                    case .triangle: s += "<path d=\"M\(f(cx)),\(f(cy - 6)) L\(f(cx - 5)),\(f(cy + 4)) L\(f(cx + 5)),\(f(cy + 4)) Z\" fill-opacity=\"0.6\"/>\n"
                    case .cross: s += "<path d=\"M\(f(cx - 4)),\(f(cy - 4)) L\(f(cx + 4)),\(f(cy + 4)) M\(f(cx - 4)),\(f(cy + 4)) L\(f(cx + 4)),\(f(cy - 4))\" stroke-width=\"2\" fill=\"none\"/>\n"
                    }
                }
                s += "</g>\n"
                legend.append((label, color))
            case .band(let segs, let colors):
                let by = 40.0, bh = 26.0
                for seg in segs {
                    let x0 = x(max(seg.from, tMin)), x1 = x(min(seg.to, tMax))
                    let c = colors[seg.label] ?? "#999"
                    s += "<rect x=\"\(f(x0))\" y=\"\(f(by))\" width=\"\(f(max(x1 - x0, 0.5)))\" height=\"\(f(bh))\" fill=\"\(c)\"><title>\(xml(seg.label)) \(xml(DurationFormat.short(seg.to - seg.from)))</title></rect>\n"
                }
                for (label, c) in colors.sorted(by: { $0.key < $1.key }) where segs.contains(where: { $0.label == label }) {
                    legend.append((label, c))
                }
            }
        }
        // Legend along the top right.
        var lx = left + pw
        for (label, color) in legend.reversed() {
            let w = Double(label.count) * 7 + 22
            lx -= w
            s += "<rect x=\"\(f(lx))\" y=\"\(f(top - 16))\" width=\"12\" height=\"8\" fill=\"\(color)\"/><text x=\"\(f(lx + 16))\" y=\"\(f(top - 8))\" fill=\"#333\">\(xml(label))</text>\n"
        }
        s += "</svg>\n"
        return s
    }

    func xml(_ s: String) -> String {
        var out = ""
        for ch in s {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(ch)
            }
        }
        return out
    }

    // MARK: Terminal

    static let blocks: [Character] = [" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]

    /// The first step or line series as Unicode block columns, with y labels at the left
    /// and the time range underneath; markers are drawn as `▲` in their column.
    func terminal(width: Int, height: Int) -> String {
        let labels = [yFormat(yMax), yFormat((yMin + yMax) / 2), yFormat(yMin)]
        let lw = labels.map(\.count).max() ?? 4
        let cols = max(10, width - lw - 3)
        let rows = max(2, height - 2)
        let span = Double(max(tMax - tMin, 1))
        var values = [Double?](repeating: nil, count: cols)
        var marks = Set<Int>()
        for sr in series {
            switch sr {
            case .step(_, let pts, _):
                guard !pts.isEmpty else { continue }
                var k = 0
                var current: Double?
                for c in 0..<cols {
                    let t = tMin + Int64(Double(c + 1) / Double(cols) * span)
                    while k < pts.count, pts[k].t <= t { current = pts[k].y; k += 1 }
                    if values[c] == nil { values[c] = current }
                }
            case .line(_, let pts, _, _):
                for p in pts { if let v = p.y { let c = min(cols - 1, Int(Double(p.t - tMin) / span * Double(cols))); if c >= 0, values[c] == nil { values[c] = v } } }
            case .markers(_, let pts, _, _):
                for p in pts { let c = min(cols - 1, Int(Double(p.t - tMin) / span * Double(cols))); if c >= 0 { marks.insert(c) } }
            case .band:
                break
            }
        }
        let range = max(yMax - yMin, 1e-12)
        var out = ""
        for r in 0..<rows {
            let label: String
            if r == 0 { label = labels[0] } else if r == rows - 1 { label = labels[2] } else if r == rows / 2 { label = labels[1] } else { label = "" }
            out += String(repeating: " ", count: lw - label.count) + label + " ┤"
            let rowFromBottom = rows - 1 - r
            for c in 0..<cols {
                guard let v = values[c] else { out += " "; continue }
                let eighths = Int(((v - yMin) / range * Double(rows * 8)).rounded())
                let fill = eighths - rowFromBottom * 8
                out.append(fill >= 8 ? "█" : fill <= 0 ? " " : TimePlot.blocks[fill])
            }
            out += "\n"
        }
        out += String(repeating: " ", count: lw + 1) + "└"
        for c in 0..<cols { out += marks.contains(c) ? "▲" : "─" }
        out += "\n"
        let step = max(tMax - tMin, 1)
        let a = timeLabel(tMin, step: step), b = timeLabel(tMax, step: step)
        out += String(repeating: " ", count: lw + 2) + a + String(repeating: " ", count: max(1, cols - a.count - b.count)) + b + "\n"
        out += String(repeating: " ", count: lw + 2) + title + " (" + yLabel + (marks.isEmpty ? "" : "; ▲ targets") + "; " + clockNote + ")\n"
        return out
    }
}
