import QMP

/// Imports what QEMU's `qmp-shell` printed (python/qemu/qmp/qmp_shell.py in QEMU's tree,
/// earlier scripts/qmp/qmp-shell):
///
/// ```
/// Welcome to the QMP low-level shell!
/// Connected to QEMU 8.2.2
///
/// (QEMU) query-status
/// {'return': {'running': True, 'singlestep': False, 'status': 'running'}}
/// (QEMU) stop
/// {"execute": "stop", "arguments": {}}
/// {"return": {}}
/// (QEMU)
/// {'timestamp': {'seconds': 1714650102, 'microseconds': 5521}, 'event': 'STOP'}
/// ```
///
/// What qmp-shell prints, and so what this reads (docs/IMPORT.md, "qmp-shell"):
/// - `(QEMU) NAME key=value ...` is a command line; qmp-shell turns it into
///   `{"execute": NAME, "arguments": {...}}` (values: integers, `true`/`false`, JSON or
///   Python literals for `{...}`/`[...]`, otherwise strings; dotted keys nest), which is
///   rebuilt here the same way. `transaction(` ... `TRANS> ACTION key=value` ... `)` builds
///   one `transaction` command.
/// - With `-v` the command qmp-shell sent is echoed before the reply: the echo is used
///   instead of the rebuilt command.
/// - Replies are printed as JSON (recent versions, `json.dumps`) or as Python dicts (older
///   versions print the reply object itself: single quotes, `True`/`False`/`None`,
///   `u'...'`); events shown after an empty command line are Python dicts in every version.
///   `-p` spreads both over several lines.
/// - `Connected to QEMU X.Y.Z` gives QEMU's version; the greeting and the negotiation
///   happen before the first prompt and are not printed, so they are not in the recording.
///   A second `Connected` line starts a new connection; `Disconnected` closes it.
/// - `Error while parsing command line: ...` means nothing was sent for the line before.
///
/// The bytes are therefore rebuilt (a note says so): QEMU's messages in QEMU's own layout
/// with CR LF (docs/QEMU-FACTS.md, "Framing"), commands as compact JSON with LF, as
/// qemu.qmp serialises them. Times come from QEMU's event timestamps when there are any,
/// else messages are 1 ms apart.
public enum QMPShellImporter {
    public static let peer = "import:qmp-shell"

    struct CommandLine {
        var line: Int
        var command: JSONValue
        var emitted = false
    }

    public static func parse(_ bytes: [UInt8]) -> ImportedRecording {
        var b = ImportBuilder()
        var items: [PendingRecord] = []
        var connection: UInt32 = 1
        var onConnection = 0
        var pending: CommandLine?
        var transaction: [JSONValue]?
        var value: (start: Int, end: Int, text: [UInt8], scanner: BracketScanner)?
        var prompts = 0
        var connected = 0

        func emit(_ m: QMPMessage, _ from: Direction, line: Int) {
            items.append(PendingRecord(line: line, connection: connection, body: .message(m, from)))
            onConnection += 1
        }

        func flushUnanswered() {
            guard let p = pending else { return }
            if !p.emitted {
                emit(ImportMessage.rebuilt(p.command, from: .client), .client, line: p.line)
                b.warn(line: p.line, "no reply follows this command in the transcript")
            }
            pending = nil
        }

        func take(_ text: ArraySlice<UInt8>, start: Int, end: Int) {
            guard let (v, _) = ValueParser.parse(text) else {
                b.unread(line: start, endLine: end, "not a JSON object or Python dict; left out: \(ImportBuilder.excerpt(text))")
                return
            }
            let body = QMPMessage.classify(v)
            switch body {
            case .command:
                // qmp-shell -v: the command as sent.
                if var p = pending, !p.emitted {
                    p.emitted = true
                    pending = p
                }
                emit(ImportMessage.rebuilt(v, from: .client), .client, line: start)
            case .return, .error:
                if var p = pending, !p.emitted {
                    emit(ImportMessage.rebuilt(p.command, from: .client), .client, line: p.line)
                    p.emitted = true
                }
                pending = nil
                emit(ImportMessage.rebuilt(v, from: .qemu), .qemu, line: start)
            case .event, .greeting:
                emit(ImportMessage.rebuilt(v, from: .qemu), .qemu, line: start)
            case .other(let reason, _):
                b.unread(line: start, endLine: end, "\(reason); left out: \(ImportBuilder.excerpt(text))")
            }
        }

        for line in SourceLine.split(bytes) {
            if var v = value {
                v.text.append(0x0A)
                v.end = line.number
                if let close = v.scanner.feed(line.bytes) {
                    v.text += line.bytes[..<close]
                    value = nil
                    take(v.text[...], start: v.start, end: line.number)
                } else {
                    v.text += line.bytes
                    value = v
                }
                continue
            }
            let t = TextBytes.trim(line.bytes)
            if t.isEmpty { continue }

            if let cmdline = prompt(t) {
                prompts += 1
                flushUnanswered()
                let tokens = tokenize(cmdline)
                if tokens.isEmpty, transaction == nil { continue }  // an empty line: qmp-shell shows pending events
                switch build(tokens, transaction: &transaction) {
                case .command(let c): pending = CommandLine(line: line.number, command: c)
                case .incomplete: break
                case .invalid(let why): b.warn(line: line.number, "qmp-shell could not build a command from this line (\(why)); nothing was sent")
                }
                continue
            }
            if TextBytes.hasPrefix(t, "Welcome to the QMP low-level shell") { continue }
            if TextBytes.hasPrefix(t, "Connected") {
                flushUnanswered()
                connected += 1
                let words = String(decoding: t, as: UTF8.self).split(separator: " ")
                if words.count >= 4, words[2] == "QEMU" { b.statedVersion = b.statedVersion ?? String(words[3]) }
                if onConnection > 0 {
                    items.append(PendingRecord(line: line.number, connection: connection, body: .close(by: "client", reason: "qmp-shell connected again")))
                    connection += 1
                    onConnection = 0
                }
                continue
            }
            if TextBytes.equals(t, "Disconnected") {
                flushUnanswered()
                items.append(PendingRecord(line: line.number, connection: connection, body: .close(by: "qemu", reason: "qmp-shell printed 'Disconnected'")))
                connection += 1
                onConnection = 0
                continue
            }
            if TextBytes.hasPrefix(t, "Error while parsing command line") {
                if let p = pending, !p.emitted {
                    b.warn(line: line.number, "qmp-shell refused the command line on line \(p.line); nothing was sent for it")
                }
                pending = nil
                continue
            }
            if TextBytes.hasPrefix(t, "command format:") { continue }
            if t.first == UInt8(ascii: "{") {
                var scanner = BracketScanner()
                if let close = scanner.feed(t) {
                    take(t[..<close], start: line.number, end: line.number)
                } else {
                    value = (line.number, line.number, Array(t), scanner)
                }
                continue
            }
            if ShellSessionImporter.promptCommand(line.bytes) != nil {
                b.ignore(line.number)  // the shell command that started qmp-shell
                continue
            }
            b.unread(line: line.number, "not a qmp-shell prompt, reply or event; left out: \(ImportBuilder.excerpt(t))")
        }
        if let v = value {
            b.unread(line: v.start, endLine: v.end, "a value cut short at the end of the input; left out: \(ImportBuilder.excerpt(v.text))")
        }
        flushUnanswered()

        let timing = SourceClock.emit(items, into: &b) { _ in peer }
        if !b.records.isEmpty {
            var notes = [SourceClock.note(timing, source: "qmp-shell output")]
            notes.append((
                "qmp-shell prints values, not the bytes on the socket: every message was rebuilt as JSON (QEMU's in QEMU's layout with CR LF, commands compact with LF); commands without a -v echo were rebuilt from the command line as qmp-shell builds them",
                JSONObject(["prompts": .int(prompts)])))
            if !b.sawGreeting {
                notes.append(("qmp-shell connects and negotiates before its first prompt: QEMU's greeting and qmp_capabilities are not in the source",
                              b.statedVersion.map { JSONObject(["qemu": .string($0)]) } ?? JSONObject()))
            }
            b.insertNotes(notes)
        }
        return b.finish(
            startMicros: SourceClock.startMicros(timing),
            nothingFound: bytes.isEmpty ? nil : "no QMP messages found: qmp-shell output has '(QEMU) command' lines followed by replies")
    }

    /// The command line after `(QEMU) ` or `TRANS> `, or nil.
    static func prompt(_ t: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        for p in ["(QEMU)", "TRANS>"] where TextBytes.hasPrefix(t, p) {
            let rest = t.dropFirst(p.utf8.count)
            guard rest.isEmpty || TextBytes.isBlank(rest.first!) else { return nil }
            return TextBytes.trim(rest)
        }
        return nil
    }

    /// qmp-shell's tokens: runs of non-blank characters, where quoted strings (kept with
    /// their quotes) may contain blanks.
    static func tokenize(_ s: ArraySlice<UInt8>) -> [String] {
        var tokens: [String] = []
        var cur: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            if TextBytes.isBlank(c) {
                if !cur.isEmpty { tokens.append(String(decoding: cur, as: UTF8.self)); cur = [] }
                i += 1
                continue
            }
            if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                var j = i + 1
                while j < s.endIndex, s[j] != c {
                    if s[j] == UInt8(ascii: "\\") { j += 1 }
                    j += 1
                }
                if j < s.endIndex {
                    cur += s[i...j]
                    i = j + 1
                    continue
                }
                // An unterminated quote is an ordinary character for qmp-shell's pattern.
            }
            cur.append(c)
            i += 1
        }
        if !cur.isEmpty { tokens.append(String(decoding: cur, as: UTF8.self)) }
        return tokens
    }

    enum Built {
        case command(JSONValue)
        case incomplete
        case invalid(String)
    }

    /// A command from qmp-shell's tokens, following its rules (transactions included).
    static func build(_ tokensIn: [String], transaction: inout [JSONValue]?) -> Built {
        var tokens = tokensIn
        if tokens.first == "transaction(" {
            transaction = []
            tokens.removeFirst()
        }
        if tokens.first == ")", let actions = transaction {
            transaction = nil
            if tokens.count > 1 { return .invalid("unexpected input after the end of the transaction") }
            let args = JSONObject(["actions": .array(actions)])
            return .command(.object(JSONObject(["execute": .string("transaction"), "arguments": .object(args)])))
        }
        guard let name = tokens.first else { return .incomplete }
        if transaction != nil {
            var finalize = false
            if tokens.last == ")" { tokens.removeLast(); finalize = true }
            var data = JSONObject()
            if let why = arguments(tokens.dropFirst(), into: &data) { return .invalid(why) }
            transaction?.append(.object(JSONObject(["type": .string(name), "data": .object(data)])))
            return finalize ? build([")"], transaction: &transaction) : .incomplete
        }
        var args = JSONObject()
        if let why = arguments(tokens.dropFirst(), into: &args) { return .invalid(why) }
        return .command(.object(JSONObject(["execute": .string(name), "arguments": .object(args)])))
    }

    /// `key=value` pairs into an object (`a.b=1` nests); returns why it failed, or nil.
    static func arguments(_ tokens: ArraySlice<String>, into o: inout JSONObject) -> String? {
        for arg in tokens {
            guard let eq = arg.firstIndex(of: "=") else { return "expected a key=value pair, got '\(arg)'" }
            let key = String(arg[..<eq])
            let val = String(arg[arg.index(after: eq)...])
            let path = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            if let why = set(path[...], value(val), in: &o, key: key) { return why }
        }
        return nil
    }

    private static func set(_ path: ArraySlice<String>, _ v: JSONValue, in o: inout JSONObject, key: String) -> String? {
        guard let head = path.first else { return nil }
        if path.count == 1 {
            if o[head] != nil { return "cannot set '\(key)' twice" }
            o.members.append(JSONObject.Member(key: head, value: v))
            return nil
        }
        var inner: JSONObject
        if let existing = o[head] {
            guard let obj = existing.objectValue else { return "'\(key)' is both a leaf and a parent" }
            inner = obj
        } else {
            inner = JSONObject()
        }
        if let why = set(path.dropFirst(), v, in: &inner, key: key) { return why }
        if let idx = o.members.firstIndex(where: { $0.key == head }) {
            o.members[idx].value = .object(inner)
        } else {
            o.members.append(JSONObject.Member(key: head, value: .object(inner)))
        }
        return nil
    }

    /// qmp-shell's value rules: an integer, true/false (any case), a JSON or Python literal
    /// for `{...}`/`[...]`, else the text itself.
    static func value(_ s: String) -> JSONValue {
        var digits = Substring(s)
        var sign = ""
        if let f = digits.first, f == "-" || f == "+" { sign = f == "-" ? "-" : ""; digits = digits.dropFirst() }
        if !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) {
            let trimmed = digits.drop { $0 == "0" }
            return .number(JSONNumber(text: trimmed.isEmpty ? "0" : sign + trimmed))
        }
        switch s.lowercased() {
        case "true": return .bool(true)
        case "false": return .bool(false)
        default: break
        }
        if s.hasPrefix("{") || s.hasPrefix("[") {
            let u = Array(s.utf8)
            if let v = try? JSONParser.parse(u) { return v }
            if let v = PythonLiteral.parse(u) { return v }
        }
        return .string(s)
    }
}
