import Foundation
import QMP
import Testing
@testable import Recording

/// Inputs that the fuzz targets (Scripts/fuzz, docs/FUZZING.md) found crashing, kept as
/// regression tests. The files live in Fuzz/seeds/TARGET/, which also seed the fuzzer.
@Suite("Inputs found by fuzzing (Recording)")
struct RecordingFuzzRegressionTests {
    static func seed(_ target: String, _ name: String) -> [UInt8] {
        let path = DamageTests.root.appendingPathComponent("Fuzz/seeds/\(target)/\(name)").path
        return (try? FileBytes(path: path).copyBytes()) ?? []
    }

    static let sample: Recording = try! Recording(path: DamageTests.root.appendingPathComponent("Recordings/lifecycle-qemu.qmprec").path)

    @Test("wall-clock times centuries away from the recording saturate instead of overflowing", arguments: [
        "1013-10-21T00:00:05Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
    ])
    func farWallClock(text: String) throws {
        let t = try TimeSpec.parse(text)
        let ns = t.resolveTime(in: Self.sample)
        #expect(text.hasPrefix("9999") ? ns == Int64.max || ns > 0 : ns < 0)
        #expect(t.resolveIndex(in: Self.sample) == (text.hasPrefix("9999") ? Self.sample.count : 0))
    }

    @Test("the fuzz seed for far times is the year-1013 input")
    func seedFile() {
        #expect(String(decoding: Self.seed("time", "year-1013-regression"), as: UTF8.self) == "1013-10-21T00:00:05Z")
    }

    @Test("an imported log whose clock jumps by centuries imports, times never going back", arguments: [
        ("import-libvirt-log", "time-overflow-regression", ImportFormat.libvirtLog),
        ("import-qmp-lines", "timestamp-overflow-regression", ImportFormat.qmpLines),
    ])
    func importTimeJump(target: String, seed: String, format: ImportFormat) {
        let bytes = Self.seed(target, seed)
        #expect(!bytes.isEmpty)
        let imported = Importer.parse(bytes, format: format)
        #expect(!imported.records.isEmpty)
        let times = imported.records.map(\.time)
        #expect(zip(times, times.dropFirst()).allSatisfy { $0 <= $1 })
        #expect(imported.warnings.contains { $0.message.contains("back") || $0.message.contains("before") })
    }

    @Test("saturating time arithmetic clamps instead of trapping")
    func saturating() {
        #expect(Int64.max.addingSaturating(1) == .max)
        #expect(Int64.min.addingSaturating(-1) == .min)
        #expect(Int64.min.subtractingSaturating(1) == .min)
        #expect(Int64(5).subtractingSaturating(.min) == .max)
        #expect(Int64(-3).multipliedSaturating(by: .max) == .min)
        #expect(Int64(7).subtractingSaturating(2) == 5 && Int64(6).multipliedSaturating(by: 7) == 42)
    }
}
