import NIOCore
import NIOEmbedded
import QMP
import Recording
import Testing
@testable import Replay
import Transport

/// The server's timing and drop rules, deterministically: the server runs on an
/// `EmbeddedEventLoop` whose time is the replay clock, clients are `EmbeddedChannel`s (behind
/// a `TestSocket` when the test decides how much they read), and the test moves time.
struct ServerLoopTests {
    /// `n` events (about 110 bytes each) 1 µs apart after the negotiation of `TestRecording.session`.
    static func flood(_ n: Int = 2000) -> [(Int64, Direction, String)] {
        var lines = Array(TestRecording.session.prefix(3))
        for k in 0..<n { lines.append((2_000_000_000 + Int64(k) * 1000, .qemu, TestRecording.ev("RTC_CHANGE", 2, data: #"{"offset": \#(k)}"#))) }
        return lines
    }

    /// The test session with every event on the clock, and one client that has negotiated.
    static func clockOnlyClient() throws -> (LoopHarness, TestClient) {
        var o = ReplayOptions()
        o.clockOnly = true
        let h = try LoopHarness(options: o)
        let c = try h.connect()
        try c.negotiate()
        return (h, c)
    }

    @Test func eventsGoOutExactlyAtTheirDueTimes() throws {
        let (h, c) = try Self.clockOnlyClient()
        let t0 = h.clock.now()
        let events = h.script.clockEvents.map { h.script.events[$0] }
        for e in events {
            h.loop.advanceTime(to: .uptimeNanoseconds(UInt64(t0 + e.time - h.script.spanStart - 1)))
            #expect(try c.lines().isEmpty, "\(e.name) is not due yet")
            h.advance(1)
            let got = try c.lines()
            #expect(got.count == 1 && got.first?.contains(e.name) == true, "\(e.name) at its due time: \(got)")
        }
        h.server.stop()
        let r = h.server.reports
        #expect(r.count == 1 && r[0].eventsSent == events.count && r[0].closeReason == "server stopped")
        #expect(r[0].lateness == Array(repeating: 0, count: events.count))
        #expect(!c.isOpen && h.server.isFinished)
    }

    @Test func pauseHoldsTheTimelineAndResumeGoesOnFromThere() throws {
        let (h, c) = try Self.clockOnlyClient()
        let first = h.script.events[h.script.clockEvents[0]]
        let due = first.time - h.script.spanStart
        h.advance(due / 2)
        h.server.pause()
        h.advance(60_000_000_000)
        #expect(try c.lines().isEmpty)
        #expect(h.server.status().paused)
        h.server.resume()
        h.advance(due - due / 2 - 1)
        #expect(try c.lines().isEmpty)
        h.advance(1)
        #expect(try c.lines().first?.contains(first.name) == true)
        // At max speed the rest goes at once.
        h.server.setSpeed(nil)
        #expect(try c.lines().count == h.script.clockEvents.count - 1)
    }

    @Test func atMaxSpeedTheTimelineRunsOnlyAsFastAsTheClientReads() throws {
        var o = ReplayOptions()
        o.speed = nil
        let h = try LoopHarness(Self.flood(5000), options: o)
        let c = try h.connect(room: 0)
        try c.negotiate()
        let queued = h.server.status().eventsSent
        // Released up to the watermark (256 KiB), not the whole recording (about 550 KB).
        #expect(queued > 0 && queued < 5000)
        h.advance(1_000_000_000)
        #expect(h.server.status().eventsSent == queued, "time alone does not run a max-speed timeline")
        // Refills come once the channel holds no more than half of its 256 KiB (fewer, larger writes).
        c.read(64 << 10)
        #expect(h.server.status().eventsSent == queued)
        c.read(128 << 10)
        let more = h.server.status().eventsSent
        #expect(more > queued && more < 5000, "what the client took is replaced, no more")
        for _ in 0..<100 where h.server.status().eventsSent < 5000 { c.read(256 << 10) }
        c.read(1 << 20)
        let got = try c.lines().filter { $0.contains("RTC_CHANGE") }
        #expect(got.count == 5000)
        #expect(got.last?.contains(#""offset": 4999"#) == true)
        #expect(h.server.reports.isEmpty && h.server.status().clients == 1, "nobody was dropped")
    }

    @Test func aClientWhoseQueueDoesNotMoveIsDroppedAfterTheStallTimeout() throws {
        var o = ReplayOptions()
        o.speed = nil
        o.loop = true
        o.stallTimeout = 300_000_000
        let h = try LoopHarness(Self.flood(), options: o)
        let slow = try h.connect(room: 4096)
        try slow.negotiate()
        let fast = try h.connect(room: 4096)
        try fast.negotiate()
        // The fast client reads all the time; the slow one never again.
        for _ in 0..<6 {
            h.advance(50_000_000)
            fast.read(64 << 10)
        }
        #expect(slow.isOpen && h.server.reports.isEmpty, "300 ms without progress is not more than the timeout")
        h.advance(1)
        #expect(!slow.isOpen)
        let r = h.server.reports
        #expect(r.count == 1 && r[0].client == 1 && r[0].dropped?.hasPrefix("not reading: nothing written for 300.0ms with ") == true)
        #expect(h.logs.contains("client 1 dropped: not reading: nothing written for 300.0ms"))
        // ... and the other goes on.
        let before = try fast.lines().count
        fast.read(64 << 10)
        #expect(try fast.lines().count > 100 && before > 1000)
        #expect(fast.isOpen && h.server.status().clients == 1)
    }

    @Test func onASharedTimelineANonReadersQueueOverflowsAndItIsDropped() throws {
        var o = ReplayOptions()
        o.speed = nil
        o.loop = true
        o.shared = true
        o.clientBufferLimit = 64 << 10
        let h = try LoopHarness(Self.flood(), options: o)
        let slow = try h.connect(room: 4096)
        try slow.negotiate()
        let fast = try h.connect(room: 4096)
        try fast.negotiate()
        for _ in 0..<20 where slow.isOpen { fast.read(16 << 10) }
        #expect(!slow.isOpen)
        #expect(h.server.reports.first?.dropped?.hasSuffix("bytes queued, more than the 65536-byte limit") == true)
        #expect(h.logs.contains("client 1 dropped: not reading: "))
        fast.read(16 << 10)
        #expect(fast.isOpen && h.server.status().clients == 1)
    }

    @Test func failFastAnswersThenStopsTheServer() throws {
        var o = ReplayOptions()
        o.strict = true
        o.failFast = true
        let h = try LoopHarness(options: o)
        let c = try h.connect()
        _ = try c.lines()
        try c.send(#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"# + "\n")
        try c.send(#"{"execute":"balloon","arguments":{"value":5},"id":3}"# + "\n")
        let got = try c.lines()
        #expect(got.last?.hasPrefix(#"{"id": 3, "error": "#) == true, "the answer goes out before the close: \(got)")
        #expect(!c.isOpen && h.server.isFinished && h.server.stoppedByFailFast)
        #expect(h.server.reports.first?.closeReason == "fail-fast")
        #expect(h.logs.contains("strict divergence with --fail-fast: command 2 (balloon)"))
    }

    @Test func theReplyToQuitGoesOutBeforeTheClose() throws {
        var lines = Array(TestRecording.session.prefix(3))
        lines.append((2_000_000_000, .client, #"{"execute":"quit"}"#))
        lines.append((2_000_100_000, .qemu, #"{"return": {}}"#))
        let h = try LoopHarness(lines)
        let c = try h.connect()
        try c.negotiate()
        try c.send(#"{"execute":"quit","id":1}"# + "\n")
        c.closeInput()
        // The recorded reply, then SHUTDOWN (the recording had none: one is made, as QEMU always
        // writes it before the monitor closes, docs/QEMU-FACTS.md), then EOF.
        let got = try c.lines()
        #expect(got.first == #"{"return": {}, "id": 1}"#)
        #expect(got.count == 2 && got[1].contains(#""event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}"#), "\(got)")
        #expect(!c.isOpen)
        #expect(h.server.reports.first?.closeReason == "the client sent quit")
    }

    @Test func aVanishedClientsLastInputIsNotAnswered() throws {
        let h = try LoopHarness()
        let c = try h.connect(room: 1 << 20)
        try c.negotiate()
        // Its write fails, and the socket still holds 500 commands it sent before it went.
        c.socket?.failNextFlush = ByteBuffer(string: String(repeating: #"{"execute":"query-status"}"# + "\n", count: 500))
        try c.send(#"{"execute":"query-status","id":1}"# + "\n")
        #expect(!c.isOpen)
        let r = h.server.reports
        #expect(r.count == 1 && r[0].closeReason == "write error: Broken pipe")
        #expect(r[0].commandsReceived == 2, "the drained backlog is not answered in one go")
    }

    @Test func clientsBeyondMaxClientsAreRefused() throws {
        var o = ReplayOptions()
        o.maxClients = 1
        let h = try LoopHarness(options: o)
        let a = try h.connect()
        let b = try h.connect()
        #expect(a.isOpen && !b.isOpen)
        #expect(try b.lines().isEmpty, "a refused client is not greeted")
        #expect(h.logs.contains("refused a client: 1 clients already [peer=unix]"))
        #expect(h.server.status().clients == 1)
        a.channel.close(promise: nil)
        h.loop.run()
        let c = try h.connect()
        #expect(c.isOpen, "a place freed is taken again")
    }

    @Test func anOutboundReplayEndsWhenTheTimelineIsOverAndTheConsumerQuiet() throws {
        var o = ReplayOptions()
        o.clockOnly = true
        o.speed = 100
        let h = try LoopHarness(options: o)
        h.server.beginOutbound(to: .unix("/consumer"), linger: 200_000_000)
        let c = try h.connect(peer: "unix:/consumer")
        try c.negotiate()
        h.advance(200_000_000)
        #expect(try c.lines().count == h.script.clockEvents.count)
        #expect(c.isOpen && !h.server.isFinished, "quiet for exactly the linger time")
        h.advance(1)
        #expect(!c.isOpen && h.server.isFinished)
        #expect(h.server.reports.first?.closeReason == "replay finished" && h.server.reports.first?.peer == "unix:/consumer")
    }
}
