import QMP
import Recording

/// One object of a long array in an analysis's JSON document, written straight into the
/// output bytes in the document's layout, byte for byte what `JSONWriter` gives for the
/// tree, without making a `JSONValue` per member: a balloon series of 100,000 samples
/// is 700,000 members, and making each (a number is kept as its text) cost more than the
/// analysis itself (docs/PERFORMANCE.md).
///
/// Example: `row.int("record", 7); row.string("source", "query"); row.int("qemu_us", nil)`.
public struct JSONRow {
    /// The document's bytes so far (moved in and out by the writer, never copied).
    var out: [UInt8] = []
    let layout: JSONLayout
    /// The object's nesting level (for the pretty layout's indentation).
    let level: Int
    var members = 0

    init(layout: JSONLayout, level: Int) {
        self.layout = layout
        self.level = level
    }

    @inline(__always) mutating func key(_ k: StaticString) {
        if members == 0 {
            out.append(UInt8(ascii: "{"))
        } else {
            JSONWriter.separator(layout, into: &out)
        }
        JSONWriter.newline(layout, level + 1, into: &out)
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: UnsafeBufferPointer(start: k.utf8Start, count: k.utf8CodeUnitCount))
        out.append(UInt8(ascii: "\""))
        JSONWriter.colon(layout, into: &out)
        members += 1
    }

    public mutating func int(_ k: StaticString, _ v: Int64?) {
        key(k)
        guard let v else { out.append(contentsOf: "null".utf8); return }
        JSONRow.appendDecimal(v, to: &out)
    }

    public mutating func int(_ k: StaticString, _ v: Int?) { int(k, v.map(Int64.init)) }

    public mutating func string(_ k: StaticString, _ s: String?) {
        key(k)
        guard let s else { out.append(contentsOf: "null".utf8); return }
        JSONWriter.writeString(s, into: &out)
    }

    public mutating func bool(_ k: StaticString, _ b: Bool) {
        key(k)
        out.append(contentsOf: (b ? "true" : "false").utf8)
    }

    /// Any other value, through the general writer.
    public mutating func value(_ k: StaticString, _ v: JSONValue) {
        key(k)
        JSONWriter.write(v, layout: layout, level: level + 1, into: &out)
    }

    /// `record`, `t_ns` and `wall` of a point in time, as `AnalysisContext.point` gives them.
    public mutating func point(_ ctx: AnalysisContext, _ record: Int, _ t: Int64) {
        int("record", record)
        int("t_ns", t)
        key("wall")
        guard let start = ctx.startMicros else { out.append(contentsOf: "null".utf8); return }
        // `ctx.wall(t)`, written in place: an ISO 8601 time needs no escaping.
        out.append(UInt8(ascii: "\""))
        WallClock.appendISO8601(micros: start.addingSaturating(t / 1000), to: &out)
        out.append(UInt8(ascii: "\""))
    }

    mutating func finish() {
        if members == 0 {
            out.append(contentsOf: "{}".utf8)
            return
        }
        JSONWriter.newline(layout, level, into: &out)
        out.append(UInt8(ascii: "}"))
    }

    /// The decimal text of `v`, as `JSONNumber`'s for an integer.
    static func appendDecimal(_ v: Int64, to out: inout [UInt8]) {
        if v == Int64.min { out.append(contentsOf: String(v).utf8); return }
        var m = v < 0 ? -v : v
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of scratch, filled from the end
        withUnsafeMutableBytes(of: &digits) { buf in
            var i = buf.count
            repeat {
                i -= 1
                buf[i] = UInt8(truncatingIfNeeded: 0x30 + m % 10)
                m /= 10
            } while m > 0
            if v < 0 { i -= 1; buf[i] = UInt8(ascii: "-") }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[i...]))
        }
    }
}
