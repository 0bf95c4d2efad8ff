import QMP
import Recording
import Synchronization

/// `serve --record-missing`: a real QEMU answers the commands the recording cannot (no
/// recorded call with that name and those arguments), the client gets QEMU's answer, and
/// every such exchange is kept to be written into a new recording, as VCR's `new_episodes`
/// does (docs/DIFF-QEMU.md, "Recording what is missing").
///
/// It is called on the replay server's loop and waits there for QEMU (a few milliseconds per
/// command; up to `replyTimeout`): a mode for making fixtures, not for timing clients.
///
/// Example: a client sends `query-uuid`, which `lifecycle-qemu.qmprec` never shows: QEMU's
/// `{"return": {"UUID": "..."}}` goes to the client, and `write(...)` adds the command and its
/// reply to the new file, before the connection's close.
public final class MissingRecorder: @unchecked Sendable {
    /// One command a real QEMU answered: the client's request and what QEMU wrote for it
    /// (events raised while it ran, then the reply with the client's id), as exact bytes.
    public struct Exchange: Sendable {
        public var command: [UInt8]
        public var answers: [[UInt8]]
    }

    public let argv: [String]
    public let qemuVersion: String
    public var replyTimeout: Int64 = 10_000_000_000
    // Touched only on the server's loop (`answer`) and, once the server has finished, by `stop`.
    private let qemu: LiveQEMU
    private var nextID = 0
    private let kept = Mutex<[Exchange]>([])

    /// Starts QEMU and negotiates.
    public init(argv: [String]) throws(LiveQEMUError) {
        qemu = try LiveQEMU(argv: argv)
        self.argv = qemu.argv
        let v = JSONValue.object(qemu.greeting).value(atPath: "QMP.version.qemu")
        qemuVersion = ["major", "minor", "micro"].map { v?[$0]?.int64Value.map(String.init) ?? "?" }.joined(separator: ".")
        try qemu.send(#"{"execute":"qmp_capabilities"}"#)
        while true {
            guard let m = try qemu.next(within: 10_000_000_000) else { throw LiveQEMUError("QEMU did not answer qmp_capabilities") }
            if m["return"] != nil { break }
            if m["error"] != nil { throw LiveQEMUError("QEMU refused qmp_capabilities: \(JSONValue.object(m).serialized(.compact))") }
        }
    }

    /// Asks QEMU; nil when it did not answer within `replyTimeout` (the session then answers
    /// as it would have). `request` is the client's command; `id` its id (QEMU's reply is
    /// given it, as QEMU gives the client's own).
    public func answer(_ request: JSONObject, id: JSONValue?) -> (reply: JSONObject, events: [[UInt8]])? {
        var mine = request
        nextID += 1
        let tag = "qmpreplay-missing-\(nextID)"
        mine["id"] = .string(tag)
        do { try qemu.send(JSONValue.object(mine).serialized(.compact)) } catch { return nil }
        var events: [[UInt8]] = []
        var reply: JSONObject?
        while reply == nil {
            guard let m = try? qemu.next(within: replyTimeout) else { return nil }
            if m["event"] != nil {
                events.append(QEMUJSONWriter.bytes(.object(m), qdictOrder: false) + [0x0D, 0x0A])
            } else if m["id"]?.stringValue == tag {
                reply = m
            }
        }
        var r = reply!
        r["id"] = nil
        var answered = r
        if let id { answered["id"] = id }
        var cmd = request
        if let id { cmd["id"] = id } else { cmd["id"] = nil }
        let exchange = Exchange(command: Array(JSONValue.object(cmd).serialized(.compact).utf8),
                                answers: events + [QEMUJSONWriter.bytes(.object(answered), qdictOrder: false) + [0x0D, 0x0A]])
        kept.withLock { $0.append(exchange) }
        return (r, events)
    }

    /// The exchanges so far.
    public var exchanges: [Exchange] { kept.withLock { $0 } }

    /// Writes `original` with the exchanges added to `connection` (before its `quit`, else
    /// before its close, else at the end), to `path`. `redact` is applied to every added message (secrets never reach
    /// the file: the CLI passes the recorder's Redactor). Returns how many were added.
    @discardableResult
    public func write(original r: Recording, connection: UInt32, to path: String,
                      redact: (QMPMessage, Direction) -> QMPMessage) throws -> Int {
        let added = exchanges
        var header = r.header ?? RecordingHeader(startMicros: 0, source: r.path, mode: .proxy)
        header.labels.append((key: "record-missing", value: "\(added.count) command(s) answered by \(argv.first ?? "qemu") \(qemuVersion), added to \(r.path)"))
        let w = try RecordingWriter(path: path, header: header)
        // Before the connection's `quit` (nothing follows it in a real session), else its close.
        let close = (0..<r.count).first { r.connection($0) == connection && r.kind($0) == .command && r.name($0) == "quit" }
            ?? (0..<r.count).first { r.connection($0) == connection && r.kind($0) == .close } ?? r.count
        func insert(at t: Int64) throws {
            var time = t
            for x in added {
                time += 1000
                try w.message(time: time, connection: connection, from: .client, redact(QMPMessage(bytes: x.command), .client))
                for a in x.answers {
                    time += 1000
                    try w.message(time: time, connection: connection, from: .qemu, redact(QMPMessage(bytes: a), .qemu))
                }
            }
        }
        for i in 0..<r.count {
            if i == close { try insert(at: i > 0 ? r.time(i - 1) : 0) }
            let rec = try r.record(at: i)
            try w.append(time: rec.time, connection: rec.connection, rec.body)
        }
        if close == r.count { try insert(at: r.count > 0 ? r.time(r.count - 1) : 0) }
        try w.finish(reason: "record-missing: \(added.count) exchange(s) added")
        return added.count
    }

    /// Ends QEMU.
    public func stop() { qemu.stop() }
}

extension ReplayServer {
    /// From now on, commands no recorded call matches are answered by `m`'s real QEMU.
    public func recordMissing(with m: MissingRecorder) { onLoop(()) { $0.missing = m } }
}
