import CReadline
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
    /// a command failed in scripted mode.
    public func run(commands: [String]?) -> Int32 {
        LineEditor.installInterruptHandler()
        if let commands { return runScript(commands) }
        if isatty(0) == 1 && isatty(1) == 1 { return runInteractive() }
        var lines: [String] = []
        while let l = Swift.readLine(strippingNewline: true) { lines.append(l) }
        return runScript(lines)
    }

    private func runScript(_ lines: [String]) -> Int32 {
        var failed = false
        for (n, line) in lines.enumerated() {
            Interrupt.clear()
            do {
                try session.execute(line)
            } catch {
                failed = true
                output.flush()
                let msg = Array("qmpreplay shell: line \(n + 1): error: \(error.message)\n".utf8)
                _ = msg.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
            }
            output.flush()
            if session.quitRequested { break }
        }
        session.stopBackgroundWork()
        return failed ? 1 : 0
    }

    private func runInteractive() -> Int32 {
        let history = getenv("QMPREPLAY_HISTORY").map { String(cString: $0) }
            ?? ((getenv("HOME").map { String(cString: $0) } ?? ".") + "/.qmpreplay_history")
        let s = session
        let completer = Completer(recording: session.recording, marks: { [unowned s] in s.marks.marks.map(\.name) })
        let editor = LineEditor(completer: completer, historyPath: history)
        defer { editor.saveHistory() }
        output.write("qmpreplay shell: \(session.recording.path), \(session.recording.count) records. 'help' lists commands; Tab completes; Ctrl-D leaves.\n")
        for p in session.recording.problems.prefix(3) { output.write("warning: \(p.description)\n") }
        output.flush()
        while !session.quitRequested {
            Interrupt.clear()
            guard let (line, interrupted) = editor.readLine(prompt: session.prompt) else {
                output.write("\n")
                break
            }
            if interrupted { continue }
            output.paging = session.pager
            do {
                try session.execute(line)
            } catch {
                let e = output.colors ? "\u{1B}[31merror:\u{1B}[0m" : "error:"
                output.write("\(e) \(error.message)\n")
            }
            if Interrupt.pending { Interrupt.clear() }
            if let notice = session.backgroundNotice { output.write(notice + "\n") }
            output.flush()
        }
        session.stopBackgroundWork()
        output.flush()
        return 0
    }
}

/// Standard output for the shell: buffered per command, so that `set pager on` can send a
/// long answer through $PAGER.
final class StdoutShellOutput: ShellOutput {
    private var buffer = ""
    let colorOverride: Bool?
    var paging = false

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
        buffer += s
        if !paging && buffer.utf8.count > 1 << 16 { flush() }
    }

    func flush() {
        guard !buffer.isEmpty else { return }
        defer { buffer = "" }
        if paging && buffer.reduce(0, { $1 == "\n" ? $0 + 1 : $0 }) > height - 2 {
            let pager = getenv("PAGER").map { String(cString: $0) } ?? "less -FRX"
            if let p = popen(pager, "w") {
                _ = buffer.withCString { fputs($0, p) }
                pclose(p)
                return
            }
        }
        fflush(stdout)
        // SIGINT is installed without SA_RESTART (so that readline's read returns), so a
        // write may be interrupted: retry rather than lose output.
        var bytes = Array(buffer.utf8)[...]
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
