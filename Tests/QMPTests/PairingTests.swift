import QMP
import Testing

/// The one reply-pairing rule (`ReplyQueue`, `IDKey`) and QEMU's input dialect: ids are
/// compared as JSON values, because QEMU re-writes them with its own JSON writer; single-quoted
/// requests are commands, because QEMU executes them. The byte forms below are the ones the
/// guest lab recorded from QEMU 7.2 (Recordings/quirky-ids.qmprec).
@Suite("reply pairing by id value, QEMU's single-quote dialect")
struct PairingTests {
    func key(_ text: String) -> IDKey { IDKey(text: text) }

    @Test("equal id values have equal keys whatever their spelling")
    func idValues() throws {
        // QEMU writes non-ASCII as upper-case \u escapes.
        #expect(key(#""caf\u00e9""#) == key(#""caf\u00E9""#))
        #expect(key(#""café""#) == key(#""caf\u00E9""#))
        #expect(key(#""\ud83d\ude00 x""#) == key("\"\u{1F600} x\""))
        // Numbers by value: QEMU echoes -1500.0 as -1500 and big integers as doubles.
        #expect(key("-1500.0") == key("-1500"))
        #expect(key("18446744073709551616") == key("1.8446744073709552e+19"))
        #expect(key("1") == key("1.0"))
        // Objects: member order is not part of the value; arrays keep their order.
        #expect(key(#"{"a": 1, "b": [1, "two"]}"#) == key(#"{"b":[1,"two"],"a":1.0}"#))
        #expect(key("[1, 2]") != key("[2, 1]"))
        // Different values, different keys; types matter.
        #expect(key(#""1""#) != key("1"))
        #expect(key(#""a1""#) != key(#""a2""#))
        #expect(key("null") != IDKey.none)
        #expect(key("true") != key("false"))
        #expect(IDKey(value: nil) == .none)
        #expect(IDKey(value: .string("café")) == key(#""caf\u00e9""#))
    }

    @Test("a reply answers the oldest outstanding request with its id, or the oldest without one")
    func queue() {
        var q = ReplyQueue<Int>()
        q.sent(key(#""a""#), 1)
        q.sent(.none, 2)
        q.sent(key(#""a""#), 3)
        q.sent(.none, 4)
        #expect(q.count == 4)
        #expect(q.reply(.none) == 2)
        #expect(q.reply(key(#""a""#)) == 1)
        #expect(q.reply(key(#""zzz""#)) == nil)
        #expect(q.outstanding == [3, 4])
        #expect(q.drain() == [3, 4])
        #expect(q.isEmpty)
        // Many answered in order: stays compact and correct.
        for i in 0..<1000 { q.sent(.none, i) }
        for i in 0..<990 { #expect(q.reply(.none) == i) }
        #expect(q.outstanding == Array(990..<1000))
        #expect(q.keepNewest(3) == Array(990..<997))
        #expect(q.outstanding == [997, 998, 999])
    }

    @Test("ReplyMatcher pairs a reply whose id QEMU re-escaped")
    func matcherReescaped() {
        var m = ReplyMatcher()
        m.sent(.init(record: 5, time: 0, name: "query-name", id: QMPMessage(text: #"{"execute":"query-name","id":"caf\u00e9"}"#).id, arguments: nil), connection: 1)
        let reply = QMPMessage(text: #"{"return": {}, "id": "café"}"#)
        #expect(m.reply(id: reply.id, connection: 1)?.record == 5)
    }

    @Test("single-quoted requests are commands, as QEMU executes them")
    func dialect() throws {
        let m = QMPMessage(text: "{'execute': 'query-name', 'id': 'sq1'}")
        guard case .command(let c) = m.body else { Issue.record("not a command: \(m.body)"); return }
        #expect(c.name == "query-name")
        #expect(c.id == .string("sq1"))
        #expect(m.dialect)
        // A double quote inside a single-quoted string, and \' in either kind.
        let q = QMPMessage(text: #"{'execute': 'query-name', 'id': 'it"s \'x\''}"#)
        #expect(q.id == .string(#"it"s 'x'"#))
        #expect(QMPMessage(text: #"{"execute": "query-name", "id": "it\'s"}"#).id == .string("it's"))
        // Strict JSON is not the dialect; broken text stays `other`.
        #expect(!QMPMessage(text: #"{"execute": "stop"}"#).dialect)
        #expect(QMPMessage(text: "{'execute': 'stop'").kind == .other)
    }

    @Test("the framer keeps a double quote inside a single-quoted string inside the message")
    func framerSingleQuotes() {
        var f = QMPFramer()
        let input = Array("{'execute': 'query-name', 'id': 'it\"s'}\n{\"execute\": \"query-status\"}\n".utf8)
        var out = f.push(input)
        out += f.finish()
        let texts = out.map { String(decoding: $0.bytes[$0.payload], as: UTF8.self) }
        #expect(texts == ["{'execute': 'query-name', 'id': 'it\"s'}", "{\"execute\": \"query-status\"}"])
    }

    @Test("validate: a reply to a single-quoted command is not a reply without a command")
    func validatorDialect() {
        var v = SessionValidator()
        v.opened(connection: 1)
        v.observe(QMPMessage(text: #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#), from: .qemu, connection: 1, record: 0, time: 0)
        v.observe(QMPMessage(text: #"{"execute": "qmp_capabilities"}"#), from: .client, connection: 1, record: 1, time: 1)
        v.observe(QMPMessage(text: #"{"return": {}}"#), from: .qemu, connection: 1, record: 2, time: 2)
        v.observe(QMPMessage(text: "{'execute': 'query-name', 'id': 'caf\\u00e9'}"), from: .client, connection: 1, record: 3, time: 3)
        v.observe(QMPMessage(text: #"{"return": {}, "id": "caf\u00E9"}"#), from: .qemu, connection: 1, record: 4, time: 4)
        let findings = v.finish()
        #expect(findings.isEmpty, "\(findings)")
    }
}
