import Foundation
import QMP
import Recording
import Testing

/// `qmpreplay analyze` end to end on the recordings in Recordings/, with values checked by
/// reading the files.
@Suite("qmpreplay analyze", .serialized)
struct AnalyzeCLITests {
    func json(_ args: [String]) throws -> JSONValue {
        let r = try CLI.run(["analyze"] + args + ["--format", "json"])
        #expect(r.status == 0, "\(r.stderr)")
        return try JSONParser.parse(r.stdout)
    }

    @Test("--list and --help name every analysis")
    func list() throws {
        let r = try CLI.run(["analyze", "--list"])
        #expect(r.status == 0)
        let names = ["balloon", "rtc", "nic-rx-filter", "runstate", "block-jobs", "sessions", "commands", "throttle", "incidents", "triage"]
        #expect(r.out.split(separator: "\n").map { String($0.split(separator: " ")[0]) } == names)
        let h = try CLI.run(["analyze", "--help"])
        for n in names { #expect(h.out.contains(n)) }
        #expect(h.out.contains("Exit status"))
    }

    @Test("bad usage exits 64 and lists the analyses; an unreadable file exits 2")
    func errors() throws {
        let r = try CLI.run(["analyze", "ballon", CLI.recording("guest-balloon.qmprec")])
        #expect(r.status == 64)
        #expect(r.stderr.contains("unknown analysis 'ballon'") && r.stderr.contains("nic-rx-filter"))
        let missing = try CLI.run(["analyze", "balloon", "/nonexistent.qmprec"])
        #expect(missing.status == 2)
        let noPlot = try CLI.run(["analyze", "commands", CLI.recording("guest-balloon.qmprec"), "--svg", "/tmp/x.svg"])
        #expect(noPlot.status == 64)
    }

    @Test("balloon on guest-balloon.qmprec: samples, merged deliveries, targets and how long they took")
    func balloon() throws {
        let v = try json(["balloon", CLI.recording("guest-balloon.qmprec")])
        #expect(v["analysis"]?.stringValue == "balloon" && v["clock"]?.stringValue == "receive")
        let samples = try #require(v["samples"]?.arrayValue)
        #expect(samples.count == 12)
        #expect(samples.filter { $0["source"]?.stringValue == "event" }.count == 8)
        #expect(samples.filter { $0["possibly_merged"]?.boolValue == true }.map { $0["record"]!.int64Value! } == [10, 15, 20, 34, 38])
        #expect(samples[1]["t_ns"]?.int64Value == 29_209_878 && samples[1]["wall"]?.stringValue == "2026-11-22T04:00:42.002540Z")
        #expect(v["stats"]?["min"]?.int64Value == 167_772_160 && v["stats"]?["final"]?.int64Value == 268_435_456)
        let targets = try #require(v["targets"]?.arrayValue)
        #expect(targets.map { $0["outcome"]!.stringValue! } == ["reached", "reached", "reached", "superseded", "superseded", "superseded", "superseded", "reached", "reached"])
        let latency: Int64 = 1_029_561_013 - 24_639_326
        #expect(targets[0]["latency_ns"]?.int64Value == latency)
        #expect(v["flapping"]?.arrayValue?.isEmpty == true)
    }

    @Test("rtc, nic-rx-filter, runstate, block-jobs, sessions on the real captures")
    func others() throws {
        let rtc = try json(["rtc", CLI.recording("guest-rtc.qmprec")])
        let series = try #require(rtc["series"]?.arrayValue)
        #expect(series.count == 1 && series[0]["qom_path"]?.stringValue == "/machine/unattached/device[8]")
        #expect(series[0]["samples"]?.arrayValue?.map { $0["offset"]!.int64Value! } == [3600, 3620, 0])

        let nic = try json(["nic-rx-filter", CLI.recording("guest-rx-filter.qmprec")])
        let nics = try #require(nic["nics"]?.arrayValue)
        #expect(nics.map { $0["name"]!.stringValue! } == ["net0", "net1"])
        #expect(nics[0]["unexpected_events"]?.int64Value == 1)
        #expect(nics[0]["events"]?.arrayValue?.map { $0["outcome"]!.stringValue! } == ["rearmed", "rearmed-unrecorded", "rearmed"])
        #expect(nics[1]["verdict"]?.stringValue?.hasPrefix("ok") == true)

        let rs = try json(["runstate", CLI.recording("lifecycle.qmprec")])
        let paused = try #require(rs["paused"]?.arrayValue)
        #expect(paused.map { $0["duration_ns"]!.int64Value! } == [2_677_426_000, 18_135_495_000 - 7_887_804_000])
        #expect(paused[1]["cause"]?.stringValue == "BLOCK_IO_ERROR on drive-virtio-disk0 (write)")
        #expect(rs["final_state"]?.stringValue == "shutdown")

        let bj = try json(["block-jobs", CLI.recording("block-jobs.qmprec")])
        let jobs = try #require(bj["jobs"]?.arrayValue)
        #expect(jobs.map { $0["id"]!.stringValue! } == ["stream0", "mirror0", "mirror1"])
        #expect(jobs.map { $0["outcome"]!.stringValue! } == ["completed", "cancelled", "completed"])
        #expect(jobs[1]["offset"]?.int64Value == 786_432 && jobs[1]["len"]?.int64Value == 33_554_432)

        let vnc = try json(["sessions", CLI.recording("vnc.qmprec")])
        #expect(vnc["sessions"]?.arrayValue?.map { $0["state"]!.stringValue! } == ["complete", "complete"])
        #expect(vnc["sessions"]?.arrayValue?.map { $0["service"]!.stringValue! } == ["36798", "36812"])
    }

    @Test("triage on lifecycle.qmprec puts the I/O-error pause first; --from/--to, CSV and SVG")
    func triageAndFormats() throws {
        let t = try CLI.run(["analyze", "triage", CLI.recording("lifecycle.qmprec")])
        #expect(t.status == 0)
        // Finding 1: its line, the wrapped rest of its message, then its records.
        let lines = t.out.split(separator: "\n").map(String.init)
        let at = lines.firstIndex { $0.hasPrefix("  1.") } ?? 0
        let first = lines[at...].prefix { !$0.contains("records @") }.map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
        #expect(first.contains("error") && first.contains("VM paused for 10.248s after BLOCK_IO_ERROR on drive-virtio-disk0 (write)"))
        #expect(lines[at...].first { $0.contains("records @") }?.hasSuffix("records @13 @14") == true)
        #expect(!t.out.contains("\u{1B}["))
        let part = try json(["balloon", CLI.recording("guest-balloon.qmprec"), "--from", "2s", "--to", "#25"])
        #expect(part["samples"]?.arrayValue?.map { $0["record"]!.int64Value! } == [15, 17, 20, 22, 25])
        let csv = try CLI.run(["analyze", "balloon", CLI.recording("guest-balloon.qmprec"), "--format", "csv"])
        #expect(csv.out.hasPrefix("record,t_ns,wall,actual,source,possibly_merged,qemu_us\n6,24007800,2026-11-22T04:00:41.997338Z,268435456,query,false,\n"))
        #expect(csv.out.split(separator: "\n").count == 13)
        let dir = CLI.tempDir()
        for name in ["balloon", "rtc", "runstate"] {
            let file = "\(dir)/\(name).svg"
            let rec = name == "rtc" ? "guest-rtc.qmprec" : name == "balloon" ? "guest-balloon.qmprec" : "lifecycle-qemu.qmprec"
            let r = try CLI.run(["analyze", name, CLI.recording(rec), "--svg", file])
            #expect(r.status == 0, "\(r.stderr)")
            let svg = String(decoding: FileManager.default.contents(atPath: file) ?? Data(), as: UTF8.self)
            #expect(svg.hasPrefix("<?xml") && svg.contains("<svg xmlns=\"http://www.w3.org/2000/svg\"") && svg.hasSuffix("</svg>\n"))
            #expect(svg.components(separatedBy: "<svg ").count == 2 && svg.contains("time of day (UTC)"))
        }
        let chart = try CLI.run(["analyze", "balloon", CLI.recording("guest-balloon.qmprec"), "--chart"])
        #expect(chart.status == 0 && chart.out.contains("█"))
    }
}
