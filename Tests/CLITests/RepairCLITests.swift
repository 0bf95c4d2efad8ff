import Foundation
import QMP
import Recording
import Testing

/// `doctor`, `recover`, `slice` and `merge` end to end, on the real captures in Recordings/:
/// exit statuses, refusals, what the files hold afterwards. `merge` runs on a libvirt-log
/// import and a proxy capture of one session (Scripts/capture-libvirt-merge).
@Suite("qmpreplay doctor, recover, slice, merge", .serialized)
struct RepairCLITests {
    /// Record lines of `path` whose connection is `c`, without their time and connection.
    static func lines(_ r: Recording, connection c: UInt32) -> [String] {
        (0..<r.count).filter { r.connection($0) == c }.map { i in
            let rec = try! r.record(at: i)
            return RecordEncoder.encode(time: 0, connection: 0, body: rec.body).map { String(UnicodeScalar($0)) }.joined()
        }
    }

    @Test("doctor: 0 on a healthy capture, 3 on a torn one naming the line, --json says damaged")
    func doctor() throws {
        let ok = try CLI.run(["doctor", CLI.recording("panic-shutdown.qmprec")])
        #expect(ok.status == 0 && ok.out.contains("healthy"), "\(ok.out)\(ok.stderr)")
        let dir = CLI.tempDir()
        let torn = dir + "/torn.qmprec"
        let full = try Data(contentsOf: URL(fileURLWithPath: CLI.recording("panic-shutdown.qmprec")))
        try full.prefix(1000).write(to: URL(fileURLWithPath: torn))
        let bad = try CLI.run(["doctor", torn])
        #expect(bad.status == 3)
        #expect(bad.out.contains("\(torn):7: error: last line is incomplete") && bad.out.contains("[file:torn-line]"))
        #expect(bad.out.contains("\(torn):8: error: no trailer after line 7"))
        let json = try JSONParser.parse(try CLI.run(["doctor", torn, "--json"]).stdout)
        #expect(json["damaged"]?.boolValue == true && json["records"]?.int64Value == 5)
        let notRecording = dir + "/log.txt"
        try Data("hello\n".utf8).write(to: URL(fileURLWithPath: notRecording))
        #expect(try CLI.run(["doctor", notRecording]).status == 2)
    }

    @Test("recover: keeps the intact records, verifies, never touches its input, refuses to overwrite")
    func recover() throws {
        let dir = CLI.tempDir()
        let damaged = dir + "/damaged.qmprec"
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: CLI.recording("panic-pause.qmprec"))))
        bytes.replaceSubrange(700..<740, with: [UInt8](repeating: 0, count: 40))  // a NUL run inside line 3 or so
        bytes.removeLast(30)                                                      // a torn trailer
        try Data(bytes).write(to: URL(fileURLWithPath: damaged))
        let before = try Data(contentsOf: URL(fileURLWithPath: damaged))
        let out = dir + "/fixed.qmprec"
        let r = try CLI.run(["recover", damaged, "-o", out, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try JSONParser.parse(r.stdout)
        #expect(report["verified"]?.boolValue == true)
        #expect((report["dropped"]?.arrayValue ?? []).contains { $0["reason"]?.stringValue == "40 NUL bytes" })
        #expect(try Data(contentsOf: URL(fileURLWithPath: damaged)) == before)
        #expect(try CLI.run(["doctor", out]).status != 3)
        let again = try CLI.run(["recover", damaged, "-o", out])
        #expect(again.status == 2 && again.stderr.contains("already exists"))
        let self_ = try CLI.run(["recover", damaged, "-o", damaged, "--force"])
        #expect(self_.status == 2 && self_.stderr.contains("never modifies its input"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: damaged)) == before)
        // Nothing is left beside the output.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["damaged.qmprec", "fixed.qmprec"])
    }

    @Test("slice: a span and a filter, redacted on the way out unless --no-redact")
    func slice() throws {
        let dir = CLI.tempDir()
        let secret = dir + "/secret.qmprec"
        let w = try RecordingWriter(path: secret, header: RecordingHeader(startMicros: 0, source: "test", mode: .import))
        try w.append(time: 0, connection: 1, .open(peer: "test", info: JSONObject()))
        try w.message(time: 1_000_000, connection: 1, from: .client, QMPMessage(bytes: Array(#"{"execute":"set_password","arguments":{"protocol":"vnc","password":"hunter22"},"id":1}"#.utf8)))
        try w.message(time: 2_000_000, connection: 1, from: .qemu, QMPMessage(bytes: Array(#"{"return": {}, "id": 1}"#.utf8)))
        try w.finish(reason: "complete")
        let out = dir + "/out.qmprec"
        let r = try CLI.run(["slice", secret, "--filter", "command set_password", "-o", out])
        #expect(r.status == 0 && r.out.contains("wrote 1 record") && r.out.contains("1 secret redacted"), "\(r.out)\(r.stderr)")
        let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: out)), as: UTF8.self)
        #expect(!text.contains("hunter22") && text.contains("<redacted>") && text.contains("\"redacted\":true"))
        let kept = try CLI.run(["slice", secret, "--to", "1ms", "-o", dir + "/kept.qmprec", "--no-redact"])
        #expect(kept.status == 0)
        #expect(String(decoding: try Data(contentsOf: URL(fileURLWithPath: dir + "/kept.qmprec")), as: UTF8.self).contains("hunter22"))
        #expect(try CLI.run(["slice", secret, "--filter", "event STOP", "-o", dir + "/none.qmprec"]).status == 1)
        #expect(try CLI.run(["slice", secret, "--filter", "event ==", "-o", dir + "/none.qmprec"]).status == 64)
        #expect(try CLI.run(["slice", secret, "-o", out]).status == 2)
    }

    @Test("merge: a proxy capture and a libvirt-log import of one session, per-source order kept, aligned by shared events")
    func merge() throws {
        let proxy = CLI.recording("libvirt-merge-proxy.qmprec")
        let libvirt = CLI.recording("libvirt-merge-libvirt.qmprec")
        let out = CLI.tempDir() + "/merged.qmprec"
        let r = try CLI.run(["merge", proxy, libvirt, "-o", out, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let v = try JSONParser.parse(r.stdout)
        let second = try #require(v["sources"]?.arrayValue?.dropFirst().first)
        #expect(second["method"]?.stringValue == "shared-events")
        #expect((second["events"]?.int64Value ?? 0) >= 5)
        // libvirt's log has millisecond stamps written after the fact: tens of ms at most.
        #expect((second["residual_max_ns"]?.int64Value ?? .max) - (second["residual_min_ns"]?.int64Value ?? 0) < 100_000_000)

        let merged = try Recording(path: out)
        let a = try Recording(path: proxy), b = try Recording(path: libvirt)
        let conns = Set((0..<b.count).map { b.connection($0) })
        #expect(conns.count == 1)
        // One connection per source, each source's records in their recorded order, all there.
        #expect(RepairCLITests.lines(merged, connection: 1) == RepairCLITests.lines(a, connection: 1))
        #expect(RepairCLITests.lines(merged, connection: 2) == RepairCLITests.lines(b, connection: conns.first!))
        // The same events, from both monitors, land next to each other.
        var gaps: [Int64] = []
        for i in 0..<merged.count where merged.kind(i) == .event && merged.connection(i) == 1 {
            let ts = merged.eventTimestampMicros(i)
            if let j = (0..<merged.count).first(where: { merged.connection($0) == 2 && merged.kind($0) == .event && merged.eventTimestampMicros($0) == ts }) {
                gaps.append(abs(merged.time(i) - merged.time(j)))
            }
        }
        #expect(gaps.count >= 5 && gaps.allSatisfy { $0 < 100_000_000 }, "\(gaps)")
        #expect(try CLI.run(["merge", proxy, "-o", out]).status == 64)
    }
}
