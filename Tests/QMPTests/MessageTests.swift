import QMP
import Testing

private func message(_ text: String) -> QMPMessage { QMPMessage(text: text) }

private func json(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> JSONValue {
    do {
        return try JSONParser.parse(text)
    } catch {
        Issue.record("test data is not JSON: \(error)", sourceLocation: sourceLocation)
        return .null
    }
}

/// Every JSON type an `id` can have (docs/QEMU-FACTS.md, "Reply": the id may be any JSON value and comes back as the same value).
let idsOfEveryType: [String] = [
    #""libvirt-12""#, #""__qmp#00001""#, #""""#, "7", "0", "-3", "1.5", "1e3", "18446744073709551615", "null", "true", "false",
    #"{"a": [1, {"b": null}], "c": "d"}"#, "{}", #"[1, "two", 3.0, null]"#, "[]",
]

// MARK: - Greeting

@Suite("QMPMessage: greeting")
struct GreetingTests {
    @Test("a modern greeting: version, package, oob")
    func modern() {
        let m = message(#"{"QMP": {"version": {"qemu": {"micro": 1, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}"#)
        #expect(m.kind == .greeting)
        guard case .greeting(let g) = m.body else {
            Issue.record("not a greeting: \(m.body)")
            return
        }
        #expect(g.version == QEMUVersion(major: 7, minor: 2, micro: 1, package: "Debian 1:7.2+dfsg-7"))
        #expect(g.version?.description == "7.2.1")
        #expect(g.capabilities == ["oob"])
        #expect(g.offersOOB)
        #expect(m.name == nil)
        #expect(m.id == nil)
    }

    @Test("before QEMU 2.12 the capability list is empty")
    func old() {
        let m = message(#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 2}, "package": ""}, "capabilities": []}}"#)
        guard case .greeting(let g) = m.body else {
            Issue.record("not a greeting: \(m.body)")
            return
        }
        #expect(g.version == QEMUVersion(major: 2, minor: 0, micro: 0))
        #expect(g.capabilities.isEmpty)
        #expect(!g.offersOOB)
    }

    @Test("a greeting without version information is still a greeting")
    func noVersion() {
        let m = message(#"{"QMP": {"capabilities": ["oob", "future-cap"]}}"#)
        guard case .greeting(let g) = m.body else {
            Issue.record("not a greeting: \(m.body)")
            return
        }
        #expect(g.version == nil)
        #expect(g.capabilities == ["oob", "future-cap"])
    }
}

// MARK: - Commands

@Suite("QMPMessage: commands")
struct CommandTests {
    @Test("execute with arguments")
    func execute() {
        let m = message(#"{"execute": "balloon", "arguments": {"value": 536870912}, "id": "libvirt-7"}"#)
        #expect(m.kind == .command)
        #expect(m.name == "balloon")
        #expect(m.id == .string("libvirt-7"))
        guard case .command(let c) = m.body else {
            Issue.record("not a command: \(m.body)")
            return
        }
        #expect(c.name == "balloon")
        #expect(c.arguments == JSONObject(["value": .int(536_870_912)]))
        #expect(c.arguments?["value"]?.int64Value == 536_870_912)
        #expect(!c.outOfBand)
    }

    @Test("execute without arguments or id")
    func bare() {
        let m = message(#"{"execute": "qmp_capabilities"}"#)
        guard case .command(let c) = m.body else {
            Issue.record("not a command: \(m.body)")
            return
        }
        #expect(c.name == "qmp_capabilities")
        #expect(c.arguments == nil)
        #expect(c.id == nil)
        #expect(m.id == nil)
    }

    @Test("exec-oob is an out-of-band command")
    func execOOB() {
        let m = message(#"{"exec-oob": "migrate-pause", "id": "oob-1"}"#)
        guard case .command(let c) = m.body else {
            Issue.record("not a command: \(m.body)")
            return
        }
        #expect(c.name == "migrate-pause")
        #expect(c.outOfBand)
        #expect(c.id == .string("oob-1"))
    }

    @Test("the id may be any JSON value and is kept exactly", arguments: idsOfEveryType)
    func idOfEveryType(idText: String) {
        let id = json(idText)
        for verb in ["execute", "exec-oob"] {
            let m = message(#"{""# + verb + #"": "query-status", "arguments": {"x": [1, {"y": null}]}, "id": "# + idText + "}")
            guard case .command(let c) = m.body else {
                Issue.record("not a command: \(m.body)")
                continue
            }
            #expect(c.id == id)
            #expect(m.id == id)
            #expect(c.id?.serialized(.qemu) == id.serialized(.qemu))  // same text, not only equal
            #expect(c.outOfBand == (verb == "exec-oob"))
            #expect(c.arguments?["x"] == json(#"[1, {"y": null}]"#))
        }
    }

    @Test("arguments of every JSON type are kept")
    func argumentTypes() {
        let m = message(#"{"execute": "x", "arguments": {"s": "v", "i": -1, "f": 0.25, "n": null, "o": {"k": 1}, "a": [1, "b"], "t": true, "big": 18446744073709551615}}"#)
        guard case .command(let c) = m.body, let args = c.arguments else {
            Issue.record("no arguments: \(m.body)")
            return
        }
        #expect(args.keys == ["s", "i", "f", "n", "o", "a", "t", "big"])
        #expect(args["s"] == .string("v"))
        #expect(args["i"] == .int(-1))
        #expect(args["f"]?.doubleValue == 0.25)
        #expect(args["n"] == .null)
        #expect(args["o"] == json(#"{"k": 1}"#))
        #expect(args["a"] == json(#"[1, "b"]"#))
        #expect(args["t"] == .bool(true))
        #expect(args["big"]?.numberValue?.text == "18446744073709551615")
    }
}

// MARK: - Replies

@Suite("QMPMessage: replies")
struct ReplyTests {
    @Test("return values of every kind", arguments: [
        #"{}"#, #"{"running": true, "status": "running"}"#, #"[{"name": "a"}, {"name": "b"}]"#, "[]", #""text""#, "5", "null",
        "true",
    ])
    func returns(valueText: String) {
        let m = message(#"{"return": "# + valueText + #", "id": 3}"#)
        #expect(m.kind == .return)
        guard case .return(let r) = m.body else {
            Issue.record("not a return: \(m.body)")
            return
        }
        #expect(r.value == json(valueText))
        #expect(r.id == .int(3))
        #expect(m.name == nil)
    }

    @Test("a return without id")
    func returnWithoutID() {
        guard case .return(let r) = message(#"{"return": {}}"#).body else {
            Issue.record("not a return")
            return
        }
        #expect(r.id == nil)
        #expect(r.value == .object(JSONObject()))
    }

    @Test("reply ids of every JSON type", arguments: idsOfEveryType)
    func replyIDs(idText: String) {
        let id = json(idText)
        #expect(message(#"{"return": {}, "id": "# + idText + "}").id == id)
        #expect(message(#"{"error": {"class": "GenericError", "desc": "x"}, "id": "# + idText + "}").id == id)
    }

    @Test("error replies: class, desc, id", arguments: [
        ("GenericError", "JSON parse error, expecting value"),
        ("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'"),
        ("DeviceNotActive", "No balloon device has been activated"),
        ("DeviceNotFound", "Device 'x' not found"),
        ("KVMMissingCap", "Using KVM without synchronous MMU"),
        ("SomeClassFromTheFuture", "clients must accept unknown classes"),
    ])
    func errors(errorClass: String, desc: String) {
        let text = #"{"error": {"class": "# + JSONWriter.quoted(errorClass) + #", "desc": "# + JSONWriter.quoted(desc) + #"}, "id": "libvirt-3"}"#
        let m = message(text)
        #expect(m.kind == .error)
        #expect(m.name == errorClass)
        guard case .error(let e) = m.body else {
            Issue.record("not an error: \(m.body)")
            return
        }
        #expect(e.errorClass == errorClass)
        #expect(e.desc == desc)
        #expect(e.id == .string("libvirt-3"))
    }

    @Test("a parse-error reply carries no id")
    func parseErrorReply() {
        guard case .error(let e) = message(#"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword 'x'"}}"#).body else {
            Issue.record("not an error")
            return
        }
        #expect(e.id == nil)
        #expect(e.desc.hasPrefix("JSON parse error"))
    }
}

// MARK: - Events

@Suite("QMPMessage: events")
struct EventMessageTests {
    @Test("an event: name, data, timestamp")
    func event() {
        let m = message(#"{"timestamp": {"seconds": 1267020223, "microseconds": 435656}, "event": "BALLOON_CHANGE", "data": {"actual": 944766976}}"#)
        #expect(m.kind == .event)
        #expect(m.name == "BALLOON_CHANGE")
        #expect(m.id == nil)
        guard case .event(let e) = m.body else {
            Issue.record("not an event: \(m.body)")
            return
        }
        #expect(e.name == "BALLOON_CHANGE")
        #expect(e.data == JSONObject(["actual": .int(944_766_976)]))
        #expect(e.timestamp?.seconds == 1_267_020_223)
        #expect(e.timestamp?.microseconds == 435_656)
        #expect(e.timestamp?.totalMicroseconds == 1_267_020_223_435_656)
    }

    @Test("STOP has no data")
    func noData() {
        guard case .event(let e) = message(#"{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "STOP"}"#).body else {
            Issue.record("not an event")
            return
        }
        #expect(e.data == nil)
        #expect(e.timestamp?.totalMicroseconds == 1_000_000)
    }

    @Test("member order does not matter")
    func memberOrder() {
        let a = message(#"{"event": "RESET", "data": {"guest": true}, "timestamp": {"microseconds": 2, "seconds": 1}}"#)
        let b = message(#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESET", "data": {"guest": true}}"#)
        #expect(a.body == b.body)
    }

    @Test("a missing or malformed timestamp gives nil", arguments: [
        #"{"event": "GUEST_PANICKED", "data": {"action": "pause"}}"#,
        #"{"event": "STOP", "timestamp": {"seconds": "1", "microseconds": 2}}"#,
        #"{"event": "STOP", "timestamp": {"seconds": 1}}"#,
        #"{"event": "STOP", "timestamp": {"seconds": 1.5, "microseconds": 2}}"#,
        #"{"event": "STOP", "timestamp": 1267020223}"#,
    ])
    func badTimestamp(text: String) {
        guard case .event(let e) = message(text).body else {
            Issue.record("not an event")
            return
        }
        #expect(e.timestamp == nil)
    }

    @Test("data that is not an object is dropped")
    func nonObjectData() {
        guard case .event(let e) = message(#"{"event": "X", "data": [1]}"#).body else {
            Issue.record("not an event")
            return
        }
        #expect(e.data == nil)
    }
}

// MARK: - Other

@Suite("QMPMessage: not QMP")
struct OtherMessageTests {
    @Test("non-objects: QEMU answers \"QMP input must be a JSON object\"", arguments: [
        "42", #""execute""#, "null", "true", "[]", #"[{"execute": "cont"}]"#, "1.5",
    ])
    func nonObject(text: String) {
        let m = message(text)
        #expect(m.kind == .other)
        #expect(m.body == .other(reason: "QMP input must be a JSON object", json: json(text)))
        #expect(m.json == json(text))
        #expect(m.name == nil)
        #expect(m.id == nil)
    }

    @Test("objects with no QMP meaning", arguments: [
        "{}", #"{"foo": 1}"#, #"{"id": 5}"#, #"{"arguments": {}}"#, #"{"event": 5}"#, #"{"error": "boom"}"#,
        #"{"QMp": {}}"#, #"{"Execute": "cont"}"#,
    ])
    func meaningless(text: String) {
        let m = message(text)
        #expect(m.kind == .other)
        if case .other(let reason, let value) = m.body {
            #expect(reason.contains("no QMP meaning"), "\(reason)")
            #expect(value == json(text))
        }
    }

    @Test("execute must be a string (QEMU: \"QMP input member 'execute' must be a string\")", arguments: [
        #"{"execute": 1}"#, #"{"execute": null}"#, #"{"execute": ["cont"]}"#, #"{"execute": {"name": "cont"}}"#,
    ])
    func executeNotString(text: String) {
        let m = message(text)
        #expect(m.kind == .other)
        if case .other(let reason, _) = m.body {
            #expect(reason.contains("'execute' must be a string"), "\(reason)")
        }
    }

    /// QEMU's qmp_dispatch_check_obj names the offending member: "QMP input member
    /// 'exec-oob' must be a string".
    @Test("exec-oob must be a string, and the reason names exec-oob")
    func execOOBNotString() {
        let m = message(#"{"exec-oob": 5, "id": 1}"#)
        #expect(m.kind == .other)
        if case .other(let reason, _) = m.body {
            #expect(reason.contains("'exec-oob' must be a string"), "\(reason)")
        }
    }

    /// QEMU refuses `arguments` that is not an object ("QMP input member 'arguments' must be
    /// an object") and runs nothing; classifying it as a command without arguments misreports
    /// what was sent.
    @Test("arguments must be an object", arguments: [
        #"{"execute": "cont", "arguments": [1]}"#, #"{"execute": "cont", "arguments": "x"}"#,
        #"{"execute": "cont", "arguments": null}"#,
    ])
    func argumentsNotObject(text: String) {
        let m = message(text)
        #expect(m.kind == .other, "\(m.body)")
        if case .other(let reason, _) = m.body {
            #expect(reason.contains("'arguments' must be an object"), "\(reason)")
        }
    }

    /// QEMU: "QMP input member 'exec-oob' clashes with 'execute'" (or the other way round).
    @Test("execute and exec-oob together are refused")
    func executeClashesWithExecOOB() {
        let m = message(#"{"execute": "cont", "exec-oob": "migrate-pause"}"#)
        #expect(m.kind == .other, "\(m.body)")
        if case .other(let reason, _) = m.body {
            #expect(reason.contains("clashes"), "\(reason)")
        }
    }

    @Test("invalid JSON", arguments: [#"{"execute": "#, "{execute: 1}", #"{"a": 1}}"#, "\u{FF}"])
    func invalidJSON(text: String) {
        let m = message(text)
        #expect(m.kind == .other)
        #expect(m.json == nil)
        if case .other(let reason, let value) = m.body {
            #expect(reason.hasPrefix("invalid JSON: "), "\(reason)")
            #expect(reason.contains("at byte"), "\(reason)")
            #expect(value == nil)
        }
    }

    @Test("no JSON text at all", arguments: ["", "   ", "\r\n", "\t \n"])
    func empty(text: String) {
        let m = message(text)
        #expect(m.body == .other(reason: "no JSON text", json: nil))
        #expect(m.payload.isEmpty)
    }
}

// MARK: - Bytes and payload

@Suite("QMPMessage: bytes and payload")
struct MessageBytesTests {
    @Test("surrounding whitespace stays in the bytes but not in the payload")
    func payload() {
        let text = " \r\n\t{\"return\": {}, \"id\": 1}\r\n"
        let m = message(text)
        #expect(m.bytes == Array(text.utf8))
        #expect(m.payload == 4..<27)
        #expect(m.payloadText == #"{"return": {}, "id": 1}"#)
        #expect(Array(m.payloadBytes) == Array(#"{"return": {}, "id": 1}"#.utf8))
        #expect(m.kind == .return)
        #expect(QMPMessage.trimmedRange(Array(text.utf8)) == 4..<27)
    }

    @Test("an explicit payload range is honoured")
    func explicitPayload() {
        let bytes = Array(#"xx{"execute": "cont"}yy"#.utf8)
        let m = QMPMessage(bytes: bytes, payload: 2..<(bytes.count - 2))
        #expect(m.kind == .command)
        #expect(m.name == "cont")
        #expect(m.bytes == bytes)
    }

    @Test("a message built from a parsed value")
    func fromJSON() {
        let v = json(#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}"#)
        let bytes = v.serializedBytes(.qemu) + [0x0D, 0x0A]
        let m = QMPMessage(json: v, bytes: bytes, payload: 0..<(bytes.count - 2))
        #expect(m.kind == .event)
        #expect(m.json == v)
        #expect(m.body == QMPMessage(bytes: bytes).body)
        #expect(QMPMessage.classify(v) == m.body)
    }

    @Test("kinds and directions have stable names")
    func names() {
        #expect(MessageKind.allCases.map(\.rawValue) == ["greeting", "command", "return", "error", "event", "other"])
        #expect(Direction.qemu.arrow == "<-")
        #expect(Direction.client.arrow == "->")
        #expect(Direction.allCases.map(\.rawValue) == ["qemu", "client"])
    }

    @Test("isJSONSpace")
    func spaces() {
        #expect([0x20, 0x09, 0x0A, 0x0D].allSatisfy(isJSONSpace))
        #expect(![0x00, 0x0B, 0x0C, 0xA0, 0x41].contains(where: isJSONSpace))
    }
}
