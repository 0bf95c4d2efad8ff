/// Checks a whole session, message by message in recorded order: every event against the
/// schema (`SchemaRules`, when one applies) or else the catalog, every command's arguments
/// and every reply's value against the schema, every reply against a preceding command,
/// negotiation order, and documented follow-ups that never came.
///
/// Rules and where they come from (docs/QEMU-FACTS.md, "Wire protocol"): the greeting is the
/// first thing QEMU sends; no command but `qmp_capabilities` before negotiation succeeds
/// and no event before it; replies echo ids. Follow-ups come from the catalog
/// (qmp-events.txt notes): BLOCK_IO_ERROR action=stop -> STOP, WATCHDOG
/// reset/shutdown/pause -> RESET/SHUTDOWN/STOP. A STOP is not expected when the VM is
/// already paused (QEMU emits no STOP then). SHUTDOWN -> STOP depends on `-no-shutdown`,
/// which a recording cannot see, so it is not enforced.
public struct SessionValidator: Sendable {
    /// How long after its trigger a follow-up may still be in flight when the connection
    /// or recording ends; missing ones inside this window are only notes.
    public var graceNanoseconds: Int64 = 1_000_000_000

    private struct Expectation: Sendable {
        var trigger: String
        var record: Int
        var time: Int64
        var then: String
    }

    private struct Connection: Sendable {
        var sawGreeting = false
        var qemuMessages = 0
        var negotiated = false
        var paused: Bool?
        var expectations: [Expectation] = []
        var startedMidSession = false
        /// No `open` record: the connection was already open where the file begins (a
        /// continuation part of a rotated recording, or a recording that joined late).
        var continued = false
    }

    private var connections: [UInt32: Connection] = [:]
    private var matcher = ReplyMatcher()
    private var findings: [Finding] = []
    private var lastTime: Int64 = 0
    /// The schema checks; `nil` checks events against the seed catalog alone.
    private var rules: SchemaRules?

    public init() {}

    /// Checks against `schema` too; `label` names it in messages ("QEMU 7.2.22's schema (recorded)").
    public init(schema: QAPISchema?, label: String = "the schema") {
        rules = schema.map { SchemaRules(schema: $0, label: label) }
    }

    /// A connection opened. `midSession` says the recording may have joined it late (an
    /// import from a log): then QEMU's first message need not be the greeting.
    public mutating func opened(connection: UInt32, midSession: Bool = false) {
        var c = Connection()
        c.startedMidSession = midSession
        connections[connection] = c
    }

    public mutating func closed(connection: UInt32, time: Int64) {
        settle(connection: connection, time: time, reason: "before the connection closed")
        for p in matcher.close(connection: connection) where p.name != nil {
            findings.append(Finding(.info, "unanswered-command", "\(p.name!) got no reply before the connection closed", record: p.record))
            findings += rules?.unanswered(command: p.record) ?? []
        }
        connections[connection] = nil
    }

    public mutating func observe(_ message: QMPMessage, from direction: Direction, connection: UInt32, record: Int, time: Int64) {
        lastTime = max(lastTime, time)
        var conn = connections[connection] ?? {
            var c = Connection()
            c.startedMidSession = true
            c.continued = true
            // The file begins in the middle of this connection: say so once (a part of a
            // rotated recording begins with the connections the previous part left open).
            if !(direction == .qemu && message.kind == .greeting) {
                findings.append(Finding(.info, "continued-connection", "connection \(connection) was already open where this file begins (a continuation part of a rotated recording, or a recording that joined late): its earlier messages are not here", record: record))
            }
            return c
        }()
        defer { connections[connection] = conn }

        switch (direction, message.body) {
        case (.qemu, .greeting):
            if conn.qemuMessages > 0 {
                findings.append(Finding(.warning, "greeting-not-first", "greeting after \(conn.qemuMessages) other messages from QEMU on connection \(connection)", record: record))
            }
            conn.sawGreeting = true
            conn.qemuMessages += 1

        case (.qemu, .event(let e)):
            if conn.qemuMessages == 0 && !conn.startedMidSession {
                findings.append(Finding(.warning, "greeting-not-first", "QEMU's first message on connection \(connection) is \(e.name), not the greeting", record: record))
            }
            conn.qemuMessages += 1
            findings += rules?.event(e, record: record) ?? EventValidator.validate(e, record: record)
            if conn.sawGreeting && !conn.negotiated {
                findings.append(Finding(.error, "event-before-negotiation", "\(e.name) arrived before qmp_capabilities succeeded (QEMU sends no events before negotiation)", record: record))
            }
            conn.expectations.removeAll { $0.then == e.name && $0.record < record }
            applyRunState(e.name, to: &conn)
            // GUEST_PANICKED pauses only when its action is pause (run/poweroff do not).
            if e.name == "GUEST_PANICKED" && e.data?["action"]?.stringValue == "pause" { conn.paused = true }
            expect(after: e, record: record, time: time, conn: &conn)

        case (.qemu, .return(let r)):
            checkGreetingFirst(&conn, connection: connection, record: record, what: "a reply")
            conn.qemuMessages += 1
            guard let cmd = matchReply(id: r.id, connection: connection, record: record, kind: "return", earlier: conn.continued && !conn.sawGreeting) else { break }
            if cmd.name == "qmp_capabilities" { conn.negotiated = true }
            if let name = cmd.name {
                findings += rules?.answered(command: cmd.record, name: name, outcome: .returned(r.value), reply: record) ?? []
            }
            if cmd.name == "query-status", let running = r.value["running"]?.boolValue { conn.paused = !running }

        case (.qemu, .error(let e)):
            checkGreetingFirst(&conn, connection: connection, record: record, what: "an error reply")
            conn.qemuMessages += 1
            if let cmd = matchReply(id: e.id, connection: connection, record: record, kind: "error \(e.errorClass)", earlier: conn.continued && !conn.sawGreeting),
               let name = cmd.name {
                findings += rules?.answered(command: cmd.record, name: name, outcome: .failed(e), reply: record) ?? []
            }

        case (.qemu, .command), (.client, .greeting), (.client, .event), (.client, .return), (.client, .error):
            conn.qemuMessages += direction == .qemu ? 1 : 0
            findings.append(Finding(.warning, "wrong-direction", "a \(message.kind.rawValue) message came from \(direction.rawValue)", record: record))

        case (.qemu, .other(let reason, _)):
            conn.qemuMessages += 1
            findings.append(Finding(.warning, "not-qmp", "QEMU sent something that is not a QMP message: \(reason)", record: record))

        case (.client, .command(let c)):
            if (conn.sawGreeting || !conn.startedMidSession) && !conn.negotiated && c.name != "qmp_capabilities" {
                findings.append(Finding(.warning, "command-before-negotiation", "\(c.name) was sent before qmp_capabilities succeeded (QEMU answers CommandNotFound)", record: record))
            }
            matcher.sent(.init(record: record, time: time, name: c.name, id: c.id, arguments: c.arguments), connection: connection)
            findings += rules?.sent(c, record: record) ?? []

        case (.client, .other(let reason, _)):
            findings.append(Finding(.info, "client-not-qmp", "the client sent something that is not a QMP command: \(reason)", record: record))
            // QEMU echoes the id of an invalid request that had one.
            matcher.sent(.init(record: record, time: time, name: nil, id: message.json?["id"], arguments: nil), connection: connection)
        }
    }

    private mutating func checkGreetingFirst(_ conn: inout Connection, connection: UInt32, record: Int, what: String) {
        if conn.qemuMessages == 0 && !conn.startedMidSession {
            findings.append(Finding(.warning, "greeting-not-first", "QEMU's first message on connection \(connection) is \(what), not the greeting", record: record))
        }
    }

    /// Ends the session; returns every finding, in record order.
    public mutating func finish() -> [Finding] {
        for c in connections.keys.sorted() {
            settle(connection: c, time: lastTime, reason: "before the recording ended")
        }
        for (_, p) in matcher.outstanding where p.name != nil {
            findings.append(Finding(.info, "unanswered-command", "\(p.name!) got no reply before the recording ended", record: p.record))
            findings += rules?.unanswered(command: p.record) ?? []
        }
        return findings.sorted { ($0.record ?? -1, $0.severity) < ($1.record ?? -1, $1.severity) }
    }

    /// The command a reply answers. `earlier`: the connection began before the file, so a
    /// reply to a command sent before it is expected (info, not a warning).
    private mutating func matchReply(id: JSONValue?, connection: UInt32, record: Int, kind: String, earlier: Bool = false) -> ReplyMatcher.Pending? {
        if let p = matcher.reply(id: id, connection: connection) { return p }
        let idText = id.map { " with id \($0.serialized())" } ?? " without id"
        if earlier {
            findings.append(Finding(.info, "reply-to-earlier-command", "\(kind)\(idText) answers no command in this file: connection \(connection) began before it, so the command was sent earlier (in the previous part of a rotated recording)", record: record))
            return nil
        }
        findings.append(Finding(.warning, "reply-without-command", "\(kind)\(idText) answers no outstanding command", record: record))
        return nil
    }

    private func applyRunState(_ name: String, to conn: inout Connection) {
        switch name {
        case "STOP", "SUSPEND": conn.paused = true
        case "RESUME", "WAKEUP": conn.paused = false
        default: break
        }
    }

    private func expect(after e: Event, record: Int, time: Int64, conn: inout Connection) {
        guard let entry = EventCatalog.entry(for: e.name) else { return }
        for f in entry.followUps where f.onlyIf == nil {
            if let w = f.when, e.data?[w.member]?.stringValue != w.value { continue }
            // BLOCK_IO_ERROR/WATCHDOG -> STOP: QEMU emits no STOP when the VM is already paused.
            if f.then == "STOP" && conn.paused == true { continue }
            conn.expectations.append(Expectation(trigger: e.name, record: record, time: time, then: f.then))
        }
    }

    private mutating func settle(connection: UInt32, time: Int64, reason: String) {
        guard let conn = connections[connection] else { return }
        for x in conn.expectations {
            let late = time - x.time > graceNanoseconds
            findings.append(Finding(
                late ? .warning : .info, "missing-follow-up",
                "\(x.trigger) is documented to be followed by \(x.then), which never came \(reason)",
                record: x.record))
        }
        connections[connection]?.expectations = []
    }
}
