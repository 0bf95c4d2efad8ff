import QMP
import Recording
import Testing
@testable import Replay
import Transport

/// `replay --stdout` under a manual clock: the player's waits jump the clock, so the timed
/// stream is checked without sleeping.
struct StreamPlayerTests {
    @Test func everyQEMUMessageGoesOutAtItsRecordedTime() throws {
        let clock = ManualClock(start: 0)
        let p = try StreamPlayer(recording: TestRecording.recording(), options: ReplayOptions(), clock: clock)
        var writes: [(at: Int64, text: String)] = []
        let r = p.run(write: { writes.append((clock.now(), String(decoding: $0, as: UTF8.self))); return true })
        // The greeting at once, then each reply and event at its time since the greeting (t = 0).
        let qemu = TestRecording.session.filter { $0.1 == .qemu }
        #expect(writes.count == qemu.count)
        for (w, q) in zip(writes, qemu) {
            #expect(w.at == q.0, "\(q.2)")
            #expect(w.text == q.2 + "\r\n")
        }
        #expect(r.closeReason == "end of span" && r.eventsSent == 4 && r.lateness.allSatisfy { $0 == 0 })
    }

    @Test func aStopRequestEndsTheStream() throws {
        let clock = ManualClock(start: 0)
        let p = try StreamPlayer(recording: TestRecording.recording(), options: ReplayOptions(), clock: clock)
        var n = 0
        let r = p.run(write: { _ in n += 1; return true }, shouldStop: { n >= 3 })
        #expect(n == 3 && r.closeReason == "stopped")
    }
}
