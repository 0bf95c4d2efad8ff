import Testing
@testable import Replay
import Transport

/// The scheduler against a manual clock: no test sleeps.
struct SchedulerTests {
    let s0: Int64 = 10_000_000_000  // span start in recording time

    func make(_ times: [Int64], speed: Double? = 1, maxGap: Int64? = nil, loop: Bool = false, spanEnd: Int64 = .max,
              barriers: [Scheduler.Barrier?]? = nil) -> (Scheduler, ManualClock) {
        let c = ManualClock(start: 5_000_000_000)
        let s = Scheduler(times: times.map { s0 + $0 }, barriers: barriers, spanStart: s0, spanEnd: spanEnd == .max ? .max : s0 + spanEnd,
                          speed: speed, maxGap: maxGap, loop: loop, clock: c)
        return (s, c)
    }

    @Test func releasesOnScaledScheduleWithCappedGaps() {
        let (s, c) = make([1_000_000_000, 1_500_000_000, 30_000_000_000], speed: 2, maxGap: 2_000_000_000)
        s.start()
        let w = c.now()
        #expect(s.nextDeadline() == w + 500_000_000)
        #expect(s.next() == nil)
        c.set(w + 500_000_000)
        #expect(s.next()?.item == 0)
        #expect(s.nextDeadline() == w + 750_000_000)
        c.set(w + 750_000_000)
        #expect(s.next()?.lateness == 0)
        // 28.5 s idle capped to 2 s, at speed 2: 1 s after the second item.
        #expect(s.nextDeadline() == w + 1_750_000_000)
        c.set(w + 1_760_000_000)
        let r = s.next()
        #expect(r?.item == 2 && r?.lateness == 10_000_000)
        #expect(s.finished)
    }

    @Test func lateReleasesDoNotAccumulate() {
        let times = (1...1000).map { Int64($0) * 1_000_000 }
        let (s, c) = make(times)
        s.start()
        let w = c.now()
        // Every release 300 µs late: the schedule stays anchored, lateness stays 300 µs.
        for i in 0..<1000 {
            c.set(w + times[i] + 300_000)
            let r = s.next()
            #expect(r?.lateness == 300_000)
        }
        #expect(s.released == 1000)
    }

    @Test func pauseAndResumeReanchor() {
        let (s, c) = make([1_000_000_000, 2_000_000_000])
        s.start()
        let w = c.now()
        c.set(w + 1_000_000_000)
        #expect(s.next()?.item == 0)
        c.set(w + 1_400_000_000)
        s.pause()
        c.set(w + 60_000_000_000)
        #expect(s.next() == nil)
        #expect(s.nextDeadline() == nil)
        s.resume()
        // 0.6 s of recording were left when paused.
        #expect(s.nextDeadline() == w + 60_600_000_000)
    }

    @Test func speedChangeKeepsPosition() {
        let (s, c) = make([1_000_000_000, 3_000_000_000])
        s.start()
        let w = c.now()
        c.set(w + 1_000_000_000)
        _ = s.next()
        s.setSpeed(4)
        // 2 s of recording left at speed 4: 0.5 s.
        #expect(s.nextDeadline() == w + 1_500_000_000)
        s.setSpeed(nil)
        #expect(s.nextDeadline() == c.now())
        #expect(s.next()?.item == 1)
    }

    @Test func seekMovesPositionAndAnchor() {
        let (s, c) = make([1_000_000_000, 2_000_000_000, 5_000_000_000])
        s.start()
        let w = c.now()
        c.set(w + 100_000_000)
        s.seek(to: s0 + 4_000_000_000)
        #expect(s.position == 2)
        #expect(s.nextDeadline() == w + 1_100_000_000)
        s.seek(to: s0)
        #expect(s.position == 0)
        #expect(s.nextDeadline() == w + 1_100_000_000)
    }

    @Test func loopAnchorsEachPassAtTheSpanEnd() {
        let (s, c) = make([1_000_000_000, 2_000_000_000], loop: true, spanEnd: 3_000_000_000)
        s.start()
        let w = c.now()
        c.set(w + 2_500_000_000)
        #expect(s.next()?.item == 0)
        #expect(s.next()?.item == 1)
        #expect(s.next() == nil)
        #expect(s.nextDeadline() == w + 3_000_000_000)
        // Released late in the second pass: still anchored at w + 3 s.
        c.set(w + 4_200_000_000)
        let r = s.next()
        #expect(r?.item == 0 && r?.pass == 1 && r?.lateness == 200_000_000)
        #expect(s.nextDeadline() == w + 5_000_000_000)
    }

    @Test func barrierHoldsUntilAnsweredThenFollowsTheReply() {
        let b = Scheduler.Barrier(command: 3, replyTime: s0 + 1_000_000_000)
        let (s, c) = make([1_500_000_000, 1_700_000_000], barriers: [b, b])
        s.start()
        let w = c.now()
        c.set(w + 10_000_000_000)
        #expect(s.next() == nil)
        #expect(s.waitingForBarrier)
        s.answered(command: 3)
        // The client had the reply now: the event follows it by the recorded 0.5 s.
        #expect(s.nextDeadline() == w + 10_500_000_000)
        c.set(w + 10_500_000_000)
        #expect(s.next()?.lateness == 0)
        #expect(s.nextDeadline() == w + 10_700_000_000)
    }

    @Test func earlyAnswerKeepsTheSchedule() {
        let b = Scheduler.Barrier(command: 0, replyTime: s0 + 100_000_000)
        let (s, c) = make([1_000_000_000], barriers: [b])
        s.start()
        let w = c.now()
        s.answered(command: 0)
        #expect(s.nextDeadline() == w + 1_000_000_000)
    }

    @Test func maxSpeedReleasesEverythingAtOnceInOrder() {
        let (s, _) = make([1, 2_000_000_000, 900_000_000_000], speed: nil)
        s.start()
        var items: [Int] = []
        while let r = s.next() { items.append(r.item) }
        #expect(items == [0, 1, 2])
    }

    @Test func manualClockSleepJumps() {
        let c = ManualClock(start: 0)
        c.sleep(until: 5)
        #expect(c.now() == 5)
        c.sleep(until: 1)
        #expect(c.now() == 5)
        let m = MonotonicClock()
        let a = m.now()
        m.sleep(until: a + 1_000_000)
        #expect(m.now() >= a + 1_000_000)
    }
}
