import Foundation
import QMP
import Recording
import Testing

/// End-to-end tests of the real binary on the recordings shipped in Recordings/.
@Suite("qmpreplay command line", .serialized)
struct CLITests {
    static let shipped = [
        "lifecycle.qmprec", "rx-filter.qmprec", "caps.qmprec", "synthetic-mixed.qmprec",
        "guest-balloon.qmprec", "guest-rtc.qmprec", "guest-rx-filter.qmprec", "lifecycle-qemu.qmprec", "block-jobs.qmprec", "vnc.qmprec",
    ]

    @Test("help lists every command and the exit statuses")
    func help() throws {
        let r = try CLI.run(["--help"])
        #expect(r.status == 0)
        for c in ["info", "cat", "validate", "import", "synth"] { #expect(r.out.contains(c)) }
        #expect(r.out.contains("Exit status"))
        let v = try CLI.run(["--version"])
        #expect(v.out.contains(QMPReplayVersion.string))
    }

    @Test("info on every shipped recording agrees with the library", arguments: shipped)
    func info(_ name: String) throws {
        let path = CLI.recording(name)
        let text = try CLI.run(["info", path])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.out.contains("Records"))
        #expect(text.out.contains("Events"))
        #expect(!text.out.contains("\u{1B}["), "no colours when not a terminal")
        let json = try CLI.run(["info", "--json", path])
        #expect(json.status == 0)
        let v = try JSONParser.parse(json.stdout)
        let rec = try Recording(path: path)
        #expect(v["records"]?.int64Value == Int64(rec.count))
        #expect(v["trailer"]?["reason"]?.stringValue?.hasPrefix("complete") == true)
        #expect(v["warnings"]?.arrayValue?.isEmpty == true)
        let byDir = v["by_direction"]
        let total = (byDir?["qemu"]?.int64Value ?? 0) + (byDir?["client"]?.int64Value ?? 0)
        #expect(total == Int64((0..<rec.count).filter { rec.direction($0) != nil }.count))
    }

    @Test("info counts events, commands, errors, connections and QEMU clock skew")
    func infoLifecycleDetails() throws {
        let r = try CLI.run(["info", "--json", CLI.recording("lifecycle.qmprec")])
        let v = try JSONParser.parse(r.stdout)
        #expect((v["events"]?["STOP"]?.int64Value ?? 0) >= 2)
        #expect(v["events"]?["SHUTDOWN"]?.int64Value == 1)
        #expect(v["commands"]?["qmp_capabilities"]?.int64Value == 1)
        #expect(v["header"]?["qemu"]?.stringValue == "7.2.0")
        #expect(v["connections"]?.arrayValue?.count == 1)
        let skew = try #require(v["qemu_timestamps"]?.objectValue)
        #expect(skew["events"]?.int64Value == v["by_kind"]?["event"]?.int64Value)
        // Imported from plain lines: times come from the event timestamps, so skew is zero.
        #expect(skew["skew_min_us"]?.int64Value == 0 && skew["skew_max_us"]?.int64Value == 0)
    }

    @Test("cat --format raw gives back exactly the bytes of the imported transcript")
    func rawIsExact() throws {
        let r = try CLI.run(["cat", "--format", "raw", CLI.recording("lifecycle.qmprec")])
        #expect(r.status == 0)
        let source = try Data(contentsOf: CLI.packageRoot.appendingPathComponent("Recordings/sources/lifecycle.qmp-lines.txt"))
        #expect(r.stdout == Array(source))
    }

    @Test("cat --direction --connection --format raw gives one direction's exact stream")
    func rawDirection() throws {
        let path = CLI.recording("lifecycle.qmprec")
        let q = try CLI.run(["cat", "--format", "raw", "--connection", "1", "--direction", "qemu", path])
        let c = try CLI.run(["cat", "--format", "raw", "--connection", "1", "--direction", "client", path])
        // Split the transcript into lines on bytes (in Swift "\r\n" is one Character).
        let source = Array(try Data(contentsOf: CLI.packageRoot.appendingPathComponent("Recordings/sources/lifecycle.qmp-lines.txt")))
        var lines: [[UInt8]] = [], cur: [UInt8] = []
        for b in source { cur.append(b); if b == 0x0A { lines.append(cur); cur = [] } }
        let isCommand = { (l: [UInt8]) in String(decoding: l, as: UTF8.self).contains("\"execute\"") }
        #expect(q.stdout == lines.filter { !isCommand($0) }.flatMap { $0 })
        #expect(c.stdout == lines.filter(isCommand).flatMap { $0 })
        #expect(!q.stdout.isEmpty && !c.stdout.isEmpty)
    }

    @Test("cat --event selects events by name and pattern, as jsonl records")
    func catEvents() throws {
        let path = CLI.recording("lifecycle.qmprec")
        let r = try CLI.run(["cat", "--format", "jsonl", "--event", "STOP", "--event", "RES*", path])
        #expect(r.status == 0)
        let lines = r.out.split(separator: "\n")
        #expect(!lines.isEmpty)
        var names = Set<String>()
        for l in lines {
            let v = try JSONParser.parse(String(l))
            #expect(v["k"]?.stringValue == "event")
            names.insert(v["msg"]?["event"]?.stringValue ?? "?")
        }
        #expect(names.isSubset(of: ["STOP", "RESUME", "RESET"]) && names.contains("STOP") && names.contains("RESUME"))
    }

    @Test("cat --command prints the commands and their replies")
    func catCommands() throws {
        let r = try CLI.run(["cat", "--format", "jsonl", "--command", "query-status", CLI.recording("lifecycle.qmprec")])
        #expect(r.status == 0)
        let recs = try r.out.split(separator: "\n").map { try JSONParser.parse(String($0)) }
        let commands = recs.filter { $0["k"]?.stringValue == "command" }
        let replies = recs.filter { $0["k"]?.stringValue == "return" }
        #expect(!commands.isEmpty && commands.count == replies.count)
        #expect(commands.allSatisfy { $0["n"]?.stringValue == "query-status" })
        #expect(replies.allSatisfy { $0["msg"]?["return"]?["status"] != nil })
    }

    @Test("cat --from/--to by time and record number")
    func catSpan() throws {
        let path = CLI.recording("synthetic-mixed.qmprec")
        let rec = try Recording(path: path)
        let r = try CLI.run(["cat", "--format", "jsonl", "--from", "#10", "--to", "#19", path])
        #expect(r.out.split(separator: "\n").count == 10)
        let t0 = rec.time(10), t1 = rec.time(40)
        let r2 = try CLI.run(["cat", "--format", "jsonl", "--from", "\(t0)ns", "--to", "\(t1)ns", path])
        let times = try r2.out.split(separator: "\n").map { try JSONParser.parse(String($0))["t"]!.int64Value! }
        #expect(times.first == t0 && times.last == t1)
        #expect(times.count == rec.firstIndex(atOrAfter: t1 + 1) - rec.firstIndex(atOrAfter: t0))
    }

    @Test("cat pretty output shows headings and indented JSON")
    func catPretty() throws {
        let r = try CLI.run(["cat", "--to", "#3", CLI.recording("lifecycle.qmprec")])
        #expect(r.status == 0)
        #expect(r.out.contains("greeting"))
        #expect(r.out.contains("qmp_capabilities"))
        #expect(r.out.contains("\n  \""))
    }

    @Test("bad input gets a clear error and the documented exit status")
    func errors() throws {
        let missing = try CLI.run(["info", "/nonexistent/x.qmprec"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("/nonexistent/x.qmprec"))
        let badTime = try CLI.run(["cat", "--from", "5x", CLI.recording("lifecycle.qmprec")])
        #expect(badTime.status == 64)
        #expect(badTime.stderr.contains("5x"))
        let badKind = try CLI.run(["cat", "--kind", "nonsense", CLI.recording("lifecycle.qmprec")])
        #expect(badKind.status == 64)
    }

    @Test("validate: clean recordings pass; damage and protocol violations are findings")
    func validate() throws {
        for name in CLITests.shipped {
            let r = try CLI.run(["validate", CLI.recording(name)])
            #expect(r.status == 0, "\(name): \(r.out)")
        }
        let dir = CLI.tempDir()
        // An event before negotiation and a wrong member type.
        let w = try RecordingWriter(path: dir + "/bad.qmprec", header: RecordingHeader(startMicros: 0, source: "test", mode: .synthetic))
        try w.append(time: 0, connection: 1, .open(peer: "test", info: JSONObject()))
        try w.message(time: 1, connection: 1, from: .qemu, QMPMessage(text: #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#))
        try w.message(time: 2, connection: 1, from: .qemu, QMPMessage(text: #"{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "BALLOON_CHANGE", "data": {"actual": "lots"}}"#))
        try w.message(time: 3, connection: 1, from: .client, QMPMessage(text: #"{"execute": "query-status", "id": 7}"#))
        try w.message(time: 4, connection: 1, from: .qemu, QMPMessage(text: #"{"return": {}, "id": 8}"#))
        try w.finish(reason: "eof")
        let r = try CLI.run(["validate", dir + "/bad.qmprec"])
        #expect(r.status == 1)
        #expect(r.out.contains("bad.qmprec:4: error"))
        #expect(r.out.contains("event-before-negotiation"))
        #expect(r.out.contains("wrong-type"))
        #expect(r.out.contains("command-before-negotiation"))
        #expect(r.out.contains("reply-without-command"))
        let j = try CLI.run(["validate", "--json", dir + "/bad.qmprec"])
        #expect(j.status == 1)
        let v = try JSONParser.parse(j.stdout)
        #expect((v["counts"]?["error"]?.int64Value ?? 0) >= 2)
        let unreadable = try CLI.run(["validate", dir + "/nope.qmprec"])
        #expect(unreadable.status == 2)
    }

    @Test("import of every format writes a readable recording; synth is deterministic")
    func importAndSynth() throws {
        let dir = CLI.tempDir()
        let sources = [
            ("lifecycle.qmp-lines.txt", "qmp-lines"), ("rx-filter.libvirt.log", "libvirt-log"),
            ("caps.libvirt.replies", "libvirt-replies"),
        ]
        for (file, format) in sources {
            let src = CLI.packageRoot.appendingPathComponent("Recordings/sources/\(file)").path
            let out = dir + "/\(format).qmprec"
            let r = try CLI.run(["import", src, "-o", out, "--from", format])
            #expect(r.status == 0, "\(format): \(r.stderr)")
            let rec = try Recording(path: out)
            #expect(rec.count > 3)
            #expect(rec.header?.mode == .import)
            #expect(rec.trailer != nil)
        }
        let a = dir + "/a.qmprec", b = dir + "/b.qmprec"
        #expect(try CLI.run(["synth", "-o", a, "--records", "2000", "--seed", "7"]).status == 0)
        #expect(try CLI.run(["synth", "-o", b, "--records", "2000", "--seed", "7"]).status == 0)
        #expect(FileManager.default.contentsEqual(atPath: a, andPath: b))
        #expect(try Recording(path: a).count == 2000)
        let bad = try CLI.run(["import", "/nonexistent", "-o", dir + "/x.qmprec", "--from", "qmp-lines"])
        #expect(bad.status == 2)
    }

    @Test("gzip-compressed recordings work in every command")
    func gzipped() throws {
        let dir = CLI.tempDir()
        let gz = dir + "/lifecycle.qmprec.gz"
        let src = CLI.recording("lifecycle.qmprec")
        #expect(system("gzip -c '\(src)' > '\(gz)'") == 0)
        let a = try CLI.run(["cat", "--format", "raw", src])
        let b = try CLI.run(["cat", "--format", "raw", gz])
        #expect(a.stdout == b.stdout && !a.stdout.isEmpty)
        #expect(try CLI.run(["validate", gz]).status == 0)
    }
}
