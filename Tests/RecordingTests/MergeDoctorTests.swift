import Foundation
import QMP
import Testing
@testable import Recording
import TestSupport

/// `RecordingMerge`'s alignment and ordering, and `RecordingDoctor`'s structure checks, on
/// small recordings written here (the real pair is checked in Tests/CLITests/RepairCLITests).
@Suite("merge alignment and doctor structure")
struct MergeDoctorTests {
    static func path(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("mergedoctor-\(getpid())-\(name)").path
    }

    static func event(_ name: String, micros: Int64) -> QMPMessage {
        QMPMessage(bytes: Array(#"{"timestamp": {"seconds": \#(micros / 1_000_000), "microseconds": \#(micros % 1_000_000)}, "event": "\#(name)"}"#.utf8) + [0x0D, 0x0A],
                   payload: nil)
    }

    /// A recording started at `startMicros` holding `events` (name, QEMU µs, receive ns since start).
    static func write(_ name: String, startMicros: Int64, events: [(String, Int64, Int64)], connection: UInt32 = 1) throws -> Recording {
        let p = path(name)
        unlink(p)
        let w = try RecordingWriter(path: p, header: RecordingHeader(startMicros: startMicros, source: name, mode: .proxy))
        try w.append(time: 0, connection: connection, .open(peer: name, info: JSONObject()))
        for (n, ts, t) in events { try w.message(time: t, connection: connection, from: .qemu, event(n, micros: ts)) }
        try w.finish(reason: "complete")
        return try Recording(path: p)
    }

    @Test("shared events: the shift is their median receive difference; order and connections kept")
    func shared() throws {
        let base: Int64 = 1_800_000_000_000_000
        // Source B's receive clock is 250 ms behind A's; one event arrived 3 ms late at B.
        let a = try MergeDoctorTests.write("a", startMicros: base, events: [("STOP", base + 1_000, 1_100_000), ("RESUME", base + 2_000, 2_100_000), ("RESET", base + 3_000, 3_100_000)])
        let b = try MergeDoctorTests.write("b", startMicros: base - 250_000, events: [("STOP", base + 1_000, 251_100_000), ("RESUME", base + 2_000, 252_100_000), ("RESET", base + 3_000, 256_100_000)], connection: 7)
        let al = RecordingMerge.align([a, b])
        #expect(al[1].method == .sharedEvents && al[1].events == 3)
        #expect(al[1].shift == 0 && al[1].residualMin == -3_000_000 && al[1].residualMax == 0)
        let out = MergeDoctorTests.path("ab")
        unlink(out)
        let result = try RecordingMerge.write([a, b], alignments: al, to: out, force: false)
        #expect(result.connections.map { [$0.source, Int($0.old), Int($0.new)] } == [[0, 1, 1], [1, 7, 2]])
        let m = try Recording(path: out)
        #expect(m.problems.isEmpty)
        // Events in A's order on connection 1 and B's on connection 2; equal times: A first.
        let names = (0..<m.count).filter { m.kind($0) == .event }.map { "\(m.connection($0)):\(m.name($0)!)" }
        #expect(names == ["1:STOP", "2:STOP", "1:RESUME", "2:RESUME", "1:RESET", "2:RESET"])
        #expect(throws: RecordingMerge.Failure.self) { try RecordingMerge.write([a, b], alignments: al, to: out, force: false) }
    }

    @Test("no shared event: aligned through each QEMU's timestamps; no event at all: the wall clock")
    func fallbacks() throws {
        let base: Int64 = 1_800_000_000_000_000
        let src = try MergeDoctorTests.write("src", startMicros: base, events: [("STOP", base + 5_000, 5_200_000)])
        // The destination's recorder clock is 2 s off; its QEMU's clock is the source's.
        let dst = try MergeDoctorTests.write("dst", startMicros: base + 2_000_000, events: [("RESUME", base + 9_000, 7_200_000)])
        let none = try MergeDoctorTests.write("none", startMicros: base, events: [])
        let al = RecordingMerge.align([src, dst, none])
        #expect(al[1].method == .eventTimestamps && al[1].events == 1)
        // src: receive - ts = 200 µs; dst: (base + 2 s + 7.2 ms) - (base + 9 ms) = 2 s - 1.8 ms.
        #expect(al[1].shift == 200_000 - (2_000_000_000 - 1_800_000))
        #expect(al[2].method == .wallClock && al[2].shift == 0)
    }

    @Test("doctor: connection structure, trailer lines, bytes")
    func doctorStructure() throws {
        let header = String(decoding: RecordEncoder.headerLine(RecordingHeader(startMicros: 0, source: "t", mode: .proxy)), as: UTF8.self)
        let text = header
            + #"{"t":1,"c":1,"k":"open","peer":"x"}"# + "\n"                                          // 2
            + #"{"t":2,"c":1,"k":"open","peer":"x"}"# + "\n"                                          // 3 reopened
            + #"{"t":3,"c":1,"k":"close","by":"qemu","reason":"eof"}"# + "\n"                         // 4
            + #"{"t":4,"c":1,"from":"qemu","k":"event","n":"STOP","msg":{"event":"STOP"}}"# + "\r\n"  // 5 after close, CR LF
            + #"{"t":5,"c":0,"from":"qemu","k":"event","n":"STOP","msg":{"event":"STOP"}}"# + "\n"    // 6 connection 0
            + "{\"t\":6,\u{0}\u{0}\n"                                                                  // 7 NULs
            + #"{"t":7,"k":"end","records":9,"reason":"eof","dropped":2}"# + "\n"                     // 8 trailer
        let r = try Recording(bytes: FileBytes(bytes: Array(text.utf8)), path: "t")
        let f = RecordingDoctor.run(r).findings
        func at(_ code: String) -> [Int] { f.filter { $0.code == code }.compactMap(\.line) }
        #expect(at("reopened") == [3])
        #expect(at("after-close") == [5])
        #expect(at("message-without-connection") == [6])
        #expect(at("nul-bytes") == [7])
        #expect(at("mixed-line-ends") == [5])
        #expect(at("file:trailer-count") == [8])
        #expect(at("recorder-dropped") == [8])
        #expect(RecordingDoctor.run(r).damaged)
    }
}
