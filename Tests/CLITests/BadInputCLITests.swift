import Foundation
import QMP
import Recording
import Testing

/// Files that are not recordings, damaged recordings, and outputs that already exist: what
/// each command says (the first line of standard error, exactly) and its exit status.
@Suite("qmpreplay on files that are not recordings", .serialized)
struct BadInputCLITests {
    /// The commands that open a recording, as a user types them (FILE is replaced).
    static let readers: [[String]] = [
        ["info", "FILE"], ["info", "--json", "FILE"], ["cat", "FILE"], ["cat", "--format", "jsonl", "FILE"],
        ["analyze", "triage", "FILE"], ["analyze", "balloon", "FILE", "--format", "json"], ["validate", "FILE"],
        ["shell", "FILE", "-c", "state"], ["replay", "FILE", "--stdout", "--speed", "max"],
    ]

    enum Input: String, CaseIterable, CustomStringConvertible {
        case empty, blank, binary, jsonLines, qmpText, qmpPretty, libvirtLog, transcript, qmpShell, text
        var description: String { rawValue }

        /// The file's contents.
        var bytes: [UInt8] {
            switch self {
            case .empty: return []
            case .blank: return Array("\n  \n\n".utf8)
            case .binary:
                // An ELF header and some code-like bytes, NULs included.
                let elf: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 0x02, 0x01, 0x01, 0x00]
                let code: [UInt8] = (0..<4000).map { (i: Int) -> UInt8 in UInt8(truncatingIfNeeded: i &* 131 &+ 7) }
                return elf + code
            case .jsonLines: return Array("{\"a\":1}\n{\"a\":2,\"b\":[true]}\n".utf8)
            case .qmpText:
                return Array("""
                    {"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}\r
                    {"execute": "qmp_capabilities"}
                    {"return": {}}\r
                    {"timestamp": {"seconds": 1763632800, "microseconds": 9100}, "event": "STOP"}\r

                    """.utf8)
            case .qmpPretty:
                return Array("{\n    \"execute\": \"query-status\"\n}\n{\n    \"return\": {\n        \"status\": \"running\"\n    }\n}\n".utf8)
            case .libvirtLog:
                let line = #"2025-11-20 10:00:00.100+0000: 1234: info : qemuMonitorIOWrite:337 : QEMU_MONITOR_IO_WRITE: mon=0x7f buf={"execute":"query-status","id":"libvirt-1"}"#
                return Array((line + "\n").utf8)
            case .transcript:
                return Array("-> { \"execute\": \"query-status\" }\n<- { \"return\": { \"status\": \"running\", \"running\": true } }\n".utf8)
            case .qmpShell:
                return Array("Welcome to the QMP low-level shell!\nConnected to QEMU 8.2.2\n\n(QEMU) query-status\n{'return': {'status': 'running', 'running': True}}\n".utf8)
            case .text: return Array("hello\nthis is a note, not a recording\n".utf8)
            }
        }

        /// What follows "not a .qmprec recording: " for a file at `path`.
        func what(_ path: String) -> String {
            switch self {
            case .empty: return "the file is empty"
            case .blank: return "the file holds only blank lines"
            case .binary: return "binary content"
            case .jsonLines, .text:
                return self == .text ? "no header line and no record line (docs/FORMAT.md)"
                    : "JSON, but no header line and no record line (docs/FORMAT.md)"
            case .qmpText, .qmpPretty:
                return "it holds QMP messages as plain text; convert it with: qmpreplay import \(path) -o OUT.qmprec"
            case .libvirtLog:
                return "it is a libvirt debug log; convert it with: qmpreplay import \(path) -o OUT.qmprec"
            case .transcript:
                return "it is a QMP transcript (as pasted in bug reports and docs); convert it with: qmpreplay import \(path) -o OUT.qmprec"
            case .qmpShell:
                return "it is qmp-shell output; convert it with: qmpreplay import \(path) -o OUT.qmprec"
            }
        }
    }

    static func args(_ template: [String], _ path: String) -> [String] { template.map { $0 == "FILE" ? path : $0 } }

    @Test("every command refuses a file that is not a recording: one line, exit 2", arguments: Input.allCases)
    func notARecording(_ input: Input) throws {
        let dir = CLI.tempDir()
        let path = dir + "/\(input.rawValue).qmprec"
        #expect(FileManager.default.createFile(atPath: path, contents: Data(input.bytes)))
        let expected = "qmpreplay: error: \(path): not a .qmprec recording: \(input.what(path))"
        for template in Self.readers {
            let r = try CLI.run(Self.args(template, path))
            let cmd = template.joined(separator: " ")
            #expect(r.status == 2, "\(cmd) on \(input): \(r.stderr)")
            #expect(r.stderr == expected + "\n", "\(cmd) on \(input)")
            #expect(r.stdout.isEmpty, "\(cmd) on \(input): \(r.out.prefix(200))")
        }
    }

    @Test("a program (/bin/ls) is binary content, for every command")
    func program() throws {
        let ls = "/bin/ls"
        guard FileManager.default.isReadableFile(atPath: ls) else { return }
        for template in Self.readers {
            let r = try CLI.run(Self.args(template, ls))
            #expect(r.status == 2, "\(template): \(r.stderr.prefix(300))")
            #expect(r.stderr == "qmpreplay: error: /bin/ls: not a .qmprec recording: binary content\n", "\(template)")
        }
    }

    @Test("a path with spaces is quoted in the import command")
    func quotedPath() throws {
        let dir = CLI.tempDir()
        let path = dir + "/my session.txt"
        #expect(FileManager.default.createFile(atPath: path, contents: Data(Input.qmpText.bytes)))
        let r = try CLI.run(["info", path])
        #expect(r.status == 2)
        #expect(r.stderr == "qmpreplay: error: \(path): not a .qmprec recording: it holds QMP messages as plain text; "
                + "convert it with: qmpreplay import '\(path)' -o OUT.qmprec\n")
    }

    /// lifecycle-qemu.qmprec with a corrupt line after its 5th record, its trailer gone and
    /// a torn last line: a damaged recording, read leniently.
    static func damaged(in dir: String) throws -> (path: String, records: Int) {
        let source = try String(contentsOfFile: CLI.recording("lifecycle-qemu.qmprec"), encoding: .utf8)
        var lines = source.split(separator: "\n").map(String.init)
        #expect(lines.last?.contains("\"k\":\"end\"") == true)
        lines.removeLast()
        let records = lines.count - 1
        lines.insert("{\"t\":12,\"c\":1,\"from\":\"qemu\",\"k\":\"ev", at: 6)
        let path = dir + "/damaged.qmprec"
        let text = lines.joined(separator: "\n") + "\n{\"t\":999999999999,\"c\":1,\"fr"
        #expect(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)))
        return (path, records)
    }

    @Test("a damaged recording is read: every good record, warnings, exit 0")
    func damagedRecording() throws {
        let dir = CLI.tempDir()
        let (path, records) = try Self.damaged(in: dir)
        let info = try CLI.run(["info", "--json", path])
        #expect(info.status == 0, "\(info.stderr)")
        let v = try JSONParser.parse(info.stdout)
        #expect(v["records"]?.int64Value == Int64(records))
        #expect((v["warnings"]?.arrayValue?.count ?? 0) >= 3)
        #expect(info.stderr.isEmpty)

        let cat = try CLI.run(["cat", "--format", "jsonl", path])
        #expect(cat.status == 0)
        #expect(cat.out.split(separator: "\n").count == records)
        #expect(cat.stderr.split(separator: "\n").first.map(String.init)
                == "qmpreplay: warning: \(path): line 7: not valid JSON (unterminated string at byte 35); skipped")

        let triage = try CLI.run(["analyze", "triage", path])
        #expect(triage.status == 0, "\(triage.stderr)")
        #expect(!triage.out.isEmpty)

        let validate = try CLI.run(["validate", path])
        #expect(validate.status == 1)
        #expect(validate.out.split(separator: "\n").first.map(String.init) == "\(path):7: warning: not valid JSON (unterminated string at byte 35); skipped [bad-line]")

        let shell = try CLI.run(["shell", path, "-c", "last; state"])
        #expect(shell.status == 0, "\(shell.stderr)")
        #expect(shell.out.contains("run state"))

        let strict = try CLI.run(["info", "--strict", path])
        #expect(strict.status == 2)
        #expect(strict.stderr == "qmpreplay: error: \(path): line 7: not valid JSON (unterminated string at byte 35); skipped (--strict)\n")
    }

    @Test("a recording with a header and no records is a recording")
    func headerOnly() throws {
        let dir = CLI.tempDir()
        let path = dir + "/none.qmprec"
        let s = try CLI.run(["synth", "-o", path, "--records", "0"])
        #expect(s.status == 0, "\(s.stderr)")
        let r = try CLI.run(["info", path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.isEmpty)
    }

    static let refusal = "already exists; not overwriting it (recordings are evidence): choose another name or add --force"

    @Test("synth never replaces an existing file without --force")
    func synthKeepsExisting() throws {
        let dir = CLI.tempDir()
        let path = dir + "/evidence.qmprec"
        let original = try Data(contentsOf: URL(fileURLWithPath: CLI.recording("panic-pause.qmprec")))
        #expect(FileManager.default.createFile(atPath: path, contents: original))
        let r = try CLI.run(["synth", "-o", path, "--records", "10"])
        #expect(r.status == 2)
        #expect(r.stderr == "qmpreplay: error: \(path) \(Self.refusal)\n")
        #expect(r.stdout.isEmpty)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == original)
        // An empty file is a file too.
        let empty = dir + "/empty.qmprec"
        #expect(FileManager.default.createFile(atPath: empty, contents: Data()))
        #expect(try CLI.run(["synth", "-o", empty, "--records", "10"]).status == 2)

        let forced = try CLI.run(["synth", "-o", path, "--records", "10", "--force"])
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(try Recording(path: path).count == 10)
        // Not a regular file: written as asked.
        #expect(try CLI.run(["synth", "-o", "/dev/null", "--records", "10"]).status == 0)
        #expect(try CLI.run(["synth", "-o", "-", "--records", "3"]).status == 0)
    }

    @Test("record never replaces an existing file without --force (--overwrite is its former name)")
    func recordKeepsExisting() throws {
        let dir = CLI.tempDir()
        let path = dir + "/evidence.qmprec"
        #expect(FileManager.default.createFile(atPath: path, contents: Data("old\n".utf8)))
        let socket = dir + "/no-qemu.sock"
        let r = try CLI.run(["record", "--connect", "unix:\(socket)", "-o", path])
        #expect(r.status == 2)
        #expect(r.stderr == "qmpreplay: error: \(path) \(Self.refusal)\n")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "old\n")
        // With --force (or --overwrite) the file is not refused: the missing QEMU is the error.
        for flag in ["--force", "--overwrite"] {
            let f = try CLI.run(["record", "--connect", "unix:\(socket)", "-o", path, flag])
            #expect(f.status == 2, "\(flag): \(f.stderr)")
            #expect(!f.stderr.contains("already exists"), "\(flag): \(f.stderr)")
            #expect(f.stderr.contains(socket), "\(flag): \(f.stderr)")
        }
        let help = try CLI.run(["record", "--help"])
        #expect(help.out.contains("--force"))
        #expect(!help.out.contains("--overwrite"))
        #expect(help.out.contains("--allow-rx-filter-poll"))
        // Polling query-rx-filter needs its own flag, not --force.
        let rx = try CLI.run(["record", "--connect", "unix:\(socket)", "-o", dir + "/rx.qmprec", "--poll", "query-rx-filter@1s", "--force"])
        #expect(rx.status == 64)
        #expect(rx.stderr.contains("--allow-rx-filter-poll"))
    }
}
