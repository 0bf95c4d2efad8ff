import Foundation
import QMP
import Testing
@testable import Recording
import TestSupport
import Synth

/// `recover` and `doctor` on damaged copies of real captures: every truncation point of
/// one, and seeded random damage (torn lines, garbage, NUL runs, carriage returns, joined
/// and duplicated lines) on all of them. Whatever the damage: no crash, the output reads
/// back clean, every record whose line is intact is in it byte for byte, and doctor names
/// the damaged line.
@Suite("recover and doctor on damaged recordings")
struct RepairTests {
    /// A small real capture (QEMU 7.2, proxy mode): 12 lines, so every cut stays fast.
    static let small = PackageRoot.url.appendingPathComponent("Recordings/panic-shutdown.qmprec").path

    static func temp(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("repair-\(getpid())-\(name)").path
    }

    /// Recovers `bytes` into a temporary file and returns it opened (the write verifies it).
    static func recover(_ bytes: [UInt8], name: String) throws -> (Recording, RecordingRecovery.Result) {
        let out = temp(name)
        defer { unlink(out) }
        let plan = RecordingRecovery.plan(FileBytes(bytes: bytes), path: name)
        let result = try RecordingRecovery.write(plan, source: name, to: out)
        #expect(RecordingRecovery.verify(out, records: result.written) == nil)
        // Read it into memory: the file goes when this returns.
        return (try Recording(bytes: FileBytes(bytes: FileBytes(path: out).copyBytes()), path: out), result)
    }

    /// The record lines of `r` that are not recovery notes.
    static func recordLines(_ r: Recording) -> [String] {
        (0..<r.count).filter { !(r.kind($0) == .note && r.lineText($0).contains("\"recovered_line\"")) }.map { r.lineText($0) }
    }

    @Test("every truncation point of a real capture: intact records kept, output valid, doctor names the line")
    func everyCut() throws {
        let full = try FileBytes(path: RepairTests.small).copyBytes()
        let reference = try Recording(path: RepairTests.small)
        let spans = DamageTests.lineSpans(full)
        var checked = 0
        for cut in 0...full.count {
            let bytes = Array(full[..<cut])
            let damaged = try Recording(bytes: FileBytes(bytes: bytes), path: "cut@\(cut)")
            if damaged.notARecording != nil {
                // The first bytes of a header are no recording yet: every command refuses them.
                #expect(cut <= 10, "cut at \(cut) is not a recording")
                continue
            }
            checked += 1
            let (out, _) = try RepairTests.recover(bytes, name: "cut\(cut)")
            let intact = (0..<reference.count).filter { spans[reference.line($0) - 1].upperBound <= cut }.map { reference.lineText($0) }
            let kept = RepairTests.recordLines(out)
            // Every intact record, in order, byte for byte; at most one more: a last line
            // that lost only its newline.
            #expect(Array(kept.prefix(intact.count)) == intact, "cut at \(cut)")
            #expect(kept.count == intact.count || (kept.count == intact.count + 1 && cut + 1 == spans.first { $0.contains(cut) }?.upperBound),
                    "cut at \(cut): \(kept.count) kept, \(intact.count) intact")
            #expect(out.header != nil && out.trailer?.records == out.count && out.problems.isEmpty)
            let report = RecordingDoctor.run(damaged)
            if cut == full.count {
                #expect(!report.damaged)
            } else {
                // The line the cut is in: torn there, or (at a line start) the missing trailer's place.
                let line = (spans.firstIndex { $0.contains(cut) } ?? spans.count) + 1
                #expect(report.damaged, "cut at \(cut)")
                #expect(report.findings.contains { RecordingDoctor.isDamage($0) && $0.line == line },
                        "cut at \(cut): line \(line) not named: \(report.findings.map { "\($0.line ?? 0) \($0.code)" })")
            }
        }
        #expect(checked > full.count - 12)
    }

    /// One kind of damage, applied at a random place.
    static func damage(_ bytes: inout [UInt8], _ rng: inout SplitMix64) {
        guard !bytes.isEmpty else { return }
        let at = Int(rng.next() % UInt64(bytes.count))
        let len = Int(rng.next() % 64) + 1
        let end = min(bytes.count, at + len)
        switch rng.next() % 8 {
        case 0: bytes.removeSubrange(at..<end)                                        // lost bytes
        case 1: bytes.replaceSubrange(at..<end, with: [UInt8](repeating: 0, count: end - at))  // NUL run
        case 2: bytes.insert(contentsOf: Array("garbage \u{1}\u{FF}".utf8), at: at)     // garbage
        case 3: if let nl = bytes[at...].firstIndex(of: 0x0A) { bytes[nl] = 0x0D }      // CR line end
        case 4: if let nl = bytes[at...].firstIndex(of: 0x0A) { bytes.remove(at: nl) }  // joined lines
        case 5: if let nl = bytes[at...].firstIndex(of: 0x0A) { bytes.insert(0x0D, at: nl) }  // CR LF
        case 6: bytes[at] ^= UInt8(truncatingIfNeeded: rng.next() | 1)                 // flipped byte
        default: bytes.insert(contentsOf: bytes[at..<end], at: end)                     // duplicated bytes
        }
    }

    @Test("random damage on every shipped recording: no crash, output valid, untouched lines kept", arguments: DamageTests.shipped)
    func randomDamage(path: String) throws {
        let full = try FileBytes(path: path).copyBytes()
        var rng = SplitMix64(seed: UInt64(truncatingIfNeeded: path.utf8.reduce(11) { $0 &* 37 &+ Int($1) }))
        for round in 0..<10 {
            var bytes = full
            for _ in 0...(rng.next() % 4) { RepairTests.damage(&bytes, &rng) }
            let damaged = try Recording(bytes: FileBytes(bytes: bytes), path: "damaged")
            _ = RecordingDoctor.run(damaged)
            guard damaged.notARecording == nil else { continue }
            let (out, _) = try RepairTests.recover(bytes, name: "fuzz\(round)-" + (path.split(separator: "/").last.map(String.init) ?? ""))
            // A record whose line is still whole, with its newline, is kept (the redactor does
            // not touch these recordings: they hold no secret).
            let lines = Set(DamageTests.lineSpans(bytes).map { String(decoding: bytes[$0].dropLast(), as: UTF8.self) })
            let kept = Set(RepairTests.recordLines(out))
            let reference = try Recording(path: path)
            for i in 0..<reference.count where lines.contains(reference.lineText(i)) {
                #expect(kept.contains(reference.lineText(i)), "\(path) round \(round): line \(reference.line(i)) lost")
            }
        }
    }

    @Test("garbage glued before a record, two records on one line, a NUL run: cut apart, both kept")
    func glued() throws {
        let full = try FileBytes(path: RepairTests.small).copyBytes()
        let spans = DamageTests.lineSpans(full)
        var bytes = Array(full[..<spans[2].lowerBound]) + Array("xx\u{0}\u{0}garbage".utf8)
        bytes += full[spans[2]].dropLast()   // line 3 joined to line 4
        bytes += full[spans[3].lowerBound..<spans[9].upperBound]
        let (out, result) = try RepairTests.recover(bytes, name: "glued")
        let reference = try Recording(path: RepairTests.small)
        let intact = (0..<reference.count).filter { reference.line($0) <= 10 }.map { reference.lineText($0) }
        #expect(RepairTests.recordLines(out) == intact)
        #expect(result.plan.dropped.map(\.bytes).reduce(0, +) == 11)
        #expect(result.notes == 3)
    }

    @Test("a lost header is made up from the first event's timestamp; old trailers are named in the header")
    func lostHeader() throws {
        let full = try FileBytes(path: RepairTests.small).copyBytes()
        let spans = DamageTests.lineSpans(full)
        let bytes = Array(full[spans[1].lowerBound...])
        let (out, result) = try RepairTests.recover(bytes, name: "noheader")
        #expect(result.plan.header == nil && out.header?.mode == .import)
        let original = try Recording(path: RepairTests.small)
        // The made-up start is within a second of the real one.
        #expect(abs((out.header?.startMicros ?? 0) - (original.header?.startMicros ?? 0)) < 1_000_000)
        #expect(out.header?.label("recovered-trailer")?.hasPrefix("records=10 reason=") == true)
        #expect(out.count == original.count)
    }
}
