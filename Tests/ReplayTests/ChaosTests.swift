import QMP
import Recording
import Testing
@testable import Replay
import Transport

/// Chaos schedules: made from a seed the same way every time, written and read back, put to
/// work by the session (events at their slots, output cut and stalled), explored and shrunk.
/// All without sockets, under a manual clock.
struct ChaosTests {
    static func plan() throws -> ChaosPlan {
        let h = try Harness()
        return ChaosPlan(script: h.script)
    }

    @Test func naturalSlotsFollowTheRecording() throws {
        let p = try ChaosTests.plan()
        // STOP while stop (request 2) ran, BALLOON_CHANGE after balloon's reply (4), RESUME
        // while cont (6) ran, RTC_CHANGE after cont's reply.
        #expect(p.natural.map(\.description) == ["b2", "a4", "b6", "a6"])
        #expect(p.requests == 7)
        #expect(p.lastSlot.description == "a6")
    }

    @Test func aSeedGivesTheSameScheduleEveryTime() throws {
        let p = try ChaosTests.plan()
        let a = p.generate(seed: 42, splits: 5, stall: 300_000_000)
        #expect(a == p.generate(seed: 42, splits: 5, stall: 300_000_000))
        #expect(a.slots.count == 4 && a.cuts.count == 6)
        #expect(a.slots == a.slots.sorted(), "events keep their recorded order")
        #expect(a.slots.allSatisfy { $0 <= p.lastSlot })
        #expect(a.cuts.filter { $0.pause == 300_000_000 }.count == 1)
        let others = (1...20).map { p.generate(seed: $0, splits: 5, stall: nil) }
        #expect(Set(others.map(\.description)).count > 15, "different seeds give different schedules")
    }

    @Test func scheduleTextReadsBack() throws {
        let s = ChaosSchedule(slots: [.init(rank: 0), .init(rank: 3), .init(rank: 3)],
                              cuts: [.init(offset: 301, pause: 200_000_000), .init(offset: 17, pause: 1_000_000)])
        #expect(s.description == "events=b0,a1,a1;cuts=17:1ms,301:200ms")
        #expect(try ChaosSchedule.parse(s.description) == s)
        #expect(throws: ReplayError.self) { try ChaosSchedule.parse("events=x1") }
        #expect(throws: ReplayError.self) { try ChaosSchedule.parse("cuts=17") }
        #expect(throws: ReplayError.self) { try ChaosSchedule.parse("slots=b0") }
        let p = try ChaosTests.plan()
        #expect(throws: ReplayError.self) { try p.check(ChaosSchedule(slots: [.init(rank: 0)])) }
        #expect(throws: ReplayError.self) { try p.check(try ChaosSchedule.parse("events=b3,b1,a4,a6")) }
    }

    @Test func pacerPausesAtCuts() {
        var p = OutputPacer(cuts: [.init(offset: 17, pause: 1_000)])
        #expect(p.allowance(handed: 0, now: 0) == 17)
        #expect(p.allowance(handed: 17, now: 5) == 0)
        #expect(p.deadline(now: 5) == 1_005)
        #expect(p.allowance(handed: 17, now: 1_005) == .max)
        p.pause(at: 40, for: 50)
        #expect(p.allowance(handed: 17, now: 2_000) == 23)
        #expect(p.allowance(handed: 40, now: 2_000) == 0)
        #expect(p.allowance(handed: 40, now: 2_050) == .max)
    }

    /// A scripted client against a session with a seed: every write (bytes and the time it
    /// was made), the clock moved to each deadline in turn.
    static func byteSchedule(seed: UInt64) throws -> [(at: Int64, bytes: [UInt8])] {
        var o = ReplayOptions()
        o.chaos = ChaosSettings(seed: seed, splits: 6, stall: 250_000_000)
        let h = try Harness(options: o)
        var writes: [(Int64, [UInt8])] = []
        func drain() {
            for _ in 0..<1000 {
                let w = h.session.takeWritable()
                if !w.isEmpty { writes.append((h.clock.now() - 1_000_000_000_000, w)); continue }
                guard h.session.pendingOutputCount > 0 || h.session.nextDeadline != nil, let d = h.session.nextDeadline else { return }
                h.clock.advance(by: max(1, d - h.clock.now()))
                h.session.releaseDue()
            }
        }
        h.session.connect()
        drain()
        for cmd in [#"{"execute":"qmp_capabilities"}"#, #"{"execute":"query-status","id":1}"#, #"{"execute":"stop","id":2}"#,
                    #"{"execute":"query-status","id":3}"#] {
            h.session.receive(Array((cmd + "\n").utf8))
            drain()
        }
        return writes
    }

    @Test func aSeedGivesTheSameByteScheduleTwice() throws {
        let a = try ChaosTests.byteSchedule(seed: 7)
        let b = try ChaosTests.byteSchedule(seed: 7)
        #expect(a.map(\.at) == b.map(\.at))
        #expect(a.map(\.bytes) == b.map(\.bytes))
        #expect(a.count > 4, "the output is cut into several writes")
        let c = try ChaosTests.byteSchedule(seed: 8)
        #expect(a.map(\.bytes) != c.map(\.bytes) || a.map(\.at) != c.map(\.at))
        // Every event went out, each once (the idle client got the rest after the idle time).
        let text = String(decoding: a.flatMap(\.bytes), as: UTF8.self)
        for e in ["STOP", "BALLOON_CHANGE", "RESUME", "RTC_CHANGE"] { #expect(text.components(separatedBy: "\"\(e)\"").count == 2) }
    }

    @Test func eventsGoAtTheirSlots() throws {
        var o = ReplayOptions()
        // STOP between qmp_capabilities and its reply, BALLOON_CHANGE and RESUME in a burst
        // after it, RTC_CHANGE between query-status and its reply.
        o.chaos = ChaosSettings(schedule: try ChaosSchedule.parse("events=b0,a0,a0,b1"))
        let h = try Harness(options: o)
        h.session.connect()
        _ = h.lines()
        var out = h.send(#"{"execute":"qmp_capabilities","id":0}"# + "\n")
        #expect(out.count == 4)
        #expect(out[0].contains("\"STOP\"") && out[1] == #"{"return": {}, "id": 0}"#)
        #expect(out[2].contains("BALLOON_CHANGE") && out[3].contains("RESUME"))
        out = h.send(#"{"execute":"query-status","id":1}"# + "\n")
        #expect(out.count == 2 && out[0].contains("RTC_CHANGE") && out[1].contains("\"id\": 1"))
        // stop's recorded STOP was sent already: its reply comes alone.
        out = h.send(#"{"execute":"stop","id":2}"# + "\n")
        #expect(out == [#"{"return": {}, "id": 2}"#])
        #expect(h.session.report.eventsSent == 4)
        #expect(h.session.report.chaos?.objectValue?["schedule"] == .string("events=b0,a0,a0,b1"))
    }

    @Test func anIdleClientGetsTheRestASlotAtATime() throws {
        var o = ReplayOptions()
        o.chaos = ChaosSettings(schedule: try ChaosSchedule.parse("events=a1,a1,b5,a6"), idle: 100_000_000)
        let h = try Harness(options: o)
        h.negotiate()
        #expect(h.advance(99_000_000).isEmpty)
        #expect(h.advance(2_000_000).count == 2, "the burst of slot a1, after the idle time")
        #expect(h.advance(100_000_000).count == 1)
        #expect(h.advance(100_000_000).count == 1)
        #expect(h.session.nextDeadline == nil)
    }

    @Test func theWalkMovesOneEventAtATime() throws {
        let p = try ChaosTests.plan()
        let x = ScheduleExplorer(plan: p)
        let all = x.candidates()
        #expect(Set(all).count == all.count)
        #expect(all.allSatisfy { $0.slots == $0.slots.sorted() })
        #expect(x.changes(all[0]) == 1)
        #expect(zip(all, all.dropFirst()).allSatisfy { x.changes($0) <= x.changes($1) })
        // Every event reaches every slot.
        for e in p.natural.indices {
            #expect(Set(all.map { $0.slots[e] }).count == p.lastSlot.rank + 1)
        }
        #expect(x.candidates(firstSlot: .init(rank: 1)).allSatisfy { $0.slots.allSatisfy { $0.rank >= 1 } })
    }

    @Test func shrinkingFindsTheOnePlacementThatBreaks() throws {
        let p = try ChaosTests.plan()
        let x = ScheduleExplorer(plan: p)
        // A client that breaks whenever RESUME (event 2) comes before the reply to request 1.
        let breaks = { (s: ChaosSchedule) -> Bool in s.slots[2].rank <= 2 }
        let seeded = (1...200).lazy.map { p.generate(seed: $0, splits: 4, stall: 300_000_000) }.first(where: breaks)!
        #expect(x.changes(seeded) > 1)
        let small = x.shrink(seeded, fails: breaks)
        #expect(small.cuts.isEmpty)
        #expect(x.changes(small) <= 3, "RESUME moved, and the events before it only as far as the order needs")
        #expect(small.slots[2].rank == 2, "as late as still breaks")
        #expect(small.slots[3] == p.natural[3])
    }

    @Test func quitAlwaysGetsItsShutdownOnce() throws {
        let lines: [(Int64, Direction, String)] = [
            (0, .qemu, TestRecording.greeting),
            (1_000_000_000, .client, #"{"execute":"qmp_capabilities"}"#),
            (1_000_100_000, .qemu, #"{"return": {}}"#),
            (2_000_000_000, .client, #"{"execute":"query-status","id":1}"#),
            (2_000_100_000, .qemu, #"{"return": {"status": "running", "singlestep": false, "running": true}, "id": 1}"#),
            (3_000_000_000, .client, #"{"execute":"quit","id":2}"#),
            (3_000_100_000, .qemu, #"{"return": {}, "id": 2}"#),
            (3_000_200_000, .qemu, TestRecording.ev("SHUTDOWN", 3, data: #"{"guest": false, "reason": "host-qmp-quit"}"#)),
        ]
        for (spec, quitEarly) in [("events=a2", false), ("events=b2", false), ("events=a0", false), ("events=a2", true)] {
            var o = ReplayOptions()
            o.chaos = ChaosSettings(schedule: try ChaosSchedule.parse(spec))
            let h = try Harness(lines, options: o)
            h.session.connect()
            var out = h.send(#"{"execute":"qmp_capabilities"}"# + "\n")
            if !quitEarly { out += h.send(#"{"execute":"query-status","id":1}"# + "\n") }
            out += h.send(#"{"execute":"quit","id":2}"# + "\n")
            #expect(out.filter { $0.contains("SHUTDOWN") }.count == 1, "\(spec), quit early: \(quitEarly)")
            #expect(h.session.closeAfterFlush)
        }
    }
}
