/// The JSON dialect QEMU's monitor accepts on input, beyond RFC 8259: strings may be
/// single-quoted (`{'execute': 'query-name'}`), and `\'` is a valid escape in either kind
/// of string (docs/QEMU-FACTS.md, "QEMU's JSON parser"). QEMU executes such requests, so
/// a recording must treat them as the commands they are.
///
/// `standardJSON` rewrites a text in this dialect into RFC 8259 JSON (double quotes, `"`
/// escaped inside former single-quoted strings), or returns nil when there is nothing to
/// rewrite. Example: `{'id': 'it''s'}` is not rewritten; `{'id': 'a"b'}` becomes `{"id": "a\"b"}`.
public enum QEMUDialect {
    public static func standardJSON(_ b: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        let sq = UInt8(ascii: "'"), dq = UInt8(ascii: "\""), bs = UInt8(ascii: "\\")
        guard b.contains(sq) else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(b.count + 8)
        var i = 0
        var changed = false
        while i < b.count {
            let c = b[i]
            if c == sq || c == dq {
                let quote = c
                out.append(dq)
                if quote == sq { changed = true }
                i += 1
                var closed = false
                while i < b.count {
                    let d = b[i]
                    if d == bs, i + 1 < b.count {
                        if b[i + 1] == sq {
                            out.append(sq)
                            changed = true
                        } else {
                            out.append(d)
                            out.append(b[i + 1])
                        }
                        i += 2
                        continue
                    }
                    if d == quote { closed = true; i += 1; break }
                    if d == dq { out.append(bs) }   // only reachable inside a single-quoted string
                    out.append(d)
                    i += 1
                }
                guard closed else { return nil }
                out.append(dq)
            } else {
                out.append(c)
                i += 1
            }
        }
        return changed ? out : nil
    }

    /// Parses a text QEMU's parser would accept: strict JSON first, then the dialect.
    public static func parse(_ b: UnsafeBufferPointer<UInt8>) -> (value: JSONValue, strict: Bool)? {
        if let v = try? JSONParser.parse(b) { return (v, true) }
        guard let std = standardJSON(b), let v = std.withUnsafeBufferPointer({ try? JSONParser.parse($0) }) else { return nil }
        return (v, false)
    }
}
