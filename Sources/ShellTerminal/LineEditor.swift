import Analysis
import CReadline
import Shell
import Transport
import QMP
import Recording

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// GNU readline for the interactive shell: Emacs keys, Ctrl-R history search, history
/// saved across sessions, tab completion, and Ctrl-C that clears the line instead of
/// killing the shell.
///
/// readline's state is global, so this is a singleton-like wrapper; the completion
/// callback reads the candidates the current `Completer` offers.
public final class LineEditor {
    nonisolated(unsafe) static var completer: Completer?
    nonisolated(unsafe) static var candidates: [String] = []
    nonisolated(unsafe) static var interruptedLine = false

    public let historyPath: String

    public init(completer: Completer, historyPath: String) {
        self.historyPath = historyPath
        LineEditor.completer = completer
        rl_readline_name = UnsafePointer(strdup("qmpreplay"))
        // We handle SIGINT ourselves (see installInterruptHandler); readline must not.
        rl_catch_signals = 0
        rl_catch_sigwinch = 1
        rl_getc_function = { stream in LineEditor.getc(stream) }
        rl_attempted_completion_function = { text, start, end in LineEditor.complete(text, start, end) }
        rl_basic_word_break_characters = UnsafePointer(strdup(" \t\n\"'()=<>!~&|"))
        using_history()
        stifle_history(2000)
        _ = read_history(historyPath)
    }

    /// One line, or nil at end of input (Ctrl-D on an empty line).
    public func readLine(prompt: String) -> (line: String, interrupted: Bool)? {
        LineEditor.interruptedLine = false
        guard let p = readline(prompt) else { return nil }
        defer { free(p) }
        let line = String(cString: p)
        if LineEditor.interruptedLine { return ("", true) }
        if !line.trimmed().isEmpty {
            // Avoid consecutive duplicates in history.
            let last = history_length > 0 ? history_get(history_base + history_length - 1).map { String(cString: $0.pointee.line) } : nil
            if last != line { add_history(line) }
        }
        return (line, false)
    }

    // MARK: Live input (readline's callback interface)

    /// What one `readAvailable()` produced.
    public enum LiveInput { case line(String), eof }

    nonisolated(unsafe) static var completed: LiveInput?

    /// Starts reading a line without blocking: the caller polls standard input and calls
    /// `readAvailable()` when it is readable, so that it can print between keystrokes.
    public func beginLine(prompt: String) {
        LineEditor.completed = nil
        rl_callback_handler_install(prompt) { p in
            if let p {
                let line = String(cString: p)
                free(p)
                if !line.trimmed().isEmpty {
                    let last = history_length > 0 ? history_get(history_base + history_length - 1).map { String(cString: $0.pointee.line) } : nil
                    if last != line { add_history(line) }
                }
                LineEditor.completed = .line(line)
            } else {
                LineEditor.completed = .eof
            }
            // The command runs with the terminal as usual; `beginLine` installs the next prompt.
            rl_callback_handler_remove()
        }
    }

    /// Feeds readline the bytes waiting on standard input; a finished line (or Ctrl-D) is
    /// returned, nil while the line is still being typed.
    public func readAvailable() -> LiveInput? {
        rl_callback_read_char()
        if LineEditor.interruptedLine {
            LineEditor.interruptedLine = false
            LineEditor.completed = nil
            return .line("")
        }
        defer { LineEditor.completed = nil }
        return LineEditor.completed
    }

    /// Ctrl-C at the prompt: the line typed so far is dropped, a fresh prompt shown.
    public func cancelLine(prompt: String) {
        rl_replace_line("", 0)
        rl_callback_handler_remove()
        fputs("^C\n", stdout)
        fflush(stdout)
        beginLine(prompt: prompt)
    }

    /// Prints above the line being typed: the prompt and the line are taken off the screen,
    /// `write` prints (and flushes), then the prompt (`prompt`, it may have changed) and the
    /// line come back with the cursor where it was.
    public func printAbove(prompt: String, _ write: () -> Void) {
        let point = rl_point
        let saved = rl_line_buffer.map { String(cString: $0) } ?? ""
        rl_set_prompt("")
        rl_replace_line("", 0)
        rl_redisplay()
        write()
        rl_set_prompt(prompt)
        rl_replace_line(saved, 0)
        rl_point = point
        rl_redisplay()
    }

    /// The prompt changed (the cursor followed the live end): redrawn in place.
    public func setPrompt(_ prompt: String) {
        rl_set_prompt(prompt)
        rl_redisplay()
    }

    /// Leaves the callback interface (the terminal back as it was).
    public func endLine() { rl_callback_handler_remove() }

    public func saveHistory() {
        _ = write_history(historyPath)
        _ = history_truncate_file(historyPath, 2000)
    }

    /// Reads one byte for readline; a Ctrl-C (EINTR with the interrupt flag set) clears the
    /// line and ends it, so readline returns an empty line instead of the process dying.
    private static func getc(_ stream: UnsafeMutablePointer<FILE>?) -> Int32 {
        let fd = stream.map { fileno($0) } ?? 0
        while true {
            // A Ctrl-C that arrived while readline was busy (not blocked in read) only set the
            // flag; polling with a short timeout makes sure it is seen promptly.
            if Interrupt.pending {
                Interrupt.clear()
                interruptedLine = true
                rl_replace_line("", 0)
                return 10  // newline: accept the (now empty) line
            }
            if FDWait.wait(fd, for: Int16(POLLIN), timeoutMs: 100) == 0 { continue }
            var c: UInt8 = 0
            let n = read(fd, &c, 1)
            if n == 1 { return Int32(c) }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            return -1  // EOF
        }
    }

    private static func complete(
        _ text: UnsafePointer<CChar>?, _ start: Int32, _ end: Int32
    ) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? {
        let line = rl_line_buffer.map { String(cString: $0) } ?? ""
        let word = text.map { String(cString: $0) } ?? ""
        let before = String(line.utf8.prefix(Int(start))) ?? ""
        guard let completer else { return nil }
        switch completer.candidates(before: before, word: word) {
        case .files:
            rl_attempted_completion_over = 0
            return nil  // readline's own file name completion
        case .words(let words):
            rl_attempted_completion_over = 1
            candidates = words.filter { $0.hasPrefix(word) }.sorted()
            // `send`'s argument names end in '=': the value follows without a space.
            rl_completion_append_character = !candidates.isEmpty && candidates.allSatisfy { $0.hasSuffix("=") } ? 0 : 32
            if candidates.isEmpty { return nil }
            return rl_completion_matches(text) { _, state in
                let i = Int(state)
                guard i < LineEditor.candidates.count else { return nil }
                return strdup(LineEditor.candidates[i])
            }
        }
    }

    /// SIGINT sets the interrupt flag, without SA_RESTART so that blocking reads return.
    public static func installInterruptHandler() {
        var sa = sigaction()
        sa.__sigaction_handler.sa_handler = { _ in Interrupt.requested = 1 }
        sigemptyset(&sa.sa_mask)
        sa.sa_flags = 0
        sigaction(SIGINT, &sa, nil)
    }
}
