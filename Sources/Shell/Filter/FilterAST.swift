import QMP
import Recording

/// The parsed form of a filter expression (independent of any recording).
indirect enum FilterNode: Sendable {
    case or([FilterNode])
    case and([FilterNode])
    case not(FilterNode)
    /// `kind K[,K...]`, and the kind names alone.
    case kinds([RecordKind])
    /// `event NAME`, `command NAME`, `error CLASS`: records of that kind whose index name matches.
    case name(RecordKind, NamePattern)
    /// `from qemu|client`.
    case direction(Direction)
    /// `conn N`.
    case connection(UInt32)
    /// `time OP T`, `time A..B`.
    case time(TimeTest)
    /// `PATH OP VALUE`.
    case compare(JSONPathSpec, CompareOp, FilterValue)
    /// `has PATH`.
    case has(JSONPathSpec)

    /// Whether evaluating the node needs the decoded message.
    var needsDecode: Bool {
        switch self {
        case .or(let items), .and(let items): return items.contains { $0.needsDecode }
        case .not(let n): return n.needsDecode
        case .compare, .has: return true
        default: return false
        }
    }

    /// The record kinds a record must have for the node to match; nil when any kind may.
    /// A path condition needs a message (records without one have no paths), except `!=` and
    /// `!~`, which hold where the path is missing.
    var possibleKinds: Set<RecordKind>? {
        switch self {
        case .kinds(let ks): return Set(ks)
        case .name(let k, _): return [k]
        case .has: return Self.messageKinds
        case .compare(_, let op, _): return op.isNegation ? nil : Self.messageKinds
        case .and(let items):
            return items.compactMap(\.possibleKinds).reduce(nil) { acc, k in acc.map { $0.intersection(k) } ?? k }
        case .or(let items):
            var all = Set<RecordKind>()
            for i in items {
                guard let k = i.possibleKinds else { return nil }
                all.formUnion(k)
            }
            return all
        case .not, .direction, .connection, .time: return nil
        }
    }

    static let messageKinds = Set(RecordKind.allCases.filter(\.isMessage))
}

/// A record name pattern: a glob word (`BALLOON*`), an exact quoted name, or a regex.
enum NamePattern: Sendable {
    case glob(String)
    case exact(String)
    case regex(FilterRegex)

    func matches(_ name: String) -> Bool {
        switch self {
        case .glob(let g): return Glob(g).matches(name)
        case .exact(let s): return s == name
        case .regex(let r): return r.matches(name)
        }
    }
}

enum CompareOp: String, Sendable {
    case eq = "==", ne = "!=", lt = "<", le = "<=", gt = ">", ge = ">=", match = "~", noMatch = "!~"

    init?(token: FilterToken) {
        guard token.kind == .op else { return nil }
        if token.text == "=" { self = .eq; return }
        self.init(rawValue: token.text)
    }

    var isOrdering: Bool { self == .lt || self == .le || self == .gt || self == .ge }
    var isRegex: Bool { self == .match || self == .noMatch }
    /// `!=` and `!~` are the negations of `==` and `~`.
    var isNegation: Bool { self == .ne || self == .noMatch }
}

/// A compiled regex with the text it came from.
struct FilterRegex: @unchecked Sendable {
    // Regex values are immutable and safe to share between threads; the stored compiled
    // program is the standard library's concern. (`@unchecked` because Regex<AnyRegexOutput>
    // is not declared Sendable on every toolchain.)
    let source: String
    let flags: String
    /// Written as a "string" rather than /regex/ (kept for the normalised form).
    let fromString: Bool
    let regex: Regex<AnyRegexOutput>

    init(source: String, flags: String, fromString: Bool) throws {
        self.source = source
        self.flags = flags
        self.fromString = fromString
        var r = try Regex(source)
        if flags.contains("i") { r = r.ignoresCase() }
        if flags.contains("s") { r = r.dotMatchesNewlines() }
        if flags.contains("m") { r = r.anchorsMatchLineEndings() }
        regex = r
    }

    /// Whether the regex matches anywhere in `s` (anchor with ^ and $ for whole strings).
    func matches(_ s: String) -> Bool { (try? regex.firstMatch(in: s)) != nil }

    var description: String {
        if fromString { return JSONWriter.quoted(source) }
        var out = "/"
        for c in source { if c == "/" { out += "\\/" } else { out.append(c) } }
        return out + "/" + flags
    }
}

/// A numeric literal: `5`, `-3`, `2.5`, `1e3`, `1G` (sizes are powers of 1024).
struct NumberLiteral: Sendable {
    /// As written (kept for the normalised form).
    let text: String
    /// Exact integer value as normalised decimal digits with an optional leading `-`, when integral.
    let integer: String?
    let int64: Int64?
    let double: Double

    /// Suffix multipliers: K, M, G, T (and Ki, Mi, Gi, Ti), any case, all powers of 1024.
    static let suffixPowers: [Character: Int] = ["k": 1, "m": 2, "g": 3, "t": 4]

    /// Parses a number word; nil when the word is not a number.
    init?(_ word: String) {
        var chars = Array(word)
        var power = 0
        // Suffix: K M G T, optionally followed by i.
        if let last = chars.last, last == "i" || last == "I", chars.count >= 2,
           let p = NumberLiteral.suffixPowers[Character(chars[chars.count - 2].lowercased())] {
            power = p
            chars.removeLast(2)
        } else if let last = chars.last, let p = NumberLiteral.suffixPowers[Character(last.lowercased())] {
            power = p
            chars.removeLast()
        }
        // -?digits(.digits)?([eE][+-]?digits)?
        var i = 0
        if i < chars.count, chars[i] == "-" { i += 1 }
        let intStart = i
        while i < chars.count, chars[i].isASCII, chars[i].isNumber { i += 1 }
        guard i > intStart else { return nil }
        var integral = true
        if i < chars.count, chars[i] == "." {
            i += 1
            let fs = i
            while i < chars.count, chars[i].isASCII, chars[i].isNumber { i += 1 }
            guard i > fs else { return nil }
            integral = false
        }
        if i < chars.count, chars[i] == "e" || chars[i] == "E" {
            i += 1
            if i < chars.count, chars[i] == "+" || chars[i] == "-" { i += 1 }
            let es = i
            while i < chars.count, chars[i].isASCII, chars[i].isNumber { i += 1 }
            guard i > es else { return nil }
            integral = false
        }
        guard i == chars.count else { return nil }
        let mantissa = String(chars)
        text = word
        if integral {
            let negative = mantissa.hasPrefix("-")
            var digits = Array(mantissa.utf8.drop(while: { $0 == UInt8(ascii: "-") }).map { $0 - 0x30 })
            for _ in 0..<power { digits = NumberLiteral.multiply(digits, by: 1024) }
            let normal = NumberLiteral.normalize(digits: digits, negative: negative)
            integer = normal
            int64 = Int64(normal)
            double = Double(normal) ?? .infinity
        } else {
            guard let d = Double(mantissa) else { return nil }
            var v = d
            for _ in 0..<power { v *= 1024 }
            double = v
            if power > 0, v == v.rounded(), abs(v) < 9.0e15 {
                // 1.5G is the integer 1610612736.
                let n = Int64(v)
                integer = String(n)
                int64 = n
            } else {
                integer = nil
                int64 = nil
            }
        }
    }

    private static func multiply(_ digits: [UInt8], by m: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: digits.count + 4)
        var carry = 0
        var j = out.count - 1
        for d in digits.reversed() {
            let v = Int(d) * m + carry
            out[j] = UInt8(v % 10)
            carry = v / 10
            j -= 1
        }
        while carry > 0 {
            out[j] = UInt8(carry % 10)
            carry /= 10
            j -= 1
        }
        return out
    }

    /// Decimal digits (values 0-9) to text without leading zeros, `-` only when non-zero.
    static func normalize(digits: [UInt8], negative: Bool) -> String {
        let trimmed = digits.drop(while: { $0 == 0 })
        if trimmed.isEmpty { return "0" }
        return (negative ? "-" : "") + String(decoding: trimmed.map { $0 + 0x30 }, as: UTF8.self)
    }

    /// An integer's JSON text, normalised the same way.
    static func normalize(integerText t: String) -> String {
        let negative = t.hasPrefix("-")
        let digits = t.utf8.drop(while: { $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "+") }).map { $0 &- 0x30 }
        return normalize(digits: Array(digits), negative: negative)
    }

    /// Compares two normalised integer texts exactly (any size).
    static func compareIntegers(_ a: String, _ b: String) -> Int {
        let an = a.hasPrefix("-"), bn = b.hasPrefix("-")
        if an != bn { return an ? -1 : 1 }
        let ad = an ? a.utf8.dropFirst() : a.utf8[...]
        let bd = bn ? b.utf8.dropFirst() : b.utf8[...]
        var c: Int
        if ad.count != bd.count {
            c = ad.count < bd.count ? -1 : 1
        } else if ad.elementsEqual(bd) {
            c = 0
        } else {
            c = ad.lexicographicallyPrecedes(bd) ? -1 : 1
        }
        return an ? -c : c
    }
}

/// A literal on the right of a comparison.
enum FilterValue: Sendable {
    case number(NumberLiteral)
    case string(String)
    case bool(Bool)
    case null
    case regex(FilterRegex)

    var description: String {
        switch self {
        case .number(let n): return n.text
        case .string(let s): return FilterLiteral.quoted(s)
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .regex(let r): return r.description
        }
    }
}

/// A path into the message JSON: `data.actual`, `return.0.device`, `msg.anything`.
struct JSONPathSpec: Sendable {
    /// Components after the optional `msg.` prefix; empty means the whole message.
    let components: [String]

    /// First components that name a member of a QMP message.
    static let messageMembers: Set<String> = [
        "data", "arguments", "return", "error", "id", "event", "execute", "exec-oob", "timestamp", "QMP",
    ]

    var description: String {
        if let first = components.first, JSONPathSpec.messageMembers.contains(first) {
            return components.joined(separator: ".")
        }
        return (["msg"] + components).joined(separator: ".")
    }

    /// Follows the path: object members by name, array elements by decimal index
    /// (as `JSONValue.value(atPath:)` does).
    func resolve(_ root: JSONValue) -> JSONValue? {
        var current = root
        for part in components {
            switch current {
            case .array(let items):
                if let i = Int(part) {
                    guard i >= 0 && i < items.count else { return nil }
                    current = items[i]
                } else {
                    return nil
                }
            case .object(let o):
                guard let v = o[part] else { return nil }
                current = v
            default:
                return nil
            }
        }
        return current
    }
}

/// A time as written (`10s`, `#12`, `10:00:05`), resolved per recording.
struct TimeBound: Sendable {
    let spec: TimeSpec
    let text: String

    /// Nanoseconds since the start of `recording`. `#N` is record N's time; past the last
    /// record it is after every record.
    func resolve(in recording: Recording) -> Int64 {
        if case .record(let n) = spec, n >= recording.count { return Int64.max }
        return spec.resolveTime(in: recording)
    }
}

enum TimeTest: Sendable {
    case compare(CompareOp, TimeBound)
    /// `A..B`: A inclusive, B exclusive; either may be left open.
    case range(TimeBound?, TimeBound?)

    var description: String {
        switch self {
        case .compare(let op, let t): return "time \(op.rawValue) \(t.text)"
        case .range(let a, let b): return "time \(a?.text ?? "")..\(b?.text ?? "")"
        }
    }

    /// The half-open range of times `[lo, hi)` the test accepts (`!=` is handled by the caller).
    func bounds(in recording: Recording) -> (lo: Int64, hi: Int64) {
        switch self {
        case .range(let a, let b):
            return (a?.resolve(in: recording) ?? Int64.min, b?.resolve(in: recording) ?? Int64.max)
        case .compare(let op, let t):
            let v = t.resolve(in: recording)
            let next = v == Int64.max ? v : v + 1
            switch op {
            case .lt: return (Int64.min, v)
            case .le: return (Int64.min, next)
            case .gt: return (next, Int64.max)
            case .ge: return (v, Int64.max)
            default: return (v, next)  // == (and != negated by the caller)
            }
        }
    }
}

// MARK: - Normalised form

extension FilterNode {
    /// Binding strength: or 1, and 2, not 3, terms 4.
    private var precedence: Int {
        switch self {
        case .or: return 1
        case .and: return 2
        case .not: return 3
        default: return 4
        }
    }

    func render(_ context: Int = 0) -> String {
        let s: String
        switch self {
        case .or(let items): s = items.map { $0.render(1) }.joined(separator: " or ")
        case .and(let items): s = items.map { $0.render(2) }.joined(separator: " and ")
        case .not(let n): s = "not " + n.render(3)
        case .kinds(let ks): s = "kind " + ks.map(\.rawValue).joined(separator: ",")
        case .name(let k, let p):
            switch p {
            case .glob(let g): s = "\(k.rawValue) \(g)"
            case .exact(let e):
                s = "\(k.rawValue) " + (FilterNode.isPlainName(e) ? e : JSONWriter.quoted(e))
            case .regex(let r): s = "\(k.rawValue) ~ \(r.description)"
            }
        case .direction(let d): s = "from \(d.rawValue)"
        case .connection(let c): s = "conn \(c)"
        case .time(let t): s = t.description
        case .compare(let p, let op, let v): s = "\(p.description) \(op.rawValue) \(v.description)"
        case .has(let p): s = "has \(p.description)"
        }
        return precedence < context ? "(\(s))" : s
    }

    /// A name that reads back as the same exact name when written bare after `event`/`command`.
    static func isPlainName(_ s: String) -> Bool {
        guard !s.isEmpty, !s.contains("*"), !s.contains("?"), !s.contains("..") else { return false }
        guard s.allSatisfy(FilterLexer.isWordCharacter) else { return false }
        return !FilterParser.reservedWords.contains(s.lowercased())
    }
}

/// A string as the filter language writes it back: JSON quoting, and also every scalar that
/// could join the character before it (combining marks, format and other invisible
/// characters) written as `\uXXXX`, because the lexer reads characters (grapheme clusters):
/// after `\u0001`, a raw U+0650 would fuse with the `1` and the escape would no longer parse.
enum FilterLiteral {
    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7F || (u.value > 0x7F && mayJoin(u)) {
                    for unit in String(u).utf16 { out += "\\u" + hex4(unit) }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    private static func mayJoin(_ u: Unicode.Scalar) -> Bool {
        switch u.properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .format, .control, .surrogate, .privateUse, .unassigned,
             .lineSeparator, .paragraphSeparator:
            return true
        default:
            return u.properties.isGraphemeExtend || u.properties.isVariationSelector
        }
    }

    private static func hex4(_ v: UInt16) -> String {
        let h = String(v, radix: 16)
        return String(repeating: "0", count: 4 - h.count) + h
    }
}
