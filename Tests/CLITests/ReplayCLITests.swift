import Foundation
import Testing

/// `qmpreplay serve` and `qmpreplay replay` through the real binary: help, exit statuses,
/// and the --stdout stream. Socket behaviour is covered by Tests/Integration/test_replay.py.
struct ReplayCLITests {
    @Test func serveHelpHasExamples() throws {
        let r = try CLI.run(["serve", "--help"])
        #expect(r.status == 0)
        #expect(r.out.contains("--listen"))
        #expect(r.out.contains("Examples:"))
        #expect(r.out.contains("--strict"))
    }

    @Test func badOptionsAreUsageErrors() throws {
        let file = CLI.recording("lifecycle-qemu.qmprec")
        #expect(try CLI.run(["serve", file, "--listen", "unix:/tmp/x.sock", "--speed", "5000"]).status == 64)
        #expect(try CLI.run(["serve", file, "--listen", "tcp:nohost"]).status == 64)
        #expect(try CLI.run(["serve", file, "--listen", "unix:/tmp/x.sock", "--fail-fast"]).status == 64)
        #expect(try CLI.run(["replay", file]).status == 64)
        let r = try CLI.run(["replay", file, "--stdout", "--match", "fuzzy"])
        #expect(r.status == 64)
        #expect(r.stderr.contains("the value 'fuzzy' is invalid for '--match <mode>'. Please provide one of 'exact' and 'name'."))
    }

    @Test("serve and the shell's replay start reject a bad option with the same message (one declaration)", arguments: [
        ["--client-buffer", "12Q"], ["--speed", "5000"], ["--frobnicate"], ["--fail-fast"], ["--from", "soon"],
        ["--socket-mode", "999"], ["--stall-timeout", "5x"], ["--match", "fuzzy"],
    ])
    func sameMessageInTheShell(_ words: [String]) throws {
        let file = CLI.recording("lifecycle.qmprec")
        let serve = try CLI.run(["serve", file, "--listen", "unix:/tmp/qmpreplay-none.sock"] + words)
        let serveLine = String(serve.stderr.split(separator: "\n").first ?? "")
        #expect(serve.status == 64 && serveLine.hasPrefix("qmpreplay: error: "), "\(serve.stderr)")
        let line = "replay start " + words.joined(separator: " ")
        let shell = try CLI.run(["shell", file, "-c", line])
        let shellLine = String(shell.stderr.split(separator: "\n").first ?? "")
        let prefix = "qmpreplay: error: command 1 (\(line)): replay start: "
        #expect(shell.status == 1 && shellLine.hasPrefix(prefix), "\(shell.stderr)")
        #expect(shellLine.dropFirst(prefix.count) == serveLine.dropFirst("qmpreplay: error: ".count))
    }

    @Test func unreadableRecordingIsExit2() throws {
        let r = try CLI.run(["serve", "/nonexistent/x.qmprec", "--listen", "unix:/tmp/qmpreplay-none.sock"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("/nonexistent/x.qmprec"))
    }

    @Test func replayStdoutIsTheQEMUSideStream() throws {
        let file = CLI.recording("lifecycle-qemu.qmprec")
        let a = try CLI.run(["replay", file, "--stdout", "--speed", "max", "--quiet"])
        let b = try CLI.run(["cat", file, "--format", "raw", "--direction", "qemu", "--connection", "1"])
        #expect(a.status == 0)
        #expect(a.stdout == b.stdout)
    }

    @Test func replayStdoutSpanAndReport() throws {
        let dir = CLI.tempDir()
        let file = CLI.recording("guest-balloon.qmprec")
        let report = dir + "/r.json"
        let r = try CLI.run(["replay", file, "--stdout", "--speed", "max", "--from", "1s", "--to", "2.5s", "--report", report, "--quiet"])
        #expect(r.status == 0)
        let lines = r.out.split(separator: "\r\n")
        #expect(lines.first?.hasPrefix("{\"QMP\"") == true)
        #expect(lines.dropFirst().allSatisfy { !$0.contains("\"QMP\"") })
        let data = try #require(FileManager.default.contents(atPath: report))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let sessions = try #require(json["sessions"] as? [[String: Any]])
        #expect(sessions.count == 1)
        #expect(sessions[0]["events_sent"] as? Int == 2)
    }
}
