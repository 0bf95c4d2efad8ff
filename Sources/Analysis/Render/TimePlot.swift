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

    /// Ticks at round times of the wall clock when there is one (10:00:05, not 5 s after a
    /// start at 10:00:00.414), else of the time since the start.
    func wallAlignedTicks(count: Int = 6) -> [Int64] {
        let offset = startMicros.map { ($0 % 86_400_000_000) * 1000 } ?? 0
        return TimePlot.timeTicks(tMin + offset, tMax + offset, count: count).map { $0 - offset }
    }

    func timeLabel(_ t: Int64, step: Int64) -> String {
        let digits = step < 1_000_000_000 ? 3 : 0
        if let s = startMicros { return WallClock.timeOfDay(micros: s.addingSaturating(t / 1000), fractionDigits: digits) }
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

    /// The legend entries (label, colour) of the series, in drawing order.
    var legendEntries: [(label: String, color: String)] {
        var legend: [(label: String, color: String)] = []
        for sr in series {
            switch sr {
            case .step(let label, let pts, let color):
                if !pts.isEmpty { legend.append((label, color)) }
            case .line(let label, let pts, let color, _):
                if pts.contains(where: { $0.y != nil }) { legend.append((label, color)) }
            case .markers(let label, let pts, let color, _):
                if !pts.isEmpty { legend.append((label, color)) }
            case .band(let segs, let colors):
                for (label, c) in colors.sorted(by: { $0.key < $1.key }) where segs.contains(where: { $0.label == label }) {
                    legend.append((label, c))
                }
                // States without a colour of their own are drawn grey: say so too.
                var uncoloured: [String] = []
                for seg in segs where colors[seg.label] == nil && !uncoloured.contains(seg.label) { uncoloured.append(seg.label) }
                for label in uncoloured { legend.append((label, "#999")) }
            }
        }
        return legend
    }

    /// Places legend entries (a 12×8 swatch, a gap, the label) in rows no wider than
    /// `width`, left to right; returns each entry's offset from the legend's origin and
    /// the number of rows. Widths come from `SVGText.width`, which errs on the wide side,
    /// so entries never run into each other.
    static func layoutLegend(_ labels: [String], width: Double, fontSize: Double = 12, gap: Double = 14,
                             rowHeight: Double = 16) -> (positions: [(x: Double, y: Double)], rows: Int) {
        var out: [(x: Double, y: Double)] = []
        var x = 0.0, row = 0
        for label in labels {
            let w = 16 + SVGText.width(label, fontSize: fontSize)
            if x > 0, x + w > width { x = 0; row += 1 }
            out.append((x, Double(row) * rowHeight))
            x += w + gap
        }
        return (out, labels.isEmpty ? 0 : row + 1)
    }

    func svg(width: Int = 960, height: Int = 420) -> String {
        let W = Double(width)
        let hasBand = series.contains { if case .band = $0 { return true } else { return false } }
        let left = 90.0, right = 24.0, bottom = 64.0
        let pw = W - left - right
        // Title, then the band, then the legend (wrapped to the plot's width), then the plot:
        // each in its own rows, so none can overlap another.
        let bandY = 36.0, bandH = 26.0
        let legendY = hasBand ? bandY + bandH + 10 : 34.0
        let legend = legendEntries
        // Labels longer than the plot is wide are cut so that every entry fits on a row.
        let maxLabel = max(8, Int((pw - 16) / SVGText.width("m", fontSize: 12)))
        let labels = legend.map { SVGText.truncate($0.label, toCharacters: maxLabel) }
        let placed = TimePlot.layoutLegend(labels, width: pw)
        let top = legendY + Double(placed.rows) * 16 + 10
        let ph = max(160.0, Double(height) - 48 - bottom - (hasBand ? 48 : 0))
        let H = top + ph + bottom
        let span = Double(max(tMax - tMin, 1))
        func x(_ t: Int64) -> Double { left + Double(t - tMin) / span * pw }
        func y(_ v: Double) -> Double { top + ph - (v - yMin) / max(yMax - yMin, 1e-12) * ph }
        func f(_ v: Double) -> String { fmt(v, 1) }
        var s = """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(Int(H.rounded(.up)))" viewBox="0 0 \(width) \(Int(H.rounded(.up)))" font-family="sans-serif" font-size="12">
        <title>\(xml(title))</title>
        <rect x="0" y="0" width="\(width)" height="\(Int(H.rounded(.up)))" fill="white"/>
        <text x="\(f(W / 2))" y="22" text-anchor="middle" font-size="15" font-weight="bold">\(xml(title))</text>

        """
        // Axes and grid.
        s += "<g stroke=\"#ddd\" stroke-width=\"1\">\n"
        let yt = TimePlot.yTicks(yMin, yMax)
        for v in yt { s += "<line x1=\"\(f(left))\" y1=\"\(f(y(v)))\" x2=\"\(f(left + pw))\" y2=\"\(f(y(v)))\"/>\n" }
        let tt = wallAlignedTicks()
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
        for sr in series {
            switch sr {
            case .step(_, let pts, let color):
                guard let first = pts.first else { continue }
                var d = "M\(f(x(first.t))),\(f(y(first.y)))"
                for p in pts.dropFirst() { d += " H\(f(x(p.t))) V\(f(y(p.y)))" }
                d += " H\(f(x(tMax)))"
                s += "<path d=\"\(d)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
            case .line(_, let pts, let color, let dashed):
                var d = ""
                var pen = false
                for p in pts {
                    guard let v = p.y else { pen = false; continue }
                    d += (pen ? " L" : " M") + "\(f(x(p.t))),\(f(y(v)))"
                    pen = true
                }
                if !d.isEmpty {
                    s += "<path d=\"\(d)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\"\(dashed ? " stroke-dasharray=\"6 4\"" : "")/>\n"
                }
            case .markers(_, let pts, let color, let shape):
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
            case .band(let segs, let colors):
                for seg in segs {
                    let x0 = x(max(seg.from, tMin)), x1 = x(min(seg.to, tMax))
                    let c = colors[seg.label] ?? "#999"
                    s += "<rect x=\"\(f(x0))\" y=\"\(f(bandY))\" width=\"\(f(max(x1 - x0, 0.5)))\" height=\"\(f(bandH))\" fill=\"\(c)\"><title>\(xml(seg.label)) \(xml(DurationFormat.short(seg.to - seg.from)))</title></rect>\n"
                }
            }
        }
        // The legend, in rows of its own between the title (and band) and the plot.
        s += "<g class=\"legend\" fill=\"#333\">\n"
        for (k, entry) in legend.enumerated() {
            let lx = left + placed.positions[k].x, ly = legendY + placed.positions[k].y
            s += "<rect x=\"\(f(lx))\" y=\"\(f(ly + 3))\" width=\"12\" height=\"8\" fill=\"\(entry.color)\"/><text x=\"\(f(lx + 16))\" y=\"\(f(ly + 11))\">\(xml(labels[k]))</text>\n"
        }
        s += "</g>\n"
        s += "</svg>\n"
        return s
    }

    func xml(_ s: String) -> String { SVGText.escape(s) }

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

/// Text in the SVGs we write: escaping and a width estimate (no font metrics are available,
/// so widths err on the wide side for the sans-serif faces renderers pick, DejaVu Sans and
/// Liberation Sans, and are exact for monospace).
enum SVGText {
    /// `s` as XML character data or attribute value: `&<>"'` escaped, and the characters
    /// XML 1.0 does not allow (controls other than tab and newline, U+FFFE, U+FFFF)
    /// replaced by U+FFFD.
    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for u in s.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\t", "\n": out.unicodeScalars.append(u)
            default:
                if u.value < 0x20 || u.value == 0x7F || u.value == 0xFFFE || u.value == 0xFFFF {
                    out += "\u{FFFD}"
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out
    }

    /// The advance of one character in em for a sans-serif face, rounded up.
    static func em(_ c: Character) -> Double {
        guard let a = c.asciiValue else { return 1.0 }
        switch a {
        case 0x20: return 0.33
        case 0x30...0x39: return 0.64
        case 0x41...0x5A:  // A-Z
            switch c {
            case "I", "J": return 0.34
            case "M", "W": return 0.9
            default: return 0.74
            }
        case 0x61...0x7A:  // a-z
            switch c {
            case "i", "j", "l": return 0.29
            case "f", "t", "r": return 0.42
            case "m", "w": return 0.92
            default: return 0.62
            }
        case 0x2E, 0x2C, 0x3A, 0x3B, 0x27, 0x7C, 0x21: return 0.34   // . , : ; ' | !
        case 0x28, 0x29, 0x5B, 0x5D, 0x7B, 0x7D, 0x2F, 0x5C, 0x2D: return 0.42   // ( ) [ ] { } / \ -
        default: return 0.84
        }
    }

    /// Estimated width in px of `s` in a sans-serif face at `fontSize` px (a little wide).
    static func width(_ s: String, fontSize: Double) -> Double {
        s.reduce(0) { $0 + em($1) } * fontSize
    }

    /// Monospace advance (DejaVu Sans Mono, Liberation Mono: 0.6 em), rounded up a little.
    static func monoWidth(_ n: Int, fontSize: Double) -> Double { Double(n) * 0.61 * fontSize }

    /// At most `n` characters, the last replaced by `…` when cut.
    static func truncate(_ s: String, toCharacters n: Int) -> String {
        guard s.count > n else { return s }
        return String(s.prefix(max(0, n - 1))) + "…"
    }

    /// At most `maxWidth` px of `s` in a sans-serif face, cut with `…`.
    static func truncate(_ s: String, toWidth maxWidth: Double, fontSize: Double) -> String {
        guard width(s, fontSize: fontSize) > maxWidth else { return s }
        var out = ""
        var w = em("…") * fontSize
        for c in s {
            let cw = em(c) * fontSize
            if w + cw > maxWidth { break }
            out.append(c)
            w += cw
        }
        return out + "…"
    }
}
