import Foundation
import Testing
@testable import Recording
import Synth

#if canImport(Glibc)
import Glibc
#endif

/// `Recording.extended()` on a file that grows as a recorder writes it: after every append
/// (cut anywhere, mid-line included) the extended recording equals a fresh open of the
/// file's complete lines, and the records already indexed keep their numbers.
@Suite("Extending a growing recording")
struct ExtendTests {
    static var shipped: [String] { Array(DamageTests.shipped.prefix(4)) }

    /// The same index, name by name and record by record.
    static func expectSame(_ a: Recording, _ b: Recording, _ what: String) {
        #expect(a.count == b.count, "\(what): count")
        guard a.count == b.count else { return }
        for i in 0..<a.count {
            if a.offset(i) != b.offset(i) || a.time(i) != b.time(i) || a.kind(i) != b.kind(i) || a.name(i) != b.name(i)
                || a.line(i) != b.line(i) || a.connection(i) != b.connection(i) || a.direction(i) != b.direction(i) {
                Issue.record("\(what): record #\(i) differs")
                return
            }
        }
        #expect(a.trailer == b.trailer, "\(what): trailer")
        #expect(a.header?.startMicros == b.header?.startMicros, "\(what): header")
    }

    @Test("grown in random pieces: equal to a fresh open of its complete lines", arguments: ExtendTests.shipped)
    func grows(path: String) throws {
        let full = try FileBytes(path: path).copyBytes()
        let dir = makeTempDir()
        let live = dir + "/live.qmprec"
        writeFile(live, [])
        var rec = try Recording(path: live)
        var rng = SplitMix64(seed: UInt64(full.count))
        var written = 0
        let fd = open(live, O_WRONLY | O_APPEND)
        defer { close(fd) }
        while written < full.count {
            let piece = min(full.count - written, 1 + Int(rng.next() % 4000))
            full[written..<(written + piece)].withUnsafeBytes { _ = write(fd, $0.baseAddress, $0.count) }
            written += piece
            let before = rec
            rec = try rec.extended()
            // Records already seen keep their numbers and bytes.
            for i in stride(from: 0, to: before.count, by: max(1, before.count / 7)) {
                #expect(rec.offset(i) == before.offset(i) && rec.time(i) == before.time(i))
            }
            var complete = written
            while complete > 0 && full[complete - 1] != 0x0A { complete -= 1 }
            let fresh = try Recording(bytes: FileBytes(bytes: Array(full[..<complete])), path: "fresh")
            ExtendTests.expectSame(rec, fresh, "\(path) at \(written)")
        }
        let whole = try Recording(path: path)
        #expect(rec.trailer == whole.trailer)
    }

    @Test("a torn last line is indexed once its newline comes")
    func tornLine() throws {
        let dir = makeTempDir()
        let path = dir + "/torn.qmprec"
        let header = #"{"qmprec":1,"start":"2026-11-20T10:00:00Z","source":"test","mode":"client"}"# + "\n"
        let first = #"{"t":1,"c":1,"from":"qemu","k":"event","n":"STOP","msg":{"event":"STOP"}}"# + "\n"
        let second = #"{"t":2,"c":1,"from":"qemu","k":"event","n":"RESUME","msg":{"event":"RESUME"}}"#
        writeFile(path, Array((header + first + second).utf8))
        let r1 = try Recording(path: path)
        // Opened whole, a last line without newline that parses is read (with a warning).
        #expect(r1.count == 2)
        let fd = open(path, O_WRONLY | O_APPEND)
        _ = "\n{\"t\":3,\"c\":1,\"from\":\"qemu\",\"k\":\"ev".withCString { write(fd, $0, strlen($0)) }
        let r2 = try r1.extended()
        #expect(r2.count == 2)
        #expect(r2.name(1) == "RESUME")
        _ = "ent\",\"n\":\"STOP\",\"msg\":{\"event\":\"STOP\"}}\n{\"t\":4,\"k\":\"end\",\"records\":3,\"reason\":\"eof\"}\n".withCString { write(fd, $0, strlen($0)) }
        close(fd)
        let r3 = try r2.extended()
        #expect(r3.count == 3)
        #expect(r3.name(2) == "STOP")
        #expect(r3.trailer?.reason == "eof")
        #expect(!r3.problems.contains { $0.message.contains("trailer") })
        let again = try r3.extended()
        #expect(again === r3)
    }
}
