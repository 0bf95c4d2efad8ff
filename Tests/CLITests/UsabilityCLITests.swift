import Foundation
import QMP
import Recording
import Testing

/// Bad input on the command line, as a new user types it: each case with its exit status
/// and the exact first line on standard error; the documented time forms as option values;
/// scripts that stop at the first failure; help that fits the terminal and lists the exit
/// statuses each command really has.
@Suite("qmpreplay command line: bad input and first contact", .serialized)
struct UsabilityCLITests {
    let lifecycle = CLI.recording("lifecycle.qmprec")

    /// The first line of standard error.
    private func firstError(_ r: CLI.Result) -> String {
        String(r.stderr.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
    }

    @Test("time forms that start with '-' are option values: --from -2s, --to -1s; @N is a record")
    func negativeTimes() throws {
        let rec = try Recording(path: lifecycle)
        let last2s = (0..<rec.count).filter { rec.time($0) >= rec.duration - 2_000_000_000 }.count
        let r = try CLI.run(["cat", lifecycle, "--from", "-2s", "--format", "jsonl"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.out.split(separator: "\n").count == last2s && last2s > 0)
        let eq = try CLI.run(["cat", lifecycle, "--from=-2s", "--format", "jsonl"])
        #expect(eq.out == r.out)
        let records = try CLI.run(["cat", lifecycle, "--from", "@13", "--to", "@14", "--format", "jsonl"])
        #expect(records.status == 0 && records.out.split(separator: "\n").count == 2)
        #expect(records.out.hasPrefix(String(decoding: rec.lineBytes(13), as: UTF8.self)))
        let hash = try CLI.run(["cat", lifecycle, "--from", "#13", "--to", "#14", "--format", "jsonl"])
        #expect(hash.out == records.out)
        let a = try CLI.run(["analyze", "runstate", lifecycle, "--from", "-10s", "--to", "-1s", "--format", "json"])
        #expect(a.status == 0, "\(a.stderr)")
        let s = try CLI.run(["serve", lifecycle, "--listen", "tcp:nohost", "--from", "-2s"])
        #expect(s.status == 64 && !s.stderr.contains("--from"), "the time was taken; the address is what is wrong: \(s.stderr)")
    }

    @Test("bad input: exit status and the exact first line of the error", arguments: [
        (["cat", "L", "--from", "5x"], Int32(64),
         "qmpreplay: error: the value '5x' is invalid for '--from <time>': unknown unit 'x' (h, m, s, ms, us, ns); times are 12.5s, 1m30s, 500ms, +5s, -2s, @123, 10:00:05 or 2026-11-20T10:00:05Z"),
        (["cat", "L", "--from"], 64,
         "qmpreplay: error: missing value for '--from <time>' (if you wrote #123, your shell took it as a comment: write @123 or '#123'; a time such as -2s is taken as the value)"),
        (["cat", "L", "--from", "--to", "4s"], 64,
         "qmpreplay: error: the value '--to' is invalid for '--from <time>': that is an option, not a time: the time is missing (12.5s, 1m30s, 500ms, +5s, -2s, @123, 10:00:05 or 2026-11-20T10:00:05Z)"),
        (["cat", "L", "--from", "5s", "--to", "1s"], 64, "qmpreplay: error: --to 1s is before --from 5s: the span is empty (swap them)"),
        (["cat", "L", "--from", "@9", "--to", "@3"], 64, "qmpreplay: error: --to @3 is before --from @9: the span is empty (swap them)"),
        (["cat", "L", "--form", "1s"], 64, "qmpreplay: error: unknown option '--form'. Did you mean '--from'?"),
        (["cat", "L", "--kind", "evnt"], 64, "qmpreplay: error: unknown kind 'evnt'; did you mean 'event'? (kinds: greeting, command, return, error, event, other, open, close, note)"),
        (["cat", "/nonexistent.qmprec"], 2, "qmpreplay: error: /nonexistent.qmprec: No such file or directory"),
        (["info", "L", "--jsn"], 64, "qmpreplay: error: unknown option '--jsn'. Did you mean '--json'?"),
        (["analyze", "balon", "L"], 64,
         "qmpreplay: error: analyze: unknown analysis 'balon'; did you mean 'balloon'? (analyses: balloon, rtc, nic-rx-filter, runstate, block-jobs, sessions, commands, throttle, incidents, triage)"),
        (["analyze", "runstate", "L", "--to", "1s", "--from", "5s"], 64, "qmpreplay: error: --to 1s is before --from 5s: the span is empty (swap them)"),
        (["analyze", "commands", "L", "--chart"], 64,
         "qmpreplay: error: analyze: 'commands' is not a series and has no plot or chart (plots: balloon, rtc, runstate, triage)"),
        (["replay", "L"], 64, "qmpreplay: error: give exactly one of --stdout and --connect-to ADDRESS"),
        (["replay", "L", "--stdout", "--to", "zz"], 64,
         "qmpreplay: error: --to 'zz': expected a number at 'zz'; times are 12.5s, 1m30s, 500ms, +5s, -2s, @123, 10:00:05 or 2026-11-20T10:00:05Z"),
        (["serve", "L", "--listen", "tcp:nohost"], 64,
         "qmpreplay: error: --listen: 'tcp:nohost' is not an address: use unix:PATH, tcp:HOST:PORT, a socket path or HOST:PORT"),
        (["shell", "L", "-c", "nxet"], 1, "qmpreplay: error: command 1 (nxet): unknown command 'nxet'; did you mean 'next'? ('help' lists the commands)"),
    ])
    func badInput(_ args: [String], _ status: Int32, _ first: String) throws {
        let r = try CLI.run(args.map { $0 == "L" ? lifecycle : $0 })
        #expect(r.status == status, "\(args): \(r.stderr)")
        #expect(firstError(r) == first, "\(args)")
        #expect(r.out.isEmpty, "\(args): nothing on standard output")
    }

    @Test("cat says on standard error why it printed nothing, and exits 0")
    func catExplainsNothing() throws {
        let past = try CLI.run(["cat", lifecycle, "--from", "99s"])
        #expect(past.status == 0 && past.out.isEmpty)
        #expect(firstError(past) == "qmpreplay: warning: --from 99s is after the last record (@22 at +00:00:18.135): nothing to print")
        let none = try CLI.run(["cat", lifecycle, "--event", "NOSUCH"])
        #expect(none.status == 0 && none.out.isEmpty)
        #expect(firstError(none) == "qmpreplay: warning: --event NOSUCH: no event of that name in \(lifecycle) (here: BLOCK_IO_ERROR, RESET, RESUME, SHUTDOWN, STOP)")
        let typo = try CLI.run(["cat", lifecycle, "--event", "STOPP"])
        #expect(firstError(typo) == "qmpreplay: warning: --event STOPP: no event of that name in \(lifecycle); did you mean STOP? (here: BLOCK_IO_ERROR, RESET, RESUME, SHUTDOWN, STOP)")
        let cmd = try CLI.run(["cat", lifecycle, "--command", "query-stauts"])
        #expect(firstError(cmd).hasPrefix("qmpreplay: warning: --command query-stauts: no command of that name in \(lifecycle); did you mean query-status?"))
        let narrow = try CLI.run(["cat", lifecycle, "--from", "@13", "--to", "@13", "--kind", "greeting"])
        #expect(narrow.status == 0 && firstError(narrow) == "qmpreplay: warning: no record in @13..@13 matches the selection: nothing to print")
        let some = try CLI.run(["cat", lifecycle, "--event", "STOP"])
        #expect(some.status == 0 && some.stderr.isEmpty)
    }

    @Test("plot of a series without data: a warning, no SVG, exit 0")
    func plotWithoutData() throws {
        let vnc = CLI.recording("vnc.qmprec")
        let svg = CLI.tempDir() + "/b.svg"
        let r = try CLI.run(["analyze", "balloon", vnc, "--svg", svg])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(firstError(r) == "qmpreplay: warning: no balloon data in \(vnc) (no BALLOON_CHANGE events or query-balloon replies): nothing to plot; no SVG written")
        #expect(!FileManager.default.fileExists(atPath: svg))
        let c = try CLI.run(["analyze", "rtc", vnc, "--chart"])
        #expect(c.status == 0 && firstError(c) == "qmpreplay: warning: no RTC data in \(vnc) (no RTC_CHANGE events): nothing to plot")
    }

    @Test("tables and findings are not cut when the output is not a terminal")
    func noWidthLimitWhenPiped() throws {
        let r = try CLI.run(["analyze", "triage", CLI.recording("synthetic-mixed.qmprec")], env: ["COLUMNS": ""])
        #expect(r.status == 0)
        let line = r.out.split(separator: "\n").first { $0.contains("the guest's watchdog expired (WATCHDOG action inject-nmi)") }
        #expect(line?.hasSuffix("the guest stopped feeding it, so it hung or is overloaded") == true, "one line, not wrapped: \(line ?? "")")
        #expect(r.out.split(separator: "\n").contains { $0.count > 100 })
        let narrow = try CLI.run(["analyze", "triage", CLI.recording("synthetic-mixed.qmprec")], env: ["COLUMNS": "80"])
        let findings = narrow.out.split(separator: "\n").drop { !$0.hasPrefix("Findings") }
        #expect(findings.count > 10 && findings.allSatisfy { $0.count <= 80 }, "with a width, the findings are wrapped to it")
    }

    @Test("-c and scripts stop at the first failing command (exit 1) unless --keep-going")
    func scriptsStop() throws {
        let r = try CLI.run(["shell", lifecycle, "-c", "seek @3; bogus; show; state"])
        #expect(r.status == 1)
        let err = r.stderr.split(separator: "\n").map(String.init)
        #expect(err == [
            "qmpreplay: error: command 2 (bogus): unknown command 'bogus'; 'help' lists the commands",
            "qmpreplay: stopped at the failing command; 2 more were not run (--keep-going runs them)",
        ])
        #expect(!r.out.contains("line ") && !r.out.contains("state at"), "show and state did not run")
        let k = try CLI.run(["shell", lifecycle, "--keep-going", "-c", "seek @3; bogus; show; state"])
        #expect(k.status == 1)
        #expect(k.stderr == "qmpreplay: error: command 2 (bogus): unknown command 'bogus'; 'help' lists the commands\n")
        #expect(k.out.contains("#3  line ") && k.out.contains("state at #3"))
        let script = try CLI.run(["shell", lifecycle], stdin: Array("seek @3\n\nnext NOSUCH_EVENT\nshow\n".utf8))
        #expect(script.status == 1)
        #expect(firstError(script) == "qmpreplay: error: line 3: no event named NOSUCH_EVENT in this recording")
        #expect(!script.out.contains("line "))
        let ok = try CLI.run(["shell", lifecycle, "-c", "seek @3; show"])
        #expect(ok.status == 0 && ok.stderr.isEmpty)
    }

    @Test("the shell prints where a move lands; goto takes a name or, after triage, a finding number")
    func shellMoves() throws {
        let r = try CLI.run(["shell", lifecycle, "-c", "next STOP; goto SHUTDOWN; triage; goto 1"])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.out.split(separator: "\n").map(String.init)
        #expect(lines[0].hasPrefix(">      #8 ") && lines[0].contains("STOP"))
        #expect(lines[1] == "first of 1 SHUTDOWN record")
        #expect(lines[2].hasPrefix(">     #22 ") && lines[2].contains("SHUTDOWN"))
        #expect(lines.contains { $0.hasPrefix("finding 1: error runstate: VM paused for 10.248s") })
        #expect(lines.last?.hasPrefix(">     #13 ") == true)
    }

    @Test("replay: --connect-to is the address and --to a time; the old --to ADDRESS still works, with a warning")
    func replayAddressOption() throws {
        let file = CLI.recording("lifecycle-qemu.qmprec")
        let r = try CLI.run(["replay", lifecycle, "--stdout", "--speed", "max", "--to", "-2s", "--quiet"])
        let all = try CLI.run(["replay", lifecycle, "--stdout", "--speed", "max", "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!r.out.isEmpty && r.out.count < all.out.count && all.out.hasPrefix(r.out))
        let missing = CLI.tempDir() + "/none.sock"
        let old = try CLI.run(["replay", file, "--to", "unix:" + missing, "--quiet"])
        #expect(old.status == 2)
        #expect(firstError(old) == "qmpreplay: warning: --to unix:\(missing) is the former spelling of --connect-to unix:\(missing); --to now means the end of the span, as in every other command")
        let bare = try CLI.run(["replay", file, "--connect-to", missing, "--quiet"])
        #expect(bare.status == 2 && firstError(bare).hasPrefix("qmpreplay: error: cannot connect to unix:\(missing): "))
        let both = try CLI.run(["replay", file, "--connect-to", missing, "--to", "unix:/x"])
        #expect(both.status == 64 && firstError(both) == "qmpreplay: error: give the address once, with --connect-to (--to is the end of the span)")
        let help = try CLI.run(["replay", "--help"])
        #expect(help.out.contains("--connect-to <address>") && !help.out.contains("--until <"), "the old spelling is hidden")
    }

    @Test("record --connect takes a bare socket path, as qmp-shell does")
    func recordBarePath() throws {
        let dir = CLI.tempDir()
        let r = try CLI.run(["record", "--connect", dir + "/no-qemu.sock", "-o", dir + "/out.qmprec", "--quiet"])
        #expect(r.status == 2, "cannot connect, not a bad command line: \(r.stderr)")
        #expect(firstError(r).hasPrefix("qmpreplay: error: unix:\(dir)/no-qemu.sock: "))
    }

    static let commands = ["info", "cat", "validate", "shell", "serve", "replay", "analyze", "record", "synth", "doctor", "recover", "merge", "slice"]

    @Test("--help fits the terminal width and lists the command's exit statuses", arguments: commands)
    func help(_ command: String) throws {
        for width in [60, 80, 132] {
            let r = try CLI.run([command, "--help"], env: ["COLUMNS": "\(width)"])
            #expect(r.status == 0)
            for line in r.out.split(separator: "\n") {
                #expect(line.count <= width, "\(command) at \(width): '\(line)'")
            }
            let text = r.out.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
            #expect(text.contains("Exit status: 0 "), "\(command)")
            #expect(text.contains("64 bad command line"), "\(command): the status of a bad option or value")
        }
    }

    @Test("a bad time exits 64, as cat --help says")
    func helpAgreesWithStatus() throws {
        let help = try CLI.run(["cat", "--help"], env: ["COLUMNS": "200"])
        #expect(help.out.contains("64 bad command line (a time that does not parse"))
        #expect(try CLI.run(["cat", lifecycle, "--from", "soon"]).status == 64)
        let root = try CLI.run(["--help"], env: ["COLUMNS": "200"])
        #expect(root.out.contains("@123 or #123"))
    }
}
