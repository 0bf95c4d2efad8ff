import NIOCore
import NIOEmbedded
import QMP
import Recording
import Testing
@testable import Replay
import Transport

/// The control API (docs/REPLAY.md, "Control API") under the loop's own clock: the test
/// steps, holds and releases, and looks at what the client got in between, without time
/// passing unless the test moves it.
struct ControlTests {
    /// A paused replay of `TestRecording.session` with every event on the clock, one
    /// negotiated client, and the control layer over it.
    static func pausedReplay(clockOnly: Bool = true) throws -> (LoopHarness, TestClient, ReplayControl) {
        var o = ReplayOptions()
        o.clockOnly = clockOnly
        o.startPaused = true
        let h = try LoopHarness(options: o)
        let c = try h.connect()
        try c.negotiate()
        return (h, c, ReplayControl(server: h.server, recording: try TestRecording.recording()))
    }

    static func record(_ h: LoopHarness, _ name: String) -> Int { h.script.events.first { $0.name == name }!.record }

    @Test func stepReleasesExactlyTheNextEventsAndStaysPaused() throws {
        let (h, c, ctl) = try Self.pausedReplay()
        h.advance(60_000_000_000)
        #expect(try c.lines().isEmpty, "paused from the start: nothing goes")
        let one = try ctl.perform(.step(1))
        #expect(one.released == 1)
        let got = try c.lines()
        #expect(got.count == 1 && got[0].contains("\"STOP\""))
        #expect(one.status.replay.paused && one.status.replay.nextRecord == Self.record(h, "BALLOON_CHANGE"))
        h.advance(60_000_000_000)
        #expect(try c.lines().isEmpty, "still paused after the step")
        #expect(try ctl.perform(.step(2)).released == 2)
        let two = try c.lines()
        #expect(two.count == 2 && two[0].contains("BALLOON_CHANGE") && two[1].contains("RESUME"))
        // Beyond the end: only what is left.
        #expect(try ctl.perform(.step(5)).released == 1)
        #expect(try c.lines().count == 1)
    }

    @Test func burstSendsEventsAtOnceAndAPlayingReplayGoesOnFromThere() throws {
        let (h, c, ctl) = try Self.pausedReplay()
        _ = try ctl.perform(.resume)
        #expect(try ctl.perform(.burst(2)).released == 2)
        #expect(try c.lines().count == 2)
        // RESUME was recorded 2 s after BALLOON_CHANGE: it follows the burst at that distance.
        let ev = h.script.clockEvents.map { h.script.events[$0] }
        h.advance(ev[2].time - ev[1].time - 1)
        #expect(try c.lines().isEmpty)
        h.advance(1)
        #expect(try c.lines().first?.contains("RESUME") == true)
    }

    @Test func aHoldBeforeAnEventStopsThereUntilReleased() throws {
        let (h, c, ctl) = try Self.pausedReplay()
        let balloon = Self.record(h, "BALLOON_CHANGE")
        let held = try ctl.perform(.hold(.event(record: balloon)))
        let id = try #require(held.hold?.id)
        _ = try ctl.perform(.resume)
        h.advance(60_000_000_000)
        #expect(try c.lines().map { $0.contains("STOP") } == [true], "up to the hold, not past it")
        let st = try ctl.perform(.status).status
        #expect(st.held && st.clients.first?.heldBy == id && st.replay.nextRecord == balloon)
        let rel = try ctl.perform(.release(id))
        #expect(rel.releasedHolds == [id] && !rel.status.held)
        #expect(try c.lines().first?.contains("BALLOON_CHANGE") == true, "the held event goes at once")
        #expect(throws: ControlError.self) { try ctl.perform(.release(id)) }
    }

    @Test func aHoldBeforeAReplyKeepsItAndWhatFollowsUntilReleased() throws {
        let (h, c, ctl) = try Self.pausedReplay(clockOnly: false)
        let id = try #require(try ctl.perform(.hold(.reply(command: "stop"))).hold?.id)
        try c.send(#"{"execute":"query-status","id":1}{"execute":"stop","id":2}{"execute":"query-status","id":3}"#)
        let before = try c.lines()
        #expect(before.count == 1 && before[0].contains("running"), "only the reply before the held command")
        h.advance(10_000_000_000)
        #expect(try c.lines().isEmpty)
        #expect(try ctl.perform(.status).status.clients.first?.heldBy == id)
        _ = try ctl.perform(.release(nil))
        let after = try c.lines()
        #expect(after.count == 3 && after[0].contains("STOP") && after[1].contains("\"id\": 2") && after[2].contains("paused"), "\(after)")
    }

    @Test func seekAndSpeedGoThroughTheSameLayer() throws {
        let (h, c, ctl) = try Self.pausedReplay()
        let resume = Self.record(h, "RESUME")
        let r = try ctl.perform(.seek(.record(resume)))
        #expect(r.status.replay.nextRecord == resume)
        _ = try ctl.perform(.speed(nil))
        _ = try ctl.perform(.resume)
        let got = try c.lines()
        #expect(got.count == 2 && got[0].contains("RESUME") && got[1].contains("RTC_CHANGE"))
    }

    @Test func requestLinesAndTheirErrors() throws {
        let (_, _, ctl) = try Self.pausedReplay()
        func reply(_ line: String) throws -> JSONObject { try #require(try JSONParser.parse(ctl.handle(line: line)).objectValue) }
        let ok = try reply(#"{"cmd":"step","n":1,"id":"a"}"#)
        #expect(ok["ok"] == .bool(true) && ok["id"] == .string("a") && ok["released"]?.int64Value == 1 && ok["paused"] == .bool(true))
        #expect(ok["clients"]?.arrayValue?.count == 1)
        for (line, code) in [("nope", "bad-request"), ("[1]", "bad-request"), (#"{"cmd":"fly"}"#, "unknown-command"),
                             (#"{"cmd":"step","n":0}"#, "bad-request"), (#"{"cmd":"speed","speed":5000}"#, "bad-request"),
                             (#"{"cmd":"pause","x":1}"#, "bad-request"), (#"{"cmd":"hold","before_event":0}"#, "not-found"),
                             (#"{"cmd":"release","hold":9}"#, "not-found"), (#"{"cmd":"seek","to":"soon"}"#, "bad-request")] {
            let r = try reply(line)
            #expect(r["ok"] == .bool(false) && r["error"] == .string(code), "\(line): \(r)")
            #expect(r["message"]?.stringValue?.isEmpty == false)
        }
        #expect(try reply(#"{"cmd":"fly","id":7}"#)["id"]?.int64Value == 7, "the id comes back on errors too")
        #expect(try ControlRequest.parse(line: #"{"cmd":"speed","speed":"max"}"#).0 == .speed(nil))
        #expect(try ControlRequest.parse(line: ##"{"cmd":"hold","before_event":"#12"}"##).0 == .hold(.event(record: 12)))
    }

    @Test func theSchedulerStopsBeforeAnItemAndForcedItemsGoPastEverything() {
        let clock = ManualClock(start: 0)
        let s = Scheduler(times: [1_000, 2_000, 3_000], spanStart: 0, speed: 1, clock: clock)
        s.stopBefore(1)
        s.start()
        clock.advance(by: 10_000)
        #expect(s.next()?.item == 0)
        #expect(s.next() == nil && s.heldAt == 1 && s.nextDeadline() == nil)
        s.releaseStop(1)
        #expect(s.next()?.item == 1, "late: goes at once")
        #expect(s.next() == nil, "the rest at its recorded distance from the released one")
        clock.advance(by: 1_000)
        #expect(s.next()?.item == 2)
        let p = Scheduler(times: [1_000, 2_000], spanStart: 0, speed: 1, clock: clock)
        p.start()
        p.pause()
        p.force(1)
        #expect(p.nextDeadline() == clock.now())
        #expect(p.next()?.item == 0 && p.next() == nil && p.paused)
    }

    @Test func waitAnswersWhenTheConditionHoldsAndTimesOutOtherwise() throws {
        let (h, c, ctl) = try Self.pausedReplay(clockOnly: false)
        let replies = Replies()
        ctl.handle(line: #"{"cmd":"hold","before_reply":"stop"}"#) { replies.add($0) }
        ctl.handle(line: #"{"cmd":"wait","until":"held","id":"w"}"#) { replies.add($0) }
        #expect(replies.count == 1, "the wait is not answered before the hold holds")
        try c.send(#"{"execute":"stop","id":1}"#)
        #expect(replies.count == 2)
        let w = try #require(try JSONParser.parse(replies.last).objectValue)
        #expect(w["ok"] == .bool(true) && w["id"] == .string("w") && w["held"] == .bool(true))
        ctl.handle(line: #"{"cmd":"wait","until":"negotiated"}"#) { replies.add($0) }
        #expect(replies.count == 3, "already true: answered at once")
        _ = try ctl.perform(.release(nil))
        ctl.handle(line: #"{"cmd":"wait","until":"held","timeout":2}"#) { replies.add($0) }
        h.advance(1_999_999_999)
        #expect(replies.count == 3)
        h.advance(1)
        let t = try #require(try JSONParser.parse(replies.last).objectValue)
        #expect(t["ok"] == .bool(false) && t["error"] == .string("timeout"))
    }
}

/// Replies collected from `ReplayControl.handle(line:reply:)` (called on the test's loop).
final class Replies: @unchecked Sendable {
    private(set) var lines: [String] = []
    func add(_ s: String) { lines.append(s) }
    var count: Int { lines.count }
    var last: String { lines.last ?? "" }
}
