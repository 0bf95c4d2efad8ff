import QMP

/// What one record says, before it is written or after it is read.
public enum RecordBody: Sendable, Hashable {
    /// A message with the exact bytes that crossed the socket.
    case message(from: Direction, QMPMessage)
    /// A connection opened; `peer` names the other end (`unix:/path`, `tcp:1.2.3.4:5678`).
    case open(peer: String, info: JSONObject)
    /// A connection closed; `by` is `qemu`, `client` or `recorder`.
    case close(by: String, reason: String)
    /// A recorder or importer remark; `data` holds structured details.
    case note(text: String, data: JSONObject)

    public var kind: RecordKind {
        switch self {
        case .message(_, let m): return RecordKind(m.kind)
        case .open: return .open
        case .close: return .close
        case .note: return .note
        }
    }
}

/// Encodes records and headers as `.qmprec` lines (docs/FORMAT.md).
///
/// Envelope members always come first and in this order, so that the index can read them
/// without parsing the message: `t`, `c`, `from`, `k`, `n`; the message comes last.
/// A single-line JSON object is written verbatim as `msg` (its exact bytes are the bytes
/// of that member) with its surrounding whitespace in `pre`/`eol`; anything else is
/// kept exactly in `text` (UTF-8) or `b64`, with a compact `msg` added when it parsed.
public enum RecordEncoder {
    public static func headerLine(_ header: RecordingHeader) -> [UInt8] {
        var out = header.json.serializedBytes(.compact)
        out.append(0x0A)
        return out
    }

    public static func trailerLine(_ trailer: RecordingTrailer) -> [UInt8] {
        var out: [UInt8] = []
        out.append(contentsOf: "{\"t\":\(trailer.time),\"k\":\"end\",\"records\":\(trailer.records),\"reason\":".utf8)
        JSONWriter.writeString(trailer.reason, into: &out)
        if trailer.dropped > 0 { out.append(contentsOf: ",\"dropped\":\(trailer.dropped)".utf8) }
        out.append(contentsOf: "}\n".utf8)
        return out
    }

    /// Appends one record line (with its newline) to `out`.
    public static func encode(time: Int64, connection: UInt32, body: RecordBody, into out: inout [UInt8]) {
        out.append(contentsOf: "{\"t\":".utf8)
        appendInt(time, into: &out)
        out.append(contentsOf: ",\"c\":".utf8)
        appendInt(Int64(connection), into: &out)
        switch body {
        case .message(let from, let m):
            out.append(contentsOf: from == .qemu ? ",\"from\":\"qemu\"".utf8 : ",\"from\":\"client\"".utf8)
            out.append(contentsOf: ",\"k\":\"".utf8)
            out.append(contentsOf: m.kind.rawValue.utf8)
            out.append(UInt8(ascii: "\""))
            if let name = m.name {
                out.append(contentsOf: ",\"n\":".utf8)
                JSONWriter.writeString(name, into: &out)
            }
            encodeMessage(m, into: &out)
        case .open(let peer, let info):
            out.append(contentsOf: ",\"k\":\"open\",\"peer\":".utf8)
            JSONWriter.writeString(peer, into: &out)
            appendMembers(info, into: &out)
        case .close(let by, let reason):
            out.append(contentsOf: ",\"k\":\"close\",\"by\":".utf8)
            JSONWriter.writeString(by, into: &out)
            out.append(contentsOf: ",\"reason\":".utf8)
            JSONWriter.writeString(reason, into: &out)
        case .note(let text, let data):
            out.append(contentsOf: ",\"k\":\"note\",\"text\":".utf8)
            JSONWriter.writeString(text, into: &out)
            appendMembers(data, into: &out)
        }
        out.append(contentsOf: "}\n".utf8)
    }

    public static func encode(time: Int64, connection: UInt32, body: RecordBody) -> [UInt8] {
        var out: [UInt8] = []
        encode(time: time, connection: connection, body: body, into: &out)
        return out
    }

    /// Whether a message's JSON text can be stored verbatim as the `msg` member.
    public static func canInline(_ m: QMPMessage) -> Bool {
        guard let json = m.json, case .object = json, !m.dialect else { return false }
        let p = m.payload
        guard !p.isEmpty else { return false }
        // Verbatim only when the text is a single line: a raw CR or LF inside would break
        // the one-record-per-line rule (pretty JSON goes to `text`).
        for i in p where m.bytes[i] == 0x0A || m.bytes[i] == 0x0D { return false }
        return true
    }

    private static func encodeMessage(_ m: QMPMessage, into out: inout [UInt8]) {
        if canInline(m) {
            let pre = m.bytes[..<m.payload.lowerBound]
            let post = m.bytes[m.payload.upperBound...]
            if !pre.isEmpty {
                out.append(contentsOf: ",\"pre\":".utf8)
                JSONWriter.writeString(String(decoding: pre, as: UTF8.self), into: &out)
            }
            if !post.isEmpty {
                out.append(contentsOf: ",\"eol\":".utf8)
                if post.elementsEqual([0x0D, 0x0A]) {
                    out.append(contentsOf: "\"\\r\\n\"".utf8)
                } else {
                    JSONWriter.writeString(String(decoding: post, as: UTF8.self), into: &out)
                }
            }
            out.append(contentsOf: ",\"msg\":".utf8)
            out.append(contentsOf: m.bytes[m.payload])
            return
        }
        if let text = String(validating: m.bytes, as: UTF8.self) {
            out.append(contentsOf: ",\"text\":".utf8)
            JSONWriter.writeString(text, into: &out)
        } else {
            out.append(contentsOf: ",\"b64\":\"".utf8)
            out.append(contentsOf: Base64.encode(m.bytes).utf8)
            out.append(UInt8(ascii: "\""))
        }
        if let json = m.json {
            out.append(contentsOf: ",\"msg\":".utf8)
            JSONWriter.write(json, layout: .compact, level: 0, into: &out)
        }
    }

    private static func appendMembers(_ o: JSONObject, into out: inout [UInt8]) {
        for m in o.members {
            out.append(UInt8(ascii: ","))
            JSONWriter.writeString(m.key, into: &out)
            out.append(UInt8(ascii: ":"))
            JSONWriter.write(m.value, layout: .compact, level: 0, into: &out)
        }
    }

    @inline(__always) static func appendInt(_ v: Int64, into out: inout [UInt8]) {
        if v == 0 { out.append(0x30); return }
        var n = v.magnitude
        if v < 0 { out.append(UInt8(ascii: "-")) }
        var tmp: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                  UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var len = 0
        withUnsafeMutableBytes(of: &tmp) { buf in
            while n > 0 {
                buf[len] = UInt8(n % 10) + 0x30
                n /= 10
                len += 1
            }
            for i in stride(from: len - 1, through: 0, by: -1) { out.append(buf[i]) }
        }
    }
}
