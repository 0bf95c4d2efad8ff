/// A JSON value as QMP uses it: object members keep their order (QEMU writes
/// `timestamp`, `event`, `data` in that order and people read them that way) and
/// numbers keep their original text so that `10737418240` or `1e3` survive untouched.
///
/// Example: `{"execute": "balloon", "arguments": {"value": 536870912}, "id": 7}`.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(JSONNumber)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// The JSON type name used in QEMU's documentation (`json-string`, ...), without the prefix.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "bool"
        case .number(let n): return n.isInteger ? "int" : "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var objectValue: JSONObject? { if case .object(let o) = self { return o } else { return nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var numberValue: JSONNumber? { if case .number(let n) = self { return n } else { return nil } }
    public var int64Value: Int64? { numberValue?.int64 }
    public var doubleValue: Double? { numberValue?.double }
    public var isNull: Bool { if case .null = self { return true } else { return false } }

    /// Member lookup for objects; `nil` for anything else.
    public subscript(key: String) -> JSONValue? { objectValue?[key] }

    /// Follows a dotted path such as `data.actual` or `arguments.name`.
    public func value(atPath path: String) -> JSONValue? {
        var current: JSONValue? = self
        for part in path.split(separator: ".", omittingEmptySubsequences: false) {
            guard let c = current else { return nil }
            if case .array(let items) = c, let i = Int(part) {
                current = i >= 0 && i < items.count ? items[i] : nil
            } else {
                current = c[String(part)]
            }
        }
        return current
    }

    public static func int(_ v: Int64) -> JSONValue { .number(JSONNumber(text: String(v))) }
    public static func int(_ v: Int) -> JSONValue { .number(JSONNumber(text: String(v))) }
}

/// A JSON number kept as its source text. Equality is numeric, so `1` and `1.0` are
/// the same argument value, as they are to QEMU's QAPI visitors.
public struct JSONNumber: Sendable, Hashable, CustomStringConvertible {
    public let text: String

    public init(text: String) { self.text = text }

    public var isInteger: Bool { !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) }
    public var int64: Int64? { Int64(text) ?? (isInteger ? nil : double.flatMap { $0 == $0.rounded() && abs($0) < 9.2e18 ? Int64($0) : nil }) }
    public var uint64: UInt64? { UInt64(text) }
    public var double: Double? { Double(text) }
    public var description: String { text }

    public static func == (a: JSONNumber, b: JSONNumber) -> Bool {
        if a.text == b.text { return true }
        if a.isInteger && b.isInteger {
            // Integers compare exactly, never through Double (ids like 18446744073709551615).
            if let x = Int64(a.text), let y = Int64(b.text) { return x == y }
            if let x = UInt64(a.text), let y = UInt64(b.text) { return x == y }
            return a.normalizedIntegerText == b.normalizedIntegerText
        }
        if let x = a.double, let y = b.double { return x == y }
        return false
    }

    /// An integer's text without sign of zero and leading zeros, for exact comparison.
    private var normalizedIntegerText: String {
        var t = Substring(text)
        let negative = t.hasPrefix("-")
        if negative { t = t.dropFirst() }
        while t.count > 1, t.first == "0" { t = t.dropFirst() }
        return (negative && t != "0" ? "-" : "") + t
    }

    public func hash(into hasher: inout Hasher) {
        if let d = double { hasher.combine(d) } else { hasher.combine(text) }
    }
}

/// A JSON object whose members stay in the order they arrived. Lookup is linear,
/// which is the fastest choice for QMP's objects of a handful of members.
/// Equality ignores member order (QEMU does not care about it either).
public struct JSONObject: Sendable, Hashable, Sequence {
    public struct Member: Sendable, Hashable {
        public var key: String
        public var value: JSONValue
        public init(key: String, value: JSONValue) { self.key = key; self.value = value }
    }

    public var members: [Member]

    public init(_ members: [Member] = []) { self.members = members }
    public init(_ pairs: KeyValuePairs<String, JSONValue>) { members = pairs.map { Member(key: $0.key, value: $0.value) } }

    public var count: Int { members.count }
    public var isEmpty: Bool { members.isEmpty }
    public var keys: [String] { members.map(\.key) }

    public subscript(key: String) -> JSONValue? {
        get {
            for m in members where m.key == key { return m.value }
            return nil
        }
        set {
            if let i = members.firstIndex(where: { $0.key == key }) {
                if let v = newValue { members[i].value = v } else { members.remove(at: i) }
            } else if let v = newValue {
                members.append(Member(key: key, value: v))
            }
        }
    }

    public func makeIterator() -> IndexingIterator<[Member]> { members.makeIterator() }

    /// True when no member name is repeated (what QEMU and every JSON writer produce).
    var hasUniqueNames: Bool {
        if members.count < 2 { return true }
        if members.count <= 8 {
            for i in 1..<members.count where members[..<i].contains(where: { $0.key == members[i].key }) { return false }
            return true
        }
        return Set(members.map(\.key)).count == members.count
    }

    /// Member order does not matter. With repeated member names (legal JSON, and kept as
    /// read) the objects are compared as multisets of members, so equality stays reflexive.
    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        guard a.members.count == b.members.count else { return false }
        if a.hasUniqueNames && b.hasUniqueNames {
            // The normal case: same count, every name of `a` in `b` with an equal value. Each
            // value is compared once (comparing both ways made nested objects cost 2^depth:
            // a fuzzed id nested a few dozen deep took minutes).
            for m in a.members {
                guard let v = b[m.key], v == m.value else { return false }
            }
            return true
        }
        // A repeated name: the exact multiset comparison decides.
        var used = [Bool](repeating: false, count: b.members.count)
        for m in a.members {
            var found = false
            for j in 0..<b.members.count where !used[j] {
                let other: Member = b.members[j]
                if other.key == m.key && other.value == m.value {
                    used[j] = true
                    found = true
                    break
                }
            }
            if !found { return false }
        }
        return true
    }

    public func hash(into hasher: inout Hasher) {
        // Order-independent: combine per-member hashes commutatively.
        var acc = 0
        for m in members {
            var h = Hasher()
            h.combine(m.key)
            h.combine(m.value)
            acc ^= h.finalize()
        }
        hasher.combine(members.count)
        hasher.combine(acc)
    }
}
