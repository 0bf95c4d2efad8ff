import CReadline
import Shell
import Recording

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs the shell: interactively with readline on a terminal, or line by line without
/// prompts or escape codes when standard input is not a terminal (pipes, scripts, CI), or
/// over the `-c` commands.
public final class ShellRunner {
    public let session: ShellSession
    private let output: StdoutShellOutput

    public init(recording: Recording, colors: Bool?) throws(ShellError) {
        output = StdoutShellOutput(colorOverride: colors)
        session = try ShellSession(recording: recording, out: output)
    }

    /// Runs `commands` (from -c), or standard input. Returns the exit status: 0, or 1 when
    /// a command failed in scripted mode. A script stops at its first failing command (as
    /// gdb's batch mode does) unless `keepGoing`.
    public func run(commands: [String]?, keepGoing: Bool = false) -> Int32 {
        LineEditor.installInterruptHandler()
        if let commands {
            var it = commands.makeIterator()
            return runScript(next: { it.next() }, commandLine: commands, keepGoing: keepGoing)
        }
        if isatty(0) == 1 && isatty(1) == 1 { return session.growing ? runLive() : runInteractive() }
        // Each line runs as it arrives (not after end of input), so a program can drive the
        // shell through a pipe: send `replay speed 10`, read the answer, send the next.
        return runScript(next: { Swift.readLine(strippingNewline: true) }, commandLine: nil, keepGoing: keepGoing)
    }

    /// Runs lines from `next` until it returns nil, a command fails (unless `keepGoing`) or
    /// `quit`. `commandLine` is the whole `-c` list (errors name the command and count what
    /// was not run); for standard input it is nil: what was not read yet stays unread.
    private func runScript(next: () -> String?, commandLine: [String]?, keepGoing: Bool) -> Int32 {
        var failures = 0
        var n = 0
        // A growing recording is taken in before each command (a pipe sees new records between
        // commands, not while it waits for the next line).
        session.refresh()
        while let line = next() {
            n += 1
            Interrupt.clear()
            session.refresh()
            do {
                try session.execute(line)
            } catch {
                failures += 1
                output.flush()
                // -c "a; b; c": the command's number and text; a script: its line number.
                let place = commandLine != nil ? "command \(n) (\(line.trimmed()))" : "line \(n)"
                var text = "qmpreplay: error: \(place): \(error.message)\n"
                if !keepGoing {
                    if let all = commandLine {
                        let rest = all[n...].filter { !$0.trimmed().isEmpty && !$0.trimmed().hasPrefix("#!") }.count
                        if rest > 0 {
                            text += "qmpreplay: stopped at the failing command; \(rest) more \(rest == 1 ? "was" : "were") not run (--keep-going runs them)\n"
                        }
                    } else {
                        text += "qmpreplay: stopped at the failing command; the rest of standard input was not run (--keep-going runs it)\n"
                    }
                }
                Self.writeStderr(text)
                if !keepGoing { break }
            }
            output.flush()
            if session.quitRequested { break }
        }
        output.flush()
        session.stopBackgroundWork()
        output.flush()
        return failures > 0 ? 1 : 0
    }

    static func writeStderr(_ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
            if n > 0 { bytes = bytes.dropFirst(n); continue }
            if n < 0 && errno == EINTR { continue }
            break
        }
    }

    private func makeEditor() -> LineEditor {
        let history = getenv("QMPREPLAY_HISTORY").map { String(cString: $0) }
            ?? ((getenv("HOME").map { String(cString: $0) } ?? ".") + "/.qmpreplay_history")
        let s = session
        var completer = Completer(recording: session.recording, schema: session.schema.schema, marks: { [unowned s] in s.marks.marks.map(\.name) })
        completer.sendSchema = { [unowned s] in s.schema.schema }
        return LineEditor(completer: completer, historyPath: history)
    }

    /// Runs one typed line; errors are printed, the shell goes on.
    private func runTyped(_ line: String) {
        output.paging = session.pager
        do {
            try session.executeOrRepeat(line)
        } catch {
            let e = output.colors ? "\u{1B}[31merror:\u{1B}[0m" : "error:"
            output.write("\(e) \(error.message)\n")
        }
        if Interrupt.pending { Interrupt.clear() }
        if let notice = session.backgroundNotice { output.write(notice + "\n") }
        output.flush()
        output.paging = false
    }

    /// The live shell on a terminal: readline's callback interface, so that the records
    /// arriving while a line is being typed print above it (the line and the cursor are put
    /// back). It waits on the terminal and on the recording's file (inotify): a record
    /// appended is printed as soon as the writer puts it in the file.
    private func runLive() -> Int32 {
        let editor = makeEditor()
        defer { editor.saveHistory() }
        let wait = LiveWait(path: session.recording.path)
        let n = session.recording.count
        let how = session.live != nil ? "recording \(session.recording.path) from \(session.recording.header?.source ?? "QEMU")"
            : "following \(session.recording.path)"
        output.write("qmpreplay shell (live): \(how), \(n) record\(n == 1 ? "" : "s") so far. The cursor follows the live end ('follow off' stays); "
            + (session.live != nil ? "'send CMD key=value' talks to QEMU; " : "") + "'help' lists commands; Ctrl-D leaves.\n")
        output.flush()
        var prompt = session.prompt
        editor.beginLine(prompt: prompt)
        while !session.quitRequested {
            let (typed, interrupted) = wait.next(input: 0)
            if interrupted || Interrupt.pending {
                Interrupt.clear()
                editor.cancelLine(prompt: session.prompt)
                continue
            }
            if typed {
                switch editor.readAvailable() {
                case .eof?:
                    output.write("\n")
                    output.flush()
                    session.stopBackgroundWork()
                    output.flush()
                    return 0
                case .line(let line)?:
                    runTyped(line)
                    if session.quitRequested { break }
                    prompt = session.prompt
                    editor.beginLine(prompt: prompt)
                    continue
                case nil:
                    break
                }
            }
            if session.refresh() {
                prompt = session.prompt
                editor.printAbove(prompt: prompt) { output.flush() }
            } else if session.prompt != prompt {
                prompt = session.prompt
                editor.setPrompt(prompt)
            }
        }
        editor.endLine()
        session.stopBackgroundWork()
        output.flush()
        return 0
    }

    private func runInteractive() -> Int32 {
        let editor = makeEditor()
        defer { editor.saveHistory() }
        let n = session.recording.count
        output.write("qmpreplay shell: \(session.recording.path), \(n) record\(n == 1 ? "" : "s"). 'help' lists commands; Tab completes; Enter repeats next/prev; Ctrl-D leaves.\n")
        for p in session.recording.problems.prefix(3) { output.write("warning: \(p.description)\n") }
        output.flush()
        while !session.quitRequested {
            Interrupt.clear()
            guard let (line, interrupted) = editor.readLine(prompt: session.prompt) else {
                output.write("\n")
                break
            }
            if interrupted { continue }
            runTyped(line)
        }
        session.stopBackgroundWork()
        output.flush()
        return 0
    }
}

/// Standard output for the shell. With `paging` (interactive, on a terminal, `set pager on`)
/// a command's output is held until it is taller than the terminal; then the pager starts
/// and gets what was held and everything after it, as git does; the command's end closes
/// the pager and waits for it. Shorter output is written when the command ends.
final class StdoutShellOutput: ShellOutput {
    private var buffer = ""
    let colorOverride: Bool?
    var paging = false
    /// The running pager, once this command's output outgrew the terminal.
    private var pager: UnsafeMutablePointer<FILE>?
    /// Terminal rows of what `buffer` holds, and the width of its unfinished last line.
    private var heldRows = 0
    private var heldColumn = 0
    private var escape = false
    /// Said once: the pager could not be found.
    private var pagerMissingSaid = false
    /// SIGPIPE's disposition before the pager started: while it runs, a pager quit early
    /// must not end the shell; the pager itself starts with the usual disposition.
    private var savedSIGPIPE: sighandler_t?

    init(colorOverride: Bool?) { self.colorOverride = colorOverride }

    var colors: Bool {
        if let c = colorOverride { return c }
        return isatty(1) == 1 && getenv("NO_COLOR") == nil && getenv("TERM").map { String(cString: $0) } != "dumb"
    }

    var width: Int {
        var ws = winsize()
        if isatty(1) == 1, ioctl(1, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col > 20 { return Int(ws.ws_col) }
        if let c = getenv("COLUMNS").flatMap({ Int(String(cString: $0)) }), c > 20 { return c }
        return 120
    }

    private var height: Int {
        var ws = winsize()
        if isatty(1) == 1, ioctl(1, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_row > 2 { return Int(ws.ws_row) }
        return 24
    }

    func write(_ s: String) {
        if let p = pager {
            toPager(p, s)
            return
        }
        buffer += s
        guard paging, isatty(1) == 1 else {
            if buffer.utf8.count > 1 << 16 { flush() }
            return
        }
        count(s)
        // Taller than the terminal, leaving a row for the prompt: page from here on.
        if heldRows + (heldColumn > 0 ? 1 : 0) > height - 1 { startPager() }
    }

    /// Adds the rows `s` takes to the count (long lines wrap; escape sequences take no room).
    private func count(_ s: String) {
        let w = width
        for u in s.unicodeScalars {
            if escape { if u == "m" { escape = false }; continue }
            if u == "\u{1B}" { escape = true; continue }
            if u == "\n" {
                heldRows += max(1, (heldColumn + w - 1) / w)
                heldColumn = 0
            } else {
                heldColumn += 1
            }
        }
    }

    /// The pager command: $PAGER as git takes it (empty or `cat`: none), else `less -FRX`
    /// (quit at once when the text fits, keep colours, leave the text on the screen).
    static var pagerCommand: String? {
        guard let p = getenv("PAGER").map({ String(cString: $0) }) else { return "less -FRX" }
        let t = p.trimmed()
        return t.isEmpty || t == "cat" ? nil : t
    }

    /// Whether the pager's program exists (a path, or a name on $PATH), so that output is
    /// never handed to a shell that cannot run it.
    static func canRun(_ command: String) -> Bool {
        guard let program = command.split(separator: " ").first.map(String.init) else { return false }
        if program.contains("/") { return access(program, X_OK) == 0 }
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        return path.split(separator: ":").contains { access("\($0)/\(program)", X_OK) == 0 }
    }

    private func startPager() {
        guard let command = Self.pagerCommand else { paging = false; return }
        guard Self.canRun(command) else {
            paging = false
            if !pagerMissingSaid {
                pagerMissingSaid = true
                buffer += "(the pager '\(command)' could not be run; set PAGER, or 'set pager off')\n"
            }
            return
        }
        fflush(stdout)
        guard let p = popen(command, "w") else { paging = false; return }
        pager = p
        savedSIGPIPE = signal(SIGPIPE, SIG_IGN)
        let held = buffer
        buffer = ""
        toPager(p, held)
    }

    /// A pager that was quit early closes its end: the rest of a long command is not wanted,
    /// so the command is asked to stop (as Ctrl-C does).
    private func toPager(_ p: UnsafeMutablePointer<FILE>, _ s: String) {
        if s.withCString({ fputs($0, p) }) < 0 { Interrupt.requested = 1 }
    }

    func flush() {
        if let p = pager {
            if !buffer.isEmpty { toPager(p, buffer) }
            buffer = ""
            pclose(p)
            pager = nil
            if let saved = savedSIGPIPE { signal(SIGPIPE, saved); savedSIGPIPE = nil }
            // Whatever happened in the pager (a Ctrl-C, q before the end), the command is over.
            Interrupt.clear()
        } else if !buffer.isEmpty {
            writeOut(buffer)
            buffer = ""
        }
        heldRows = 0
        heldColumn = 0
        escape = false
    }

    private func writeOut(_ text: String) {
        fflush(stdout)
        // SIGINT is installed without SA_RESTART (so that readline's read returns), so a
        // write may be interrupted: retry rather than lose output.
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
            if n > 0 { bytes = bytes.dropFirst(n); continue }
            if n < 0 && errno == EINTR { continue }
            break
        }
    }
}

/// Splits `-c "seek 10s; show"` into commands at semicolons outside quotes and /regex/.
public func splitShellCommands(_ text: String) -> [String] {
    var out: [String] = []
    var cur = ""
    var quote: Character?
    var escaped = false
    for ch in text {
        if escaped { cur.append(ch); escaped = false; continue }
        if ch == "\\" && quote != nil { cur.append(ch); escaped = true; continue }
        if let q = quote {
            cur.append(ch)
            if ch == q { quote = nil }
            continue
        }
        if ch == "\"" || ch == "/" && (cur.last == " " || cur.last == "~") { quote = ch; cur.append(ch); continue }
        if ch == ";" {
            out.append(cur)
            cur = ""
            continue
        }
        cur.append(ch)
    }
    out.append(cur)
    return out.map { $0.trimmed() }.filter { !$0.isEmpty }
}
