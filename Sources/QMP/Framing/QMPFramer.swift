/// One unit cut from a QMP byte stream by `QMPFramer`.
///
/// Concatenating `bytes` of every frame, in order, gives back the stream exactly:
/// leading whitespace and the line terminator (`\r\n` from QEMU) belong to a frame.
public struct Frame: Sendable, Hashable {
    public enum Kind: String, Sendable {
        /// A balanced JSON text (`{...}` or `[...]`); it may still fail to parse.
        case json
        /// Bytes that cannot start a JSON text (resynchronised at the next line or `{`).
        case garbage
        /// A JSON text cut short: a new message began at the start of a line, or the stream ended.
        case truncated
        /// A piece of a message longer than the framer's limit; the rest follows in more pieces.
        case oversize
    }

    public var bytes: [UInt8]
    /// The range of `bytes` without surrounding whitespace.
    public var payload: Range<Int>
    public var kind: Kind

    public init(bytes: [UInt8], payload: Range<Int>, kind: Kind) {
        self.bytes = bytes; self.payload = payload; self.kind = kind
    }

    /// Interprets the frame as a QMP message (only `.json` frames can be real messages).
    public func message() -> QMPMessage {
        switch kind {
        case .json:
            return QMPMessage(bytes: bytes, payload: payload)
        case .garbage:
            return QMPMessage(bytes: bytes, payload: payload, other: "not JSON")
        case .truncated:
            return QMPMessage(bytes: bytes, payload: payload, other: "truncated JSON text")
        case .oversize:
            return QMPMessage(bytes: bytes, payload: payload, other: "message longer than the framing limit")
        }
    }
}

extension QMPMessage {
    init(bytes: [UInt8], payload: Range<Int>, other reason: String) {
        self.bytes = bytes
        self.payload = payload
        self.json = nil
        self.dialect = false
        self.body = .other(reason: reason, json: nil)
    }
}

/// Cuts a QMP byte stream, delivered in chunks of any size, into frames.
///
/// It handles what real peers send (docs/QEMU-FACTS.md, "Framing"): one compact JSON text per
/// line ended by `\r\n` or `\n`, pretty multi-line JSON (`-mon pretty=on`), several
/// texts on one line, no terminator at all, and garbage. It never gives up: after
/// garbage it resynchronises at the next line or `{`, and a JSON text left open when a
/// new one starts at the beginning of a line (where QEMU always starts its messages) is
/// reported as truncated. Memory is bounded by `limit`: a longer message is passed on in
/// `.oversize` pieces until the next newline, so nothing is dropped.
///
/// Example: feeding `{"return": {}}\r\n{"event"` then `: "STOP"}\n` yields two `.json` frames.
public struct QMPFramer: Sendable {
    public static let defaultLimit = 16 * 1024 * 1024

    public let limit: Int

    private enum State: Sendable {
        case idle
        case json
        case trailing
        case garbage
        case skipping
    }

    private var state: State = .idle
    private var buf: [UInt8] = []
    private var payloadStart = 0
    private var payloadEnd = 0
    private var depth = 0
    private var inString = false
    /// The quote that opened the current string: `"`, or `'` (QEMU's parser also takes
    /// single-quoted strings, docs/QEMU-FACTS.md, "QEMU's JSON parser").
    private var quote: UInt8 = 0x22
    private var escaped = false
    private var atLineStart = true

    public init(limit: Int = QMPFramer.defaultLimit) {
        self.limit = max(limit, 16)
    }

    /// Bytes held for a frame still in progress.
    public var pendingByteCount: Int { buf.count }

    /// Feeds a chunk; returns the frames it completed.
    public mutating func push<C: Collection>(_ chunk: C) -> [Frame] where C.Element == UInt8 {
        var out: [Frame] = []
        for c in chunk { feed(c, into: &out) }
        return out
    }

    /// Emits a message whose JSON text is complete but whose terminator has not arrived yet.
    /// A live recorder calls this when the socket has no more data ready, so a client that
    /// sends no newline is not held back; the late terminator then leads the next frame.
    public mutating func drain() -> [Frame] {
        var out: [Frame] = []
        if state == .trailing { emit(.json, into: &out) }
        return out
    }

    /// End of stream: whatever is held becomes a frame.
    public mutating func finish() -> [Frame] {
        var out: [Frame] = []
        switch state {
        case .trailing: emit(.json, into: &out)
        case .json: payloadEnd = buf.count; emit(.truncated, into: &out)
        case .garbage, .skipping: payloadEnd = buf.count; emit(state == .garbage ? .garbage : .oversize, into: &out)
        case .idle:
            if !buf.isEmpty { payloadStart = buf.count; payloadEnd = buf.count; emit(.garbage, into: &out) }
        }
        return out
    }

    private mutating func emit(_ kind: Frame.Kind, into out: inout [Frame]) {
        var lo = min(payloadStart, buf.count)
        var hi = max(lo, min(payloadEnd, buf.count))
        if kind != .json {
            while lo < hi, isJSONSpace(buf[lo]) { lo += 1 }
            while hi > lo, isJSONSpace(buf[hi - 1]) { hi -= 1 }
        }
        out.append(Frame(bytes: buf, payload: lo..<hi, kind: kind))
        buf.removeAll(keepingCapacity: true)
        if buf.capacity > 1 << 20 { buf = [] }
        state = .idle
        payloadStart = 0
        payloadEnd = 0
        depth = 0
        inString = false
        escaped = false
    }

    private mutating func startJSON(_ c: UInt8) {
        state = .json
        payloadStart = buf.count
        buf.append(c)
        depth = 1
        inString = false
        escaped = false
    }

    private mutating func feed(_ c: UInt8, into out: inout [Frame]) {
        defer { atLineStart = (c == 0x0A) }
        switch state {
        case .idle:
            if isJSONSpace(c) {
                buf.append(c)
                if buf.count >= limit { payloadStart = buf.count; payloadEnd = buf.count; emit(.garbage, into: &out) }
            } else if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
                startJSON(c)
            } else {
                state = .garbage
                payloadStart = buf.count
                buf.append(c)
                if c == 0x0A { payloadEnd = buf.count; emit(.garbage, into: &out) }
            }

        case .json:
            if inString {
                buf.append(c)
                if escaped {
                    escaped = false
                } else if c == UInt8(ascii: "\\") {
                    escaped = true
                } else if c == quote {
                    inString = false
                } else if c == 0x0A {
                    // A raw newline cannot be inside a JSON string: the text is broken.
                    // Leave string mode so that a new message at the next line is seen.
                    inString = false
                }
            } else if atLineStart && c == UInt8(ascii: "{") {
                // QEMU starts every message at the beginning of a line; an unfinished text
                // before it was cut short (e.g. the peer restarted mid-write).
                payloadEnd = buf.count
                emit(.truncated, into: &out)
                startJSON(c)
            } else {
                buf.append(c)
                switch c {
                case UInt8(ascii: "\""), UInt8(ascii: "'"):
                    inString = true
                    quote = c
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 {
                        payloadEnd = buf.count
                        state = .trailing
                        return
                    }
                default: break
                }
            }
            if buf.count >= limit {
                payloadEnd = buf.count
                emit(.oversize, into: &out)
                state = .skipping
            }

        case .trailing:
            if c == 0x20 || c == 0x09 || c == 0x0D {
                buf.append(c)
                // Whitespace after a message is bounded too.
                if buf.count >= limit { emit(.json, into: &out) }
            } else if c == 0x0A {
                buf.append(c)
                emit(.json, into: &out)
            } else {
                emit(.json, into: &out)
                feed(c, into: &out)
            }

        case .garbage:
            if c == UInt8(ascii: "{") {
                payloadEnd = buf.count
                emit(.garbage, into: &out)
                startJSON(c)
                return
            }
            buf.append(c)
            if c == 0x0A {
                payloadEnd = buf.count - 1
                emit(.garbage, into: &out)
            } else if buf.count >= limit {
                payloadEnd = buf.count
                emit(.garbage, into: &out)
            }

        case .skipping:
            buf.append(c)
            if c == 0x0A || buf.count >= limit {
                payloadEnd = buf.count
                emit(.oversize, into: &out)
                if c != 0x0A { state = .skipping }
            }
        }
    }
}
