import Foundation
import QMP
import Recording
import Testing

/// `qmpreplay import` run as a program: exit statuses, the first line of every error,
/// standard input through a real pipe, the overwrite rule, the report.
@Suite("qmpreplay import (command line)")
struct ImportCLITests {
    static let lifecycle = CLI.packageRoot.appendingPathComponent("Recordings/sources/lifecycle.qmp-lines.txt").path
    static let formats = "auto, qmp-lines, libvirt-replies, libvirt-log, virsh-events, qmp-transcript, shell-session, qmp-shell, iotests"

    static func fixture(_ name: String) -> String {
        CLI.packageRoot.appendingPathComponent("Tests/Fixtures/import/\(name)").path
    }

    static func bytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    static func firstLine(_ s: String) -> String { String(s.split(separator: "\n", omittingEmptySubsequences: false).first ?? "") }

    @Test("an existing output is refused without --force (exit 2, nothing touched) and replaced with it")
    func overwrite() throws {
        let dir = CLI.tempDir()
        let out = dir + "/out.qmprec"
        try Data("precious\n".utf8).write(to: URL(fileURLWithPath: out))
        let refused = try CLI.run(["import", Self.lifecycle, "--format", "qmp-lines", "-o", out])
        #expect(refused.status == 2)
        #expect(Self.firstLine(refused.stderr) == "qmpreplay: error: \(out) already exists; not overwriting it (recordings are evidence): choose another name or add --force")
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "precious\n")
        #expect(refused.out.isEmpty)

        let forced = try CLI.run(["import", Self.lifecycle, "--format", "qmp-lines", "-o", out, "--force"])
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(try Recording(path: out).header?.mode == .import)
        // No temporary file is left next to it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["out.qmprec"])
    }

    @Test("standard input through a pipe keeps its first byte", arguments: ["-", "/dev/stdin"])
    func stdinPipe(path: String) throws {
        let dir = CLI.tempDir()
        let source = try Self.bytes(Self.lifecycle)
        for format in ["qmp-lines", "auto"] {
            let out = dir + "/\(format).qmprec"
            let r = try CLI.run(["import", path, "--format", format, "-o", out], stdin: source)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stderr.isEmpty, "\(r.stderr)")
            #expect(r.out.hasPrefix("\(out): 23 records (21 QMP messages) imported from \(path) (qmp-lines"))
            let rec = try Recording(path: out)
            #expect(rec.count == 23)
            // The greeting is a greeting: its opening brace was not lost.
            let raw = try CLI.run(["cat", "--format", "raw", out])
            #expect(raw.stdout == source)
        }
    }

    @Test("a gzip-compressed source through a pipe is decompressed")
    func gzipPipe() throws {
        let dir = CLI.tempDir()
        #expect(system("gzip -c '\(Self.lifecycle)' > '\(dir)/l.gz'") == 0)
        let r = try CLI.run(["import", "-", "-o", dir + "/l.qmprec"], stdin: try Self.bytes(dir + "/l.gz"))
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Recording(path: dir + "/l.qmprec").count == 23)
    }

    @Test("a .qmprec source is refused as already a recording")
    func recordingSource() throws {
        let dir = CLI.tempDir()
        let src = CLI.recording("lifecycle.qmprec")
        for extra in [[], ["--format", "qmp-lines"]] {
            let r = try CLI.run(["import", src, "-o", dir + "/x.qmprec"] + extra)
            #expect(r.status == 2)
            #expect(Self.firstLine(r.stderr) == "qmpreplay: error: \(src) is already a qmpreplay recording; nothing to import")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/x.qmprec"))
    }

    @Test("nothing readable as QMP: exit 2, the format tried and how to pick another, nothing written")
    func nothingReadable() throws {
        let dir = CLI.tempDir()
        let src = dir + "/notes.txt"
        try Data("the VM hung at 10:02\nno logs were kept\n".utf8).write(to: URL(fileURLWithPath: src))
        let out = dir + "/x.qmprec"

        let named = try CLI.run(["import", src, "--format", "qmp-lines", "-o", out])
        #expect(named.status == 2)
        #expect(Self.firstLine(named.stderr) == "qmpreplay: error: \(src): no QMP message could be read as qmp-lines; nothing written (try --format auto, or another format: \(Self.formats))")
        #expect(named.stderr.contains("\(src):1: not JSON"))

        let auto = try CLI.run(["import", src, "-o", out])
        #expect(auto.status == 2)
        #expect(Self.firstLine(auto.stderr) == "qmpreplay: error: \(src): cannot tell the format: no QMP traffic recognised; name it with --format (qmp-lines, libvirt-replies, libvirt-log, virsh-events, qmp-transcript, shell-session, qmp-shell, iotests)")

        // A libvirt log without monitor lines, detected from nothing: named explicitly.
        let log = dir + "/libvirtd.log"
        try Data("2024-05-02 10:00:00.000+0000: 1: debug : virThreadJobSet:94 : Thread 1 is now running job remoteDispatchConnectOpen\n".utf8)
            .write(to: URL(fileURLWithPath: log))
        let l = try CLI.run(["import", log, "--format", "libvirt-log", "-o", out, "--json"])
        #expect(l.status == 2)
        #expect(Self.firstLine(l.stderr).hasPrefix("qmpreplay: error: \(log): no QMP message could be read as libvirt-log; nothing written"))
        let v = try JSONParser.parse(l.stdout)
        #expect(v["written"]?.boolValue == false)
        #expect(v["messages"]?.int64Value == 0)
        #expect(v["ignored"]?["lines"]?.int64Value == 1)
        #expect(!FileManager.default.fileExists(atPath: out))

        let empty = dir + "/empty.txt"
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        let e = try CLI.run(["import", empty, "-o", out])
        #expect(e.status == 2)
        #expect(Self.firstLine(e.stderr) == "qmpreplay: error: \(empty) is empty; nothing to import")

        let missing = try CLI.run(["import", dir + "/nope.txt", "-o", out])
        #expect(missing.status == 2)
        #expect(Self.firstLine(missing.stderr) == "qmpreplay: error: \(dir)/nope.txt: No such file or directory")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("an unknown format is a usage error (64) that lists the valid names")
    func unknownFormat() throws {
        let r = try CLI.run(["import", Self.lifecycle, "--format", "socat", "-o", CLI.tempDir() + "/x.qmprec"])
        #expect(r.status == 64)
        #expect(Self.firstLine(r.stderr) == "qmpreplay: error: unknown import format 'socat'; --format takes \(Self.formats)")
    }

    @Test("--from FORMAT still works, with a note; --from as a time or twice is a usage error")
    func legacyFrom() throws {
        let dir = CLI.tempDir()
        let ok = try CLI.run(["import", Self.lifecycle, "--from", "qmp-lines", "-o", dir + "/a.qmprec"])
        #expect(ok.status == 0)
        #expect(Self.firstLine(ok.stderr) == "qmpreplay: warning: --from qmp-lines is deprecated for import; use --format qmp-lines (--from is a time in every other command)")
        let time = try CLI.run(["import", Self.lifecycle, "--from", "5s", "-o", dir + "/b.qmprec"])
        #expect(time.status == 64)
        #expect(Self.firstLine(time.stderr) == "qmpreplay: error: --from is a time in the other commands; import names its source format with --format (\(Self.formats))")
        let both = try CLI.run(["import", Self.lifecycle, "--from", "qmp-lines", "--format", "qmp-lines", "-o", dir + "/c.qmprec"])
        #expect(both.status == 64)
        #expect(Self.firstLine(both.stderr) == "qmpreplay: error: give the source format once: --from is the old name of --format")
    }

    @Test("every sample shape imports by auto detection with every message", arguments: [
        ("bug-report-mirror.txt", "qmp-transcript", 11, 4),
        ("socat-session.txt", "shell-session", 17, 8),
        ("qmp-shell-verbose.txt", "qmp-shell", 16, 1),
        ("virt-launcher.log", "libvirt-log", 8, 4),
        ("iotests-mirror.out", "iotests", 27, 12),
    ])
    func shapes(file: String, format: String, messages: Int, ignored: Int) throws {
        let dir = CLI.tempDir()
        let out = dir + "/out.qmprec"
        let r = try CLI.run(["import", Self.fixture(file), "-o", out, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let v = try JSONParser.parse(r.stdout)
        #expect(v["format"]?.stringValue == format)
        #expect(v["detected"]?.boolValue == true)
        #expect(v["written"]?.boolValue == true)
        #expect(v["messages"]?.int64Value == Int64(messages))
        #expect(v["unread"]?["lines"]?.int64Value == 0)
        #expect(v["ignored"]?["lines"]?.int64Value == Int64(ignored))
        let rec = try Recording(path: out)
        #expect(rec.header?.labels.first { $0.key == "format" }?.value == format)
        let info = try JSONParser.parse(try CLI.run(["info", "--json", out]).stdout)
        let byDir = info["by_direction"]
        #expect((byDir?["qemu"]?.int64Value ?? 0) + (byDir?["client"]?.int64Value ?? 0) == Int64(messages))
        #expect(info["by_kind"]?["other"] == nil)
    }

    @Test("what could not be read is counted with its lines, on standard error and in --json")
    func unreadReport() throws {
        let dir = CLI.tempDir()
        let src = dir + "/mail.txt"
        try Data("""
            -> { "execute": "query-status" }
            <- { "return": { "status": "running", "running": true } }
            <- (the reply to stop never came)
            -> { "execute": "cont",

            """.utf8).write(to: URL(fileURLWithPath: src))
        let text = try CLI.run(["import", src, "-o", dir + "/a.qmprec"])
        #expect(text.status == 0)
        #expect(text.stderr.contains("qmpreplay: warning: \(src):3: <- is followed by no JSON; left out: (the reply to stop never came)"))
        #expect(text.stderr.contains("qmpreplay: warning: \(src):4: the message is cut short at the end of the input"))
        #expect(text.stderr.contains("qmpreplay: warning: \(src): 2 lines could not be read as QMP (lines 3-4)"))
        #expect(text.out == "\(dir)/a.qmprec: 5 records (2 QMP messages) imported from \(src) (qmp-transcript, detected); 2 lines not read, 0 warnings\n")

        let json = try CLI.run(["import", src, "-o", dir + "/b.qmprec", "--json"])
        let v = try JSONParser.parse(json.stdout)
        #expect(v["unread"]?["lines"]?.int64Value == 2)
        #expect(v["unread"]?["items"]?.arrayValue?.compactMap { $0["line"]?.int64Value } == [3, 4])
        #expect(v["unread"]?["items"]?.arrayValue?.compactMap { $0["kind"]?.stringValue } == ["unread", "unread"])
        #expect(v["warnings"]?.arrayValue?.count == 2)
        #expect(v["records"]?.int64Value == 5)  // 2 notes, open, 2 messages
    }

    @Test("-o - writes the recording to standard output and the report to standard error")
    func toStdout() throws {
        let r = try CLI.run(["import", Self.lifecycle, "-o", "-"])
        #expect(r.status == 0)
        let lines = r.out.split(separator: "\n")
        #expect(lines.count == 25)  // header, 23 records, trailer
        #expect(lines.first?.hasPrefix(#"{"qmprec":1"#) == true)
        #expect(r.stderr.contains("-: 23 records (21 QMP messages) imported from"))
    }
}
