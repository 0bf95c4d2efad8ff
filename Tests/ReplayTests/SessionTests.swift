import QMP
import Recording
import Testing
@testable import Replay
import Transport

/// The session model: QEMU's negotiation and error answers, reply matching, causality and
/// strict mode, all without sockets and with a manual clock.
struct SessionTests {
    @Test func greetingIsTheRecordedBytes() throws {
        let h = try Harness()
        h.session.connect()
        #expect(h.session.takeOutput() == Array((TestRecording.greeting + "\r\n").utf8))
    }

    @Test func negotiationRulesAsInQEMU() throws {
        let h = try Harness()
        h.session.connect()
        _ = h.lines()
        var out = h.send(#"{"execute":"query-status","id":[1,2]}"# + "\n")
        #expect(out == [#"{"id": [1, 2], "error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}"#])
        // No events before negotiation, however much time passes (and none queued either).
        #expect(h.advance(60_000_000_000).isEmpty)
        out = h.send(#"{"execute":"qmp_capabilities","arguments":{"enable":["bogus"]}}"# + "\n")
        #expect(out == [#"{"error": {"class": "GenericError", "desc": "Parameter 'null' does not accept value 'bogus'"}}"#])
        out = h.send(#"{"execute":"qmp_capabilities","id":"n"}"# + "\n")
        #expect(out == [#"{"return": {}, "id": "n"}"#])
        out = h.send(#"{"execute":"qmp_capabilities"}"# + "\n")
        #expect(out == [#"{"error": {"class": "CommandNotFound", "desc": "Capabilities negotiation is already complete, command ignored"}}"#])
        #expect(h.session.negotiated)
    }

    @Test func oobOnlyWhenOffered() throws {
        var lines = TestRecording.session
        lines[0].2 = TestRecording.greetingNoOOB
        let h = try Harness(lines)
        h.session.connect()
        _ = h.lines()
        let out = h.send(#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]},"id":1}"# + "\n")
        #expect(out == [#"{"id": 1, "error": {"class": "GenericError", "desc": "Capability oob not available"}}"#])
        #expect(!h.session.negotiated)
        // exec-oob is an unknown member while oob is off.
        #expect(h.send(#"{"exec-oob":"query-status"}"# + "\n") == [#"{"error": {"class": "GenericError", "desc": "QMP input member 'exec-oob' is unexpected"}}"#])
    }

    /// The id comes back as QEMU writes the value it parsed (docs/QEMU-FACTS.md, "Reply ids are values").
    @Test(arguments: [(#""abc""#, #""abc""#), ("42", "42"), ("-7", "-7"), ("2.5", "2.5"), ("1e3", "1000"), ("1.50", "1.5"),
                      ("null", "null"), ("true", "true"), ("false", "false"),
                      (#"{"a": [1, {"b": null}]}"#, #"{"a": [1, {"b": null}]}"#), (#"[1, "x", [], {}]"#, #"[1, "x", [], {}]"#),
                      (#""__qmp#00001""#, #""__qmp#00001""#), (#""\u00e9""#, #""\u00E9""#), ("\"é\"", #""\u00E9""#),
                      (#""\b""#, #""\b""#), ("'sq'", #""sq""#), (#"{"b": 1, "a": 2}"#, #"{"a": 2, "b": 1}"#)])
    func idIsEchoedAsQEMUWritesIt(id: String, qemu: String) throws {
        let h = try Harness()
        h.negotiate()
        let out = h.send(#"{"execute":"query-status","id":\#(id)}"# + "\n")
        #expect(out.count == 1)
        #expect(out[0].hasSuffix(#", "id": \#(qemu)}"#))
        #expect(h.json(out[0])["return"]?["status"]?.stringValue == "running")
        // Errors too, with the id first as QEMU writes it.
        let err = h.send(#"{"execute":"no-such-command","id":\#(id)}"# + "\n")
        #expect(err[0].hasPrefix(#"{"id": \#(qemu), "error": "#))
    }

    @Test func noIdMeansNoIdInTheReply() throws {
        let h = try Harness()
        h.negotiate()
        let out = h.send(#"{"execute":"query-status"}"# + "\n")
        #expect(out == [#"{"return": {"status": "running", "singlestep": false, "running": true}}"#])
        // A recorded error reply keeps its class and text, with the client's id.
        #expect(h.send(#"{"execute":"query-balloon","id":9}"# + "\n") == [#"{"id": 9, "error": {"class": "DeviceNotActive", "desc": "No balloon device has been activated"}}"#])
    }

    @Test func badInputGetsQEMUsAnswersAndTheSessionGoesOn() throws {
        let h = try Harness()
        h.negotiate()
        #expect(h.send("garbage here\n") == [
            #"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword 'garbage'"}}"#,
            #"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword 'here'"}}"#,
        ])
        #expect(h.send("[1, 2]\n") == [#"{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}"#])
        #expect(h.send(#"{"foo": 1, "id": 3}"# + "\n") == [#"{"id": 3, "error": {"class": "GenericError", "desc": "QMP input member 'foo' is unexpected"}}"#])
        #expect(h.send(#"{"id": 4}"# + "\n") == [#"{"id": 4, "error": {"class": "GenericError", "desc": "QMP input lacks member 'execute'"}}"#])
        #expect(h.send(#"{"execute": 5, "id": "x"}"# + "\n") == [#"{"id": "x", "error": {"class": "GenericError", "desc": "QMP input member 'execute' must be a string"}}"#])
        #expect(h.send(#"{"execute": "stop", "arguments": []}"# + "\n") == [#"{"error": {"class": "GenericError", "desc": "QMP input member 'arguments' must be an object"}}"#])
        #expect(h.send(#"{"execute":"a","execute":"b"}"# + "\n") == [#"{"error": {"class": "GenericError", "desc": "JSON parse error, duplicate key"}}"#])
        #expect(h.send("}\n") == [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#])
        #expect(h.send("\u{1}\n").count == 1)
        // Split across chunks and several per line still work.
        #expect(h.send(#"{"execute":"query-"#).isEmpty)
        #expect(h.send(#"status","id":1}{"execute":"query-status","id":2}"# + "\n").count == 2)
        #expect(h.session.report.protocolErrors == 10)
    }

    @Test func overlongInputIsAnsweredOnce() throws {
        var o = ReplayOptions()
        o.inputLimit = 1024
        let h = try Harness(options: o)
        h.negotiate()
        let big = #"{"execute":"x","arguments":{"s":""# + String(repeating: "a", count: 10_000) + "\"}}\n"
        let out = h.send(big)
        #expect(out == [#"{"error": {"class": "GenericError", "desc": "qmpreplay: message longer than 1024 bytes, not kept (QEMU takes up to 64 MiB)"}}"#])
        #expect(h.send(#"{"execute":"query-status","id":1}"# + "\n").count == 1)
    }

    @Test func nthOccurrenceAnswersNthRequest() throws {
        let h = try Harness()
        h.negotiate()
        let status = #"{"execute":"query-status"}"# + "\n"
        #expect(h.json(h.send(status)[0])["return"]?["status"]?.stringValue == "running")
        #expect(h.json(h.send(status)[0])["return"]?["status"]?.stringValue == "paused")
        // Beyond the recorded occurrences the last reply is repeated.
        #expect(h.json(h.send(status)[0])["return"]?["status"]?.stringValue == "paused")
        #expect(h.session.report.commandsRepeated == 1)
    }

    @Test func unmatchedCommandsErrorNamingTheClosestOrReturnEmpty() throws {
        let h = try Harness()
        h.negotiate()
        let out = h.send(#"{"execute":"balloon","arguments":{"value":5},"id":"b"}"# + "\n")
        let e = h.json(out[0])
        #expect(e["id"]?.stringValue == "b")
        #expect(e["error"]?["class"]?.stringValue == "GenericError")
        let desc = e["error"]?["desc"]?.stringValue ?? ""
        #expect(desc.contains("no recorded reply matched 'balloon'"))
        #expect(desc.contains(#"closest recorded command: {"execute":"balloon","arguments":{"value":1073741824}}"#))
        #expect(desc.contains("t.qmprec:13"))
        #expect(h.session.report.commandsUnmatched == 1)

        var o = ReplayOptions()
        o.unmatched = .empty
        let h2 = try Harness(options: o)
        h2.negotiate()
        // The recording's QEMU 7.2 greeting implies its schema (shipped): a command it has but
        // the recording never answered gets the --unmatched answer; one it lacks is unknown,
        // as the real QEMU says, whatever --unmatched.
        #expect(h2.script.commandTable.source == .impliedSchema)
        #expect(h2.send(#"{"execute":"query-cpus-fast","id":1}"# + "\n") == [#"{"return": {}, "id": 1}"#])
        #expect(h2.send(#"{"execute":"nothing-like-it","id":2}"# + "\n")
            == [#"{"id": 2, "error": {"class": "CommandNotFound", "desc": "The command nothing-like-it has not been found"}}"#])
    }

    @Test func matchByNameRelaxesArguments() throws {
        var o = ReplayOptions()
        o.match = .name
        let h = try Harness(options: o)
        h.negotiate()
        #expect(h.send(#"{"execute":"balloon","arguments":{"value":5},"id":1}"# + "\n") == [#"{"return": {}, "id": 1}"#])
    }

    @Test func argumentOrderAndNumberSpellingDoNotMatter() throws {
        let h = try Harness()
        h.negotiate()
        #expect(h.send(#"{"arguments":{"value":1073741824.0},"execute":"balloon","id":1}"# + "\n") == [#"{"return": {}, "id": 1}"#])
    }

    @Test func eventsRecordedWhileACommandRanComeWithItsReply() throws {
        let h = try Harness()
        h.negotiate()
        let out = h.send(#"{"execute":"stop","id":1}"# + "\n")
        #expect(out.count == 2)
        #expect(h.json(out[0])["event"]?.stringValue == "STOP")
        #expect(out[0] == TestRecording.ev("STOP", 3))
        #expect(out[1] == #"{"return": {}, "id": 1}"#)
        // Once only: a second stop gets the reply alone.
        #expect(h.send(#"{"execute":"stop","id":2}"# + "\n").count == 1)
        #expect(h.session.report.eventsWithReplies == 1)
    }

    @Test func eventsNeverGoBeforeAReplyThatPrecededThem() throws {
        var o = ReplayOptions()
        o.release = .commands
        let h = try Harness(options: o)
        h.negotiate()
        // BALLOON_CHANGE was recorded 1 s after balloon's reply: without balloon it waits forever.
        #expect(h.advance(100_000_000_000).isEmpty)
        #expect(h.session.nextDeadline == h.clock.now() + 1_000_000_000)
        #expect(h.advance(1_000_000_000).isEmpty)
        #expect(h.session.nextDeadline == nil)
        // ... and the session says so, once.
        #expect(h.session.report.notes.count == 1 && h.session.report.notes[0].contains("the reply to `balloon`"))
        #expect(h.session.takeLogLines().count == 1)
        #expect(h.advance(100_000_000_000).isEmpty && h.session.report.notes.count == 1)
        _ = h.send(#"{"execute":"balloon","arguments":{"value":1073741824}}"# + "\n")
        #expect(h.advance(999_000_000).isEmpty)
        let out = h.advance(1_000_000)
        #expect(out.count == 1 && h.json(out[0])["event"]?.stringValue == "BALLOON_CHANGE")
        // RTC_CHANGE waits for cont's reply (the last reply before it).
        #expect(h.advance(10_000_000_000).isEmpty)
        let c = h.send(#"{"execute":"cont"}"# + "\n")
        #expect(c.map { h.json($0)["event"]?.stringValue ?? "reply" } == ["RESUME", "reply"])
        #expect(h.advance(1_000_000_000).count == 1)
    }

    /// The default for a client that only listens: held events wait `holdPatience` (1 s) past
    /// their time, then the session stops holding and every event follows the clock.
    @Test func aListenerGetsEveryEventOnTheClock() throws {
        let h = try Harness()
        h.negotiate()
        // STOP (recorded while `stop` ran) is due 2 s after negotiation; it waits 1 s for `stop`
        // (the server wakes the session at each `nextDeadline`).
        #expect(h.advance(2_000_000_000).isEmpty)
        #expect(h.session.nextDeadline == h.clock.now() + 1_000_000_000)
        #expect(h.advance(999_000_000).isEmpty)
        #expect(h.session.report.notes.isEmpty)
        let first = h.advance(1_000_000)
        #expect(first.map { h.json($0)["event"]?.stringValue } == ["STOP"])
        #expect(h.session.report.notes.count == 1)
        #expect(h.session.report.notes[0].contains("events no longer wait for commands: STOP"))
        #expect(h.session.takeLogLines() == ["client 1: " + h.session.report.notes[0]])
        // The rest follow at their recorded distances from STOP: BALLOON_CHANGE 3.00005 s later.
        #expect(h.advance(3_000_000_000).isEmpty)
        #expect(h.advance(50_000).map { h.json($0)["event"]?.stringValue } == ["BALLOON_CHANGE"])
        #expect(h.advance(10_000_000_000).map { h.json($0)["event"]?.stringValue } == ["RESUME", "RTC_CHANGE"])
        #expect(h.session.report.eventsSent == 4 && h.session.report.eventsWithReplies == 0)
        #expect(h.session.report.lateness.first == 0)
        // A command sent afterwards gets its reply without the events the clock already sent.
        #expect(h.send(#"{"execute":"stop"}"# + "\n") == [#"{"return": {}}"#])
    }

    /// The default for a client that sends the recorded commands: causal order as recorded.
    @Test func aFollowingClientKeepsCausalOrder() throws {
        let h = try Harness()
        h.negotiate()
        _ = h.advance(100_000_000)
        #expect(h.send(#"{"execute":"query-status"}"# + "\n").count == 1)
        let stop = h.send(#"{"execute":"stop"}"# + "\n")
        #expect(stop.map { h.json($0)["event"]?.stringValue ?? "reply" } == ["STOP", "reply"])
        _ = h.send(#"{"execute":"query-status"}"# + "\n")
        // Late for balloon: BALLOON_CHANGE (due 5 s after negotiation) waits for its reply ...
        #expect(h.advance(5_400_000_000).isEmpty)
        #expect(h.send(#"{"execute":"balloon","arguments":{"value":1073741824}}"# + "\n") == [#"{"return": {}}"#])
        // ... and then follows it at the recorded distance (1 s).
        #expect(h.advance(999_000_000).isEmpty)
        #expect(h.advance(1_000_000).map { h.json($0)["event"]?.stringValue } == ["BALLOON_CHANGE"])
        _ = h.send(#"{"execute":"query-balloon"}"# + "\n")
        let cont = h.send(#"{"execute":"cont"}"# + "\n")
        #expect(cont.map { h.json($0)["event"]?.stringValue ?? "reply" } == ["RESUME", "reply"])
        #expect(h.advance(10_000_000_000).map { h.json($0)["event"]?.stringValue } == ["RTC_CHANGE"])
        #expect(h.session.report.eventsWithReplies == 2 && h.session.report.notes.isEmpty)
    }

    @Test func quitAnswersThenClosesWithShutdown() throws {
        // Not recorded: QEMU 7.2 writes SHUTDOWN (host-qmp-quit), the reply, then closes.
        let h = try Harness()
        h.negotiate()
        let out = h.send(#"{"execute":"quit","id":"q"}{"execute":"query-status"}"#)
        #expect(out.count == 2)
        #expect(h.json(out[0])["data"] == h.json(#"{"guest": false, "reason": "host-qmp-quit"}"#))
        #expect(out[0].hasPrefix(#"{"timestamp": {"seconds": "#))
        #expect(out[1] == #"{"return": {}, "id": "q"}"#)
        #expect(h.session.closeAfterFlush)
        // Nothing more: no input answered, no event released.
        #expect(h.send(#"{"execute":"query-status"}"# + "\n").isEmpty && h.advance(100_000_000_000).isEmpty)
        h.session.finish(reason: "closed")
        #expect(h.session.report.closeReason == "the client sent quit")

        // Recorded: the recorded reply and SHUTDOWN.
        var lines = Array(TestRecording.session.prefix(3))
        lines.append((2_000_000_000, .client, #"{"execute":"quit","id":"x"}"#))
        lines.append((2_000_050_000, .qemu, TestRecording.ev("SHUTDOWN", 2, data: #"{"guest": false, "reason": "host-qmp-quit"}"#)))
        lines.append((2_000_100_000, .qemu, #"{"return": {}, "id": "x"}"#))
        let r = try Harness(lines)
        r.negotiate()
        #expect(r.send(#"{"execute":"quit"}"#) == [TestRecording.ev("SHUTDOWN", 2, data: #"{"guest": false, "reason": "host-qmp-quit"}"#), #"{"return": {}}"#])
        #expect(r.session.closeAfterFlush)
    }

    @Test func shutdownOnSignalSendsShutdownToNegotiatedClientsOnly() throws {
        let h = try Harness()
        h.negotiate()
        h.session.shutdown()
        let out = h.lines()
        #expect(out.count == 1 && h.json(out[0])["data"] == h.json(#"{"guest": false, "reason": "host-signal"}"#))
        #expect(h.session.closeAfterFlush)
        let u = try Harness()
        u.session.connect()
        _ = u.lines()
        u.session.shutdown()
        #expect(u.lines().isEmpty && u.session.closeAfterFlush)
    }

    @Test func unknownCommandsAndArgumentsFromTheRecordedCalls() throws {
        let h = try Harness()
        h.negotiate()
        #expect(h.send(#"{"execute":"nope","id":1}"# + "\n") == [#"{"id": 1, "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}"#])
        #expect(h.send(#"{"execute":"query-status","arguments":{"x":1},"id":2}"# + "\n") == [#"{"id": 2, "error": {"class": "GenericError", "desc": "Parameter 'x' is unexpected"}}"#])
        // A known argument with another value is just not recorded.
        #expect(h.send(#"{"execute":"balloon","arguments":{"value":5}}"# + "\n")[0].contains("no recorded reply matched"))
        // exec-oob only once oob is on, and only for commands that allow it.
        #expect(h.send(#"{"exec-oob":"query-status","id":3}"# + "\n") == [#"{"id": 3, "error": {"class": "GenericError", "desc": "The command query-status does not support OOB"}}"#])
        #expect(h.send(#"{"execute":"query-status","exec-oob":"x","id":5}"# + "\n") == [#"{"id": 5, "error": {"class": "GenericError", "desc": "QMP input member 'execute' clashes with 'exec-oob'"}}"#])
    }

    @Test func unknownCommandsAndArgumentsFromTheRecordedSchema() throws {
        var lines = Array(TestRecording.session.prefix(3))
        lines.append((1_500_000_000, .client, #"{"execute":"query-qmp-schema","id":"s"}"#))
        lines.append((1_500_100_000, .qemu, #"{"return": [{"name": "query-name", "ret-type": "1", "meta-type": "command", "arg-type": "0"}, {"name": "migrate-recover", "ret-type": "0", "allow-oob": true, "meta-type": "command", "arg-type": "158"}, {"name": "0", "members": [], "meta-type": "object"}, {"name": "158", "members": [{"name": "uri", "type": "str"}, {"name": "opt", "default": null, "type": "str"}], "meta-type": "object"}], "id": "s"}"#))
        let h = try Harness(lines)
        #expect(h.script.commandTable.source == .schema)
        h.negotiate()
        #expect(h.send(#"{"execute":"query-status","id":1}"# + "\n") == [#"{"id": 1, "error": {"class": "CommandNotFound", "desc": "The command query-status has not been found"}}"#])
        #expect(h.send(#"{"execute":"query-name","arguments":{"x":1}}"# + "\n") == [#"{"error": {"class": "GenericError", "desc": "Parameter 'x' is unexpected"}}"#])
        #expect(h.send(#"{"execute":"migrate-recover","arguments":{"zz":1}}"# + "\n") == [#"{"error": {"class": "GenericError", "desc": "Parameter 'uri' is missing"}}"#])
        #expect(h.send(#"{"execute":"migrate-recover","arguments":{"uri":"x","zz":1}}"# + "\n") == [#"{"error": {"class": "GenericError", "desc": "Parameter 'zz' is unexpected"}}"#])
        // migrate-recover allows oob: it gets as far as the (unrecorded) reply.
        #expect(h.send(#"{"exec-oob":"migrate-recover","arguments":{"uri":"x"}}"# + "\n")[0].contains("no recorded reply matched"))
        #expect(h.send(#"{"exec-oob":"query-name"}"# + "\n") == [#"{"error": {"class": "GenericError", "desc": "The command query-name does not support OOB"}}"#])
    }

    @Test func aHugeGarbageTokenGetsAnErrorOfQEMUsSize() throws {
        let h = try Harness()
        h.negotiate()
        let token = [UInt8](repeating: UInt8(ascii: "b"), count: 9 << 20)
        for k in stride(from: 0, to: token.count, by: 1 << 20) { h.session.receive(token[k..<(k + (1 << 20))]) }
        #expect(h.session.pendingOutputCount == 0)
        let out = h.send("\n")
        #expect(out.count == 1 && out[0].utf8.count == 1091 - 2)
        #expect(h.json(out[0])["error"]?["desc"]?.stringValue?.hasPrefix("JSON parse error, invalid keyword 'bbbb") == true)
    }

    @Test func clockOnlyPutsEveryEventOnTheClock() throws {
        var o = ReplayOptions()
        o.clockOnly = true
        let h = try Harness(options: o)
        h.negotiate()
        // Negotiation was recorded at 1.0001 s; STOP at 3.00005 s.
        #expect(h.advance(1_999_000_000).isEmpty)
        let out = h.advance(1_000_000)
        #expect(out.count == 1 && h.json(out[0])["event"]?.stringValue == "STOP")
        #expect(h.send(#"{"execute":"stop"}"# + "\n") == [#"{"return": {}}"#])
        let rest = h.advance(10_000_000_000)
        #expect(rest.map { h.json($0)["event"]?.stringValue ?? "" } == ["BALLOON_CHANGE", "RESUME", "RTC_CHANGE"])
        #expect(h.session.report.lateness.count == 4)
    }

    @Test func speedAndMaxGapScaleTheClock() throws {
        var o = ReplayOptions()
        o.clockOnly = true
        o.speed = 10
        o.maxGap = 500_000_000
        let h = try Harness(options: o)
        h.negotiate()
        // STOP: 2 s after negotiation, capped to 0.5 s, at 10x: 50 ms.
        #expect(h.advance(49_000_000).isEmpty)
        #expect(h.advance(1_000_000).count == 1)
    }

    @Test func retimeRewritesTimestampsToTheReplayClock() throws {
        var o = ReplayOptions()
        o.retime = true
        let h = try Harness(options: o)
        h.negotiate()
        let before = WallClock.nowMicros()
        let out = h.send(#"{"execute":"stop"}"# + "\n")
        let ts = h.json(out[0])["timestamp"]!
        let us = ts["seconds"]!.int64Value! * 1_000_000 + ts["microseconds"]!.int64Value!
        #expect(abs(us - before) < 5_000_000)
        #expect(out[0].hasPrefix(#"{"timestamp": {"seconds": "#))
        #expect(out[0].hasSuffix(#""event": "STOP"}"#))
    }

    @Test func strictReportsDivergencesWithADiff() throws {
        var o = ReplayOptions()
        o.strict = true
        let h = try Harness(options: o)
        h.negotiate()
        _ = h.send(#"{"execute":"query-status"}"# + "\n")
        // Expected stop; got balloon with other arguments (recorded later).
        _ = h.send(#"{"execute":"balloon","arguments":{"value":5}}"# + "\n")
        var d = h.session.report.divergences
        #expect(d.count == 1)
        #expect(d[0].kind == .unexpected)
        #expect(d[0].diff.map(\.path) == ["execute", "arguments"])
        #expect(d[0].expectedLine == 8)
        // Skipping ahead to a recorded command is out of order.
        _ = h.send(#"{"execute":"query-balloon"}"# + "\n")
        d = h.session.report.divergences
        #expect(d.count == 2 && d[1].kind == .outOfOrder)
        h.session.finish(reason: "test")
        d = h.session.report.divergences
        #expect(d.count == 3 && d[2].kind == .missing)
        #expect(d[2].message.contains("cont"))
        #expect(!h.session.failedFast)
    }

    @Test func strictArgumentDiffPaths() throws {
        var o = ReplayOptions()
        o.strict = true
        var lines = Array(TestRecording.session.prefix(3))
        lines.append((2_000_000_000, .client, #"{"execute":"balloon","arguments":{"value":1073741824}}"#))
        lines.append((2_000_100_000, .qemu, #"{"return": {}}"#))
        let h = try Harness(lines, options: o)
        h.negotiate()
        _ = h.send(#"{"execute":"balloon","arguments":{"value":5,"extra":true}}"# + "\n")
        let d = h.session.report.divergences
        #expect(d.count == 1)
        #expect(d[0].diff.map(\.description) == ["arguments.value: expected 1073741824, got 5", "arguments.extra: unexpected true"])
        #expect(d[0].json["diff"]?.arrayValue?.count == 2)
    }

    @Test func strictFailFastStopsAtTheFirst() throws {
        var o = ReplayOptions()
        o.strict = true
        o.failFast = true
        let h = try Harness(options: o)
        h.negotiate()
        _ = h.send(#"{"execute":"cont"}"# + "\n")
        #expect(h.session.failedFast)
        _ = h.send(#"{"execute":"cont"}"# + "\n")
        #expect(h.session.report.divergences.count == 1)
    }

    /// The recorded sequence passes; the same with one wrong argument is one divergence, not
    /// also an out-of-order one for the next command.
    @Test(arguments: [1_073_741_824, 5])
    func strictFollowingTheRecording(balloonValue: Int) throws {
        var o = ReplayOptions()
        o.strict = true
        let h = try Harness(options: o)
        h.negotiate()
        for c in [#"{"execute":"query-status"}"#, #"{"execute":"stop"}"#, #"{"execute":"query-status"}"#,
                  #"{"execute":"balloon","arguments":{"value":\#(balloonValue)}}"#, #"{"execute":"query-balloon"}"#, #"{"execute":"cont"}"#] {
            _ = h.send(c + "\n")
        }
        h.session.finish(reason: "done")
        let d = h.session.report.divergences
        if balloonValue == 1_073_741_824 {
            #expect(d.isEmpty)
            #expect(h.session.report.json["strict"]?["ok"] == .bool(true))
        } else {
            #expect(d.count == 1 && d[0].kind == .unexpected)
            #expect(d[0].diff.map(\.description) == ["arguments.value: expected 1073741824, got 5"])
        }
    }

    @Test func reportCountsAndPercentiles() throws {
        var r = SessionReport(client: 1, peer: "x", connectedAtMicros: 0)
        r.lateness = (1...100).map { Int64($0) * 1000 }
        #expect(r.latenessPercentile(0.5) == 50_000)
        #expect(r.latenessPercentile(0.99) == 99_000)
        let j = r.json
        #expect(j["lateness"]?["max_us"]?.doubleValue == 100)
        // Where lateness is measured is part of the report, in JSON and in text.
        #expect(j["lateness"]?["measured_at"]?.stringValue?.hasPrefix("server, when the event was queued") == true)
        #expect(r.description.contains("lateness at the server p50 0.05ms"))
        #expect(j["commands"]?["matched"]?.int64Value == 0)
    }

    @Test func scriptFindsGatesAndBarriers() throws {
        let r = try TestRecording.recording()
        let s = try ReplayScript(recording: r, options: ReplayOptions())
        #expect(s.commands.count == 7)
        #expect(s.events.map(\.name) == ["STOP", "BALLOON_CHANGE", "RESUME", "RTC_CHANGE"])
        #expect(s.events[0].gate == 2)
        #expect(s.events[1].barrier == 4)
        // By default gated events are on the clock too (held while the client follows).
        #expect(s.clockEvents == [0, 1, 2, 3])
        #expect(s.clockGates.map { $0?.command } == [2, nil, 6, nil])
        var o = ReplayOptions()
        o.release = .commands
        #expect(try ReplayScript(recording: r, options: o).clockEvents == [1, 3])
        #expect(s.spanStart == 1_000_100_000)
        #expect(s.commands[5].reply?["error"]?["class"]?.stringValue == "DeviceNotActive")
    }

    @Test func missingGreetingIsSynthesized() throws {
        let lines = Array(TestRecording.session.dropFirst())
        let h = try Harness(lines)
        #expect(h.script.greetingSynthesized)
        h.session.connect()
        let g = h.lines()
        #expect(g.count == 1 && h.json(g[0])["QMP"]?["capabilities"] == .array([.string("oob")]))
    }
}
