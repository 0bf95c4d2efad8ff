import QMP

/// A member of an analysis's JSON document whose value can be written piece by piece: a
/// long array (a series of 100,000 samples) is then made and written one element at a
/// time, so that the document is never held whole as a tree (docs/INDEX.md, "Memory").
public enum StreamedMember {
    case value(String, JSONValue)
    case array(String, count: Int, element: (Int) -> JSONValue)
    /// An array of objects written member by member (`JSONRow`): the fast form of `array`.
    case rows(String, count: Int, row: (Int, inout JSONRow) -> Void)

    /// The member made whole (for `jsonMembers`, the tree form).
    var member: JSONObject.Member {
        switch self {
        case .value(let k, let v): return .init(key: k, value: v)
        case .array(let k, let n, let f): return .init(key: k, value: .array((0..<n).map(f)))
        case .rows(let k, let n, let f):
            // The tree form reads back what the rows write (the same members, in order).
            return .init(key: k, value: .array((0..<n).map { e in
                var row = JSONRow(level: 0, indent: 0)
                f(e, &row)
                row.finish()
                return (try? JSONParser.parse(row.out)) ?? .null
            }))
        }
    }
}

/// A result whose long arrays can be streamed; its `jsonMembers` follow from them.
public protocol StreamedJSONResult: AnalysisResult {
    var streamedMembers: [StreamedMember] { get }
}

extension StreamedJSONResult {
    public var jsonMembers: [JSONObject.Member] { streamedMembers.map(\.member) }
}

extension AnalysisReport {
    /// Writes the JSON document exactly as `json.serializedBytes(.pretty(indent:))` would,
    /// handing `sink` a chunk each time about `chunk` bytes have been made: results that
    /// stream (`StreamedJSONResult`) never exist as a whole tree or a whole text.
    public func writeJSON(indent: Int, chunk: Int = 1 << 20, to sink: ([UInt8]) -> Void) {
        let layout = JSONLayout.pretty(indent: indent)
        var members: [StreamedMember] = envelope.members.map { .value($0.key, $0.value) }
        if let s = result as? any StreamedJSONResult {
            members += s.streamedMembers
        } else {
            members += result.jsonMembers.map { .value($0.key, $0.value) }
        }
        let found = findings, ctx = context
        members.append(.array("findings", count: found.count, element: { found[$0].json(ctx) }))
        var out: [UInt8] = []
        out.reserveCapacity(chunk + (1 << 16))
        func newline(_ level: Int) {
            out.append(0x0A)
            out.append(contentsOf: repeatElement(UInt8(ascii: " "), count: indent * level))
        }
        func flushIfFull() {
            if out.count >= chunk { sink(out); out.removeAll(keepingCapacity: true) }
        }
        out.append(UInt8(ascii: "{"))
        for (i, m) in members.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            newline(1)
            switch m {
            case .value(let k, let v):
                JSONWriter.writeString(k, into: &out)
                out.append(contentsOf: ": ".utf8)
                JSONWriter.write(v, layout: layout, level: 1, into: &out)
            case .array(let k, let n, let element):
                JSONWriter.writeString(k, into: &out)
                out.append(contentsOf: ": ".utf8)
                if n == 0 { out.append(contentsOf: "[]".utf8); break }
                out.append(UInt8(ascii: "["))
                for e in 0..<n {
                    if e > 0 { out.append(UInt8(ascii: ",")) }
                    newline(2)
                    JSONWriter.write(element(e), layout: layout, level: 2, into: &out)
                    flushIfFull()
                }
                newline(1)
                out.append(UInt8(ascii: "]"))
            case .rows(let k, let n, let write):
                JSONWriter.writeString(k, into: &out)
                out.append(contentsOf: ": ".utf8)
                if n == 0 { out.append(contentsOf: "[]".utf8); break }
                out.append(UInt8(ascii: "["))
                var row = JSONRow(level: 2, indent: indent)
                for e in 0..<n {
                    if e > 0 { out.append(UInt8(ascii: ",")) }
                    newline(2)
                    row.members = 0
                    swap(&row.out, &out)
                    write(e, &row)
                    row.finish()
                    swap(&row.out, &out)
                    flushIfFull()
                }
                newline(1)
                out.append(UInt8(ascii: "]"))
            }
            flushIfFull()
        }
        newline(0)
        out.append(UInt8(ascii: "}"))
        sink(out)
    }
}
