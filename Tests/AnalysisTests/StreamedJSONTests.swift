import Foundation
import QMP
import Recording
import TestSupport
import Testing
@testable import Analysis

/// `AnalysisReport.writeJSON` (the streamed document `analyze --format json` prints) is
/// byte for byte the tree's `json.serializedBytes(.pretty(indent: 2))`, for every analysis
/// and triage, on every shipped recording, in small chunks and large; the compact form (a
/// fleet line's result) and `--findings-only` likewise. Triage's document, whose parts
/// stream nested under `results`, is also compared with the document the tree-building
/// code wrote before it streamed (Tests/Fixtures/triage/).
@Suite("Streamed analysis JSON")
struct StreamedJSONTests {
    static var files: [String] {
        let dir = PackageRoot.file("Recordings")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { $0.hasSuffix(".qmprec") }.sorted().map { dir + "/" + $0 }
    }

    /// The members `--findings-only` keeps (AnalyzeCommand.findingsMembers).
    static let findingsMembers: Set<String> = ["analysis", "schema", "file", "clock", "clock_note", "start", "start_us", "range",
                                               "counts", "occurrences", "findings"]

    @Test("streamed equals the tree", arguments: StreamedJSONTests.files)
    func same(path: String) throws {
        let r = try Recording(path: path)
        for name in Analyses.names {
            let report = try Analyses.run(name, on: r)
            // Every result streams its growing arrays: none is built whole for the output.
            #expect(report.result is any StreamedJSONResult, "\(name) does not stream")
            let tree = report.json
            let pretty = tree.serializedBytes(.pretty(indent: 2))
            for chunk in [64, 1 << 20] {
                var streamed: [UInt8] = []
                var pieces = 0
                report.writeJSON(indent: 2, chunk: chunk) { streamed += $0; pieces += 1 }
                #expect(Self.firstDifference(streamed, pretty) == nil, "\(name) on \(path), chunks of \(chunk)")
                if chunk == 64 && pretty.count > 1000 { #expect(pieces > 1) }
            }
            #expect(Self.firstDifference(report.jsonBytes(.compact), tree.serializedBytes(.compact)) == nil, "\(name) on \(path), compact")
            guard case .object(let o) = tree else { Issue.record("\(name): not an object"); continue }
            let kept = JSONValue.object(JSONObject(o.members.filter { Self.findingsMembers.contains($0.key) }))
            var only: [UInt8] = []
            report.writeJSON(indent: 2, chunk: 64, only: Self.findingsMembers) { only += $0 }
            #expect(Self.firstDifference(only, kept.serializedBytes(.pretty(indent: 2))) == nil, "\(name) on \(path), findings only")
        }
    }

    static let triageFixtures = ["block-jobs-reuse", "guest-balloon", "guest-rtc", "io-errors", "rx-filter", "synthetic-mixed", "vnc"]

    @Test("triage's streamed document is the one the tree made", arguments: StreamedJSONTests.triageFixtures)
    func triageAsBefore(name: String) throws {
        // The fixtures were written by `analyze triage Recordings/NAME.qmprec --format json`
        // from the package root, before triage streamed: the path in them is relative.
        let expected = try [UInt8](Data(contentsOf: URL(fileURLWithPath: PackageRoot.file("Tests/Fixtures/triage/\(name).json"))))
        let path = PackageRoot.recording("\(name).qmprec")
        let report = try Analyses.run("triage", on: try Recording(path: path))
        var streamed: [UInt8] = []
        report.writeJSON(indent: 2, chunk: 256) { streamed += $0 }
        streamed.append(UInt8(ascii: "\n"))
        let text = String(decoding: streamed, as: UTF8.self)
            .replacingOccurrences(of: "\"file\": \"\(path)\"", with: "\"file\": \"Recordings/\(name).qmprec\"")
        let difference = Self.firstDifference(Array(text.utf8), expected)
        #expect(difference == nil, "triage on \(name) differs from Tests/Fixtures/triage/\(name).json")
    }

    /// Where two documents part, with a line of each around it (`nil`: equal).
    static func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> String? {
        guard a != b else { return nil }
        let at = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
        func around(_ x: [UInt8]) -> String { String(decoding: x[max(0, at - 60)..<min(x.count, at + 60)], as: UTF8.self) }
        return "at byte \(at): streamed …\(around(a))… expected …\(around(b))…"
    }
}
