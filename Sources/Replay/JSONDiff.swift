import QMP

/// Differences between two JSON values, as paths a person can read:
/// `arguments.value: expected 201326592, got 5`. Used by `--strict` reports and to find the
/// closest recorded command. Object member order does not matter; numbers compare by value.
public enum JSONDiff {
    public struct Difference: Sendable, Hashable, CustomStringConvertible {
        public var path: String
        public var expected: JSONValue?
        public var actual: JSONValue?

        public var description: String {
            switch (expected, actual) {
            case (nil, let a?): return "\(path): unexpected \(a.serialized(.qemu))"
            case (let e?, nil): return "\(path): missing (expected \(e.serialized(.qemu)))"
            case (let e?, let a?): return "\(path): expected \(e.serialized(.qemu)), got \(a.serialized(.qemu))"
            default: return path
            }
        }

        public var json: JSONValue {
            var o = JSONObject()
            o["path"] = .string(path)
            if let e = expected { o["expected"] = e }
            if let a = actual { o["actual"] = a }
            return .object(o)
        }
    }

    public static func diff(expected: JSONValue, actual: JSONValue, path: String = "") -> [Difference] {
        var out: [Difference] = []
        walk(expected, actual, path, &out)
        return out
    }

    private static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : path + "." + key }

    private static func walk(_ e: JSONValue, _ a: JSONValue, _ path: String, _ out: inout [Difference]) {
        switch (e, a) {
        case (.object(let eo), .object(let ao)):
            for m in eo.members {
                if let av = ao[m.key] { walk(m.value, av, join(path, m.key), &out) } else { out.append(Difference(path: join(path, m.key), expected: m.value, actual: nil)) }
            }
            for m in ao.members where eo[m.key] == nil {
                out.append(Difference(path: join(path, m.key), expected: nil, actual: m.value))
            }
        case (.array(let ea), .array(let aa)):
            for i in 0..<max(ea.count, aa.count) {
                let p = path + "[\(i)]"
                if i < ea.count && i < aa.count { walk(ea[i], aa[i], p, &out) }
                else if i < ea.count { out.append(Difference(path: p, expected: ea[i], actual: nil)) }
                else { out.append(Difference(path: p, expected: nil, actual: aa[i])) }
            }
        default:
            if e != a { out.append(Difference(path: path.isEmpty ? "(value)" : path, expected: e, actual: a)) }
        }
    }

    /// Levenshtein distance, for "did you mean" between command names.
    public static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a.utf8), y = Array(b.utf8)
        if x.isEmpty { return y.count }
        if y.isEmpty { return x.count }
        var prev = Array(0...y.count)
        var cur = [Int](repeating: 0, count: y.count + 1)
        for i in 1...x.count {
            cur[0] = i
            for j in 1...y.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[y.count]
    }
}
