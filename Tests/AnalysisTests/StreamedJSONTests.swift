import Foundation
import QMP
import Recording
import Testing
@testable import Analysis

/// `AnalysisReport.writeJSON` (the streamed document `analyze --format json` prints) is
/// byte for byte the tree's `json.serializedBytes(.pretty(indent: 2))`, for every analysis,
/// on the real captures and a synthetic file, in small chunks and large.
@Suite("Streamed analysis JSON")
struct StreamedJSONTests {
    static var files: [String] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = root.appendingPathComponent("Recordings").path
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { $0.hasSuffix(".qmprec") }.sorted().prefix(8).map { dir + "/" + $0 }
    }

    @Test("streamed equals the tree", arguments: StreamedJSONTests.files)
    func same(path: String) throws {
        let r = try Recording(path: path)
        for name in Analyses.names {
            let report = try Analyses.run(name, on: r)
            let tree = report.json.serializedBytes(.pretty(indent: 2))
            for chunk in [64, 1 << 20] {
                var streamed: [UInt8] = []
                var pieces = 0
                report.writeJSON(indent: 2, chunk: chunk) { streamed += $0; pieces += 1 }
                #expect(streamed == tree, "\(name) on \(path), chunks of \(chunk)")
                if chunk == 64 && tree.count > 1000 && report.result is any StreamedJSONResult { #expect(pieces > 1) }
            }
        }
    }
}
