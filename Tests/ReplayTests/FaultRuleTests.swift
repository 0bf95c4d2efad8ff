import QMP
import Recording
import Testing
@testable import Replay
import Transport

/// Fault rules: their grammar and its errors, which calls they match (n-th, arguments,
/// `after`), and what the session does with each kind (error, return, delay, close, event),
/// combined with the recording. Under a manual clock.
struct FaultRuleTests {
    @Test func everyActionParses() throws {
        var r = try FaultRule.parse(#"device_add {"driver": "virtio-net-pci"} error GenericError "Duplicate ID 'net0'""#, source: "--fault 1")
        #expect(r.match.command == "device_add" && r.match.arguments?["driver"] == .string("virtio-net-pci"))
        #expect(r.action == .error(errorClass: "GenericError", text: "Duplicate ID 'net0'"))
        r = try FaultRule.parse("query-status#2 delay 2s", source: "x")
        #expect(r.match.nth == 2 && r.action == .delay(2_000_000_000))
        r = try FaultRule.parse("migrate close", source: "x")
        #expect(r.action == .close)
        r = try FaultRule.parse(#"cont event BLOCK_JOB_ERROR {"device": "d0", "operation": "write", "action": "stop"}"#, source: "x")
        #expect(r.action == .event(name: "BLOCK_JOB_ERROR", data: JSONObject(["device": .string("d0"), "operation": .string("write"), "action": .string("stop")])))
        r = try FaultRule.parse(#"after migrate: query-migrate return {"status": "failed"}"#, source: "x")
        #expect(r.after?.command == "migrate" && r.action == .reply(.object(JSONObject(["status": .string("failed")]))))
        r = try FaultRule.parse("query-kvm error KVMMissingCap no text quoting needed", source: "x")
        #expect(r.action == .error(errorClass: "KVMMissingCap", text: "no text quoting needed"))
    }

    @Test func badRulesSayWhatIsWrong() {
        func message(_ text: String) -> String {
            do { _ = try FaultRule.parse(text, source: "faults.txt:3"); return "" } catch { return error.description }
        }
        #expect(message("stop error Oops").contains("unknown error class 'Oops' (QEMU's classes: GenericError, CommandNotFound, DeviceNotActive, DeviceNotFound, KVMMissingCap)"))
        #expect(message("stop").contains("no action"))
        #expect(message("stop explode").contains("unknown action 'explode'"))
        #expect(message("stop delay soon").contains("'delay' needs a duration"))
        #expect(message("stop#0 close").contains("call number"))
        #expect(message("after stop query-status close").contains("must end with ':'"))
        #expect(message("stop return {oops").contains("not JSON"))
        #expect(message("stop close now").contains("unexpected 'now'"))
        #expect(message("stop close now").hasPrefix("faults.txt:3: "))
        let file = "# a comment\n\nstop close\n  bogus\n"
        do { _ = try FaultRule.parseFile(file, path: "f.txt"); Issue.record("accepted") } catch {
            #expect(error.description.hasPrefix("f.txt:4: "))
        }
    }

    @Test func theBookCountsCallsAndTriggers() throws {
        var b = FaultBook(rules: [
            try FaultRule.parse("query-status#2 error GenericError second", source: "1"),
            try FaultRule.parse(#"after migrate: query-migrate return {"status": "failed"}"#, source: "2"),
            try FaultRule.parse(#"device_add {"id": "n1"} delay 5ms"#, source: "3"),
            try FaultRule.parse("device_add event DEVICE_DELETED", source: "4"),
        ])
        #expect(b.consult("query-status", nil).answer == nil)
        #expect(b.consult("query-status", nil).answer == .error(errorClass: "GenericError", text: "second"))
        #expect(b.consult("query-status", nil).answer == nil)
        #expect(b.consult("query-migrate", nil).answer == nil, "not armed before migrate")
        _ = b.consult("migrate", JSONObject(["uri": .string("tcp:x")]))
        #expect(b.consult("query-migrate", nil).answer == .reply(.object(JSONObject(["status": .string("failed")]))))
        #expect(b.consult("query-migrate", nil).answer != nil, "the state stays")
        let o = b.consult("device_add", JSONObject(["id": .string("n1"), "driver": .string("e1000")]))
        #expect(o.delay == 5_000_000 && o.events.map(\.name) == ["DEVICE_DELETED"])
        #expect(b.consult("device_add", JSONObject(["id": .string("n2")])).delay == nil)
        #expect(b.fired == [1, 2, 1, 2])
    }

    static func session(_ rules: [String], strict: Bool = false) throws -> Harness {
        var o = ReplayOptions()
        o.faults = try rules.enumerated().map { try FaultRule.parse($0.element, source: "--fault \($0.offset + 1)") }
        o.strict = strict
        let h = try Harness(options: o)
        h.negotiate()
        return h
    }

    @Test func errorAndReturnReplaceTheRecordedReply() throws {
        let h = try FaultRuleTests.session([#"stop error DeviceNotActive "No VM to stop""#,
                                            #"after stop: query-status return {"status": "internal-error", "running": false}"#])
        // The rule's answer, and no STOP: the command failed.
        #expect(h.send(#"{"execute":"stop","id":2}"# + "\n") == [#"{"id": 2, "error": {"class": "DeviceNotActive", "desc": "No VM to stop"}}"#])
        #expect(h.send(#"{"execute":"query-status","id":3}"# + "\n") == [#"{"return": {"status": "internal-error", "running": false}, "id": 3}"#])
        // Commands no rule matches get the recording.
        #expect(h.send(#"{"execute":"query-balloon","id":4}"# + "\n") == [#"{"id": 4, "error": {"class": "DeviceNotActive", "desc": "No balloon device has been activated"}}"#])
    }

    @Test func delayHoldsTheReplyBack() throws {
        let h = try FaultRuleTests.session(["query-status delay 500ms"])
        h.session.receive(Array(#"{"execute":"query-status","id":1}"#.utf8) + [0x0A])
        #expect(h.session.takeWritable().isEmpty)
        #expect(h.session.nextDeadline == h.clock.now() + 500_000_000)
        h.clock.advance(by: 499_999_999)
        #expect(h.session.takeWritable().isEmpty)
        h.clock.advance(by: 1)
        #expect(String(decoding: h.session.takeWritable(), as: UTF8.self).contains(#""id": 1"#))
    }

    @Test func closeEndsTheConnectionWithoutAReply() throws {
        let h = try FaultRuleTests.session(["stop close"])
        #expect(h.send(#"{"execute":"stop","id":2}"# + "\n").isEmpty)
        #expect(h.session.closeAfterFlush)
        #expect(h.session.report.closeReason == "fault rule --fault 1 closed the connection")
    }

    @Test func eventFollowsTheReply() throws {
        let h = try FaultRuleTests.session([#"query-status event GUEST_PANICKED {"action": "pause"}"#])
        let out = h.send(#"{"execute":"query-status","id":1}"# + "\n")
        #expect(out.count == 2 && out[0].contains("\"id\": 1"))
        let e = try JSONParser.parse(out[1]).objectValue!
        #expect(e["event"] == .string("GUEST_PANICKED") && e["data"] == .object(JSONObject(["action": .string("pause")])))
        #expect(e["timestamp"]?.objectValue?["seconds"] != nil)
    }

    @Test func strictReportsRulesThatNeverFired() throws {
        let h = try FaultRuleTests.session(["stop close", "migrate close"], strict: true)
        _ = h.send(#"{"execute":"stop","id":2}"# + "\n")
        h.session.finish(reason: "test")
        let r = h.session.report
        #expect(r.faults.map(\.fired) == [1, 0])
        #expect(r.divergences.contains { $0.kind == .ruleNeverFired && $0.message == "fault rule --fault 2 (migrate close) never fired" })
        #expect(r.description.contains("fault rules fired: --fault 1 1x, --fault 2 never"))
        #expect(r.json.objectValue?["faults"]?.arrayValue?.count == 2)
    }
}
