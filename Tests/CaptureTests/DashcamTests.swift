import Foundation
import QMP
import Recording
import Synchronization
import Testing
@testable import Capture
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

private let second: Int64 = 1_000_000_000

private func entry(_ t: Int64, _ text: String = "x", conn: UInt32 = 1, role: DashcamRing.Role = .plain) -> DashcamRing.Entry {
    DashcamRing.Entry(bytes: Array("\(text)@\(t)\n".utf8), time: t, connection: conn, role: role)
}

private func texts(_ es: [DashcamRing.Entry]) -> [String] { es.map { String(decoding: $0.bytes.dropLast(), as: UTF8.self) } }

@Suite("dashcam ring")
struct DashcamRingTests {
    @Test("a time ring keeps exactly the records no older than the bound before the newest")
    func timeBound() {
        var ring = DashcamRing(bound: RingBound(nanoseconds: 10 * second))
        for s in 0...99 { ring.append(entry(Int64(s) * second)) }
        // 89 s is exactly 10 s before 99 s: on the edge, kept; 88 s is past it.
        #expect(ring.windowStart == 89 * second)
        #expect(ring.count == 11)
        #expect(ring.evicted == 89)
        let snap = ring.snapshot()
        #expect(snap.context.isEmpty)
        #expect(texts(snap.window) == (89...99).map { "x@\(Int64($0) * second)" })
    }

    @Test("a size ring stays within its bytes (with the per-record overhead) and keeps the newest")
    func sizeBound() {
        let bound = 2000
        var ring = DashcamRing(bound: RingBound(bytes: bound))
        for i in 0..<500 { ring.append(entry(Int64(i), String(repeating: "a", count: 100))) }
        #expect(ring.windowBytes <= bound)
        #expect(ring.count == bound / (100 + 3 + 2 + DashcamRing.entryOverhead) || ring.count == bound / (100 + 3 + 2 + DashcamRing.entryOverhead) + 1)
        #expect(texts(ring.snapshot().window).last == String(repeating: "a", count: 100) + "@499")
        // One record larger than the bound is still kept (alone).
        ring.append(entry(500, String(repeating: "b", count: 5000)))
        #expect(ring.count == 1)
    }

    @Test("both bounds: whichever is reached first lets records scroll out")
    func bothBounds() {
        var ring = DashcamRing(bound: RingBound(nanoseconds: 1000, bytes: 1_000_000))
        for i in 0..<100 { ring.append(entry(Int64(i) * 100)) }
        #expect(ring.windowStart == 8900)
        var small = DashcamRing(bound: RingBound(nanoseconds: 1_000_000, bytes: 400))
        for i in 0..<100 { small.append(entry(Int64(i))) }
        #expect(small.windowBytes <= 400 && small.count < 100)
    }

    @Test("open, greeting and negotiation outlive the window; a snapshot starts with them, once")
    func contextKept() {
        var ring = DashcamRing(bound: RingBound(nanoseconds: 5 * second))
        ring.append(entry(0, "open", role: .context))
        ring.append(entry(1, "greeting", role: .context))
        ring.append(entry(2, "caps", role: .context))
        ring.append(entry(3, "caps-return", role: .context))
        // Still in the window: not written twice.
        #expect(texts(ring.snapshot().entries) == ["open@0", "greeting@1", "caps@2", "caps-return@3"])
        for s in 1...20 { ring.append(entry(Int64(s) * second, "poll")) }
        let snap = ring.snapshot()
        #expect(texts(snap.context) == ["open@0", "greeting@1", "caps@2", "caps-return@3"])
        #expect(snap.window.first?.time == 15 * second)
        #expect(snap.evicted == 18)
        // A second connection's context is kept apart; a close drops its connection's.
        ring.append(entry(21 * second, "open2", conn: 2, role: .context))
        ring.append(entry(22 * second, "close", role: .close))
        for s in 23...40 { ring.append(entry(Int64(s) * second, "poll", conn: 2)) }
        #expect(texts(ring.snapshot().context) == ["open2@\(21 * second)"])
    }

    @Test("a command that scrolled out is kept while its reply is in the window, and dropped with it")
    func commandPinnedByReply() {
        var ring = DashcamRing(bound: RingBound(nanoseconds: 10 * second))
        ring.append(entry(0, "greeting", role: .context))
        ring.append(entry(1 * second, "cmd", role: .command))
        ring.append(entry(3 * second, "reply", role: .reply))
        for s in 4...12 { ring.append(entry(Int64(s) * second, "poll")) }
        // 1 s scrolled out, its reply at 3 s is in the window [2 s, 12 s].
        #expect(texts(ring.snapshot().context) == ["greeting@0", "cmd@\(1 * second)"])
        ring.append(entry(14 * second, "poll"))
        #expect(texts(ring.snapshot().context) == ["greeting@0"])
        // A close forgets its connection's commands too.
        ring.append(entry(15 * second, "cmd2", role: .command))
        for s in 16...30 { ring.append(entry(Int64(s) * second, "poll")) }
        #expect(texts(ring.snapshot().context) == ["greeting@0", "cmd2@\(15 * second)"])
        ring.append(entry(31 * second, "close", role: .close))
        #expect(ring.snapshot().context.isEmpty)
    }

    @Test("memory stays bounded over a long run of polls")
    func bounded() {
        let bound = 64 << 10
        var ring = DashcamRing(bound: RingBound(nanoseconds: 600 * second, bytes: bound))
        ring.append(entry(0, "greeting", role: .context))
        var peak = 0
        for i in 1...200_000 {
            ring.append(entry(Int64(i) * second / 2, #"{"return": {"status": "running", "running": true}, "id": \#(i)}"#))
            peak = max(peak, ring.memoryBytes)
        }
        #expect(ring.windowBytes <= bound)
        #expect(peak <= bound + 256)   // the window, plus the greeting kept as context
    }
}

/// Triggers on any record whose line mentions the name (a stand-in for the shell's filters).
private final class NameDetector: IncidentDetector, @unchecked Sendable {
    let name: String
    init(_ name: String) { self.name = name }
    func observe(line: [UInt8], kind: RecordKind, connection: UInt32, time: Int64) -> IncidentTrigger? {
        guard kind == .event, String(decoding: line, as: UTF8.self).contains("\"n\":\"\(name)\"") else { return nil }
        return IncidentTrigger(source: "event", name: name, detail: "test")
    }
}

/// The dashcam's clock in a test, moved by hand.
final class ManualNow: Sendable {
    let value = Atomic<Int64>(0)
}

@Suite("dashcam sink", .serialized)
struct DashcamSinkTests {
    let now = ManualNow()

    func sink(_ dir: String, after: Int64 = 5 * second, ring: RingBound = RingBound(nanoseconds: 10 * second)) throws -> CaptureSink {
        var o = completeOptions(dir + "/unused.qmprec")
        var d = DashcamOptions(bound: ring, directory: dir + "/incidents")
        d.after = after
        d.detector = NameDetector("GUEST_PANICKED")
        d.namePattern = "incident-{seq}-{trigger}.qmprec"
        let clock = now
        d.now = { clock.value.load(ordering: .relaxed) }
        o.ring = d
        let header = RecordingHeader(startMicros: 1_700_000_000_000_000, source: "unix:/test", mode: .client)
        return try CaptureSink(header: header, options: o)
    }

    /// A negotiated connection, then a poll and its reply every second from 1 s to `seconds`.
    func session(_ s: CaptureSink, seconds: ClosedRange<Int>, negotiate: Bool = true) {
        if negotiate {
            s.open(0, 1, peer: "unix:/test")
            s.data(1000, 1, .qemu, Array(fakeGreeting.utf8))
            s.data(2000, 1, .client, Array(#"{"execute": "qmp_capabilities"}"#.utf8) + [0x0A])
            s.data(3000, 1, .qemu, Array(#"{"return": {}}"#.utf8) + [0x0D, 0x0A])
        }
        for i in seconds { poll(s, i) }
    }

    func poll(_ s: CaptureSink, _ i: Int) {
        let t = Int64(i) * second
        s.data(t, 1, .client, Array(#"{"execute": "query-status", "id": \#(i)}"#.utf8) + [0x0A])
        s.data(t + 1000, 1, .qemu, Array(#"{"return": {"status": "running", "running": true}, "id": \#(i)}"#.utf8) + [0x0D, 0x0A])
    }

    func event(_ s: CaptureSink, _ name: String, at t: Int64) {
        s.data(t, 1, .qemu, Array(#"{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "\#(name)"}"#.utf8) + [0x0D, 0x0A])
    }

    func incidents(_ dir: String) throws -> [Recording] {
        let names = try FileManager.default.contentsOfDirectory(atPath: dir + "/incidents").sorted()
        return try names.map { try Recording(path: dir + "/incidents/" + $0) }
    }

    func polls(_ r: Recording) -> [Int] {
        (0..<r.count).compactMap { i in r.kind(i) == .command && r.name(i) == "query-status" ? Int(r.time(i) / second) : nil }
    }

    @Test("an event writes the window before it and `after` past it, then the ring re-arms: the next trigger is the next file")
    func eventThenRearm() throws {
        let d = scratchDir("dashcam-rearm")
        let s = try sink(d)
        session(s, seconds: 1...100)
        event(s, "GUEST_PANICKED", at: 100 * second + 5000)
        for i in 101...150 { poll(s, i) }
        s.trigger(150 * second + 2000, IncidentTrigger(source: "signal", name: "SIGUSR1", detail: "test"))
        for i in 151...170 { poll(s, i) }
        let end = s.finish(reason: "test", time: 171 * second)
        #expect(end.trailerWritten)
        let files = try incidents(d)
        #expect(files.map { ($0.path as NSString).lastPathComponent } == ["incident-001-GUEST_PANICKED.qmprec", "incident-002-SIGUSR1.qmprec"])
        let (a, b) = (files[0], files[1])
        // Context first (open, greeting, negotiation), then the 10 s window: polls 91 ... 100,
        // the event, and 5 s after it: polls 101 ... 105 (106 s is past the window).
        #expect(a.kind(0) == .open && a.kind(1) == .greeting && a.name(2) == "qmp_capabilities" && a.kind(3) == .return)
        #expect(a.kind(4) == .note)
        #expect(polls(a) == Array(91...105))
        #expect(a.header?.extra["trigger"]?.objectValue?["name"]?.stringValue == "GUEST_PANICKED")
        #expect(a.header?.extra["trigger"]?.objectValue?["t"]?.int64Value == 100 * second + 5000)
        #expect(a.trailer?.reason == "incident event GUEST_PANICKED")
        #expect(a.problems.isEmpty)
        // The second file: its own context, the window (10 s before the trigger at 150 s + 2 µs:
        // 141 ... 150), the trigger's note, 151 ... 155.
        #expect(b.kind(1) == .greeting)
        #expect(polls(b) == Array(141...155))
        #expect((0..<b.count).contains { b.kind($0) == .note && b.lineText($0).contains("dashcam triggered by signal SIGUSR1") })
        #expect(b.header?.extra["trigger"]?.objectValue?["source"]?.stringValue == "signal")
        #expect(s.currentStats.incidents == 2)
    }

    @Test("a trigger during the post-trigger window extends it (one file)")
    func triggerExtends() throws {
        let d = scratchDir("dashcam-extend")
        let s = try sink(d)
        session(s, seconds: 1...20)
        event(s, "GUEST_PANICKED", at: 20 * second + 5000)
        for i in 21...23 { poll(s, i) }
        event(s, "GUEST_PANICKED", at: 23 * second + 5000)
        for i in 24...40 { poll(s, i) }
        s.finish(reason: "test", time: 41 * second)
        let files = try incidents(d)
        #expect(files.count == 1)
        #expect(polls(files[0]) == Array(11...28))
    }

    @Test("the post-trigger window ends on the clock when no traffic comes; the file is complete")
    func endsOnClock() throws {
        let d = scratchDir("dashcam-clock")
        let s = try sink(d, after: 2 * second)
        session(s, seconds: 1...5)
        event(s, "GUEST_PANICKED", at: 5 * second + 5000)
        now.value.store(8 * second, ordering: .relaxed)
        // The disk thread looks at the clock at least every flush interval (100 ms).
        var done = false
        for _ in 0..<300 where !done {
            usleep(10_000)
            done = (try? incidents(d).first?.trailer) != nil
        }
        #expect(done)
        #expect(s.currentStats.incidents == 1)
        s.finish(reason: "test", time: 9 * second)
        let r = try #require(try incidents(d).first)
        #expect(r.trailer?.reason == "incident event GUEST_PANICKED")
        #expect(polls(r) == Array(1...5))
    }

    @Test("no trigger, no file; a stop mid-incident ends the file with the stop's trailer")
    func noTriggerNoFile() throws {
        let d = scratchDir("dashcam-none")
        let s = try sink(d)
        session(s, seconds: 1...30)
        #expect(s.finish(reason: "signal", time: 31 * second).trailerWritten)
        #expect(try incidents(d).isEmpty)
        #expect(s.currentStats.ringPeakBytes > 0)

        let d2 = scratchDir("dashcam-stop")
        let s2 = try sink(d2, after: 60 * second)
        session(s2, seconds: 1...3)
        event(s2, "GUEST_PANICKED", at: 3 * second + 5000)
        poll(s2, 4)
        #expect(s2.finish(reason: "signal", time: 5 * second).trailerWritten)
        let r = try #require(try incidents(d2).first)
        #expect(r.trailer?.reason == "signal")
        #expect(polls(r) == [1, 2, 3, 4])
    }

    @Test("an edge between a command and its reply: the command is written too, and no reply answers nothing")
    func edgeSplitsAnExchange() throws {
        let d = scratchDir("dashcam-edge")
        let s = try sink(d)
        session(s, seconds: 1...2)
        for i in 3...20 {
            let t = Int64(i) * second
            s.data(t, 1, .client, Array(#"{"execute": "query-status", "id": \#(i)}"#.utf8) + [0x0A])
            s.data(t + 400_000_000, 1, .qemu, Array(#"{"return": {"status": "running", "running": true}, "id": \#(i)}"#.utf8) + [0x0D, 0x0A])
        }
        // The window begins at 10.2 s: the reply at 10.4 s is in it, its command at 10 s is not.
        event(s, "GUEST_PANICKED", at: 20 * second + 200_000_000 + 500_000_000)
        s.finish(reason: "test", time: 30 * second)
        let r = try #require(try incidents(d).first)
        let first = try #require((0..<r.count).first { r.kind($0) == .return && r.lineText($0).contains(#""id": 11"#) })
        #expect((0..<first).contains { r.kind($0) == .command && r.lineText($0).contains(#""id": 11"#) })
        // (The test's messages are not complete by QEMU's schema: those findings do not count here.)
        let findings = RecordingValidation.run(r).filter { $0.severity != .info && $0.code != "missing-member" }
        #expect(findings.isEmpty, "\(findings.map(\.message))")
    }

    @Test("redaction happens on entry: a secret never reaches the ring or the file")
    func redactedOnEntry() throws {
        let d = scratchDir("dashcam-redact")
        let s = try sink(d)
        session(s, seconds: 1...2)
        s.data(2 * second + 10, 1, .client, Array(#"{"execute": "set_password", "arguments": {"protocol": "vnc", "password": "hunter2"}}"#.utf8) + [0x0A])
        s.data(2 * second + 20, 1, .qemu, Array(#"{"return": {}}"#.utf8) + [0x0D, 0x0A])
        event(s, "GUEST_PANICKED", at: 3 * second)
        s.finish(reason: "test", time: 4 * second)
        let r = try #require(try incidents(d).first)
        let text = (0..<r.count).map { r.lineText($0) }.joined()
        #expect(!text.contains("hunter2") && text.contains("<redacted>"))
    }
}
