#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes JSON the way QEMU's monitor does, for answers a client must not tell from QEMU's:
/// `", "` and `": "` spacing, every code point below U+0020 or from U+007F up as `\uXXXX` with
/// upper-case digits (a surrogate pair beyond the BMP), short escapes for `\b \f \n \r \t`,
/// `/` raw; numbers as QEMU's number objects print them (integers that fit 64 bits as
/// integers, everything else as a double with `%.17g`: `1.50` -> `1.5`, `1e2` -> `100`,
/// `0.1` -> `0.10000000000000001`); object members in the order of QEMU's dictionary
/// (docs/QEMU-FACTS.md, "QEMU's JSON writer" and "QEMU's dictionaries").
///
/// Example: `QEMUJSONWriter.bytes(.object(["id": .string("é")]), qdictOrder: true)` is
/// `{"id": "\u00E9"}`.
public enum QEMUJSONWriter {
    /// `qdictOrder`: write object members in QEMU's dictionary order (for values QEMU rebuilt
    /// as a dictionary, such as a request's `id`); otherwise in the order given.
    public static func write(_ v: JSONValue, qdictOrder: Bool, into out: inout [UInt8]) {
        switch v {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .number(let n): out.append(contentsOf: number(n).utf8)
        case .string(let s): writeString(s, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(contentsOf: [UInt8(ascii: ","), 0x20]) }
                write(item, qdictOrder: qdictOrder, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            let members = qdictOrder ? QDictOrder.sorted(o.members) : o.members
            for (i, m) in members.enumerated() {
                if i > 0 { out.append(contentsOf: [UInt8(ascii: ","), 0x20]) }
                writeString(m.key, into: &out)
                out.append(contentsOf: [UInt8(ascii: ":"), 0x20])
                write(m.value, qdictOrder: qdictOrder, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    public static func bytes(_ v: JSONValue, qdictOrder: Bool) -> [UInt8] {
        var out: [UInt8] = []
        write(v, qdictOrder: qdictOrder, into: &out)
        return out
    }

    /// A string literal with QEMU's escapes.
    public static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for u in s.unicodeScalars {
            let c = u.value
            switch c {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x20..<0x7F: out.append(UInt8(c))
            case 0x10000...:
                let v = c - 0x10000
                hex4(0xD800 + (v >> 10), into: &out)
                hex4(0xDC00 + (v & 0x3FF), into: &out)
            default: hex4(c, into: &out)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    private static let upperHex: [UInt8] = Array("0123456789ABCDEF".utf8)

    private static func hex4(_ c: UInt32, into out: inout [UInt8]) {
        out.append(contentsOf: [0x5C, UInt8(ascii: "u"),
                                upperHex[Int((c >> 12) & 15)], upperHex[Int((c >> 8) & 15)],
                                upperHex[Int((c >> 4) & 15)], upperHex[Int(c & 15)]])
    }

    /// A number as QEMU prints the number object its parser made of this text: an integer
    /// literal that fits a signed, else an unsigned, 64-bit integer stays an integer; any other
    /// number is a double printed with `%.17g` (so `1e999` prints as `inf`, as QEMU does).
    public static func number(_ n: JSONNumber) -> String {
        if n.isInteger {
            if let i = Int64(n.text) { return String(i) }
            if !n.text.hasPrefix("-"), let u = UInt64(n.text) { return String(u) }
        }
        return g17(strtod(n.text, nil))
    }

    /// `%.17g` of `d`, as C's printf writes it.
    static func g17(_ d: Double) -> String {
        var buf = [CChar](repeating: 0, count: 40)
        _ = buf.withUnsafeMutableBufferPointer { p in
            withVaList([d]) { vsnprintf(p.baseAddress, 40, "%.17g", $0) }
        }
        let bytes = buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// The order in which QEMU's dictionary (QDict) lists its members, which is the order QEMU
/// writes them: members sit in 512 buckets chosen by a hash of the key and are listed bucket
/// by bucket; within a bucket the member added last comes first (docs/QEMU-FACTS.md, "QEMU's
/// dictionaries"). That is why QEMU writes `{"return": ..., "id": ...}` but
/// `{"id": ..., "error": ...}`.
public enum QDictOrder {
    static let buckets: UInt32 = 512

    /// The bucket of `key`: a hash seeded with the key's length times 0x238F13AF that adds each
    /// byte shifted left by (5 * position) mod 24 bits, then one linear-congruential step, all
    /// in 32-bit unsigned arithmetic, modulo 512.
    public static func bucket(_ key: String) -> UInt32 {
        let bytes = Array(key.utf8)
        var h = UInt32(truncatingIfNeeded: bytes.count) &* 0x238F_13AF
        for (i, b) in bytes.enumerated() {
            h = h &+ (UInt32(b) << UInt32((i * 5) % 24))
        }
        return (1_103_515_243 &* h &+ 12345) % buckets
    }

    /// `members` (in insertion order) in the order QEMU lists them.
    public static func sorted(_ members: [JSONObject.Member]) -> [JSONObject.Member] {
        guard members.count > 1 else { return members }
        return members.enumerated()
            .map { (bucket: bucket($0.element.key), index: $0.offset, member: $0.element) }
            .sorted { $0.bucket != $1.bucket ? $0.bucket < $1.bucket : $0.index > $1.index }
            .map(\.member)
    }
}
