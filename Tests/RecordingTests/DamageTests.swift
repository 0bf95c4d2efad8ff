import Foundation
import QMP
import Testing
@testable import Recording
import TestSupport
import Synth

/// The reader on damaged copies of every shipped recording: cut at random offsets and with
/// random bytes flipped. Whatever the damage, opening never fails (lenient mode), every
/// record on an intact line is returned byte for byte, and a damaged line that no longer
/// parses is reported with its line number. Seeded, so a failure reproduces.
@Suite("Reader on damaged recordings")
struct DamageTests {
    static let root = PackageRoot.url

    static var shipped: [String] {
        let dir = root.appendingPathComponent("Recordings").path
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { $0.hasSuffix(".qmprec") }.sorted().map { dir + "/" + $0 }
    }

    /// Byte ranges of each line, newline included.
    static func lineSpans(_ bytes: [UInt8]) -> [Range<Int>] {
        var spans: [Range<Int>] = []
        var start = 0
        for (i, b) in bytes.enumerated() where b == 0x0A {
            spans.append(start..<(i + 1))
            start = i + 1
        }
        if start < bytes.count { spans.append(start..<bytes.count) }
        return spans
    }

    @Test("shipped recordings exist")
    func shippedExist() {
        #expect(DamageTests.shipped.count >= 8)
    }

    @Test("cut at 1,000 random offsets: every complete record is kept", arguments: DamageTests.shipped)
    func truncated(path: String) throws {
        let full = try FileBytes(path: path).copyBytes()
        let reference = try Recording(path: path)
        let spans = DamageTests.lineSpans(full)
        var rng = SplitMix64(seed: UInt64(truncatingIfNeeded: path.utf8.reduce(5381) { $0 &* 33 &+ Int($1) }))
        for _ in 0..<1000 {
            let cut = Int(rng.next() % UInt64(full.count + 1))
            let r = try Recording(bytes: FileBytes(bytes: Array(full[..<cut])), path: "cut@\(cut)")
            // Records on lines that end (newline included) at or before the cut are intact:
            // both files hold the same prefix, so the same offset and length mean the same bytes.
            var intact = 0
            for i in 0..<reference.count where spans[reference.line(i) - 1].upperBound <= cut {
                #expect(i < r.count && r.offset(i) == reference.offset(i) && r.lineBytes(i).count == reference.lineBytes(i).count,
                        "\(path): cut at \(cut), record \(i)")
                intact += 1
            }
            // Nothing invented: at most one more record (a last line that lost only its newline).
            #expect(r.count == intact || r.count == intact + 1, "\(path): cut at \(cut): \(r.count) records, \(intact) intact")
            if cut < full.count, let torn = spans.firstIndex(where: { $0.contains(cut) }), cut > spans[torn].lowerBound,
               cut < spans[torn].upperBound - 1, torn > 0 {
                // A line cut in its middle is reported, with its number.
                #expect(r.problems.contains { $0.line == torn + 1 }, "\(path): cut at \(cut) inside line \(torn + 1): \(r.problems)")
            }
        }
    }

    @Test("a random byte flipped, 1,000 times: every untouched record is kept", arguments: DamageTests.shipped)
    func flipped(path: String) throws {
        let full = try FileBytes(path: path).copyBytes()
        let reference = try Recording(path: path)
        let spans = DamageTests.lineSpans(full)
        var rng = SplitMix64(seed: UInt64(truncatingIfNeeded: path.utf8.reduce(7) { $0 &* 31 &+ Int($1) }))
        for _ in 0..<1000 {
            var bytes = full
            let at = Int(rng.next() % UInt64(full.count))
            bytes[at] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
            let r = try Recording(bytes: FileBytes(bytes: bytes), path: "flip@\(at)")
            let damagedLine = spans.firstIndex { $0.contains(at) }! + 1
            // A flip keeps every byte but one in place, so a record whose line neither holds the
            // flipped byte nor follows a newline the flip removed must be there at the same
            // offset with the same length (hence the same bytes).
            var kept: [Int: Int] = [:]
            for i in 0..<r.count { kept[r.offset(i)] = r.lineBytes(i).count }
            for i in 0..<reference.count {
                let line = reference.line(i)
                if line == damagedLine || (full[at] == 0x0A && line == damagedLine + 1) { continue }
                #expect(kept[reference.offset(i)] == reference.lineBytes(i).count,
                        "\(path): flip at \(at) (line \(damagedLine)) lost record \(i) on line \(line)")
            }
            // The damaged line is either still a record or reported by number.
            if bytes[at] != 0x0A && full[at] != 0x0A, damagedLine > 1, let j = (0..<reference.count).first(where: { reference.line($0) == damagedLine }) {
                let stillThere = kept[reference.offset(j)] != nil
                #expect(stillThere || r.problems.contains { $0.line == damagedLine },
                        "\(path): flip at \(at) (line \(damagedLine)) neither kept nor reported: \(r.problems)")
            }
            // Records around the damage decode, or fail with an error naming their line; never a crash.
            for i in 0..<r.count where abs(r.line(i) - damagedLine) <= 1 {
                do { _ = try r.record(at: i) } catch { #expect(error.line == r.line(i)) }
            }
        }
    }
}
