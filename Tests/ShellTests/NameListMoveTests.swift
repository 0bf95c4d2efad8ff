import Foundation
import Recording
import Synth
import Testing
@testable import Shell

/// `next FILTER` / `prev FILTER` walk the record lists of the names the filter requires
/// (docs/INDEX.md): from random cursors, with and without a view filter, they land exactly
/// where a scan of every record lands.
@Suite("shell: next and prev through the names' record lists")
struct NameListMoveTests {
    @Test("the same record as a scan, forwards and backwards")
    func sameAsScan() throws {
        let dir = NSTemporaryDirectory() + "namelist-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/r.qmprec"
        try Synthesizer(seed: 11, profile: .mixed).write(records: 5_000, to: path)
        let r = try Recording(path: path)
        let sh = try ShellSession(recording: r, out: AnalysisBufferOutput(width: 100))
        let targets = ["STOP", "event BALLOON_CHANGE", "BLOCK_JOB_* or command query-block-jobs", "RESUME and conn 1",
                       "command balloon and arguments.value > 1000000", "event STOP or kind return"]
        var rng = SplitMix64(seed: 3)
        for view in [nil, "from qemu"] {
            if let view { try sh.execute("filter \(view)") }
            let visible = try view.map { try FilterExpression(parsing: $0) }
            for t in targets {
                let f = try FilterExpression(parsing: t)
                for _ in 0..<40 {
                    let start = Int(rng.next() % UInt64(r.count))
                    for forward in [true, false] {
                        let order = forward ? Array((start + 1)..<r.count) : Array((0..<start).reversed())
                        let expected = order.first { f.matches(r, $0) && (visible?.matches(r, $0) ?? true) }
                        try sh.execute("seek @\(start)")
                        let moved = (try? sh.execute("\(forward ? "next" : "prev") \(t)")) != nil
                        #expect(moved == (expected != nil), "\(t) from \(start), \(forward)")
                        if let expected { #expect(sh.cursor == expected, "\(t) from \(start), \(forward ? "next" : "prev")") }
                    }
                }
            }
        }
    }
}
