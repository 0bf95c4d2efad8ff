/// Turns `JSONValue` back into text. Three layouts:
/// - `.compact`: `{"a":1,"b":[2,3]}`: what libvirt and most clients send;
/// - `.qemu`: `{"a": 1, "b": [2, 3]}`: what QEMU itself writes (`-mon pretty=off`);
/// - `.pretty`: indented over several lines, for people.
public enum JSONLayout: Sendable {
    case compact
    case qemu
    case pretty(indent: Int)
}

public extension JSONValue {
    func serialized(_ layout: JSONLayout = .compact) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        JSONWriter.write(self, layout: layout, level: 0, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    func serializedBytes(_ layout: JSONLayout = .compact) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(1 << 12)
        JSONWriter.write(self, layout: layout, level: 0, into: &out)
        return out
    }
}

public enum JSONWriter {
    public static func write(_ v: JSONValue, layout: JSONLayout, level: Int, into out: inout [UInt8]) {
        switch v {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .number(let n): out.append(contentsOf: n.text.utf8)
        case .string(let s): writeString(s, into: &out)
        case .array(let items):
            if items.isEmpty { out.append(contentsOf: "[]".utf8); return }
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { separator(layout, into: &out) }
                newline(layout, level + 1, into: &out)
                write(item, layout: layout, level: level + 1, into: &out)
            }
            newline(layout, level, into: &out)
            out.append(UInt8(ascii: "]"))
        case .object(let obj):
            if obj.isEmpty { out.append(contentsOf: "{}".utf8); return }
            out.append(UInt8(ascii: "{"))
            for (i, m) in obj.members.enumerated() {
                if i > 0 { separator(layout, into: &out) }
                newline(layout, level + 1, into: &out)
                writeString(m.key, into: &out)
                colon(layout, into: &out)
                write(m.value, layout: layout, level: level + 1, into: &out)
            }
            newline(layout, level, into: &out)
            out.append(UInt8(ascii: "}"))
        }
    }

    // The layout's punctuation, also for writers that stream a document piece by piece
    // (an analysis's JSON): the same bytes as the tree form by construction.

    /// Between two members or elements.
    @inlinable @inline(__always) public static func separator(_ layout: JSONLayout, into out: inout [UInt8]) {
        out.append(UInt8(ascii: ","))
        if case .qemu = layout { out.append(UInt8(ascii: " ")) }
    }

    /// After a member's key.
    @inlinable @inline(__always) public static func colon(_ layout: JSONLayout, into out: inout [UInt8]) {
        out.append(UInt8(ascii: ":"))
        if case .compact = layout {} else { out.append(UInt8(ascii: " ")) }
    }

    /// Before a member or element at `level` (and before a closing bracket at its level).
    @inlinable @inline(__always) public static func newline(_ layout: JSONLayout, _ level: Int, into out: inout [UInt8]) {
        if case .pretty(let indent) = layout {
            let n = indent * level
            if n < lineStart.utf8CodeUnitCount {
                out.append(contentsOf: UnsafeBufferPointer(start: lineStart.utf8Start, count: n + 1))
            } else {
                out.append(0x0A)
                out.append(contentsOf: repeatElement(UInt8(ascii: " "), count: n))
            }
        }
    }

    /// A newline and the spaces of the deepest indentation usually needed, for `newline`.
    /// (A static string: appending a piece of it costs no reference counting.)
    @usableFromInline static let lineStart: StaticString = "\n                                                                                                                               "

    /// Writes a JSON string literal. Non-ASCII UTF-8 passes through unchanged; runs of bytes
    /// that need no escaping are appended in one go.
    public static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { u in
            var runStart = 0
            for i in 0..<u.count {
                let c = u[i]
                guard c < 0x20 || c == 0x22 || c == 0x5C || c == 0x7F else { continue }
                if i > runStart { out.append(contentsOf: UnsafeBufferPointer(rebasing: u[runStart..<i])) }
                runStart = i + 1
                switch c {
                case 0x22: out.append(contentsOf: [0x5C, 0x22])
                case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
                case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
                case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
                case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
                default:
                    out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hexDigits[Int(c >> 4)], hexDigits[Int(c & 15)]])
                }
            }
            if u.count > runStart { out.append(contentsOf: UnsafeBufferPointer(rebasing: u[runStart..<u.count])) }
        }
        out.append(UInt8(ascii: "\""))
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    public static func quoted(_ s: String) -> String {
        var out: [UInt8] = []
        writeString(s, into: &out)
        return String(decoding: out, as: UTF8.self)
    }
}
