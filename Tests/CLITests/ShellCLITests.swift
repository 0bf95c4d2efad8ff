import Foundation
import QMP
import Recording
import Testing

/// The shell in scripted mode (stdin and -c), through the real binary.
@Suite("qmpreplay shell (scripted)", .serialized)
struct ShellCLITests {
    let lifecycle = CLI.recording("lifecycle.qmprec")
    let rx = CLI.recording("rx-filter.qmprec")

    private func sh(_ file: String, _ script: String, viaStdin: Bool = false) throws -> CLI.Result {
        if viaStdin { return try CLI.run(["shell", file], stdin: Array(script.utf8)) }
        return try CLI.run(["shell", file, "-c", script])
    }

    @Test("no prompts or escape codes when not on a terminal; stdin and -c agree")
    func plainOutput() throws {
        let a = try sh(lifecycle, "first\nshow\nnext\nshow", viaStdin: true)
        let b = try sh(lifecycle, "first; show; next; show")
        #expect(a.status == 0 && b.status == 0, "\(a.stderr) \(b.stderr)")
        #expect(a.out == b.out)
        #expect(!a.out.contains("qmp>"))
        #expect(!a.out.contains("\u{1B}["))
    }

    @Test("a script from a pipe runs each line as it arrives: a program can send a command, read the answer, then send the next")
    func linesRunAsTheyArrive() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.binary)
        p.arguments = ["shell", lifecycle]
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { p.terminate() } }
        // The first command's answer must come while standard input is still open: the
        // shell has not seen end of input, so it cannot have waited for it.
        input.fileHandleForWriting.write(Data("seek @3\n".utf8))
        var got = Data()
        while !String(decoding: got, as: UTF8.self).contains("\n") {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            got.append(chunk)
        }
        #expect(String(decoding: got, as: UTF8.self).contains("#3"), "answer to the first line before end of input: \(String(decoding: got, as: UTF8.self))")
        input.fileHandleForWriting.write(Data("bogus\n".utf8))
        try input.fileHandleForWriting.close()
        _ = output.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 1)
    }

    @Test("show: record in full, with the reply of a command and the command of a reply")
    func show() throws {
        let r = try sh(lifecycle, "next query-status; show; next; show")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.out.contains("command from client"))
        #expect(r.out.contains("\"execute\": \"query-status\""))
        #expect(r.out.contains("reply  #"))
        #expect(r.out.contains("answers #"))
        #expect(r.out.contains("wall clock"))
        let e = try sh(lifecycle, "next STOP; show")
        #expect(e.out.contains("(event timestamp)"))
        #expect(e.out.contains("\"event\": \"STOP\""))
    }

    @Test("next/prev by count, by name and by filter expression; the cursor moves only on success")
    func moving() throws {
        let r = try sh(lifecycle, "first; next 3; show; prev 2; show; next SHUTDOWN; show; next STOP")
        #expect(r.status == 1)  // the last command fails: no STOP after SHUTDOWN
        #expect(r.stderr.hasPrefix("qmpreplay: error: command 8 (next STOP): no later record matches 'STOP'"))
        #expect(r.out.contains("#3 "))
        #expect(r.out.contains("#1 "))
        #expect(r.out.contains("SHUTDOWN"))
        let lines = try sh(lifecycle, "last; next; show")
        #expect(lines.stderr.contains("already at the last record"))
        let rec = try Recording(path: lifecycle)
        #expect(lines.out.contains("#\(rec.count - 1) "))
    }

    @Test("seek/goto by time, record number, wall clock and relative time")
    func seeking() throws {
        let rec = try Recording(path: lifecycle)
        // A record whose time no earlier record shares, so seeking to its time lands on it.
        let k = try #require((1..<rec.count).first { rec.time($0) > rec.time($0 - 1) })
        let r = try sh(lifecycle, "seek \(rec.time(k))ns; show; seek #4; show; seek +0s; show; goto #0; show")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.out.contains("#\(k) "))
        #expect(r.out.contains("#4 "))
        let bad = try sh(lifecycle, "seek 5x")
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("neither a record number, a mark nor a time"))
        let past = try sh(lifecycle, "seek 10h")
        #expect(past.stderr.contains("after the last record"))
    }

    @Test("list around the cursor and from a time; the cursor row is marked")
    func list() throws {
        let r = try sh(lifecycle, "seek #8; list 5")
        #expect(r.status == 0)
        // The line seek prints for the record it lands on, then list's rows.
        let rows = r.out.split(separator: "\n").dropFirst()
        #expect(rows.count == 5)
        #expect(rows.contains { $0.hasPrefix(">") && $0.contains("#8 ") })
        let f = try sh(lifecycle, "list 3 from #2")
        #expect(f.out.split(separator: "\n").first?.contains("#2 ") == true)
    }

    @Test("filter: next/prev/list respect it; errors point at the column")
    func filter() throws {
        let r = try sh(lifecycle, "filter event; first; show; next; show; list 100; filter off; filter")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.out.contains("filter: "))
        let listed = r.out.split(separator: "\n").filter { $0.contains(" c1 <- event ") }
        #expect(listed.count == 6 + 2)  // list's rows, and the records first and next landed on
        #expect(r.out.contains("no filter"))
        let bad = try sh(lifecycle, "filter data.actual <")
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("column"))
    }

    @Test("find lists every match with numbers and times")
    func find() throws {
        let r = try sh(rx, "find event NIC_RX_FILTER_CHANGED")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.out.contains("NIC_RX_FILTER_CHANGED"))
        let count = try Recording(path: rx)
        let n = (0..<count.count).filter { count.name($0) == "NIC_RX_FILTER_CHANGED" }.count
        #expect(r.out.contains("\(n) match"))
    }

    @Test("state at the cursor: run state and its cause, NIC latches")
    func state() throws {
        let r = try sh(lifecycle, "last; state")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.out.lowercased().contains("shutdown"))
        let s = try sh(lifecycle, "next STOP; state")
        #expect(s.out.contains("paused"))
        let n = try sh(rx, "last; state")
        #expect(n.out.contains("net0") && n.out.contains("net1"))
    }

    @Test("marks are saved next to the recording and survive a new session")
    func marks() throws {
        let dir = CLI.tempDir()
        let copy = dir + "/l.qmprec"
        try FileManager.default.copyItem(atPath: lifecycle, toPath: copy)
        let before = try Data(contentsOf: URL(fileURLWithPath: copy))
        let r = try sh(copy, "next STOP; mark pause1 first stop here; marks")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.out.contains("pause1"))
        let again = try sh(copy, "marks; goto pause1; show; unmark pause1; marks")
        #expect(again.out.contains("first stop here"))
        #expect(again.out.contains("STOP"))
        #expect(again.out.contains("no marks"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: copy)) == before, "the recording must not change")
        #expect(FileManager.default.fileExists(atPath: copy + ".marks.json"))
    }

    @Test("export writes a span byte for byte, optionally filtered")
    func export() throws {
        let dir = CLI.tempDir()
        let out = dir + "/span.qmprec"
        let r = try sh(lifecycle, "export #3 #9 -o \(out)")
        #expect(r.status == 0, "\(r.stderr)")
        let a = try Recording(path: lifecycle), b = try Recording(path: out)
        #expect(b.count == 7)
        for i in 0..<7 { #expect(try b.rawBytes(i) == a.rawBytes(i + 3)) }
        #expect(b.header?.label("exported-from")?.contains("#3..#9") == true)
        let f = try sh(lifecycle, "filter kind event; export #0 #\(a.count - 1) -o \(dir)/ev.qmprec --filtered")
        #expect(f.status == 0, "\(f.stderr)")
        #expect(try Recording(path: dir + "/ev.qmprec").count == 6)
    }

    @Test("help lists every command; help NAME explains one; unknown commands say what to do")
    func help() throws {
        let r = try sh(lifecycle, "help; help filter")
        for c in ["info", "show", "next", "prev", "seek", "list", "filter", "find", "state", "mark", "export", "quit"] {
            #expect(r.out.contains(c))
        }
        #expect(r.out.contains("data.actual < 1G"))
        let u = try sh(lifecycle, "frobnicate")
        #expect(u.stderr.contains("unknown command 'frobnicate'; 'help' lists the commands"))
        for c in ["analyze", "plot", "triage", "replay"] { #expect(r.out.contains(c)) }
    }

    @Test("replay from a script: start serves on the socket, status and stop report, errors are clear")
    func replayScripted() throws {
        let dir = NSTemporaryDirectory() + "qsr-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sock = dir + "/s.sock"
        let r = try sh(lifecycle, "replay start --listen unix:\(sock) --speed 10 --clock-only; replay status; replay speed max; replay pause; replay stop")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.out.contains("serving \(lifecycle) on unix:\(sock) at speed 10.0x"))
        #expect(r.out.contains("playing on unix:\(sock): speed 10.0x"))
        #expect(r.out.contains("replay speed max"))
        #expect(r.out.contains("replay paused at"))
        #expect(r.out.contains("replay stopped: 0 events sent, 0 sessions finished"))
        let e = try sh(lifecycle, "replay pause")
        #expect(e.status == 1 && e.stderr.contains("no replay is running; 'replay start' starts one"))
        let noClient = try sh(lifecycle, "replay start --listen unix:\(sock); replay seek #3")
        #expect(noClient.status == 1 && noClient.stderr.contains("no client is connected, so there is no timeline to move"))
        let bad = try sh(lifecycle, "replay start --speed 5000")
        #expect(bad.status == 1 && bad.stderr.contains("--speed"))
    }

    @Test("replay's control commands from a script: holds, release, step without a client")
    func replayControlScripted() throws {
        let dir = NSTemporaryDirectory() + "qsc-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sock = dir + "/s.sock"
        let r = try sh(lifecycle, "replay start --listen unix:\(sock) --paused; replay hold reply stop; replay hold event #11; replay status; replay release 1; replay release; replay stop")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.out.contains("hold 1: before the reply to stop ('replay release 1' ends it)"))
        #expect(r.out.contains("hold 2: before event #11"))
        #expect(r.out.contains("paused on unix:\(sock)") && r.out.contains("  hold 2: before event #11"))
        #expect(r.out.contains("released hold 1 at") && r.out.contains("released hold 2 at"))
        let step = try sh(lifecycle, "replay start --listen unix:\(sock); replay step 2")
        #expect(step.status == 1 && step.stderr.contains("no client has negotiated yet"))
        let notEvent = try sh(lifecycle, "replay start --listen unix:\(sock); replay hold event #2")
        #expect(notEvent.status == 1 && notEvent.stderr.contains("record #2 is not an event of the replayed connection"))
    }

    @Test("info and quit")
    func infoQuit() throws {
        let r = try sh(lifecycle, "info; quit; show")
        #expect(r.status == 0)
        #expect(r.out.contains("records over"))
        #expect(!r.out.contains("line "))  // show after quit did not run
    }
}
