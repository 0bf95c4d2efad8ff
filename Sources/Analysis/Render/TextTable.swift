import QMP
import Recording

/// Analysis tables colour through the shared style (plain text when colours are off).
typealias TextStyle = ANSIStyle

/// A left-aligned text table whose widths ignore ANSI escapes; the last column is cut to
/// fit the terminal width.
///
/// Example: `TextTable(["level", "time"])` then `.row(["1.0 GiB", "12.5s"])`.
struct TextTable {
    var header: [String]
    var rows: [[String]] = []
    init(_ header: [String]) { self.header = header }
    mutating func row(_ cells: [String]) { rows.append(cells) }

    static func visibleCount(_ s: String) -> Int {
        var n = 0
        var inEscape = false
        for u in s.unicodeScalars {
            if inEscape { if u == "m" { inEscape = false }; continue }
            if u == "\u{1B}" { inEscape = true; continue }
            n += 1
        }
        return n
    }

    func render(colors: Bool, width: Int) -> String {
        let st = TextStyle(colors)
        let cols = header.count
        var widths = header.map { $0.count }
        for r in rows {
            for (c, cell) in r.enumerated() where c < cols { widths[c] = max(widths[c], TextTable.visibleCount(cell)) }
        }
        func line(_ cells: [String], bold: Bool) -> String {
            var s = "  "
            var used = 2
            for c in 0..<cols {
                var cell = c < cells.count ? cells[c] : ""
                let last = c == cols - 1
                if last, width > 0, used + TextTable.visibleCount(cell) > width, !colors {
                    let room = max(8, width - used)
                    if cell.count > room { cell = String(cell.prefix(room - 1)) + "…" }
                }
                let pad = last ? 0 : widths[c] - TextTable.visibleCount(cell)
                s += (bold ? st.bold(cell) : cell) + String(repeating: " ", count: max(0, pad)) + (last ? "" : "  ")
                used += widths[c] + 2
            }
            while s.hasSuffix(" ") { s.removeLast() }
            return s + "\n"
        }
        var out = line(header, bold: true)
        for r in rows { out += line(r, bold: false) }
        return out
    }
}

/// CSV (RFC 4180): cells with commas, quotes or line breaks are quoted.
struct CSV {
    private var text = ""
    init(_ header: [String]) { add(header) }
    mutating func add(_ cells: [String]) {
        text += cells.map(CSV.cell).joined(separator: ",") + "\n"
    }
    static func cell(_ s: String) -> String {
        if s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
            return "\"" + s.replacingAll("\"", with: "\"\"") + "\""
        }
        return s
    }
    var string: String { text }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for ch in self { if ch == target { out += replacement } else { out.append(ch) } }
        return out
    }
}

/// A fixed-point number as text (`fmt(1.23456, 2)` is `1.23`), without Foundation.
func fmt(_ v: Double, _ digits: Int) -> String {
    guard v.isFinite else { return "0" }
    var s = DurationFormat.fixed(v, digits)
    if s.hasPrefix("-"), s.dropFirst().allSatisfy({ $0 == "0" || $0 == "." }) { s.removeFirst() }
    return s
}

/// A JSON number with a fixed number of decimals.
func jnum(_ v: Double, _ digits: Int) -> JSONValue { .number(JSONNumber(text: fmt(v, digits))) }

/// `1.0 GiB`, `256.0 MiB`, `4096 B`.
func bytesText(_ n: Int64) -> String {
    let d = Double(n)
    let a = abs(d)
    if a >= 1_073_741_824 { return fmt(d / 1_073_741_824, 2) + " GiB" }
    if a >= 1_048_576 { return fmt(d / 1_048_576, 1) + " MiB" }
    if a >= 1024 { return fmt(d / 1024, 1) + " KiB" }
    return "\(n) B"
}

/// A byte count exactly, so that two different counts never print the same: MiB from
/// 1 MiB up, KiB from 1 KiB up, else bytes, with as many decimals as the value needs and
/// no more (a fraction of a power of two always ends; a multiple of 1 KiB needs at most 10
/// decimals in MiB, a multiple of 4 KiB at most 8).
///
/// Example: `exactBytesText(1073610752)` is `1023.875 MiB`, `exactBytesText(1073676288)`
/// is `1023.9375 MiB`, `exactBytesText(1 << 30)` is `1024 MiB`.
func exactBytesText(_ n: Int64) -> String {
    let a = n.magnitude
    let (shift, unit): (UInt64, String) = a >= 1 << 20 ? (20, " MiB") : a >= 1 << 10 ? (10, " KiB") : (0, " B")
    return (n < 0 ? "-" : "") + exactBinaryFraction(a, shift: shift) + unit
}

/// `a / 2^shift` in decimal, exactly: each step moves one decimal digit out of the
/// fraction, which ends after at most `shift` digits.
private func exactBinaryFraction(_ a: UInt64, shift: UInt64) -> String {
    let mask: UInt64 = (1 << shift) - 1
    var s = String(a >> shift)
    var frac = a & mask
    if frac != 0 { s += "." }
    while frac != 0 {
        frac *= 10   // frac < 2^20: no overflow
        s += String(frac >> shift)
        frac &= mask
    }
    return s
}

/// A time since the start as shown in tables: `+00:01:02.345`.
func clockText(_ t: Int64) -> String { DurationFormat.clock(t) }

extension AnalysisContext {
    /// The members every point in time carries in JSON: `record`, `t_ns`, `wall`.
    func point(_ record: Int, _ t: Int64) -> [JSONObject.Member] {
        [.init(key: "record", value: .int(record)), .init(key: "t_ns", value: .int(t)),
         .init(key: "wall", value: wall(t).map { .string($0) } ?? .null)]
    }

    func wallOrClock(_ t: Int64) -> String { wall(t) ?? clockText(t) }
}

extension JSONObject {
    init(point ctx: AnalysisContext, _ record: Int, _ t: Int64) {
        self.init(ctx.point(record, t))
    }
}

func jopt(_ v: Int64?) -> JSONValue { v.map { .int($0) } ?? .null }
func jopt(_ v: Int?) -> JSONValue { v.map { .int($0) } ?? .null }
func jopt(_ v: String?) -> JSONValue { v.map { .string($0) } ?? .null }
