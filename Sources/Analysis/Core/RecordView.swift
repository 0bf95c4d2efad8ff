import QMP
import Recording

/// Lazy, allocation-light access to members of one record's message, read straight from
/// the line's bytes (the `msg` member) without decoding the whole record; `record()` decodes
/// in full when a caller needs more. Paths start inside `msg`: `view.int("data", "actual")`.
///
/// Example: for `{"t":..,"msg":{"event":"BALLOON_CHANGE","data":{"actual":1073741824}}}`,
/// `int("data", "actual")` is 1073741824.
public struct RecordView: @unchecked Sendable {
    public let recording: Recording
    public let index: Int
    /// For a view of a nested object (`object("data", "client")`): its byte range in the
    /// line, and its path from `msg` (for lines without `msg`, which decode in full).
    private var base: Range<Int>?
    private var prefix: [StaticString] = []

    public init(recording: Recording, index: Int) {
        self.recording = recording
        self.index = index
    }

    /// A view of the object at `path`, so that several members of it are read without
    /// finding it again each time: `let c = view.object("data", "client")`, then
    /// `c?.string("host")`, `c?.string("port")`. `nil` when there is no object there.
    public func object(_ path: StaticString...) -> RecordView? {
        let line = recording.lineBytes(index)
        var v = self
        if let b = base ?? JSONScan.member(line, in: 0..<line.count, key: "msg") {
            var r = b
            for key in path {
                guard let next = JSONScan.member(line, in: r, key: key) else { return nil }
                r = next
            }
            guard r.lowerBound < r.upperBound, line[r.lowerBound] == UInt8(ascii: "{") else { return nil }
            v.base = r
        } else {
            guard fallback(prefix + path, { b in b.first == UInt8(ascii: "{") ? true : nil }) == true else { return nil }
            v.prefix = prefix + path
        }
        return v
    }

    public var qemuMicros: Int64? { recording.eventTimestampMicros(index) }

    /// Full decode (about 3 µs); `nil` when the record is damaged.
    public func record() -> Record? { try? recording.record(at: index) }

    /// The raw bytes of the value at `path` inside `msg`, passed to `body`.
    @inline(__always)
    func withValue<T>(_ path: [StaticString], _ body: (UnsafeBufferPointer<UInt8>) -> T?) -> T? {
        withValue(path.first, path.count > 1 ? path[1] : nil, Array(path.dropFirst(2)), body)
    }

    /// Lines without `msg` (text/b64 only) go through a full decode.
    private func fallback<T>(_ path: [StaticString], _ body: (UnsafeBufferPointer<UInt8>) -> T?) -> T? {
        guard let json = record()?.message?.json else { return nil }
        var v: JSONValue? = json
        for key in path { v = v?[key.description] }
        guard let found = v else { return nil }
        let bytes = found.serializedBytes()
        return bytes.withUnsafeBufferPointer { body($0) }
    }

    /// The value at the path `k1`, `k2`, `more` (keys given apart, so that the paths of one
    /// or two keys the analyses read on every record make no array; `k1` nil: the object
    /// itself). Only the starts of `msg` and of the objects on the path are found: what ends
    /// them is never looked for (`JSONScan.memberStart`), only the value's own end.
    @inline(__always)
    func withValue<T>(_ k1: StaticString?, _ k2: StaticString?, _ more: [StaticString],
                      _ body: (UnsafeBufferPointer<UInt8>) -> T?) -> T? {
        let line = recording.lineBytes(index)
        guard let m = base?.lowerBound ?? JSONScan.memberStart(line, in: 0..<line.count, key: "msg") else {
            return fallback(prefix + [k1, k2].compactMap { $0 } + more, body)
        }
        let limit = base?.upperBound ?? line.count
        var at = m
        @inline(__always) func enter(_ key: StaticString) -> Bool {
            guard let next = JSONScan.memberStart(line, in: at..<limit, key: key) else { return false }
            at = next
            return true
        }
        if let k1 {
            guard enter(k1) else { return nil }
            if let k2 { guard enter(k2) else { return nil } }
        }
        for key in more { guard enter(key) else { return nil } }
        guard let end = JSONScan.skipValue(line, at), end <= limit else { return nil }
        return body(UnsafeBufferPointer(rebasing: line[at..<end]))
    }

    public func int(_ key: StaticString) -> Int64? { withValue(key, nil, []) { RawScan.int64($0) } }
    public func int(_ k1: StaticString, _ k2: StaticString) -> Int64? { withValue(k1, k2, []) { RawScan.int64($0) } }
    public func string(_ key: StaticString) -> String? { withValue(key, nil, []) { RawScan.string($0) } }
    public func string(_ k1: StaticString, _ k2: StaticString) -> String? { withValue(k1, k2, []) { RawScan.string($0) } }

    public func value(_ path: StaticString...) -> JSONValue? {
        withValue(path) { try? JSONParser.parse($0) }
    }

    public func int(_ k1: StaticString, _ k2: StaticString, _ k3: StaticString, _ more: StaticString...) -> Int64? {
        withValue([k1, k2, k3] + more) { RawScan.int64($0) }
    }

    public func double(_ path: StaticString...) -> Double? {
        withValue(path) { RawScan.double($0) }
    }

    public func string(_ k1: StaticString, _ k2: StaticString, _ k3: StaticString, _ more: StaticString...) -> String? {
        withValue([k1, k2, k3] + more) { RawScan.string($0) }
    }

    public func bool(_ path: StaticString...) -> Bool? {
        withValue(path) { b -> Bool? in
            if RawScan.equals(b, "true") { return true }
            if RawScan.equals(b, "false") { return false }
            return nil
        }
    }

    /// Whether the message has a member at `path`.
    public func has(_ path: StaticString...) -> Bool {
        withValue(path) { _ in true } ?? false
    }

    /// The identity of the message's `id` (0 when it has none): read from the end of the
    /// line in the common shape (`LineIDKey`), else by walking the message's members.
    func idKey() -> IDKey {
        LineIDKey.fast(recording.lineBytes(index)) ?? identityKey("id")
    }

    /// A key identifying the value at `path` (equal JSON values, equal keys; `.none` when absent).
    func identityKey(_ path: StaticString...) -> IDKey {
        withValue(path) { IDKey(bytes: $0) } ?? .none
    }
}

/// Byte-level helpers over JSON text that the index and `JSONScan` already delimit.
enum RawScan {
    static func int64(_ b: UnsafeBufferPointer<UInt8>) -> Int64? {
        guard !b.isEmpty else { return nil }
        var i = 0
        var neg = false
        if b[0] == UInt8(ascii: "-") { neg = true; i = 1 }
        guard i < b.count else { return nil }
        var v: Int64 = 0
        while i < b.count {
            let c = b[i]
            guard c >= 0x30 && c <= 0x39 else {
                // 1e3, 2.0: let the number type decide.
                if case .number(let n)? = try? JSONParser.parse(b) { return n.int64 }
                return nil
            }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int64(c - 0x30))
            if o1 || o2 { return nil }
            v = a
            i += 1
        }
        return neg ? -v : v
    }

    static func double(_ b: UnsafeBufferPointer<UInt8>) -> Double? {
        if let i = int64(b) { return Double(i) }
        return Double(String(decoding: b, as: UTF8.self))
    }

    static func string(_ b: UnsafeBufferPointer<UInt8>) -> String? {
        guard b.count >= 2, b[0] == UInt8(ascii: "\""), b[b.count - 1] == UInt8(ascii: "\"") else { return nil }
        let inner = UnsafeBufferPointer(rebasing: b[1..<(b.count - 1)])
        if !inner.contains(UInt8(ascii: "\\")) { return String(decoding: inner, as: UTF8.self) }
        return (try? JSONParser.parse(b))?.stringValue
    }

    static func equals(_ b: UnsafeBufferPointer<UInt8>, _ s: StaticString) -> Bool {
        guard b.count == s.utf8CodeUnitCount else { return false }
        for j in 0..<b.count where b[j] != s.utf8Start[j] { return false }
        return true
    }
}
