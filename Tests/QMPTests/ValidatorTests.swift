import Foundation
@testable import QMP  // for ReplyMatcher.Pending, whose memberwise initialiser is internal
import Testing

// MARK: - Helpers

private func parsedEvent(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> Event? {
    let m = QMPMessage(text: text)
    guard case .event(let e) = m.body else {
        Issue.record("not an event: \(m.body)", sourceLocation: sourceLocation)
        return nil
    }
    return e
}

/// An event as QEMU writes it, with a valid timestamp unless `timestamp` is given.
private func eventText(_ name: String, _ data: String? = nil, timestamp: String? = #"{"seconds": 1267020223, "microseconds": 435656}"#) -> String {
    var parts: [String] = []
    if let timestamp { parts.append(#""timestamp": "# + timestamp) }
    parts.append(#""event": "# + JSONWriter.quoted(name))
    if let data { parts.append(#""data": "# + data) }
    return "{" + parts.joined(separator: ", ") + "}"
}

private func findings(_ name: String, _ data: String? = nil, record: Int? = nil) -> [Finding] {
    guard let e = parsedEvent(eventText(name, data)) else { return [] }
    return EventValidator.validate(e, record: record)
}

private func codes(_ fs: [Finding]) -> [String] { fs.map(\.code) }

private extension Array where Element == Finding {
    var serious: [Finding] { filter { $0.severity >= .warning } }
    func with(code: String) -> [Finding] { filter { $0.code == code } }
}

// MARK: - EventValidator

@Suite("EventValidator")
struct EventValidatorTests {
    static let vncServer = #"{"auth": "sasl", "family": "ipv4", "service": "5901", "host": "0.0.0.0"}"#
    static let vncClient = #"{"family": "ipv4", "service": "58425", "host": "127.0.0.1"}"#

    static let vncConnected: String = #"{"server": "# + vncServer + #", "client": "# + vncClient + "}"

    static let validEvents: [(String, String?)] = [
        ("STOP", nil),
        ("RESUME", nil),
        ("RESET", nil),
        ("RESET", #"{"guest": true, "reason": "guest-reset"}"#),
        ("SHUTDOWN", #"{"guest": false, "reason": "host-qmp-quit"}"#),
        ("SHUTDOWN", #"{"guest": true, "reason": "snapshot-load"}"#),
        ("POWERDOWN", nil),
        ("BALLOON_CHANGE", #"{"actual": 944766976}"#),
        ("BALLOON_CHANGE", #"{"actual": 9.44766976e8}"#),
        ("RTC_CHANGE", #"{"offset": -1}"#),
        ("RTC_CHANGE", #"{"offset": 78, "qom-path": "/machine/unattached/device[21]"}"#),
        ("BLOCK_IO_ERROR", #"{"device": "ide0-hd1", "operation": "write", "action": "stop"}"#),
        ("BLOCK_IO_ERROR", #"{"device": "", "node-name": "node-abc", "qom-path": "/machine/peripheral/d0/virtio-backend", "operation": "read", "action": "report", "nospace": true, "reason": "No space left on device"}"#),
        ("BLOCK_JOB_COMPLETED", #"{"type": "mirror", "device": "job0", "len": 10737418240, "offset": 10737418240, "speed": 0}"#),
        ("BLOCK_JOB_COMPLETED", #"{"type": "stream", "device": "virtio-disk0", "len": 10, "offset": 5, "speed": 0, "error": "Input/output error"}"#),
        ("BLOCK_JOB_READY", #"{"device": "job0"}"#),
        ("BLOCK_JOB_READY", #"{"device": "job0", "type": "mirror", "len": 1, "offset": 1, "speed": 0}"#),
        ("JOB_STATUS_CHANGE", #"{"id": "job0", "status": "concluded"}"#),
        ("DEVICE_DELETED", #"{"path": "/machine/peripheral-anon/device[0]"}"#),
        ("DEVICE_TRAY_MOVED", #"{"device": "ide1-cd0", "tray-open": true, "id": "/machine/unattached/device[24]"}"#),
        ("NIC_RX_FILTER_CHANGED", #"{"path": "/machine/peripheral/vnet0/virtio-backend"}"#),
        ("GUEST_PANICKED", #"{"action": "pause", "info": {"type": "hyper-v", "arg1": 1}}"#),
        ("WATCHDOG", #"{"action": "inject-nmi"}"#),
        ("VNC_CONNECTED", vncConnected),
        ("VNC_INITIALIZED", #"{"server": {"family": "unix", "service": "", "host": "/run/vnc.sock", "websocket": false}, "client": {"family": "unix", "service": "", "host": "", "x509_dname": "CN=x"}}"#),
        ("SPICE_INITIALIZED", #"{"server": {"auth": "spice", "port": "5921", "family": "ipv4", "host": "127.0.0.1"}, "client": {"port": "49004", "family": "ipv6", "channel-type": 3, "connection-id": 1804289383, "host": "::1", "channel-id": 0, "tls": true}}"#),
        ("VSERPORT_CHANGE", #"{"id": "channel0", "open": true}"#),
        ("QUORUM_REPORT_BAD", #"{"anything": [1, 2, 3]}"#),
    ]

    @Test("valid events give no findings", arguments: EventValidatorTests.validEvents)
    func valid(name: String, data: String?) {
        let fs = findings(name, data)
        #expect(fs.isEmpty, "\(name): \(fs.map(\.message))")
    }

    @Test("a missing member is an error naming its path")
    func missingMember() {
        let fs = findings("BLOCK_IO_ERROR", #"{"device": "d", "operation": "read"}"#, record: 4)
        #expect(codes(fs) == ["missing-member"])
        #expect(fs.first?.severity == .error)
        #expect(fs.first?.record == 4)
        #expect(fs.first?.message.contains("BLOCK_IO_ERROR data.action") == true, "\(fs)")
    }

    @Test("several missing members are all reported")
    func severalMissing() {
        let fs = findings("BLOCK_JOB_CANCELLED", #"{"device": "d"}"#)
        #expect(codes(fs) == Array(repeating: "missing-member", count: 4))
        #expect(Set(fs.map { $0.message.components(separatedBy: " ")[1] }) == ["data.type", "data.len", "data.offset", "data.speed"])
    }

    @Test("missing data when members are required")
    func missingData() {
        let fs = findings("WATCHDOG")
        #expect(codes(fs) == ["missing-data"])
        #expect(fs.first?.severity == .error)
        #expect(fs.first?.message.contains("action") == true)
        // Only optional members: no data is fine (SHUTDOWN before 2.10).
        #expect(findings("SHUTDOWN").isEmpty)
    }

    @Test("wrong JSON types are errors", arguments: [
        ("BALLOON_CHANGE", #"{"actual": "944766976"}"#, "data.actual"),
        ("DEVICE_TRAY_MOVED", #"{"device": "cd0", "tray-open": "yes"}"#, "data.tray-open"),
        ("WATCHDOG", #"{"action": null}"#, "data.action"),
        ("RESET", #"{"guest": 1}"#, "data.guest"),
        ("RTC_CHANGE", #"{"offset": [1]}"#, "data.offset"),
        ("VNC_CONNECTED", #"{"server": "0.0.0.0:5901", "client": {"family": "ipv4", "service": "1", "host": "h"}}"#, "data.server"),
    ])
    func wrongType(name: String, data: String, path: String) {
        let fs = findings(name, data)
        #expect(codes(fs) == ["wrong-type"], "\(fs.map(\.message))")
        #expect(fs.first?.severity == .error)
        #expect(fs.first?.message.contains("\(name) \(path)") == true, "\(fs.map(\.message))")
    }

    @Test("json-int refuses fractions, json-number takes both", arguments: [
        ("BLOCK_JOB_COMPLETED", #"{"type": "stream", "device": "d", "len": 1.5, "offset": 1, "speed": 0}"#, 1),
        ("BLOCK_JOB_COMPLETED", #"{"type": "stream", "device": "d", "len": 1.0, "offset": 1, "speed": 0}"#, 1),
        ("BLOCK_JOB_COMPLETED", #"{"type": "stream", "device": "d", "len": 1e3, "offset": 1.25, "speed": 0}"#, 2),
        ("BLOCK_JOB_COMPLETED", #"{"type": "stream", "device": "d", "len": 18446744073709551615, "offset": -1, "speed": 0}"#, 0),
        ("BALLOON_CHANGE", #"{"actual": 1.5}"#, 0),
        ("BALLOON_CHANGE", #"{"actual": 1}"#, 0),
        ("RTC_CHANGE", #"{"offset": -0.5}"#, 0),
        ("SPICE_INITIALIZED", #"{"server": {"port": "1", "family": "ipv4", "host": "h"}, "client": {"port": "2", "family": "ipv4", "host": "h", "connection-id": 1, "channel-type": 1.5, "channel-id": 0, "tls": false}}"#, 1),
    ])
    func intVersusNumber(name: String, data: String, wrongTypes: Int) {
        let fs = findings(name, data)
        #expect(fs.with(code: "wrong-type").count == wrongTypes, "\(fs.map(\.message))")
        #expect(fs.count == wrongTypes)
        for f in fs { #expect(f.message.contains("expected json-int"), "\(f.message)") }
    }

    @Test("values outside the documented set", arguments: [
        ("WATCHDOG", #"{"action": "explode"}"#),
        ("BLOCK_IO_ERROR", #"{"device": "d", "operation": "erase", "action": "stop"}"#),
        ("BLOCK_IO_ERROR", #"{"device": "d", "operation": "read", "action": "STOP"}"#),
        ("GUEST_PANICKED", #"{"action": "reboot"}"#),
        ("SHUTDOWN", #"{"guest": true, "reason": "cosmic-ray"}"#),
        ("JOB_STATUS_CHANGE", #"{"id": "j", "status": "finished"}"#),
        ("BLOCK_JOB_CANCELLED", #"{"type": "defrag", "device": "d", "len": 1, "offset": 0, "speed": 0}"#),
    ])
    func badValue(name: String, data: String) {
        let fs = findings(name, data)
        #expect(codes(fs) == ["bad-value"], "\(fs.map(\.message))")
        #expect(fs.first?.severity == .error)
    }

    @Test("a bad value's message lists documented and later values")
    func badValueMessage() {
        let m = findings("WATCHDOG", #"{"action": "explode"}"#).first?.message ?? ""
        #expect(m.contains("\"explode\""))
        #expect(m.contains("reset, shutdown, poweroff, pause, debug, none, inject-nmi"), "\(m)")
    }

    @Test("later values are accepted", arguments: [
        ("WATCHDOG", #"{"action": "inject-nmi"}"#),
        ("GUEST_PANICKED", #"{"action": "poweroff"}"#),
        ("GUEST_PANICKED", #"{"action": "run"}"#),
        ("BLOCK_JOB_CANCELLED", #"{"type": "backup", "device": "d", "len": 1, "offset": 0, "speed": 0}"#),
        ("JOB_STATUS_CHANGE", #"{"id": "j", "status": "undefined"}"#),
    ])
    func laterValues(name: String, data: String) {
        #expect(findings(name, data).isEmpty)
    }

    @Test("nested VNC objects are checked member by member")
    func vncNested() {
        // server without host, client with a bad family and an unknown member.
        let data = #"{"server": {"family": "ipv4", "service": "5901"}, "client": {"family": "ipx", "service": "1", "host": "h", "foo": 1}}"#
        let fs = findings("VNC_DISCONNECTED", data)
        #expect(Set(codes(fs)) == ["missing-member", "bad-value", "unknown-member"])
        #expect(fs.with(code: "missing-member").first?.message.contains("VNC_DISCONNECTED data.server.host") == true)
        #expect(fs.with(code: "bad-value").first?.message.contains("data.client.family") == true)
        #expect(fs.with(code: "unknown-member").first?.message.contains("data.client.foo") == true)
        #expect(fs.with(code: "unknown-member").first?.severity == .info)
        #expect(fs.serious.count == 2)
    }

    @Test("a nested member of the wrong type")
    func vncNestedType() {
        let data = #"{"server": {"family": "ipv4", "service": 5901, "host": "h"}, "client": {"family": "ipv4", "service": "1", "host": "h", "sasl_username": ["luiz"]}}"#
        let fs = findings("VNC_INITIALIZED", data)
        #expect(codes(fs) == ["wrong-type", "wrong-type"])
        #expect(fs.map { $0.message.components(separatedBy: " ")[1] } == ["data.server.service", "data.client.sasl_username"])
    }

    @Test("a missing nested object")
    func vncMissingClient() {
        let fs = findings("VNC_CONNECTED", #"{"server": "# + Self.vncServer + "}")
        #expect(codes(fs) == ["missing-member"])
        #expect(fs.first?.message.contains("data.client") == true)
    }

    @Test("unknown members are notes")
    func unknownMember() {
        let fs = findings("BALLOON_CHANGE", #"{"actual": 1, "future-field": true}"#, record: 9)
        #expect(codes(fs) == ["unknown-member"])
        #expect(fs.first?.severity == .info)
        #expect(fs.first?.record == 9)
        #expect(fs.first?.message.contains("data.future-field") == true)
    }

    @Test("data on an event documented without data is a note")
    func unexpectedData() {
        let fs = findings("STOP", #"{"reason": "x"}"#)
        #expect(codes(fs) == ["unexpected-data"])
        #expect(fs.first?.severity == .info)
        #expect(findings("STOP", "{}").isEmpty)
    }

    @Test("timestamps", arguments: [
        (#"{"seconds": 0, "microseconds": 0}"#, [String]()),
        (#"{"seconds": 1, "microseconds": 999999}"#, []),
        (#"{"seconds": 1, "microseconds": 1000000}"#, ["bad-timestamp"]),
        (#"{"seconds": 1, "microseconds": -1}"#, ["bad-timestamp"]),
        (#"{"seconds": 1}"#, ["missing-timestamp"]),
        (#""now""#, ["missing-timestamp"]),
    ])
    func timestamps(timestamp: String, expected: [String]) {
        guard let e = parsedEvent(eventText("RESUME", nil, timestamp: timestamp)) else { return }
        let fs = EventValidator.validate(e)
        #expect(codes(fs) == expected)
        #expect(fs.allSatisfy { $0.severity == .warning })
    }

    @Test("no timestamp at all is a warning")
    func noTimestamp() {
        guard let e = parsedEvent(eventText("WATCHDOG", #"{"action": "reset"}"#, timestamp: nil)) else { return }
        let fs = EventValidator.validate(e, record: 2)
        #expect(codes(fs) == ["missing-timestamp"])
        #expect(fs.first?.severity == .warning)
        #expect(fs.first?.record == 2)
    }

    @Test("events whose members are not described are not member-checked")
    func undescribed() {
        #expect(findings("MEMORY_DEVICE_SIZE_CHANGE", #"{"whatever": 1}"#).isEmpty)
        #expect(findings("HV_BALLOON_STATUS_REPORT").isEmpty)
    }

    @Test("severities are ordered and findings survive JSON encoding")
    func findingBasics() throws {
        #expect(Finding.Severity.info < .warning)
        #expect(Finding.Severity.warning < .error)
        #expect(!(Finding.Severity.error < .error))
        #expect([Finding.Severity.error, .info, .warning].sorted() == [.info, .warning, .error])
        let f = Finding(.warning, "missing-follow-up", "x", record: 3, line: 7)
        let back = try JSONDecoder().decode(Finding.self, from: JSONEncoder().encode(f))
        #expect(back == f)
    }
}

// MARK: - ReplyMatcher

@Suite("ReplyMatcher")
struct ReplyMatcherTests {
    private func pending(_ record: Int, _ name: String?, _ id: JSONValue?) -> ReplyMatcher.Pending {
        ReplyMatcher.Pending(record: record, time: 0, name: name, id: id, arguments: nil)
    }

    @Test("replies find their command by id, in any order")
    func byID() {
        var m = ReplyMatcher()
        m.sent(pending(0, "a", .string("x")), connection: 1)
        m.sent(pending(1, "b", .int(2)), connection: 1)
        m.sent(pending(2, "c", nil), connection: 1)
        #expect(m.reply(id: .int(2), connection: 1)?.record == 1)
        #expect(m.reply(id: nil, connection: 1)?.record == 2)
        #expect(m.reply(id: .string("x"), connection: 1)?.record == 0)
        #expect(m.reply(id: .string("x"), connection: 1) == nil)
        #expect(m.outstanding.isEmpty)
    }

    @Test("equal ids are answered oldest first; connections are separate")
    func fifoAndConnections() {
        var m = ReplyMatcher()
        m.sent(pending(0, "a", .int(1)), connection: 1)
        m.sent(pending(1, "b", .int(1)), connection: 1)
        m.sent(pending(2, "c", .int(1)), connection: 2)
        #expect(m.reply(id: .int(1), connection: 2)?.record == 2)
        #expect(m.reply(id: .int(1), connection: 3) == nil)
        #expect(m.reply(id: .int(1), connection: 1)?.record == 0)
        #expect(m.outstanding.map(\.pending.record) == [1])
        #expect(m.close(connection: 1).map(\.record) == [1])
        #expect(m.close(connection: 1).isEmpty)
    }

    @Test("an id without match, and an id-less reply when every command had an id")
    func noMatch() {
        var m = ReplyMatcher()
        m.sent(pending(0, "a", .string("1")), connection: 1)
        #expect(m.reply(id: .int(1), connection: 1) == nil)  // "1" is not 1
        #expect(m.reply(id: nil, connection: 1) == nil)
        #expect(m.outstanding.count == 1)
    }

    @Test("outstanding lists connections in order")
    func outstandingOrder() {
        var m = ReplyMatcher()
        m.sent(pending(5, "x", nil), connection: 9)
        m.sent(pending(3, "y", nil), connection: 2)
        m.sent(pending(4, "z", nil), connection: 2)
        #expect(m.outstanding.map(\.connection) == [2, 2, 9])
        #expect(m.outstanding.map(\.pending.record) == [3, 4, 5])
    }

    /// Two uint64 ids that differ only beyond Double precision must not be confused.
    @Test("neighbouring big-integer ids are told apart")
    func bigIntegerIDs() throws {
        var m = ReplyMatcher()
        let a = try JSONParser.parse("18446744073709551615")
        let b = try JSONParser.parse("18446744073709551614")
        m.sent(pending(0, "query-status", a), connection: 1)
        m.sent(pending(1, "query-name", b), connection: 1)
        #expect(m.reply(id: b, connection: 1)?.record == 1)
    }
}

// MARK: - SessionValidator

/// Builds a session message by message; records are numbered in order, time is in seconds.
private struct Session {
    var validator = SessionValidator()
    var record = 0

    static let greeting = #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#

    private static func ns(_ seconds: Double) -> Int64 { Int64((seconds * 1e9).rounded()) }

    mutating func open(_ connection: UInt32 = 1) { validator.opened(connection: connection) }

    @discardableResult
    mutating func qemu(_ text: String, at seconds: Double = 0, connection: UInt32 = 1) -> Int {
        send(text, .qemu, seconds, connection)
    }

    @discardableResult
    mutating func client(_ text: String, at seconds: Double = 0, connection: UInt32 = 1) -> Int {
        send(text, .client, seconds, connection)
    }

    @discardableResult
    mutating func event(_ name: String, _ data: String? = nil, at seconds: Double = 0, connection: UInt32 = 1) -> Int {
        qemu(eventText(name, data), at: seconds, connection: connection)
    }

    private mutating func send(_ text: String, _ direction: Direction, _ seconds: Double, _ connection: UInt32) -> Int {
        let r = record
        validator.observe(QMPMessage(text: text), from: direction, connection: connection, record: r, time: Self.ns(seconds))
        record += 1
        return r
    }

    mutating func close(_ connection: UInt32 = 1, at seconds: Double = 0) {
        validator.closed(connection: connection, time: Self.ns(seconds))
    }

    /// Greeting and successful negotiation.
    mutating func negotiate(connection: UInt32 = 1, at seconds: Double = 0) {
        open(connection)
        qemu(Self.greeting, at: seconds, connection: connection)
        client(#"{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}, "id": "neg"}"#, at: seconds, connection: connection)
        qemu(#"{"return": {}, "id": "neg"}"#, at: seconds, connection: connection)
    }

    mutating func finish() -> [Finding] { validator.finish() }
}

@Suite("SessionValidator")
struct SessionValidatorTests {
    @Test("a clean session has no findings")
    func clean() {
        var s = Session()
        s.negotiate()
        s.client(#"{"execute": "query-status", "id": 1}"#, at: 0.1)
        s.qemu(#"{"return": {"running": true, "singlestep": false, "status": "running"}, "id": 1}"#, at: 0.1)
        s.event("BLOCK_IO_ERROR", #"{"device": "ide0-hd1", "operation": "write", "action": "stop"}"#, at: 1)
        s.event("STOP", at: 1.01)
        // Events raised by a command come before its reply (RESUME before cont's reply).
        s.client(#"{"execute": "cont", "id": 2}"#, at: 2)
        s.event("RESUME", at: 2.01)
        s.qemu(#"{"return": {}, "id": 2}"#, at: 2.01)
        s.event("WATCHDOG", #"{"action": "pause"}"#, at: 3)
        s.event("STOP", at: 3.001)
        s.client(#"{"execute": "cont", "id": 3}"#, at: 4)
        s.event("RESUME", at: 4.01)
        s.qemu(#"{"return": {}, "id": 3}"#, at: 4.01)
        s.event("WATCHDOG", #"{"action": "reset"}"#, at: 5)
        s.event("RESET", #"{"guest": false, "reason": "guest-reset"}"#, at: 5.001)
        s.event("WATCHDOG", #"{"action": "none"}"#, at: 6)
        s.event("BALLOON_CHANGE", #"{"actual": 1073741824}"#, at: 7)
        s.client(#"{"execute": "balloon", "arguments": {"value": 536870912}}"#, at: 8)
        s.qemu(#"{"return": {}}"#, at: 8)
        s.client(#"{"execute": "quit", "id": "q"}"#, at: 9)
        s.qemu(#"{"return": {}, "id": "q"}"#, at: 9)
        s.event("SHUTDOWN", #"{"guest": false, "reason": "host-qmp-quit"}"#, at: 9.01)
        s.close(at: 9.02)
        let fs = s.finish()
        #expect(fs.isEmpty, "\(fs.map { "\($0.code): \($0.message)" })")
    }

    @Test("a command before qmp_capabilities")
    func commandBeforeNegotiation() {
        var s = Session()
        s.open()
        s.qemu(Session.greeting)
        let r = s.client(#"{"execute": "query-status", "id": 1}"#)
        s.qemu(#"{"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}, "id": 1}"#)
        s.client(#"{"execute": "qmp_capabilities"}"#)
        s.qemu(#"{"return": {}}"#)
        s.client(#"{"execute": "query-status", "id": 2}"#)
        s.qemu(#"{"return": {"running": true, "status": "running"}, "id": 2}"#)
        let fs = s.finish()
        #expect(codes(fs) == ["command-before-negotiation"])
        #expect(fs.first?.severity == .warning)
        #expect(fs.first?.record == r)
    }

    @Test("a failed qmp_capabilities does not negotiate")
    func failedNegotiation() {
        var s = Session()
        s.open()
        s.qemu(Session.greeting)
        s.client(#"{"execute": "qmp_capabilities", "arguments": {"enable": ["bogus"]}, "id": 1}"#)
        s.qemu(#"{"error": {"class": "GenericError", "desc": "Parameter 'enable' does not accept value 'bogus'"}, "id": 1}"#)
        s.client(#"{"execute": "query-status", "id": 2}"#)
        let fs = s.finish()
        #expect(codes(fs.serious) == ["command-before-negotiation"])
    }

    /// A client that writes before reading (`echo ... | socat`) has its command recorded
    /// before QEMU's greeting; on a connection recorded from its start that command still
    /// precedes negotiation, and QEMU answers it with CommandNotFound.
    @Test("a command sent before the greeting arrived is before negotiation too")
    func commandBeforeGreeting() {
        var s = Session()
        s.open()
        let r = s.client(#"{"execute": "query-status", "id": 1}"#)
        s.qemu(Session.greeting)
        s.qemu(#"{"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}, "id": 1}"#)
        let fs = s.finish()
        #expect(fs.with(code: "command-before-negotiation").map(\.record) == [r], "\(fs.map(\.code))")
    }

    @Test("an event before negotiation is an error")
    func eventBeforeNegotiation() {
        var s = Session()
        s.open()
        s.qemu(Session.greeting)
        let r = s.event("RESUME")
        s.client(#"{"execute": "qmp_capabilities"}"#)
        s.qemu(#"{"return": {}}"#)
        s.event("STOP")
        let fs = s.finish()
        #expect(codes(fs) == ["event-before-negotiation"])
        #expect(fs.first?.severity == .error)
        #expect(fs.first?.record == r)
    }

    @Test("a reply with an unknown id")
    func unknownID() {
        var s = Session()
        s.negotiate()
        s.client(#"{"execute": "query-status", "id": 1}"#)
        let r = s.qemu(#"{"return": {}, "id": 99}"#)
        let e = s.qemu(#"{"error": {"class": "GenericError", "desc": "x"}, "id": "nope"}"#)
        s.qemu(#"{"return": {}, "id": 1}"#)
        let fs = s.finish()
        #expect(codes(fs) == ["reply-without-command", "reply-without-command"])
        #expect(fs.map(\.record) == [r, e])
        #expect(fs.allSatisfy { $0.severity == .warning })
        #expect(fs.first?.message.contains("99") == true)
    }

    @Test("a reply without id when the only command had one")
    func missingID() {
        var s = Session()
        s.negotiate()
        s.client(#"{"execute": "query-status", "id": 1}"#)
        s.qemu(#"{"return": {}}"#)
        let fs = s.finish()
        #expect(codes(fs).sorted() == ["reply-without-command", "unanswered-command"])
    }

    @Test("reply ids of every JSON type are matched", arguments: idsOfEveryType)
    func idEcho(idText: String) {
        var s = Session()
        s.negotiate()
        s.client(#"{"execute": "query-status", "id": "# + idText + "}")
        s.client(#"{"exec-oob": "migrate-pause", "id": "# + idText + "}")
        s.qemu(#"{"return": {"running": true, "status": "running"}, "id": "# + idText + "}")
        s.qemu(#"{"error": {"class": "GenericError", "desc": "migrate-pause is currently only supported during postcopy-active state"}, "id": "# + idText + "}")
        let fs = s.finish()
        #expect(fs.isEmpty, "\(idText): \(fs.map(\.message))")
    }

    @Test("an id object echoed with its members in another order still matches")
    func idMemberOrder() {
        var s = Session()
        s.negotiate()
        s.client(#"{"execute": "cont", "id": {"a": 1, "b": [1, 2]}}"#)
        s.qemu(#"{"return": {}, "id": {"b": [1, 2], "a": 1}}"#)
        #expect(s.finish().isEmpty)
    }

    @Test("out-of-band replies overtake in-band ones")
    func oobOrder() {
        var s = Session()
        s.negotiate()
        s.client(#"{"execute": "migrate", "arguments": {"uri": "tcp:host:4444"}, "id": "ib"}"#)
        s.client(#"{"exec-oob": "migrate-pause", "id": "oob"}"#)
        s.qemu(#"{"return": {}, "id": "oob"}"#)
        s.qemu(#"{"return": {}, "id": "ib"}"#)
        #expect(s.finish().isEmpty)
    }

    /// End to end: if the reply to query-status were paired with the wrong command, the
    /// validator would not know the VM is paused and would expect a STOP that QEMU never sends.
    @Test("replies to neighbouring big-integer ids reach the right commands")
    func bigIntegerIDsInSession() {
        var s = Session()
        s.negotiate()
        s.client(#"{"execute": "query-status", "id": 18446744073709551615}"#, at: 1)
        s.client(#"{"execute": "query-name", "id": 18446744073709551614}"#, at: 1)
        s.qemu(#"{"return": {"name": "vm0"}, "id": 18446744073709551614}"#, at: 1)
        s.qemu(#"{"return": {"running": false, "status": "paused"}, "id": 18446744073709551615}"#, at: 1)
        s.event("BLOCK_IO_ERROR", #"{"device": "d", "operation": "read", "action": "stop"}"#, at: 2)
        s.event("RTC_CHANGE", #"{"offset": 0}"#, at: 10)
        let fs = s.finish()
        #expect(fs.isEmpty, "\(fs.map(\.message))")
    }

    // Follow-ups.

    @Test("BLOCK_IO_ERROR stop with no STOP: warning after the grace period")
    func missingFollowUpLate() {
        var s = Session()
        s.negotiate()
        let r = s.event("BLOCK_IO_ERROR", #"{"device": "d", "operation": "write", "action": "stop"}"#, at: 10)
        s.event("RTC_CHANGE", #"{"offset": 1}"#, at: 11.5)
        let fs = s.finish()
        #expect(codes(fs) == ["missing-follow-up"])
        #expect(fs.first?.severity == .warning)
        #expect(fs.first?.record == r)
        #expect(fs.first?.message.contains("STOP") == true)
    }

    @Test("BLOCK_IO_ERROR stop with no STOP: only a note within the 1 s grace")
    func missingFollowUpInGrace() {
        var s = Session()
        s.negotiate()
        let r = s.event("BLOCK_IO_ERROR", #"{"device": "d", "operation": "write", "action": "stop"}"#, at: 10)
        s.event("RTC_CHANGE", #"{"offset": 1}"#, at: 10.5)
        let fs = s.finish()
        #expect(codes(fs) == ["missing-follow-up"])
        #expect(fs.first?.severity == .info)
        #expect(fs.first?.record == r)
    }

    @Test("the grace applies at connection close too", arguments: [(10.2, Finding.Severity.info), (12.0, .warning)])
    func missingFollowUpAtClose(closeAt: Double, severity: Finding.Severity) {
        var s = Session()
        s.negotiate()
        s.event("BLOCK_IO_ERROR", #"{"device": "d", "operation": "write", "action": "stop"}"#, at: 10)
        s.close(at: closeAt)
        let fs = s.finish()
        #expect(codes(fs) == ["missing-follow-up"])
        #expect(fs.first?.severity == severity)
        #expect(fs.first?.message.contains("closed") == true)
    }

    @Test("the grace period can be changed")
    func customGrace() {
        var s = Session()
        s.validator.graceNanoseconds = 5_000_000_000
        s.negotiate()
        s.event("BLOCK_IO_ERROR", #"{"device": "d", "operation": "write", "action": "stop"}"#, at: 10)
        s.event("RTC_CHANGE", #"{"offset": 1}"#, at: 13)
        #expect(s.finish().map(\.severity) == [.info])
    }

    @Test("BLOCK_IO_ERROR with another action expects nothing", arguments: ["report", "ignore"])
    func otherActions(action: String) {
        var s = Session()
        s.negotiate()
        s.event("BLOCK_IO_ERROR", #"{"device": "d", "operation": "write", "action": ""# + action + #""}"#, at: 1)
        s.event("RTC_CHANGE", #"{"offset": 1}"#, at: 10)
        #expect(s.finish().isEmpty)
    }

    @Test("STOP is not expected when the VM is already paused (by STOP)")
    func alreadyPausedByStop() {
        var s = Session()
        s.negotiate()
        s.event("STOP", at: 1)
        s.event("BLOCK_IO_ERROR", #"{"device": "d", "operation": "write", "action": "stop"}"#, at: 2)
        s.event("WATCHDOG", #"{"action": "pause"}"#, at: 3)
        s.event("RTC_CHANGE", #"{"offset": 1}"#, at: 10)
        #expect(s.finish().isEmpty)
    }

    @Test("STOP is not expected when query-status said paused")
    func alreadyPausedByQuery() {
        var s = Session()
        s.negotiate()
        s.client(#"{"execute": "query-status", "id": "s"}"#, at: 1)
        s.qemu(#"{"return": {"running": false, "singlestep": false, "status": "prelaunch"}, "id": "s"}"#, at: 1)
        s.event("BLOCK_IO_ERROR", #"{"device": "d", "operation": "write", "action": "stop"}"#, at: 2)
        s.event("RTC_CHANGE", #"{"offset": 1}"#, at: 10)
        #expect(s.finish().isEmpty)
    }

    @Test("paused states: SUSPEND and GUEST_PANICKED pause, RESUME and WAKEUP run", arguments: [
        (["STOP"], false), (["SUSPEND"], false), (["GUEST_PANICKED"], false),
        (["STOP", "RESUME"], true), (["SUSPEND", "WAKEUP"], true), ([String](), true),
    ])
    func runStates(events: [String], expectsStop: Bool) {
        var s = Session()
        s.negotiate()
        for (i, name) in events.enumerated() {
            s.event(name, name == "GUEST_PANICKED" ? #"{"action": "pause"}"# : nil, at: 1 + Double(i) * 0.1)
        }
        s.event("BLOCK_IO_ERROR", #"{"device": "d", "operation": "write", "action": "stop"}"#, at: 2)
        s.event("RTC_CHANGE", #"{"offset": 1}"#, at: 10)
        let fs = s.finish()
        #expect(codes(fs) == (expectsStop ? ["missing-follow-up"] : []), "\(events)")
    }

    @Test("WATCHDOG follow-ups", arguments: [
        ("pause", "STOP", true), ("reset", "RESET", true), ("shutdown", "SHUTDOWN", true),
        ("pause", nil, false), ("reset", nil, false), ("shutdown", nil, false),
    ] as [(String, String?, Bool)])
    func watchdog(action: String, followedBy: String?, satisfied: Bool) {
        var s = Session()
        s.negotiate()
        let r = s.event("WATCHDOG", #"{"action": ""# + action + #""}"#, at: 1)
        if let followedBy { s.event(followedBy, at: 1.001) }
        s.event("RTC_CHANGE", #"{"offset": 1}"#, at: 10)
        let fs = s.finish()
        if satisfied {
            #expect(fs.isEmpty, "\(fs.map(\.message))")
        } else {
            #expect(codes(fs) == ["missing-follow-up"])
            #expect(fs.first?.severity == .warning)
            #expect(fs.first?.record == r)
        }
    }

    @Test("WATCHDOG actions without follow-up", arguments: ["poweroff", "debug", "none", "inject-nmi"])
    func watchdogNoFollowUp(action: String) {
        var s = Session()
        s.negotiate()
        s.event("WATCHDOG", #"{"action": ""# + action + #""}"#, at: 1)
        s.event("RTC_CHANGE", #"{"offset": 1}"#, at: 10)
        #expect(s.finish().isEmpty)
    }

    @Test("one STOP answers several BLOCK_IO_ERRORs; later ones while paused expect nothing")
    func severalIOErrors() {
        var s = Session()
        s.negotiate()
        let stopData = #"{"device": "d", "operation": "write", "action": "stop"}"#
        s.event("BLOCK_IO_ERROR", stopData, at: 1)
        s.event("BLOCK_IO_ERROR", stopData, at: 1.001)
        s.event("BLOCK_IO_ERROR", stopData, at: 1.002)
        s.event("STOP", at: 1.01)
        s.event("BLOCK_IO_ERROR", stopData, at: 1.02)
        s.event("RTC_CHANGE", #"{"offset": 1}"#, at: 10)
        #expect(s.finish().isEmpty)
    }

    /// QEMU pauses on a panic only when the action is "pause" (system/runstate.c,
    /// qemu_system_guest_panicked); with "run" (`-action panic=none`) the guest keeps running
    /// and a later BLOCK_IO_ERROR stop is followed by a STOP as usual.
    @Test("GUEST_PANICKED pauses only when its action is pause", arguments: ["run", "poweroff"])
    func panicWithoutPause(action: String) {
        var s = Session()
        s.negotiate()
        s.event("GUEST_PANICKED", #"{"action": ""# + action + #""}"#, at: 1)
        s.event("BLOCK_IO_ERROR", #"{"device": "d", "operation": "write", "action": "stop"}"#, at: 2)
        s.event("RTC_CHANGE", #"{"offset": 1}"#, at: 10)
        #expect(codes(s.finish()) == ["missing-follow-up"])
    }

    @Test("a follow-up before its trigger does not count")
    func followUpBeforeTrigger() {
        var s = Session()
        s.negotiate()
        s.event("RESET", at: 1)
        s.event("WATCHDOG", #"{"action": "reset"}"#, at: 2)
        s.event("RTC_CHANGE", #"{"offset": 1}"#, at: 10)
        #expect(codes(s.finish()) == ["missing-follow-up"])
    }

    @Test("SHUTDOWN without STOP is fine (-no-shutdown cannot be seen)")
    func shutdownNotEnforced() {
        var s = Session()
        s.negotiate()
        s.event("SHUTDOWN", #"{"guest": true, "reason": "guest-shutdown"}"#, at: 1)
        s.event("RTC_CHANGE", #"{"offset": 1}"#, at: 10)
        #expect(s.finish().isEmpty)
    }

    // Commands left over.

    @Test("a command unanswered at close is a note")
    func unansweredAtClose() {
        var s = Session()
        s.negotiate()
        let r = s.client(#"{"execute": "migrate", "arguments": {"uri": "tcp:h:1"}, "id": 5}"#)
        s.close()
        let fs = s.finish()
        #expect(codes(fs) == ["unanswered-command"])
        #expect(fs.first?.severity == .info)
        #expect(fs.first?.record == r)
        #expect(fs.first?.message.contains("migrate") == true)
        #expect(fs.first?.message.contains("closed") == true)
    }

    @Test("a command unanswered at the end of the recording is a note")
    func unansweredAtEnd() {
        var s = Session()
        s.negotiate()
        s.client(#"{"execute": "query-block"}"#)
        let fs = s.finish()
        #expect(codes(fs) == ["unanswered-command"])
        #expect(fs.first?.severity == .info)
        #expect(fs.first?.message.contains("ended") == true)
    }

    // Greeting order.

    @Test("the greeting is not first")
    func greetingNotFirst() {
        var s = Session()
        s.open()
        let r1 = s.event("RESUME")
        let r2 = s.qemu(Session.greeting)
        let fs = s.finish()
        #expect(fs.with(code: "greeting-not-first").map(\.record) == [r1, r2])
        #expect(fs.with(code: "greeting-not-first").allSatisfy { $0.severity == .warning })
    }

    /// QEMU's first message on a connection recorded from its start is always the greeting,
    /// whatever kind of message came instead.
    @Test("a reply as QEMU's first message", arguments: [
        #"{"return": {}}"#, #"{"error": {"class": "GenericError", "desc": "x"}}"#,
    ])
    func replyFirst(text: String) {
        var s = Session()
        s.open()
        s.client(#"{"execute": "qmp_capabilities"}"#)
        let r = s.qemu(text)
        let fs = s.finish()
        #expect(fs.with(code: "greeting-not-first").map(\.record) == [r], "\(fs.map(\.code))")
    }

    @Test("a recording that starts mid-session is not held to the opening rules")
    func midSession() {
        var s = Session()  // no opened(): the recorder attached to a running session
        s.client(#"{"execute": "query-status", "id": 1}"#)
        s.event("RESUME")
        s.qemu(#"{"return": {"running": true, "status": "running"}, "id": 1}"#)
        // Only said, as info: the file begins in the middle of the connection.
        let fs = s.finish()
        #expect(fs.map(\.code) == ["continued-connection"] && fs.allSatisfy { $0.severity == .info })
    }

    @Test("a continuation part: replies to commands sent in the previous part are info, not warnings")
    func continuationPart() {
        var s = Session()  // no opened(): connection 1 was opened in the previous part
        let first = s.qemu(#"{"return": {}, "id": "sent-before"}"#)
        s.qemu(#"{"error": {"class": "GenericError", "desc": "x"}, "id": 7}"#)
        s.client(#"{"execute": "query-status", "id": 1}"#)
        s.qemu(#"{"return": {"running": true, "status": "running"}, "id": 1}"#)
        s.close(1)
        // A new connection in the same part is held to every rule again.
        s.open(2)
        s.qemu(Session.greeting, connection: 2)
        let stray = s.qemu(#"{"return": {}, "id": 99}"#, connection: 2)
        let fs = s.finish()
        #expect(fs.map(\.code) == ["continued-connection", "reply-to-earlier-command", "reply-to-earlier-command", "reply-without-command"])
        #expect(fs.first?.record == first)
        #expect(fs.dropLast().allSatisfy { $0.severity == .info })
        #expect(fs.last?.severity == .warning && fs.last?.record == stray)
    }

    @Test("each connection negotiates on its own, and a reconnect starts over")
    func connections() {
        var s = Session()
        s.negotiate(connection: 1)
        s.open(2)
        s.qemu(Session.greeting, connection: 2)
        let r = s.client(#"{"execute": "query-status", "id": 1}"#, connection: 2)
        // A reply on connection 1 cannot answer connection 2's command.
        let cross = s.qemu(#"{"return": {}, "id": 1}"#, connection: 1)
        s.qemu(#"{"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}, "id": 1}"#, connection: 2)
        s.close(1)
        s.open(1)
        s.qemu(Session.greeting, connection: 1)
        let again = s.event("RESUME", connection: 1)
        let fs = s.finish()
        #expect(fs.map(\.code) == ["command-before-negotiation", "reply-without-command", "event-before-negotiation"])
        #expect(fs.map(\.record) == [r, cross, again])
    }

    // Odd traffic.

    @Test("messages in the wrong direction", arguments: [
        (Direction.client, eventText("STOP")),
        (.client, #"{"return": {}}"#),
        (.client, #"{"error": {"class": "GenericError", "desc": "x"}}"#),
        (.client, Session.greeting),
        (.qemu, #"{"execute": "cont"}"#),
    ])
    func wrongDirection(direction: Direction, text: String) {
        var s = Session()
        s.negotiate()
        if direction == .qemu { s.qemu(text) } else { s.client(text) }
        let fs = s.finish()
        #expect(codes(fs) == ["wrong-direction"])
        #expect(fs.first?.severity == .warning)
    }

    @Test("QEMU sending something that is not QMP")
    func qemuGarbage() {
        var s = Session()
        s.negotiate()
        s.qemu("[1, 2]")
        s.qemu("{oops")
        let fs = s.finish()
        #expect(codes(fs) == ["not-qmp", "not-qmp"])
        #expect(fs.allSatisfy { $0.severity == .warning })
    }

    @Test("client garbage is answered by a parse error without id")
    func clientGarbage() {
        var s = Session()
        s.negotiate()
        let r = s.client(#"{"execute": "cont""#)
        s.qemu(#"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#)
        let fs = s.finish()
        #expect(codes(fs) == ["client-not-qmp"])
        #expect(fs.first?.severity == .info)
        #expect(fs.first?.record == r)
    }

    /// QEMU's qmp_dispatch takes the id before checking the request, so an invalid request
    /// that carries an id gets an error reply echoing it ("QMP input member 'execute' must be
    /// a string", id 5). That reply answers the invalid request.
    @Test("an invalid request with an id gets its error reply matched")
    func invalidRequestWithID() {
        var s = Session()
        s.negotiate()
        s.client(#"{"execute": 1, "id": 5}"#)
        let reply = s.qemu(#"{"error": {"class": "GenericError", "desc": "QMP input member 'execute' must be a string"}, "id": 5}"#)
        let fs = s.finish()
        #expect(fs.with(code: "reply-without-command").isEmpty, "record \(reply): \(fs.map(\.message))")
        #expect(codes(fs) == ["client-not-qmp"])
    }

    @Test("event findings carry their record, and all findings come in record order")
    func order() {
        var s = Session()
        s.negotiate()
        s.event("BLOCK_IO_ERROR", #"{"device": "d", "operation": "write", "action": "stop"}"#, at: 1)
        let bad = s.event("WATCHDOG", #"{"action": "explode"}"#, at: 2)
        s.qemu(#"{"return": {}, "id": 42}"#, at: 3)
        s.event("NEW_EVENT", at: 4)
        let fs = s.finish()
        #expect(fs.map(\.code) == ["missing-follow-up", "bad-value", "reply-without-command", "unknown-event"])
        #expect(fs.compactMap(\.record) == fs.compactMap(\.record).sorted())
        #expect(fs.with(code: "bad-value").first?.record == bad)
    }
}
