import Foundation
import QMP
import Testing

/// Fleet commands (docs/FLEET.md): several recordings in, one JSON line each out, every line
/// the same document the single-file command gives, a damaged file one error line.
@Suite struct FleetCLITests {
    private func lines(_ r: CLI.Result) throws -> [JSONObject] {
        try r.out.split(separator: "\n").map { try #require(JSONParser.parse(Array($0.utf8)).objectValue) }
    }

    private func fleetDir() throws -> String {
        let dir = CLI.tempDir()
        for (i, profile) in ["balloon-flood", "lifecycle", "rtc-drift"].enumerated() {
            try CLI.run(["synth", "-o", "\(dir)/vm-\(i).qmprec", "--records", "400", "--seed", "\(i + 1)", "--profile", profile,
                         "--host", "host-\(i % 2)", "--label", "vm=vm-\(i)", "--start", "2026-12-0\(i + 1)T08:00:00Z"])
        }
        try FileManager.default.copyItem(atPath: CLI.recording("panic-pause.qmprec"), toPath: dir + "/sub-panic.qmprec")
        return dir
    }

    @Test("analyze triage DIR: one line per recording in order, each result equal to the single-file JSON")
    func analyzeDirectory() throws {
        let dir = try fleetDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run(["analyze", "triage", dir])
        #expect(r.status == 0, "\(r.stderr)")
        let got = try lines(r)
        #expect(got.map { $0["file"]?.stringValue } == ["sub-panic.qmprec", "vm-0.qmprec", "vm-1.qmprec", "vm-2.qmprec"].map { dir + "/" + $0 })
        for line in got {
            let file = try #require(line["file"]?.stringValue)
            let single = try CLI.run(["analyze", "triage", file, "--format", "json"])
            #expect(line["result"] == (try JSONParser.parse(single.stdout)), "\(file)")
            #expect(line["ok"] == .bool(true))
            #expect(line["command"] == .string("analyze") && line["analysis"] == .string("triage"))
        }
        #expect(got[1]["vm"] == .string("vm-0") && got[1]["host"] == .string("host-0"))
        #expect(got[1]["start"] == .string("2026-12-01T08:00:00.000000Z"))
        #expect(got[0]["host"] == .string("vm"), "the lab's capture keeps its own header")
        // The panic capture has errors; the triage counts say so in the line.
        #expect((got[0]["result"]?.objectValue?["counts"]?.objectValue?["error"]?.numberValue.flatMap { Int($0.text) } ?? 0) > 0)
    }

    @Test("a damaged or missing input is one error line; the others are read; exit 2 at the end")
    func damaged() throws {
        let dir = try fleetDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = FileManager.default.createFile(atPath: dir + "/broken.qmprec", contents: Data("not a recording\n".utf8))
        let r = try CLI.run(["info", dir, dir + "/missing.qmprec", "--jobs", "2"])
        #expect(r.status == 2)
        let got = try lines(r)
        #expect(got.count == 6)
        let bad = got.filter { $0["ok"] == .bool(false) }
        #expect(bad.compactMap { $0["file"]?.stringValue }.sorted() == [dir + "/broken.qmprec", dir + "/missing.qmprec"])
        #expect(bad.allSatisfy { ($0["error"]?.stringValue ?? "").isEmpty == false && $0["status"] == .int(2) })
        let good = got.filter { $0["ok"] == .bool(true) }
        #expect(good.count == 4)
        for line in good {
            let single = try CLI.run(["info", try #require(line["file"]?.stringValue), "--json"])
            var want = try #require(try JSONParser.parse(single.stdout).objectValue)
            var have = try #require(line["result"]?.objectValue)
            // `info --json` alone reports the schema too; so does the fleet line.
            want["schema"] = nil; have["schema"] = nil
            #expect(have == want)
        }
    }

    @Test("validate over a pattern gives table lines; one file with --format jsonl is one line; json is refused for several")
    func validateTable() throws {
        let dir = try fleetDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let clean = try CLI.run(["validate", dir + "/vm-*.qmprec", "--format", "table"])
        #expect(clean.out.split(separator: "\n").count == 3)
        #expect(clean.out.split(separator: "\n").allSatisfy { $0.contains("\t") && $0.contains("errors") })
        let single = try CLI.run(["info", dir + "/vm-0.qmprec", "--format", "jsonl"])
        #expect(try lines(single).count == 1)
        let usage = try CLI.run(["analyze", "balloon", dir, "--format", "csv"])
        #expect(usage.status == 64)
        #expect(usage.stderr.contains("--format jsonl"))
    }

    @Test("cat over several recordings: each jsonl line names its file, then the record line exactly")
    func catSeveral() throws {
        let dir = try fleetDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run(["cat", dir, "--event", "BALLOON_CHANGE", "--format", "jsonl"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.isEmpty, "files without the event are not each a warning")
        var perFile: [String: [String]] = [:]
        for line in r.out.split(separator: "\n") {
            let o = try #require(try JSONParser.parse(String(line)).objectValue)
            let file = try #require(o["file"]?.stringValue)
            // The rest of the line is the stored record line, byte for byte.
            let prefix = "{\"file\":" + JSONValue.string(file).serialized() + ","
            #expect(line.hasPrefix(prefix))
            perFile[file, default: []].append("{" + line.dropFirst(prefix.count))
        }
        #expect(!perFile.isEmpty)
        for (file, lines) in perFile {
            let single = try CLI.run(["cat", file, "--event", "BALLOON_CHANGE", "--format", "jsonl"])
            #expect(single.out.split(separator: "\n").map(String.init) == lines, "\(file)")
        }
        let raw = try CLI.run(["cat", dir, "--format", "raw"])
        #expect(raw.status == 64)
    }

    @Test("--findings-only: each line keeps the envelope, counts and findings of the full document, nothing else")
    func findingsOnly() throws {
        let dir = try fleetDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let full = try lines(try CLI.run(["analyze", "triage", dir]))
        let small = try lines(try CLI.run(["analyze", "triage", dir, "--findings-only"]))
        #expect(full.count == small.count && !small.isEmpty)
        for (f, s) in zip(full, small) {
            let whole = try #require(f["result"]?.objectValue)
            let kept = try #require(s["result"]?.objectValue)
            #expect(Set(kept.members.map(\.key)) == ["analysis", "schema", "file", "clock", "clock_note", "start", "start_us", "range", "counts", "occurrences", "findings"])
            for m in kept.members { #expect(whole[m.key] == m.value, "\(m.key)") }
            #expect(whole["results"] != nil)
        }
    }
}
