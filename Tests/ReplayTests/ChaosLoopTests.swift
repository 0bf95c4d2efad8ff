import NIOCore
import QMP
import Recording
import Testing
@testable import Replay
import Transport

/// Chaos cuts, idle releases and delayed replies through the NIO server on an
/// `EmbeddedEventLoop`: the server hands the socket only what the session allows and wakes
/// up when a pause ends, at the loop's time.
struct ChaosLoopTests {
    static let greetingBytes = TestRecording.greeting.utf8.count + 2

    @Test func aCutHoldsTheRestUntilItsPauseEnds() throws {
        var o = ReplayOptions()
        let cut = ChaosLoopTests.greetingBytes + 5
        o.chaos = ChaosSettings(schedule: try ChaosSchedule.parse("events=a6,a6,a6,a6;cuts=\(cut):50ms"))
        let h = try LoopHarness(options: o)
        let c = try h.connect()
        #expect(try c.lines() == [TestRecording.greeting])
        try c.send(#"{"execute":"qmp_capabilities"}"# + "\n")
        #expect(try c.lines().isEmpty)
        #expect(c.bytesReceived == cut, "the reply is cut after 5 bytes")
        h.advance(49_999_999)
        #expect(try c.lines().isEmpty)
        h.advance(1)
        #expect(try c.lines() == [#"{"return": {}}"#])
        h.server.stop()
    }

    @Test func anIdleClientGetsTheRestOnTheLoop() throws {
        var o = ReplayOptions()
        o.chaos = ChaosSettings(schedule: try ChaosSchedule.parse("events=a3,a3,a5,a6"), idle: 100_000_000)
        let h = try LoopHarness(options: o)
        let c = try h.connect()
        try c.negotiate()
        h.advance(99_999_999)
        #expect(try c.lines().isEmpty)
        h.advance(1)
        #expect(try c.lines().map { $0.contains("STOP") || $0.contains("BALLOON_CHANGE") } == [true, true])
        h.advance(200_000_000)
        #expect(try c.lines().count == 2)
        h.server.stop()
        #expect(h.server.reports.first?.eventsSent == 4)
    }

    @Test func aDelayedReplyGoesOutWhenItsDelayEnds() throws {
        var o = ReplayOptions()
        o.faults = [try FaultRule.parse("query-status#1 delay 300ms", source: "--fault 1")]
        o.clockOnly = true
        let h = try LoopHarness(options: o)
        let c = try h.connect()
        try c.negotiate()
        try c.send(#"{"execute":"query-status","id":1}"# + "\n")
        #expect(try c.lines().isEmpty)
        h.advance(299_999_999)
        #expect(try c.lines().isEmpty)
        h.advance(1)
        #expect(try c.lines().first?.hasSuffix(#""id": 1}"#) == true)
        try c.send(#"{"execute":"query-status","id":2}"# + "\n")
        #expect(try c.lines().first?.hasSuffix(#""id": 2}"#) == true, "only the first call is delayed")
        h.server.stop()
    }
}
