import Fleet
import Foundation
import Testing

/// Which files a fleet command reads: directories walked (sorted, recursive, recordings
/// only), patterns expanded, and every input that names nothing reported.
@Suite struct FleetInputsTests {
    private func tree() throws -> String {
        let root = NSTemporaryDirectory() + "fleet-inputs-" + UUID().uuidString
        let fm = FileManager.default
        for dir in ["a", "a/deep", "b", "empty", ".hidden"] {
            try fm.createDirectory(atPath: root + "/" + dir, withIntermediateDirectories: true)
        }
        for file in ["a/2.qmprec", "a/1.qmprec.gz", "a/notes.txt", "a/deep/3.qmprec", "b/x.qmprec", ".hidden/h.qmprec", "top.qmprec"] {
            _ = fm.createFile(atPath: root + "/" + file, contents: Data("x".utf8))
        }
        return root
    }

    @Test("a directory gives its recordings, sorted and recursive, skipping other and hidden files")
    func directories() throws {
        let root = try tree()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let got = FleetInputs.expand([root])
        #expect(got.files == ["a/1.qmprec.gz", "a/2.qmprec", "a/deep/3.qmprec", "b/x.qmprec", "top.qmprec"].map { root + "/" + $0 })
        #expect(got.expanded)
        // The empty folder inside is simply walked; only an input that names nothing is a problem.
        #expect(got.problems.isEmpty)
    }

    @Test("files keep the order given; a pattern expands; missing inputs and empty matches are problems")
    func filesPatternsProblems() throws {
        let root = try tree()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let got = FleetInputs.expand([root + "/top.qmprec", root + "/a/*.qmprec", root + "/nope.qmprec", root + "/zz*", root + "/empty"])
        #expect(got.files == [root + "/top.qmprec", root + "/a/2.qmprec"])
        #expect(got.problems.map(\.path) == [root + "/nope.qmprec", root + "/zz*", root + "/empty"])
        #expect(got.problems[0].message == "No such file or directory")
        #expect(got.problems[1].message == "no file matches this pattern")
        #expect(got.problems[2].message == "no .qmprec or .qmprec.gz files in this directory")
        #expect(!FleetInputs.expand([root + "/top.qmprec"]).expanded)
    }
}
