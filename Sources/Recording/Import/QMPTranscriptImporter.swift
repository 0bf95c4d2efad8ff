import QMP

/// Imports QMP as people paste it into bug reports, mailing lists and documentation:
///
/// ```
/// -> { "execute": "blockdev-add", \
///      "arguments": { "driver": "qcow2", "node-name": "disk1", \
///                     "file": { "driver": "file", "filename": "/srv/vm1.qcow2" } } }
/// <- { "return": {} }
/// ...
/// <- { "timestamp": { "seconds": 1714652210, "microseconds": 802113 },
///      "event": "JOB_STATUS_CHANGE", "data": { "status": "ready", "id": "mirror0" } }
/// ```
///
/// - `->` marks what the client sent and `<-` what QEMU sent (the notation of QEMU's QMP
///   documentation); without arrows the content decides: commands are the client's,
///   greetings, replies and events QEMU's (docs/QEMU-FACTS.md, "Wire protocol"). When an
///   arrow contradicts the content, the content wins and a warning says so.
/// - A message may span lines: a `\` at the end of a line joins the next line to it (a
///   shell line continuation: the backslash and the line break are removed), and a value
///   whose brackets are still open continues on the next line (pretty JSON, kept with its
///   line breaks).
/// - `...` (also `…`, `[...]`, `<snip>`) marks text the author left out: it becomes a
///   note in the recording, since messages may be missing there.
/// - Mail quoting (`> `, `>> `) is removed; prose lines between messages are ignored
///   (counted, with their line numbers).
/// - Values may be JSON, QEMU's single-quoted dialect (kept as written: QEMU reads it,
///   docs/QEMU-FACTS.md, "QEMU's JSON parser") or Python literals (rebuilt as JSON).
///
/// Each message keeps its text as written (after joining continuation lines) with the
/// sender's line end: CR LF for QEMU (docs/QEMU-FACTS.md, "Framing"), LF for the client.
/// A second greeting starts a new connection (every connection starts with one,
/// docs/QEMU-FACTS.md, "Greeting"). Times come from QEMU's event timestamps when there
/// are any, else messages are 1 ms apart.
public enum QMPTranscriptImporter {
    public static let peer = "import:qmp-transcript"

    /// Text standing for omitted messages.
    static let elisions: Set<String> = ["...", "…", "[...]", "[…]", "(...)", "<...>", "[ ... ]", "<snip>", "[snip]", "[ snip ]", "<snipped>", "[snipped]"]

    struct Pending {
        var start: Int
        var end: Int
        var marker: Direction?
        var text: [UInt8]
        var scanner = BracketScanner()
        var continued = false
    }

    public static func parse(_ bytes: [UInt8]) -> ImportedRecording {
        var b = ImportBuilder()
        var items: [PendingRecord] = []
        var connection: UInt32 = 1
        var messagesOnConnection = 0
        var elided: [Int] = []
        var pending: Pending?

        func finish(_ p: Pending) {
            var text = p.text[...]
            text = TextBytes.trim(text)
            guard let (value, syntax) = ValueParser.parse(text) else {
                b.unread(line: p.start, endLine: p.end, "not a JSON object (nor QEMU's single-quoted JSON, nor a Python literal); left out: \(ImportBuilder.excerpt(text))")
                return
            }
            guard let sender = ImportMessage.sender(value) else {
                b.unread(line: p.start, endLine: p.end, "\(QMPMessage.classify(value).otherReason ?? "not a QMP message"); left out: \(ImportBuilder.excerpt(text))")
                return
            }
            if let marker = p.marker, marker != sender {
                b.warn(line: p.start, "marked \(marker.arrow) but a \(QMPMessage.classify(value).kindName) comes from \(sender == .qemu ? "QEMU" : "the client"); recorded as \(sender == .qemu ? "QEMU's" : "the client's")")
            }
            if case .greeting = QMPMessage.classify(value), messagesOnConnection > 0 {
                items.append(PendingRecord(line: p.start, connection: connection, body: .close(by: "client", reason: "a new greeting follows in the transcript")))
                connection += 1
                messagesOnConnection = 0
            }
            let m = syntax == .python ? ImportMessage.rebuilt(value, from: sender) : ImportMessage.kept(text, from: sender)
            items.append(PendingRecord(line: p.start, connection: connection, body: .message(m, sender)))
            messagesOnConnection += 1
        }

        for line in SourceLine.split(bytes) {
            var s = stripQuoting(line.bytes)
            if var p = pending {
                // A continuation line may repeat its message's arrow.
                let (marker, rest) = arrow(TextBytes.trimLeft(s))
                if marker != nil, marker == p.marker { s = rest }
                p.end = line.number
                var piece = s
                let joins = endsWithContinuation(piece)
                if joins { piece = dropContinuation(piece) }
                if !p.continued { p.text.append(0x0A) }
                p.text.append(contentsOf: piece)
                p.continued = joins
                if let close = p.scanner.feed(piece) {
                    let after = TextBytes.trim(piece[close...])
                    p.text.removeLast(piece.endIndex - close)
                    pending = nil
                    finish(p)
                    if !after.isEmpty { b.warn(line: line.number, "text after the message ignored: \(ImportBuilder.excerpt(after))") }
                } else {
                    pending = p
                }
                continue
            }

            let t = TextBytes.trim(s)
            if t.isEmpty { continue }
            let (marker, rest) = arrow(t)
            let body = TextBytes.trim(rest)
            if isElision(body) {
                elided.append(line.number)
                var data = JSONObject(["line": .int(line.number)])
                if let marker { data["from"] = .string(marker.rawValue) }
                items.append(PendingRecord(line: line.number, connection: connection, body: .note(
                    "the source leaves something out here (line \(line.number): \(String(decoding: body, as: UTF8.self))): messages may be missing", data)))
                continue
            }
            guard let first = body.first, first == UInt8(ascii: "{") || first == UInt8(ascii: "[") else {
                if marker != nil {
                    b.unread(line: line.number, "\(marker == .client ? "->" : "<-") is followed by no JSON; left out: \(ImportBuilder.excerpt(body))")
                } else {
                    b.ignore(line.number)
                }
                continue
            }
            var p = Pending(start: line.number, end: line.number, marker: marker, text: [])
            var piece = body
            let joins = endsWithContinuation(piece)
            if joins { piece = dropContinuation(piece) }
            p.text.append(contentsOf: piece)
            p.continued = joins
            if let close = p.scanner.feed(piece) {
                let after = TextBytes.trim(piece[close...])
                p.text.removeLast(piece.endIndex - close)
                finish(p)
                if !after.isEmpty { b.warn(line: line.number, "text after the message ignored: \(ImportBuilder.excerpt(after))") }
            } else {
                pending = p
            }
        }
        if let p = pending {
            b.unread(line: p.start, endLine: p.end, "the message is cut short at the end of the input (its brackets never close); left out: \(ImportBuilder.excerpt(p.text))")
        }

        let timing = SourceClock.emit(items, into: &b) { _ in peer }
        if !b.records.isEmpty {
            var notes = [SourceClock.note(timing, source: "a QMP transcript")]
            notes.append((
                "the transcript's text is kept as written (continuation lines joined); line ends are QEMU's CR LF on its messages and LF on the client's",
                JSONObject()))
            if !elided.isEmpty {
                notes.append(("the transcript elides text at \(elided.count) place(s): the recording may miss messages there",
                              JSONObject(["lines": .array(elided.map { .int($0) })])))
            }
            b.insertNotes(notes)
        }
        return b.finish(
            startMicros: SourceClock.startMicros(timing),
            nothingFound: bytes.isEmpty ? nil : "no QMP messages found: a transcript needs JSON objects, optionally after -> or <-")
    }

    /// Removes mail quoting: `> `, `>> `, `> > ` at the start of a line.
    static func stripQuoting(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var i = s.startIndex
        var stripped = false
        while i < s.endIndex, s[i] == UInt8(ascii: ">") {
            i += 1
            stripped = true
            if i < s.endIndex, s[i] == 0x20 { i += 1 }
        }
        return stripped ? s[i...] : s
    }

    /// `-> ...` / `<- ...`: the direction and the text after the arrow.
    static func arrow(_ s: ArraySlice<UInt8>) -> (Direction?, ArraySlice<UInt8>) {
        guard s.count >= 2 else { return (nil, s) }
        let a = s[s.startIndex], c = s[s.startIndex + 1]
        var d: Direction?
        if a == UInt8(ascii: "-"), c == UInt8(ascii: ">") { d = .client }
        if a == UInt8(ascii: "<"), c == UInt8(ascii: "-") { d = .qemu }
        guard let d else { return (nil, s) }
        let rest = s[(s.startIndex + 2)...]
        guard rest.isEmpty || TextBytes.isBlank(rest.first!) || rest.first == UInt8(ascii: "{") else { return (nil, s) }
        return (d, TextBytes.trimLeft(rest))
    }

    static func isElision(_ s: ArraySlice<UInt8>) -> Bool {
        if s.isEmpty { return false }
        if s.allSatisfy({ $0 == UInt8(ascii: ".") }) && s.count >= 3 { return true }
        return elisions.contains(String(decoding: s, as: UTF8.self).lowercased())
    }

    static func endsWithContinuation(_ s: ArraySlice<UInt8>) -> Bool {
        TextBytes.trimRight(s).last == UInt8(ascii: "\\")
    }

    /// The line without its final backslash (blanks before the backslash are kept: in a
    /// shell they separate words, in JSON they are whitespace).
    static func dropContinuation(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        let t = TextBytes.trimRight(s)
        return t.dropLast()
    }
}

extension QMPMessage.Body {
    /// The reason for `other`, nil otherwise.
    var otherReason: String? {
        if case .other(let reason, _) = self { return reason }
        return nil
    }

    var kindName: String {
        switch self {
        case .greeting: return "greeting"
        case .command: return "command"
        case .return: return "return"
        case .error: return "error"
        case .event: return "event"
        case .other: return "other"
        }
    }
}
