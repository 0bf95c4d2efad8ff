import QMP

// Helpers shared by the line-oriented importers (transcripts, shell sessions, qmp-shell,
// iotests): lines, bracket balancing across lines, values in JSON / QEMU's dialect /
// Python literal syntax, and messages rebuilt when the source's text is not the wire's.

/// One line of a source, without its `\n` (and without a `\r` before it).
struct SourceLine {
    /// 1-based.
    var number: Int
    var bytes: ArraySlice<UInt8>

    var text: String { String(decoding: bytes, as: UTF8.self) }

    /// The line without leading and trailing blanks (spaces, tabs).
    var trimmed: ArraySlice<UInt8> { TextBytes.trim(bytes) }
    var isBlank: Bool { trimmed.isEmpty }

    static func split(_ b: [UInt8]) -> [SourceLine] {
        var lines: [SourceLine] = []
        var start = 0
        var n = 0
        while start < b.count {
            n += 1
            var end = start
            while end < b.count, b[end] != 0x0A { end += 1 }
            var hi = end
            if hi > start, b[hi - 1] == 0x0D { hi -= 1 }
            lines.append(SourceLine(number: n, bytes: b[start..<hi]))
            start = end + 1
        }
        return lines
    }
}

enum TextBytes {
    static func isBlank(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0D || c == 0x0C }

    static func trim(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var lo = s.startIndex, hi = s.endIndex
        while lo < hi, isBlank(s[lo]) { lo += 1 }
        while hi > lo, isBlank(s[hi - 1]) { hi -= 1 }
        return s[lo..<hi]
    }

    static func trimLeft(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var lo = s.startIndex
        while lo < s.endIndex, isBlank(s[lo]) { lo += 1 }
        return s[lo...]
    }

    static func trimRight(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var hi = s.endIndex
        while hi > s.startIndex, isBlank(s[hi - 1]) { hi -= 1 }
        return s[s.startIndex..<hi]
    }

    static func hasPrefix(_ s: ArraySlice<UInt8>, _ p: String) -> Bool {
        let u = Array(p.utf8)
        guard s.count >= u.count else { return false }
        return s.prefix(u.count).elementsEqual(u)
    }

    static func equals(_ s: ArraySlice<UInt8>, _ p: String) -> Bool { s.elementsEqual(p.utf8) }

    static func find(_ needle: String, in s: ArraySlice<UInt8>) -> Int? {
        let u = Array(needle.utf8)
        guard let first = u.first, s.count >= u.count else { return nil }
        var i = s.startIndex
        while i + u.count <= s.endIndex {
            if s[i] == first, s[i..<(i + u.count)].elementsEqual(u) { return i }
            i += 1
        }
        return nil
    }

    static func contains(_ s: ArraySlice<UInt8>, _ needle: String) -> Bool { find(needle, in: s) != nil }
}

/// Tracks `{}`/`[]` nesting through text that may be JSON, QEMU's single-quoted dialect or
/// Python literals: strings in either quote, backslash escapes inside them. Fed piece by
/// piece (line by line), it says when the value that started at the first bracket closes.
struct BracketScanner {
    private(set) var depth = 0
    private var quote: UInt8?
    private var escaped = false
    private(set) var started = false

    /// Feeds bytes; returns the index just after the bracket that closes the outermost
    /// value, or nil when it is still open at the end of `s`.
    mutating func feed(_ s: ArraySlice<UInt8>) -> Int? {
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            if let q = quote {
                if escaped { escaped = false }
                else if c == UInt8(ascii: "\\") { escaped = true }
                else if c == q { quote = nil }
            } else {
                switch c {
                case UInt8(ascii: "\""), UInt8(ascii: "'"):
                    if started { quote = c }
                case UInt8(ascii: "{"), UInt8(ascii: "["), UInt8(ascii: "("):
                    if c != UInt8(ascii: "(") || started {
                        depth += 1
                        started = true
                    }
                case UInt8(ascii: "}"), UInt8(ascii: "]"), UInt8(ascii: ")"):
                    if started {
                        depth -= 1
                        if depth == 0 { return i + 1 }
                    }
                default:
                    break
                }
            }
            i += 1
        }
        return nil
    }

    /// Inside a string at the end of what was fed.
    var inString: Bool { quote != nil }

    /// The end of the bracketed value starting at `from` within `s`, or nil.
    static func valueEnd(_ s: ArraySlice<UInt8>, from: Int) -> Int? {
        var scanner = BracketScanner()
        return scanner.feed(s[from...])
    }
}

/// How a value's text was written.
enum ValueSyntax: Sendable {
    /// RFC 8259 JSON: the text can be kept as the message's bytes.
    case json
    /// QEMU's input dialect (single-quoted strings): QEMU reads it, so the text can be kept.
    case qemuDialect
    /// Python literal syntax (`True`, `None`, `u'...'`): only a printout, rebuilt as JSON.
    case python
}

enum ValueParser {
    /// Parses a value written as JSON, in QEMU's dialect, or as a Python literal.
    static func parse(_ text: ArraySlice<UInt8>) -> (value: JSONValue, syntax: ValueSyntax)? {
        let bytes = Array(text)
        if let v = try? JSONParser.parse(bytes) { return (v, .json) }
        if let d = bytes.withUnsafeBufferPointer({ QEMUDialect.parse($0) }) { return (d.value, .qemuDialect) }
        if let v = PythonLiteral.parse(bytes) { return (v, .python) }
        return nil
    }
}

/// A reader of the Python literals that `print(dict)` and `pprint` write: dicts, lists,
/// tuples, strings in either quote with Python escapes and `u`/`b`/`r` prefixes, adjacent
/// strings (pprint splits long ones), ints, floats, `True`/`False`/`None` (and JSON's
/// `true`/`false`/`null`, which qmp-shell also accepts). Dict order is kept.
enum PythonLiteral {
    static func parse(_ b: [UInt8]) -> JSONValue? {
        var p = Parser(b: b)
        p.skipSpace()
        guard let v = p.value(depth: 0) else { return nil }
        p.skipSpace()
        return p.i == b.count ? v : nil
    }

    private struct Parser {
        let b: [UInt8]
        var i = 0

        mutating func skipSpace() {
            while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
        }

        func peek() -> UInt8? { i < b.count ? b[i] : nil }

        mutating func value(depth: Int) -> JSONValue? {
            guard depth < 256, let c = peek() else { return nil }
            switch c {
            case UInt8(ascii: "{"): return dict(depth: depth)
            case UInt8(ascii: "["): return list(close: UInt8(ascii: "]"), depth: depth)
            case UInt8(ascii: "("):
                // A tuple, or pprint's parenthesised run of adjacent strings.
                let save = i
                i += 1
                skipSpace()
                if let s = strings(), peek() == UInt8(ascii: ")") {
                    i += 1
                    return .string(s)
                }
                i = save
                return list(close: UInt8(ascii: ")"), depth: depth)
            case UInt8(ascii: "'"), UInt8(ascii: "\""), UInt8(ascii: "u"), UInt8(ascii: "U"), UInt8(ascii: "b"),
                 UInt8(ascii: "B"), UInt8(ascii: "r"), UInt8(ascii: "R"):
                if let s = strings() { return .string(s) }
                return word()
            default:
                return word()
            }
        }

        mutating func dict(depth: Int) -> JSONValue? {
            i += 1
            var o = JSONObject()
            skipSpace()
            if peek() == UInt8(ascii: "}") { i += 1; return .object(o) }
            while true {
                skipSpace()
                guard let key = value(depth: depth + 1) else { return nil }
                let k: String
                switch key {
                case .string(let s): k = s
                case .number(let n): k = n.text
                default: return nil
                }
                skipSpace()
                guard peek() == UInt8(ascii: ":") else { return nil }
                i += 1
                skipSpace()
                guard let v = value(depth: depth + 1) else { return nil }
                o.members.append(JSONObject.Member(key: k, value: v))
                skipSpace()
                if peek() == UInt8(ascii: ",") {
                    i += 1
                    skipSpace()
                    if peek() == UInt8(ascii: "}") { i += 1; return .object(o) }
                    continue
                }
                guard peek() == UInt8(ascii: "}") else { return nil }
                i += 1
                return .object(o)
            }
        }

        mutating func list(close: UInt8, depth: Int) -> JSONValue? {
            i += 1
            var a: [JSONValue] = []
            skipSpace()
            if peek() == close { i += 1; return .array(a) }
            while true {
                skipSpace()
                guard let v = value(depth: depth + 1) else { return nil }
                a.append(v)
                skipSpace()
                if peek() == UInt8(ascii: ",") {
                    i += 1
                    skipSpace()
                    if peek() == close { i += 1; return .array(a) }
                    continue
                }
                guard peek() == close else { return nil }
                i += 1
                return .array(a)
            }
        }

        /// One string literal or several adjacent ones (concatenated), or nil.
        mutating func strings() -> String? {
            guard var s = string() else { return nil }
            while true {
                let save = i
                skipSpace()
                if let next = string() { s += next } else { i = save; return s }
            }
        }

        mutating func string() -> String? {
            let save = i
            var raw = false
            while let c = peek(), "uUbBrR".utf8.contains(c) {
                if c == UInt8(ascii: "r") || c == UInt8(ascii: "R") { raw = true }
                i += 1
                if i - save > 2 { break }
            }
            guard let q = peek(), q == UInt8(ascii: "'") || q == UInt8(ascii: "\"") else { i = save; return nil }
            i += 1
            var out: [UInt8] = []
            while i < b.count {
                let c = b[i]
                if c == q { i += 1; return String(decoding: out, as: UTF8.self) }
                if c == 0x0A { break }
                if c == UInt8(ascii: "\\"), i + 1 < b.count {
                    let e = b[i + 1]
                    if raw { out.append(c); out.append(e); i += 2; continue }
                    i += 2
                    switch e {
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "v"): out.append(0x0B)
                    case UInt8(ascii: "a"): out.append(0x07)
                    case 0x0A: break
                    case UInt8(ascii: "x"): guard appendHex(2, into: &out) else { i = save; return nil }
                    case UInt8(ascii: "u"): guard appendHex(4, into: &out) else { i = save; return nil }
                    case UInt8(ascii: "U"): guard appendHex(8, into: &out) else { i = save; return nil }
                    case UInt8(ascii: "0")...UInt8(ascii: "7"):
                        var v = UInt32(e - 0x30)
                        var n = 1
                        while n < 3, i < b.count, b[i] >= 0x30, b[i] <= 0x37 { v = v * 8 + UInt32(b[i] - 0x30); i += 1; n += 1 }
                        appendScalar(v, into: &out)
                    default: out.append(e)  // \\ \' \" and unknown escapes keep the character
                    }
                    continue
                }
                out.append(c)
                i += 1
            }
            i = save
            return nil
        }

        mutating func appendHex(_ n: Int, into out: inout [UInt8]) -> Bool {
            guard i + n <= b.count else { return false }
            var v: UInt32 = 0
            for k in 0..<n {
                guard let d = hexValue(b[i + k]) else { return false }
                v = v * 16 + UInt32(d)
            }
            i += n
            appendScalar(v, into: &out)
            return true
        }

        func appendScalar(_ v: UInt32, into out: inout [UInt8]) {
            let scalar = Unicode.Scalar(v) ?? "\u{FFFD}"
            out.append(contentsOf: String(Character(scalar)).utf8)
        }

        func hexValue(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - 0x30
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - 0x61 + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - 0x41 + 10
            default: return nil
            }
        }

        /// Keywords and numbers.
        mutating func word() -> JSONValue? {
            let s = i
            while i < b.count {
                let c = b[i]
                let ok = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                    || c == UInt8(ascii: "-") || c == UInt8(ascii: "+") || c == UInt8(ascii: ".") || c == UInt8(ascii: "_")
                guard ok else { break }
                i += 1
            }
            let w = String(decoding: b[s..<i], as: UTF8.self)
            switch w {
            case "True", "true": return .bool(true)
            case "False", "false": return .bool(false)
            case "None", "null": return .null
            default: break
            }
            // A number JSON can hold as it is (Python's repr of ints and floats is valid JSON
            // except for a trailing 'L' of Python 2 longs and a leading '+').
            var t = w
            if t.hasSuffix("L") { t.removeLast() }
            if t.hasPrefix("+") { t.removeFirst() }
            guard !t.isEmpty, let v = try? JSONParser.parse(t), case .number = v else { i = s; return nil }
            return v
        }
    }
}

// MARK: - Records collected before their times are known

/// A record gathered by a line-oriented importer; `SourceClock` gives it its time.
struct PendingRecord {
    enum Body {
        case message(QMPMessage, Direction)
        case note(String, JSONObject)
        case close(by: String, reason: String)
    }

    var line: Int
    var connection: UInt32
    var body: Body
}

/// Times for sources without a clock of their own.
enum SourceClock {
    enum Timing {
        /// t=0 is the first event's timestamp; every other record takes the time of the record before.
        case eventTimestamps(firstMicros: Int64, events: Int)
        /// Messages `step` apart in source order.
        case synthetic(step: Int64)
    }

    static let syntheticStep: Int64 = 1_000_000

    /// An event timestamp that is a real clock reading (QEMU writes -1 when its clock read failed).
    static func realTimestamp(_ m: QMPMessage) -> Int64? {
        guard case .event(let e) = m.body, let ts = e.timestamp, ts.seconds > 0, ts.microseconds >= 0 else { return nil }
        return ts.totalMicroseconds
    }

    /// Gives every record its time and adds it to the builder. Event timestamps are used
    /// when the source has any; otherwise messages are `syntheticStep` apart.
    @discardableResult
    static func emit(_ items: [PendingRecord], into b: inout ImportBuilder, peer: (UInt32) -> String) -> Timing {
        var first: Int64?
        var events = 0
        for it in items {
            if case .message(let m, _) = it.body, let us = realTimestamp(m) {
                if first == nil { first = us }
                events += 1
            }
        }
        var time: Int64 = 0
        var index: Int64 = 0
        for it in items {
            switch it.body {
            case .message(let m, let from):
                if let base = first {
                    if let us = realTimestamp(m) {
                        let t = QMPLinesImporter.nanos(fromMicros: us, since: base)
                        if t < time {
                            b.warn(line: it.line, "event \(m.name ?? "?")'s timestamp is \(DurationFormat.short(time.subtractingSaturating(t))) before the previous record's time; kept at that time")
                        } else {
                            time = t
                        }
                    }
                } else {
                    time = index * syntheticStep
                }
                index += 1
                b.message(m, from: from, connection: it.connection, time: time, peer: peer(it.connection))
            case .note(let text, let data):
                b.note(text, data: data, connection: it.connection, time: time)
            case .close(let by, let reason):
                b.close(it.connection, by: by, reason: reason, time: time)
            }
        }
        if let first { return .eventTimestamps(firstMicros: first, events: events) }
        return .synthetic(step: syntheticStep)
    }

    /// The note that says where times came from.
    static func note(_ timing: Timing, source: String) -> (String, JSONObject) {
        switch timing {
        case .eventTimestamps(_, let n):
            return ("imported from \(source): times come from QEMU's event timestamps; other messages take the time of the record before them",
                    JSONObject(["timed_events": .int(n)]))
        case .synthetic(let step):
            return ("imported from \(source): the source has no clock, so times are synthetic: messages are \(DurationFormat.short(step)) apart in the order of the source",
                    JSONObject(["synthetic_step_ns": .int(step)]))
        }
    }

    static func startMicros(_ timing: Timing) -> Int64 {
        if case .eventTimestamps(let first, _) = timing { return first }
        return 0
    }
}

// MARK: - Messages

enum ImportMessage {
    /// QEMU ends every message with CR LF (docs/QEMU-FACTS.md, "Framing"); clients such as
    /// socat, nc and qemu.qmp end theirs with LF.
    static func lineEnd(_ from: Direction) -> [UInt8] { from == .qemu ? [0x0D, 0x0A] : [0x0A] }

    /// A message whose text is kept as it is in the source (JSON or QEMU's dialect), with
    /// the line end of the side that sent it.
    static func kept(_ text: ArraySlice<UInt8>, from: Direction) -> QMPMessage {
        let bytes = Array(text) + lineEnd(from)
        return QMPMessage(bytes: bytes, payload: 0..<text.count)
    }

    /// A message rebuilt from a value: QEMU's own layout for QEMU's messages
    /// (docs/QEMU-FACTS.md, "Framing"), compact JSON for the client's (what qemu.qmp sends).
    static func rebuilt(_ v: JSONValue, from: Direction) -> QMPMessage {
        let text = v.serializedBytes(from == .qemu ? .qemu : .compact)
        return QMPMessage(json: v, bytes: text + lineEnd(from), payload: 0..<text.count)
    }

    /// The side that sends a message of this kind; nil for `other`.
    static func sender(_ v: JSONValue) -> Direction? {
        switch QMPMessage.classify(v) {
        case .command: return .client
        case .greeting, .return, .error, .event: return .qemu
        case .other: return nil
        }
    }
}
