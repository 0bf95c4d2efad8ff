import QMP

/// A record decoded in full: envelope, and for messages the exact bytes and their meaning.
public struct Record: Sendable {
    /// Position in the recording (0-based), the `#N` of the time syntax.
    public var index: Int
    /// Line in the file (1-based), for error messages.
    public var line: Int
    /// Nanoseconds since the recording started (monotonic clock).
    public var time: Int64
    public var connection: UInt32
    public var body: RecordBody
    /// Envelope members other than the message (`peer`, `reason`, `text`, labels...).
    public var envelope: JSONObject

    public var kind: RecordKind { body.kind }
    public var message: QMPMessage? {
        if case .message(_, let m) = body { return m }
        return nil
    }
    public var direction: Direction? {
        if case .message(let d, _) = body { return d }
        return nil
    }
    public var name: String? { message?.name }
}

/// A record line that could not be decoded, naming the file and line.
public struct RecordDecodeError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let line: Int
    public let reason: String
    public var description: String { "\(path):\(line): \(reason)" }
}

extension Recording {
    /// Decodes record `i` in full (parses its message).
    public func record(at i: Int) throws(RecordDecodeError) -> Record {
        let buf = lineBytes(i)
        let lineNo = line(i)
        func fail(_ reason: String) -> RecordDecodeError { RecordDecodeError(path: path, line: lineNo, reason: reason) }
        guard let members = JSONScan.members(buf) else { throw fail("record is not a well-formed JSON object") }
        var envelope = JSONObject()
        var msgRange: Range<Int>?
        var text: String?
        var b64: String?
        var pre: [UInt8] = []
        var eol: [UInt8] = []
        for (key, range) in members {
            switch key {
            case "msg":
                msgRange = range
            default:
                let v: JSONValue
                do {
                    v = try JSONParser.parse(UnsafeBufferPointer(rebasing: buf[range]))
                } catch {
                    throw fail("member \"\(key)\": \(error)")
                }
                switch key {
                case "text": text = v.stringValue
                case "b64": b64 = v.stringValue
                case "pre": pre = Array((v.stringValue ?? "").utf8)
                case "eol": eol = Array((v.stringValue ?? "").utf8)
                default: envelope.members.append(.init(key: key, value: v))
                }
            }
        }
        let conn = connection(i)
        let t = time(i)
        let body: RecordBody
        switch kind(i) {
        case .open:
            var info = envelope
            for k in ["t", "c", "k", "peer"] { info[k] = nil }
            body = .open(peer: envelope["peer"]?.stringValue ?? "", info: info)
        case .close:
            body = .close(by: envelope["by"]?.stringValue ?? "", reason: envelope["reason"]?.stringValue ?? "")
        case .note:
            var data = envelope
            for k in ["t", "c", "k"] { data[k] = nil }
            body = .note(text: text ?? "", data: data)
        default:
            guard let dir = direction(i) else { throw fail("message record without direction") }
            let message: QMPMessage
            if let text {
                message = QMPMessage(bytes: Array(text.utf8))
            } else if let b64 {
                guard let bytes = Base64.decode(b64) else { throw fail("\"b64\" is not valid base64") }
                message = QMPMessage(bytes: bytes)
            } else if let r = msgRange {
                let bytes = pre + Array(buf[r]) + eol
                message = QMPMessage(bytes: bytes, payload: pre.count..<(pre.count + r.count))
            } else {
                throw fail("message record without \"msg\", \"text\" or \"b64\"")
            }
            body = .message(from: dir, message)
        }
        return Record(index: i, line: lineNo, time: t, connection: conn, body: body, envelope: envelope)
    }

    /// The exact bytes of message record `i` as they crossed the socket (nil for non-messages).
    public func rawBytes(_ i: Int) throws(RecordDecodeError) -> [UInt8]? {
        guard kind(i).isMessage else { return nil }
        return try record(at: i).message?.bytes
    }

    /// QEMU's timestamp of event record `i` in µs since the epoch, read straight from the
    /// bytes when the event is in QEMU's own layout, else by decoding the record.
    public func eventTimestampMicros(_ i: Int) -> Int64? {
        let buf = lineBytes(i)
        if let v = Recording.scanTimestamp(buf) { return v }
        guard let r = try? record(at: i), case .event(let e)? = r.message?.body else { return nil }
        return e.timestamp?.totalMicroseconds
    }

    /// Finds `"timestamp": {"seconds": S, "microseconds": U}` inside the `msg` member.
    static func scanTimestamp(_ buf: UnsafeBufferPointer<UInt8>) -> Int64? {
        guard let base = buf.baseAddress else { return nil }
        let n = buf.count
        func find(_ s: StaticString, from: Int) -> Int? {
            let m = s.utf8CodeUnitCount
            var i = from
            while i + m <= n {
                guard let hit = memchr(base + i, Int32(s.utf8Start[0]), n - i - m + 1) else { return nil }
                let j = UnsafeRawPointer(hit) - UnsafeRawPointer(base)
                if memcmp(base + j, s.utf8Start, m) == 0 { return j + m }
                i = j + 1
            }
            return nil
        }
        func startsWith(_ s: StaticString, at i: Int) -> Bool {
            i + s.utf8CodeUnitCount <= n && memcmp(base + i, s.utf8Start, s.utf8CodeUnitCount) == 0
        }
        guard let msg = find(",\"msg\":", from: 0) else { return nil }
        // QEMU writes the timestamp first: {"timestamp": {"seconds": S, "microseconds": U}, ...
        let ts: Int
        if startsWith("{\"timestamp\"", at: msg) {
            ts = msg + 12
        } else if let t = find("\"timestamp\"", from: msg) {
            ts = t
        } else {
            return nil
        }
        func number(after key: StaticString, from: Int) -> (Int64, Int)? {
            guard var i = find(key, from: from) else { return nil }
            while i < n, buf[i] == 0x20 || buf[i] == 0x3A { i += 1 }
            var v: Int64 = 0
            let s = i
            while i < n, buf[i] &- 0x30 < 10 { v = v &* 10 &+ Int64(buf[i] &- 0x30); i += 1 }
            return i > s && i - s < 19 ? (v, i) : nil
        }
        guard let (sec, after) = number(after: "\"seconds\"", from: ts), after - ts < 40,
              let (us, _) = number(after: "\"microseconds\"", from: after)
        else { return nil }
        return sec &* 1_000_000 &+ us
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
