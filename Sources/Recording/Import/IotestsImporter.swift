import QMP

/// Imports a qemu-iotests reference output (`tests/qemu-iotests/*.out` in QEMU's tree):
///
/// ```
/// QA output created by 314
/// QMP_VERSION
/// { 'execute': 'qmp_capabilities' }
/// {"return": {}}
/// { 'execute': 'blockdev-add',
///        'arguments': { 'driver': 'qcow2', 'node-name': 'top', 'file': 'top-file' } }
/// {"return": {}}
/// {"timestamp": {"seconds":  TIMESTAMP, "microseconds":  TIMESTAMP}, "event": "JOB_STATUS_CHANGE", "data": {"status": "created", "id": "job0"}}
/// wrote 65536/65536 bytes at offset 0
/// *** done
/// ```
///
/// What the test harness writes, and so what this reads (docs/IMPORT.md, "iotests"):
/// - shell-based tests echo each command as the test wrote it, usually in QEMU's
///   single-quoted JSON (kept as written: QEMU reads it, docs/QEMU-FACTS.md, "QEMU's JSON
///   parser"), often over several lines; Python tests log commands as JSON
///   (`{"execute": ..., "arguments": ...}`), older ones as Python dicts (rebuilt as JSON);
/// - replies and events are JSON with QEMU's CR LF removed (`_filter_qemu`), and event
///   timestamps masked: `"seconds":  TIMESTAMP` in shell tests (`_filter_qmp`, which is not
///   JSON: the placeholder is quoted so the event can be kept), `"SECS"`/`"USECS"` in Python
///   tests (`filter_qmp_event`); the greeting is replaced by a `QMP_VERSION` line;
/// - everything else (qemu-io and qemu-img output, section titles, JSON that is no QMP
///   message such as `qemu-img map` output) is ignored and counted.
///
/// Each `QMP_VERSION` is a QEMU started by the test: a new connection. Directions follow
/// the content (docs/QEMU-FACTS.md, "Wire protocol"). QEMU's messages get their CR LF back
/// (docs/QEMU-FACTS.md, "Framing"), commands end in LF. The source has no clock (the
/// timestamps are masked), so records are 1 ms apart in the order of the file: synthetic
/// times, as a note says. The masked timestamp values stay in the events as strings.
public enum IotestsImporter {
    public static let peer = "import:iotests"

    public static func parse(_ bytes: [UInt8]) -> ImportedRecording {
        var b = ImportBuilder()
        var items: [PendingRecord] = []
        var connection: UInt32 = 1
        var onConnection = 0
        var starts = 0
        var masked = 0
        var testName: String?
        var pending: (start: Int, end: Int, text: [UInt8], scanner: BracketScanner)?

        func take(_ raw: ArraySlice<UInt8>, start: Int, end: Int) {
            let (text, placeholders) = quotePlaceholders(raw)
            guard let (value, syntax) = ValueParser.parse(text[...]) else {
                if ShellSessionImporter.looksLikeQMP(raw) {
                    b.unread(line: start, endLine: end, "looks like QMP but could not be read; left out: \(ImportBuilder.excerpt(raw))")
                } else {
                    b.ignore(start...end)
                }
                return
            }
            guard let from = ImportMessage.sender(value) else {
                b.ignore(start...end)  // JSON output of other tools (qemu-img info/map)
                return
            }
            if case .event = QMPMessage.classify(value), placeholders > 0 || hasMaskedTimestamp(value) { masked += 1 }
            let m = syntax == .python ? ImportMessage.rebuilt(value, from: from) : ImportMessage.kept(text[...], from: from)
            items.append(PendingRecord(line: start, connection: connection, body: .message(m, from)))
            onConnection += 1
        }

        for line in SourceLine.split(bytes) {
            if var p = pending {
                p.text.append(0x0A)
                p.end = line.number
                if let close = p.scanner.feed(line.bytes) {
                    p.text += line.bytes[..<close]
                    pending = nil
                    take(p.text[...], start: p.start, end: line.number)
                    let after = TextBytes.trim(line.bytes[close...])
                    if !after.isEmpty { b.ignore(line.number) }
                } else {
                    p.text += line.bytes
                    pending = p
                }
                continue
            }
            let t = TextBytes.trim(line.bytes)
            if t.isEmpty { continue }
            if TextBytes.hasPrefix(t, "QA output created by") {
                testName = String(decoding: t.dropFirst("QA output created by".utf8.count), as: UTF8.self)
                    .trimmingCharacters(in: " ")
                continue
            }
            if TextBytes.equals(t, "QMP_VERSION") {
                if onConnection > 0 {
                    items.append(PendingRecord(line: line.number, connection: connection, body: .close(by: "qemu", reason: "the test starts another QEMU")))
                    connection += 1
                    onConnection = 0
                }
                starts += 1
                items.append(PendingRecord(line: line.number, connection: connection, body: .note(
                    "QEMU starts here; its greeting is masked as QMP_VERSION in the reference output", JSONObject(["line": .int(line.number)]))))
                continue
            }
            guard let first = t.first, first == UInt8(ascii: "{") || first == UInt8(ascii: "[") else {
                if ShellSessionImporter.looksLikeQMP(t) {
                    b.unread(line: line.number, "looks like QMP but is not a JSON object; left out: \(ImportBuilder.excerpt(t))")
                } else {
                    b.ignore(line.number)
                }
                continue
            }
            var scanner = BracketScanner()
            if let close = scanner.feed(t) {
                take(t[..<close], start: line.number, end: line.number)
            } else {
                pending = (line.number, line.number, Array(t), scanner)
            }
        }
        if let p = pending {
            b.unread(line: p.start, endLine: p.end, "a value cut short at the end of the input; left out: \(ImportBuilder.excerpt(p.text))")
        }

        // The events' timestamps are masked, so they never give a clock: synthetic times.
        let timing = SourceClock.emit(items, into: &b) { _ in peer }
        if !b.records.isEmpty {
            var data = JSONObject(["masked_timestamps": .int(masked), "qemu_starts": .int(starts)])
            if let testName { data["test"] = .string(testName) }
            var notes = [SourceClock.note(timing, source: "a qemu-iotests reference output")]
            notes.append((
                "qemu-iotests masks event timestamps (TIMESTAMP, SECS/USECS) and QEMU's greeting (QMP_VERSION); the masked values are kept as strings, and QEMU's CR LF line ends, removed by the test filters, are restored",
                data))
            b.insertNotes(notes)
        }
        return b.finish(
            startMicros: SourceClock.startMicros(timing),
            nothingFound: bytes.isEmpty ? nil : "no QMP messages found: an iotests reference output has JSON replies and events ({\"return\": ...}) between its other lines")
    }

    /// `"seconds":  TIMESTAMP` (not JSON) -> `"seconds":  "TIMESTAMP"`; the count of placeholders quoted.
    static func quotePlaceholders(_ s: ArraySlice<UInt8>) -> ([UInt8], Int) {
        let word = Array("TIMESTAMP".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(s.count + 8)
        var n = 0
        var i = s.startIndex
        var quote: UInt8?
        while i < s.endIndex {
            let c = s[i]
            if let q = quote {
                out.append(c)
                if c == UInt8(ascii: "\\"), i + 1 < s.endIndex { out.append(s[i + 1]); i += 2; continue }
                if c == q { quote = nil }
                i += 1
                continue
            }
            if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") { quote = c; out.append(c); i += 1; continue }
            if c == word[0], i + word.count <= s.endIndex, s[i..<(i + word.count)].elementsEqual(word) {
                out.append(UInt8(ascii: "\""))
                out += word
                out.append(UInt8(ascii: "\""))
                n += 1
                i += word.count
                continue
            }
            out.append(c)
            i += 1
        }
        return (out, n)
    }

    static func hasMaskedTimestamp(_ v: JSONValue) -> Bool {
        guard let ts = v["timestamp"] else { return false }
        return ts["seconds"]?.stringValue != nil || ts["microseconds"]?.stringValue != nil
    }
}

private extension String {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s = s.dropFirst() }
        while s.last == set { s = s.dropLast() }
        return String(s)
    }
}
