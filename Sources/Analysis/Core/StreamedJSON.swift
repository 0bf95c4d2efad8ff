import QMP

/// A member of an analysis's JSON document whose value can be written piece by piece: a
/// long array (a series of 100,000 samples) is then made and written one element at a
/// time, so that the document is never held whole as a tree (docs/INDEX.md, "Memory").
///
/// Members nest: triage's `results.balloon` is an `.object` of balloon's own streamed
/// members, and rtc's `series` is `.objects`, each series an object whose `samples` stream.
public enum StreamedMember {
    case value(String, JSONValue)
    case array(String, count: Int, element: (Int) -> JSONValue)
    /// An object whose members stream in turn.
    case object(String, [StreamedMember])
    /// An array of objects whose members stream in turn (one per NIC, each with its events).
    case objects(String, count: Int, element: (Int) -> [StreamedMember])
    /// An array of flat objects written member by member (`JSONRow`): the fast form of
    /// `array` for a long series (no `JSONValue` made per member).
    case rows(String, count: Int, row: (Int, inout JSONRow) -> Void)

    var key: String {
        switch self {
        case .value(let k, _), .array(let k, _, _), .object(let k, _), .objects(let k, _, _), .rows(let k, _, _): return k
        }
    }

    /// The member made whole (for `jsonMembers`, the tree form).
    var member: JSONObject.Member {
        switch self {
        case .value(let k, let v): return .init(key: k, value: v)
        case .array(let k, let n, let f): return .init(key: k, value: .array((0..<n).map(f)))
        case .object(let k, let ms): return .init(key: k, value: Self.tree(ms))
        case .objects(let k, let n, let f): return .init(key: k, value: .array((0..<n).map { Self.tree(f($0)) }))
        case .rows(let k, let n, let f):
            // The tree form reads back what the rows write (the same members, in order).
            return .init(key: k, value: .array((0..<n).map { e in
                var row = JSONRow(layout: .compact, level: 0)
                f(e, &row)
                row.finish()
                return (try? JSONParser.parse(row.out)) ?? .null
            }))
        }
    }

    static func tree(_ members: [StreamedMember]) -> JSONValue { .object(JSONObject(members.map(\.member))) }

    /// The members of a small object made whole, as members that stream.
    static func values(_ o: JSONObject) -> [StreamedMember] { o.members.map { .value($0.key, $0.value) } }
}

/// A result whose long arrays can be streamed; its `jsonMembers` follow from them.
public protocol StreamedJSONResult: AnalysisResult {
    var streamedMembers: [StreamedMember] { get }
}

extension StreamedJSONResult {
    public var jsonMembers: [JSONObject.Member] { streamedMembers.map(\.member) }
}

extension AnalysisResult {
    /// The result's members as they stream: its own when it streams, else its tree's.
    var membersToStream: [StreamedMember] {
        if let s = self as? any StreamedJSONResult { return s.streamedMembers }
        return jsonMembers.map { .value($0.key, $0.value) }
    }
}

extension AnalysisReport {
    /// The document's members as they stream: the envelope, the result's, the findings.
    var streamedMembers: [StreamedMember] {
        let found = findings, ctx = context
        return envelope.members.map { .value($0.key, $0.value) } + result.membersToStream
            + [.array("findings", count: found.count, element: { found[$0].json(ctx) })]
    }

    /// Writes the JSON document exactly as `json.serializedBytes(.pretty(indent:))` would,
    /// handing `sink` a chunk each time about `chunk` bytes have been made: results that
    /// stream (`StreamedJSONResult`) never exist as a whole tree or a whole text.
    /// `only`: keep only the top-level members with these keys (`--findings-only`).
    public func writeJSON(indent: Int, chunk: Int = 1 << 20, only: Set<String>? = nil, to sink: ([UInt8]) -> Void) {
        writeJSON(layout: .pretty(indent: indent), chunk: chunk, only: only, to: sink)
    }

    /// The same in any layout (`.compact` for a fleet line).
    public func writeJSON(layout: JSONLayout, chunk: Int = 1 << 20, only: Set<String>? = nil, to sink: ([UInt8]) -> Void) {
        var members = streamedMembers
        if let only { members = members.filter { only.contains($0.key) } }
        withoutActuallyEscaping(sink) { sink in
            var w = StreamedJSONWriter(layout: layout, chunk: chunk, sink: sink)
            w.object(members, level: 0)
            w.finish()
        }
    }

    /// The whole document as bytes in `layout` (a fleet line's `result`), made without a tree.
    public func jsonBytes(_ layout: JSONLayout, only: Set<String>? = nil) -> [UInt8] {
        var bytes: [UInt8] = []
        writeJSON(layout: layout, only: only) { bytes += $0 }
        return bytes
    }
}

/// Writes streamed members byte for byte as `JSONWriter` writes the tree they stand for,
/// handing its buffer on whenever it holds `chunk` bytes.
struct StreamedJSONWriter {
    let layout: JSONLayout
    let chunk: Int
    let sink: ([UInt8]) -> Void
    var out: [UInt8] = []

    init(layout: JSONLayout, chunk: Int, sink: @escaping ([UInt8]) -> Void) {
        self.layout = layout; self.chunk = chunk; self.sink = sink
        out.reserveCapacity(chunk + (1 << 16))
    }

    mutating func finish() { sink(out); out.removeAll() }

    mutating func object(_ members: [StreamedMember], level: Int) {
        if members.isEmpty { out.append(contentsOf: "{}".utf8); return }
        out.append(UInt8(ascii: "{"))
        for (i, m) in members.enumerated() {
            if i > 0 { separator() }
            newline(level + 1)
            JSONWriter.writeString(m.key, into: &out)
            JSONWriter.colon(layout, into: &out)
            switch m {
            case .value(_, let v):
                JSONWriter.write(v, layout: layout, level: level + 1, into: &out)
            case .array(_, let n, let element):
                array(n, level: level + 1) { w, e in JSONWriter.write(element(e), layout: w.layout, level: level + 2, into: &w.out) }
            case .object(_, let ms):
                object(ms, level: level + 1)
            case .objects(_, let n, let element):
                array(n, level: level + 1) { w, e in w.object(element(e), level: level + 2) }
            case .rows(_, let n, let write):
                var row = JSONRow(layout: layout, level: level + 2)
                array(n, level: level + 1) { w, e in
                    // The row writes into the document's buffer, moved in and out (never copied).
                    row.members = 0
                    swap(&row.out, &w.out)
                    write(e, &row)
                    row.finish()
                    swap(&row.out, &w.out)
                }
            }
            flushIfFull()
        }
        newline(level)
        out.append(UInt8(ascii: "}"))
    }

    private mutating func array(_ n: Int, level: Int, element: (inout StreamedJSONWriter, Int) -> Void) {
        if n == 0 { out.append(contentsOf: "[]".utf8); return }
        out.append(UInt8(ascii: "["))
        for e in 0..<n {
            if e > 0 { separator() }
            newline(level + 1)
            element(&self, e)
            flushIfFull()
        }
        newline(level)
        out.append(UInt8(ascii: "]"))
    }

    private mutating func separator() { JSONWriter.separator(layout, into: &out) }

    private mutating func newline(_ level: Int) { JSONWriter.newline(layout, level, into: &out) }

    private mutating func flushIfFull() {
        if out.count >= chunk { sink(out); out.removeAll(keepingCapacity: true) }
    }
}
