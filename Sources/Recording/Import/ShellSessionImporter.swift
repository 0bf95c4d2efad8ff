import QMP

/// Imports a terminal session in which QMP was sent from shell command lines:
///
/// ```
/// $ echo '{"execute":"qmp_capabilities"}{"execute":"query-status"}' | socat - UNIX-CONNECT:/run/vm1.qmp
/// {"QMP": {"version": {...}, "capabilities": ["oob"]}}
/// {"return": {}}
/// {"return": {"status": "running", "singlestep": false, "running": true}}
/// $ ls -l /run/vm1.qmp
/// srwxr-x--- 1 qemu qemu 0 May  2 09:14 /run/vm1.qmp
/// ```
///
/// - A line starting with a shell prompt (`$ `, `# `, `user@host:~$ `, `[root@host ~]# `)
///   is a command; `\` continues it on the next line, and a here-document (`<<EOF`) is its
///   input. The lines up to the next prompt are its output.
/// - JSON objects inside the command's words (after the shell's quoting: `'...'`, `"..."`,
///   `$'...'`, backslashes) and in its here-document are what the client sent. So is a
///   command typed into an interactive `socat -` and shown in the output.
/// - A command that sends QMP or runs a socket client (socat, nc, ncat, netcat, telnet,
///   websocat; QEMU itself with `-qmp stdio`) is one connection: QEMU greets every new
///   connection (docs/QEMU-FACTS.md, "Greeting"). Its greeting is placed first, then the
///   commands from the command line (the shell wrote them as soon as the client
///   connected), then the rest of QEMU's output in order. The connection closes when the
///   command ends.
/// - Every other command, with its output, is shell noise: ignored and counted.
/// - Output lines that are not JSON are ignored (socat's own diagnostics, for example),
///   unless they look like broken QMP, which is reported as unread.
///
/// Messages keep their text (JSON, or QEMU's single-quoted dialect, which QEMU reads)
/// with the sender's line end: CR LF for QEMU (docs/QEMU-FACTS.md, "Framing"), LF for the
/// client (socat and echo end lines with LF). Times come from QEMU's event timestamps
/// when there are any, else messages are 1 ms apart.
public enum ShellSessionImporter {
    /// Programs that connect standard input and output to a socket.
    static let socketClients: Set<String> = ["socat", "nc", "ncat", "netcat", "telnet", "websocat", "qmp-shell"]

    struct Block {
        var promptLine: Int
        var lastCommandLine: Int
        var command: [UInt8]
        var heredoc: [SourceLine] = []
        var heredocLines: ClosedRange<Int>?
        var output: [SourceLine] = []
    }

    public static func parse(_ bytes: [UInt8]) -> ImportedRecording {
        var b = ImportBuilder()
        let lines = SourceLine.split(bytes)

        // 1. Cut the session into commands with their input and output.
        var preamble: [SourceLine] = []
        var blocks: [Block] = []
        var i = 0
        while i < lines.count {
            let line = lines[i]
            guard let cmd = promptCommand(line.bytes) else {
                if blocks.isEmpty { preamble.append(line) } else { blocks[blocks.count - 1].output.append(line) }
                i += 1
                continue
            }
            var block = Block(promptLine: line.number, lastCommandLine: line.number, command: Array(cmd))
            i += 1
            while QMPTranscriptImporter.endsWithContinuation(block.command[...]), i < lines.count {
                block.command = Array(QMPTranscriptImporter.dropContinuation(block.command[...]))
                var next = lines[i].bytes
                if TextBytes.hasPrefix(next, "> ") { next = next.dropFirst(2) }  // the shell's PS2 prompt
                block.command += next
                block.lastCommandLine = lines[i].number
                i += 1
            }
            if let (delimiter, stripTabs) = ShellWords.heredocDelimiter(block.command) {
                let first = i
                while i < lines.count {
                    var l = lines[i].bytes
                    if stripTabs { while l.first == 0x09 { l = l.dropFirst() } }
                    i += 1
                    if TextBytes.equals(TextBytes.trimRight(l), delimiter) { break }
                    block.heredoc.append(lines[i - 1])
                }
                if i > first { block.heredocLines = lines[first].number...lines[i - 1].number }
            }
            blocks.append(block)
        }

        // 2. Each block: a connection, or noise.
        var items: [PendingRecord] = []
        var connection: UInt32 = 0
        var connections = 0
        var noiseCommands = 0
        var fromCommandLine = 0

        if !preamble.isEmpty {
            let out = outputMessages(preamble, &b, talksQMP: false)
            if out.isEmpty {
                for l in preamble where !l.isBlank { b.ignore(l.number) }
            } else {
                connection += 1
                connections += 1
                for (line, m, from) in out {
                    items.append(PendingRecord(line: line, connection: connection, body: .message(m, from)))
                }
                items.append(PendingRecord(line: preamble.last!.number, connection: connection, body: .close(by: "client", reason: "the transcript continues with a shell command")))
            }
        }

        for block in blocks {
            let words = ShellWords.split(block.command)
            var sent: [(Int, QMPMessage)] = []
            for w in words.words {
                for obj in jsonObjects(in: w[...]) {
                    guard let (value, syntax) = ValueParser.parse(obj) else {
                        if looksLikeQMP(obj) {
                            b.unread(line: block.promptLine, endLine: block.lastCommandLine, "JSON in the shell command could not be read; left out: \(ImportBuilder.excerpt(obj))")
                        }
                        continue
                    }
                    guard case .command = QMPMessage.classify(value) else { continue }
                    let m = syntax == .python ? ImportMessage.rebuilt(value, from: .client) : ImportMessage.kept(obj, from: .client)
                    sent.append((block.promptLine, m))
                }
            }
            for (line, m, _) in inputMessages(block.heredoc, &b) { sent.append((line, m)) }

            let programs = words.programs
            let runsQEMU = programs.contains { $0.hasPrefix("qemu-system") || $0 == "qemu-kvm" }
            let client = programs.contains { socketClients.contains($0) } || (runsQEMU && TextBytes.contains(block.command[...], "stdio"))
            let talks = client || !sent.isEmpty
            let out = outputMessages(block.output, &b, talksQMP: talks)
            guard talks || !out.isEmpty else {
                if !block.command.allSatisfy(TextBytes.isBlank) { noiseCommands += 1 }
                b.ignore(block.promptLine...block.lastCommandLine)
                if let h = block.heredocLines { b.ignore(h) }
                for l in block.output where !l.isBlank { b.ignore(l.number) }
                continue
            }
            if sent.isEmpty && out.isEmpty {
                b.warn(line: block.promptLine, "\(programs.first ?? "the command") ran, but no QMP follows it (it may have failed to connect)")
                continue
            }
            connection += 1
            connections += 1
            fromCommandLine += sent.count
            var rest = out[...]
            if let first = rest.first, first.1.kind == .greeting {
                items.append(PendingRecord(line: first.0, connection: connection, body: .message(first.1, first.2)))
                rest = rest.dropFirst()
            }
            for (line, m) in sent {
                items.append(PendingRecord(line: line, connection: connection, body: .message(m, .client)))
            }
            for (line, m, from) in rest {
                items.append(PendingRecord(line: line, connection: connection, body: .message(m, from)))
            }
            let end = block.output.last?.number ?? block.lastCommandLine
            items.append(PendingRecord(line: end, connection: connection, body: .close(by: "client", reason: "the shell command ended")))
        }

        let timing = SourceClock.emit(items, into: &b) { c in "import:shell-session:command-\(c)" }
        if !b.records.isEmpty {
            var notes = [SourceClock.note(timing, source: "a shell session")]
            notes.append((
                "each shell command that talks to QEMU is a connection (QEMU greets every connection); commands from the command line follow QEMU's greeting, as the shell wrote them when the client connected",
                JSONObject(["connections": .int(connections), "commands_from_command_lines": .int(fromCommandLine)])))
            if noiseCommands > 0 {
                notes.append(("\(noiseCommands) shell command(s) that do not talk to QEMU were left out with their output",
                              JSONObject(["commands": .int(noiseCommands)])))
            }
            b.insertNotes(notes)
        }
        return b.finish(
            startMicros: SourceClock.startMicros(timing),
            nothingFound: bytes.isEmpty ? nil : "no QMP messages found: a shell session needs prompt lines ($ ...) that send QMP, with QEMU's answers below them")
    }

    /// The command after a shell prompt, or nil when the line is not a prompt line.
    static func promptCommand(_ line: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        var s = line
        // (venv) user@host:~$ ...
        if s.first == UInt8(ascii: "("), let close = s.firstIndex(of: UInt8(ascii: ")")),
           close + 1 < s.endIndex, s[close + 1] == 0x20 {
            s = s[(close + 2)...]
        }
        func after(_ i: Int) -> ArraySlice<UInt8>? {
            // The prompt character must be followed by a blank or end the line.
            let j = i + 1
            if j == s.endIndex { return s[j...] }
            guard s[j] == 0x20 || s[j] == 0x09 else { return nil }
            return TextBytes.trimLeft(s[(j + 1)...])
        }
        guard let c = s.first else { return nil }
        if c == UInt8(ascii: "$") || c == UInt8(ascii: "#") || c == UInt8(ascii: "%") { return after(s.startIndex) }
        if c == UInt8(ascii: "["), let close = s.firstIndex(of: UInt8(ascii: "]")), close + 1 < s.endIndex,
           s[close + 1] == UInt8(ascii: "$") || s[close + 1] == UInt8(ascii: "#") {
            return after(close + 1)
        }
        // user@host:~/dir$ ... / bash-5.2# ...: a prompt word without blanks or quotes.
        var i = s.startIndex
        while i < s.endIndex, i - s.startIndex < 80 {
            let d = s[i]
            if d == 0x20 || d == 0x09 || d == UInt8(ascii: "{") || d == UInt8(ascii: "\"") || d == UInt8(ascii: "'") { return nil }
            if d == UInt8(ascii: "$") || d == UInt8(ascii: "#") || d == UInt8(ascii: "%") || d == UInt8(ascii: ">") {
                let word = s[s.startIndex..<i]
                let looksLikePrompt = word.contains(UInt8(ascii: "@")) || word.contains(UInt8(ascii: ":"))
                    || TextBytes.hasPrefix(word, "bash") || TextBytes.hasPrefix(word, "sh-") || TextBytes.hasPrefix(word, "zsh")
                guard looksLikePrompt, d != UInt8(ascii: ">") else { return nil }
                return after(i)
            }
            i += 1
        }
        return nil
    }

    /// Each balanced `{...}` in a shell word (`{"execute":"a"}\n{"execute":"b"}` holds two).
    static func jsonObjects(in w: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        var out: [ArraySlice<UInt8>] = []
        var i = w.startIndex
        while i < w.endIndex {
            if w[i] == UInt8(ascii: "{"), let end = BracketScanner.valueEnd(w, from: i) {
                out.append(w[i..<end])
                i = end
            } else {
                i += 1
            }
        }
        return out
    }

    static func looksLikeQMP(_ s: ArraySlice<UInt8>) -> Bool {
        for key in ["execute", "exec-oob", "return", "error", "event", "QMP"] {
            if TextBytes.contains(s, "\"\(key)\"") || TextBytes.contains(s, "'\(key)'") { return true }
        }
        return false
    }

    /// Messages in a here-document: the client's input.
    static func inputMessages(_ lines: [SourceLine], _ b: inout ImportBuilder) -> [(Int, QMPMessage, Direction)] {
        values(lines, &b, talksQMP: true).compactMap { v in
            v.2 == .client ? v : nil
        }
    }

    /// Messages in a command's output, with their direction (typed commands are the client's).
    static func outputMessages(_ lines: [SourceLine], _ b: inout ImportBuilder, talksQMP: Bool) -> [(Int, QMPMessage, Direction)] {
        values(lines, &b, talksQMP: talksQMP)
    }

    /// Reads the JSON values in `lines` (one or more per line, or one over several lines).
    /// Lines without JSON are ignored; values that are no QMP message are reported when
    /// the command talks QMP and ignored otherwise.
    static func values(_ lines: [SourceLine], _ b: inout ImportBuilder, talksQMP: Bool) -> [(Int, QMPMessage, Direction)] {
        var out: [(Int, QMPMessage, Direction)] = []
        var pending: (start: Int, text: [UInt8], scanner: BracketScanner)?
        var unused: [(Int, ArraySlice<UInt8>)] = []

        func take(_ text: ArraySlice<UInt8>, start: Int, end: Int) {
            guard let (value, syntax) = ValueParser.parse(text) else {
                if talksQMP || looksLikeQMP(text) {
                    b.unread(line: start, endLine: end, "not a JSON object (nor QEMU's single-quoted JSON); left out: \(ImportBuilder.excerpt(text))")
                } else {
                    b.ignore(start...end)
                }
                return
            }
            guard let from = ImportMessage.sender(value) else {
                if talksQMP {
                    b.unread(line: start, endLine: end, "\(QMPMessage.classify(value).otherReason ?? "not QMP"); left out: \(ImportBuilder.excerpt(text))")
                } else {
                    b.ignore(start...end)
                }
                return
            }
            let m = syntax == .python ? ImportMessage.rebuilt(value, from: from) : ImportMessage.kept(text, from: from)
            out.append((start, m, from))
        }

        for line in lines {
            var rest = line.bytes
            if var p = pending {
                p.text.append(0x0A)
                if let close = p.scanner.feed(rest) {
                    p.text += rest[..<close]
                    take(p.text[...], start: p.start, end: line.number)
                    pending = nil
                    rest = rest[close...]
                } else {
                    p.text += rest
                    pending = p
                    continue
                }
            }
            while true {
                let t = TextBytes.trimLeft(rest)
                guard let first = t.first else { break }
                guard first == UInt8(ascii: "{") else {
                    unused.append((line.number, t))
                    break
                }
                var scanner = BracketScanner()
                if let close = scanner.feed(t) {
                    take(t[..<close], start: line.number, end: line.number)
                    rest = t[close...]
                } else {
                    pending = (line.number, Array(t), scanner)
                    break
                }
            }
        }
        if let p = pending {
            b.unread(line: p.start, endLine: lines.last?.number, "JSON cut short at the end of the command's output; left out: \(ImportBuilder.excerpt(p.text))")
        }
        for (n, text) in unused {
            if looksLikeQMP(text) {
                b.unread(line: n, "looks like QMP but is not a JSON object; left out: \(ImportBuilder.excerpt(text))")
            } else {
                b.ignore(n)
            }
        }
        return out
    }
}

/// Just enough of the POSIX shell's word splitting to find what a command line sends:
/// quotes (`'...'`, `"..."`, `$'...'`), backslashes, pipelines and lists, here-documents.
enum ShellWords {
    struct Result {
        /// Every word with its quoting removed.
        var words: [[UInt8]]
        /// The program of each command in the line (basename, after `sudo`, `env`, `VAR=value`).
        var programs: [String]
    }

    static let wrappers: Set<String> = ["sudo", "doas", "exec", "time", "env", "command", "nohup", "stdbuf", "timeout"]

    static func split(_ s: [UInt8]) -> Result {
        var words: [[UInt8]] = []
        var programs: [String] = []
        var cur: [UInt8] = []
        var inWord = false
        var segmentStart = true
        var i = 0

        func endWord() {
            guard inWord else { return }
            words.append(cur)
            if segmentStart {
                let w = String(decoding: cur, as: UTF8.self)
                let isAssignment = w.contains("=") && !w.hasPrefix("-") && !w.hasPrefix("=")
                let base = String(w.split(separator: "/").last ?? "")
                if !isAssignment && !wrappers.contains(base) && !base.hasPrefix("-") {
                    programs.append(base)
                    segmentStart = false
                }
            }
            cur = []
            inWord = false
        }

        while i < s.count {
            let c = s[i]
            switch c {
            case 0x20, 0x09:
                endWord()
                i += 1
            case UInt8(ascii: "|"), UInt8(ascii: ";"), UInt8(ascii: "&"):
                endWord()
                segmentStart = true
                i += 1
            case UInt8(ascii: "<"), UInt8(ascii: ">"):
                endWord()
                var op: [UInt8] = []
                while i < s.count, s[i] == UInt8(ascii: "<") || s[i] == UInt8(ascii: ">") || s[i] == UInt8(ascii: "&") || s[i] == UInt8(ascii: "-") {
                    op.append(s[i]); i += 1
                }
                // A here-string (<<<) is input: its word is read like any other. Otherwise the
                // file name or here-document delimiter that follows is skipped.
                if op.starts(with: Array("<<<".utf8)) { break }
                while i < s.count, s[i] == 0x20 { i += 1 }
                while i < s.count, s[i] != 0x20, s[i] != 0x09, s[i] != UInt8(ascii: "|"), s[i] != UInt8(ascii: ";") { i += 1 }
            case UInt8(ascii: "'"):
                inWord = true
                i += 1
                while i < s.count, s[i] != UInt8(ascii: "'") { cur.append(s[i]); i += 1 }
                i += 1
            case UInt8(ascii: "\""):
                inWord = true
                i += 1
                while i < s.count, s[i] != UInt8(ascii: "\"") {
                    if s[i] == UInt8(ascii: "\\"), i + 1 < s.count, "\"\\$`".utf8.contains(s[i + 1]) {
                        cur.append(s[i + 1]); i += 2
                    } else {
                        cur.append(s[i]); i += 1
                    }
                }
                i += 1
            case UInt8(ascii: "$") where i + 1 < s.count && s[i + 1] == UInt8(ascii: "'"):
                inWord = true
                i += 2
                while i < s.count, s[i] != UInt8(ascii: "'") {
                    if s[i] == UInt8(ascii: "\\"), i + 1 < s.count {
                        switch s[i + 1] {
                        case UInt8(ascii: "n"): cur.append(0x0A)
                        case UInt8(ascii: "t"): cur.append(0x09)
                        case UInt8(ascii: "r"): cur.append(0x0D)
                        default: cur.append(s[i + 1])
                        }
                        i += 2
                    } else {
                        cur.append(s[i]); i += 1
                    }
                }
                i += 1
            case UInt8(ascii: "\\"):
                inWord = true
                if i + 1 < s.count { cur.append(s[i + 1]) }
                i += 2
            default:
                inWord = true
                cur.append(c)
                i += 1
            }
        }
        endWord()
        return Result(words: words, programs: programs)
    }

    /// The delimiter of a here-document in a command (`<<EOF`, `<< 'EOF'`, `<<-"END"`),
    /// and whether leading tabs are stripped (`<<-`).
    static func heredocDelimiter(_ s: [UInt8]) -> (String, Bool)? {
        var i = 0
        var quote: UInt8?
        while i + 1 < s.count {
            let c = s[i]
            if let q = quote {
                if c == q { quote = nil }
                i += 1
                continue
            }
            if c == UInt8(ascii: "'") || c == UInt8(ascii: "\"") { quote = c; i += 1; continue }
            if c == UInt8(ascii: "<"), s[i + 1] == UInt8(ascii: "<"), i + 2 >= s.count || s[i + 2] != UInt8(ascii: "<"),
               i == 0 || s[i - 1] != UInt8(ascii: "<") {
                var j = i + 2
                var strip = false
                if j < s.count, s[j] == UInt8(ascii: "-") { strip = true; j += 1 }
                while j < s.count, s[j] == 0x20 { j += 1 }
                var word: [UInt8] = []
                while j < s.count, s[j] != 0x20, s[j] != 0x09, s[j] != UInt8(ascii: ";"), s[j] != UInt8(ascii: "|") {
                    if s[j] != UInt8(ascii: "'"), s[j] != UInt8(ascii: "\""), s[j] != UInt8(ascii: "\\") { word.append(s[j]) }
                    j += 1
                }
                if !word.isEmpty { return (String(decoding: word, as: UTF8.self), strip) }
            }
            i += 1
        }
        return nil
    }
}
