import QMP

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `qmpreplay doctor`: everything `validate` checks (`RecordingValidation`: negotiation,
/// pairing of replies with commands, the schema, follow-ups) plus the file's own structure,
/// each finding with the line it is on: the reader's problems under their own codes (torn
/// or non-JSON lines, header, trailer presence and counts, times going backwards), the
/// bytes (NUL runs, mixed or lone CR line ends), and the connections' structure (a second
/// `open` without a `close`, messages after a `close`, messages on connection 0), the
/// recorder's own reports of loss (the trailer's `dropped`, gap notes).
///
/// Damage (what `recover` repairs) is told apart from findings about the traffic, so that
/// the command line can give each its exit status (docs/REPAIR.md).
public enum RecordingDoctor {
    public struct Report: Sendable {
        /// Sorted by line; findings about the file as a whole come last.
        public var findings: [Finding]
        /// Codes of the findings that are damage to the file rather than to the traffic.
        public var damaged: Bool { findings.contains { RecordingDoctor.isDamage($0) } }
    }

    /// Reader codes that are not damage: a remark about the format or a missing newline
    /// (the line is whole and kept).
    static let harmlessReadCodes: Set<String> = ["newer-version", "no-newline"]
    /// Codes this checker adds for damage to the bytes.
    static let byteDamageCodes: Set<String> = ["nul-bytes", "mixed-line-ends", "lone-cr", "bad-record", "recorder-dropped", "gap"]

    public static func isDamage(_ f: Finding) -> Bool {
        f.severity >= .warning && (f.code.hasPrefix("file:") || byteDamageCodes.contains(f.code))
    }

    /// At most this many lines are named for one kind of byte damage; the rest are counted.
    static let perKindLimit = 20

    public static func run(_ r: Recording, schema choice: SchemaChoice? = nil) -> Report {
        var out = readFindings(r)
        out += orderFindings(r)
        out += byteFindings(r.bytes)
        out += structureFindings(r)
        out += RecordingValidation.run(r, schema: choice ?? RecordingSchema.choose(for: r), readProblems: false)
        out.sort { ($0.line ?? Int.max) < ($1.line ?? Int.max) }
        return Report(findings: out)
    }

    /// The reader's problems, with a line for the whole-file ones where one applies. Codes
    /// are prefixed `file:` (`file:torn-line`), the reader's own vocabulary.
    static func readFindings(_ r: Recording) -> [Finding] {
        // Times going backwards are listed line by line by `orderFindings` instead of the
        // reader's first-and-count.
        r.problems.filter { $0.code != "time-backwards" }.map { p in
            var line: Int? = p.line > 0 ? p.line : nil
            var message = p.message
            switch p.code {
            case "no-trailer":
                line = r.lineCount + 1
                message = "no trailer after line \(r.lineCount) (the recording did not end cleanly: recorder killed, disk full, or still recording)"
            case "trailer-count", "after-trailer":
                line = r.trailerLine
            default: break
            }
            let severity: Finding.Severity = p.code == "newer-version" ? .info : (p.code == "no-newline" ? .warning : .error)
            return Finding(severity, "file:" + p.code, message, line: line)
        }
    }

    /// Every record whose time is earlier than one before it (the index keeps them clamped,
    /// so the time is read from the line again), up to `perKindLimit` lines, then a count.
    static func orderFindings(_ r: Recording) -> [Finding] {
        var out: [Finding] = []
        var latest: Int64 = 0, latestLine = 0, count = 0
        for i in 0..<r.count {
            let t = rawTime(r, i)
            if t < latest {
                count += 1
                if count <= perKindLimit {
                    out.append(Finding(.error, "file:time-backwards", "time \(t) ns is before \(latest) ns on line \(latestLine)", record: i, line: r.line(i)))
                }
            } else {
                latest = t
                latestLine = r.line(i)
            }
        }
        if count > perKindLimit {
            out.append(Finding(.error, "file:time-backwards", "times go backwards at \(count) records in all (the first \(perKindLimit) are listed)"))
        }
        return out
    }

    /// The time written on record `i`'s line: the leading `{"t":N` the writer puts first,
    /// else the decoded member.
    static func rawTime(_ r: Recording, _ i: Int) -> Int64 {
        let b = r.lineBytes(i)
        if b.count > 5, b[0] == 0x7B, b[1] == 0x22, b[2] == 0x74, b[3] == 0x22, b[4] == 0x3A {
            var v: Int64 = 0, j = 5
            while j < b.count, j < 23, b[j] &- 0x30 < 10 { v = v &* 10 &+ Int64(b[j] &- 0x30); j += 1 }
            if j > 5 { return v }
        }
        return (try? r.record(at: i))?.envelope["t"]?.int64Value ?? r.time(i)
    }

    /// NUL bytes (a file system that lost the data after a crash leaves runs of them), lone
    /// carriage returns, and a mix of CR LF and LF line ends, by line.
    static func byteFindings(_ bytes: FileBytes) -> [Finding] {
        guard let raw = bytes.base, bytes.count > 0 else { return [] }
        let p = raw.assumingMemoryBound(to: UInt8.self)
        let n = bytes.count
        var out: [Finding] = []
        var line = 1, lineStart = 0
        var crlf = 0, lf = 0
        var firstCRLF: Int?, firstLF: Int?
        var nulLines = 0, crLines = 0
        var nulInLine = 0, crInLine = 0
        func endLine(_ end: Int) {
            if nulInLine > 0 {
                nulLines += 1
                if nulLines <= perKindLimit {
                    out.append(Finding(.error, "nul-bytes", "\(nulInLine) NUL byte\(nulInLine == 1 ? "" : "s") in the line (bytes \(lineStart)..<\(end) of the file; data lost by the file system?)", line: line))
                }
            }
            if crInLine > 0 {
                crLines += 1
                if crLines <= perKindLimit {
                    out.append(Finding(.error, "lone-cr", "a carriage return inside the line (\(crInLine)): a record line never holds one; two records joined by a CR line end?", line: line))
                }
            }
            nulInLine = 0; crInLine = 0
        }
        var i = 0
        while i < n {
            let b = p[i]
            if b == 0x0A {
                if i > lineStart && p[i - 1] == 0x0D {
                    crlf += 1; crInLine -= 1
                    if firstCRLF == nil { firstCRLF = line }
                } else {
                    lf += 1
                    if firstLF == nil { firstLF = line }
                }
                endLine(i)
                line += 1
                lineStart = i + 1
            } else if b == 0 {
                nulInLine += 1
            } else if b == 0x0D {
                crInLine += 1
            }
            i += 1
        }
        if lineStart < n { endLine(n) }
        if nulLines > perKindLimit { out.append(Finding(.error, "nul-bytes", "NUL bytes on \(nulLines) lines in all (the first \(perKindLimit) are listed)")) }
        if crLines > perKindLimit { out.append(Finding(.error, "lone-cr", "carriage returns inside \(crLines) lines in all (the first \(perKindLimit) are listed)")) }
        if crlf > 0 && lf > 0 {
            // Name the first line of the rarer style: that is where the file changed hands.
            let (fewer, first, style) = crlf <= lf ? (crlf, firstCRLF!, "CR LF") : (lf, firstLF!, "LF")
            out.append(Finding(.warning, "mixed-line-ends", "mixed line ends: \(crlf) line\(crlf == 1 ? "" : "s") end\(crlf == 1 ? "s" : "") in CR LF and \(lf) in LF; the first of the \(fewer) \(style) line\(fewer == 1 ? "" : "s") is here (edited or concatenated on another system?)", line: first))
        }
        return out
    }

    /// Connections as the `open`/`close` records describe them, from the index alone; the
    /// recorder's own loss reports (gap notes, the trailer's `dropped`).
    static func structureFindings(_ r: Recording) -> [Finding] {
        var out: [Finding] = []
        var openAt: [UInt32: Int] = [:]
        var closedAt: [UInt32: Int] = [:]
        var seen: Set<UInt32> = []
        var afterCloseTold: Set<UInt32> = []
        var noConnectionTold = false
        for i in 0..<r.count {
            let c = r.connection(i), line = r.line(i)
            switch r.kind(i) {
            case .open:
                if let o = openAt[c] {
                    out.append(Finding(.warning, "reopened", "connection \(c) opens again, but it has been open since line \(o) with no close between", record: i, line: line))
                } else if let cl = closedAt[c] {
                    out.append(Finding(.warning, "connection-reused", "connection \(c) opens again after its close on line \(cl): a recorder numbers each connection once", record: i, line: line))
                }
                openAt[c] = line
                closedAt[c] = nil
                afterCloseTold.remove(c)
            case .close:
                if let cl = closedAt[c] {
                    out.append(Finding(.warning, "closed-twice", "connection \(c) closes again (it closed on line \(cl))", record: i, line: line))
                } else if openAt[c] == nil && !seen.contains(c) {
                    out.append(Finding(.info, "close-without-open", "connection \(c) closes but nothing of it came before (it was open where the file begins)", record: i, line: line))
                }
                closedAt[c] = line
                openAt[c] = nil
            case .note:
                if let rec = try? r.record(at: i), case .note(let text, let data) = rec.body, data["gap_records"] != nil || data["gap_bytes"] != nil {
                    out.append(Finding(.warning, "gap", "the recorder lost records here: \(text)", record: i, line: line))
                }
            default:
                if c == 0 && !noConnectionTold {
                    noConnectionTold = true
                    out.append(Finding(.warning, "message-without-connection", "a message on connection 0, which is for records about no connection", record: i, line: line))
                } else if let cl = closedAt[c], !afterCloseTold.contains(c) {
                    afterCloseTold.insert(c)
                    out.append(Finding(.warning, "after-close", "a message on connection \(c) after its close on line \(cl)", record: i, line: line))
                }
            }
            seen.insert(c)
        }
        if let t = r.trailer, t.dropped > 0 {
            out.append(Finding(.warning, "recorder-dropped", "the trailer says the recorder dropped \(t.dropped) record\(t.dropped == 1 ? "" : "s") it could not write", line: r.trailerLine))
        }
        return out
    }

    /// `doctor --json` (docs/JSON.md): the `validate --json` shape plus `damaged`.
    public static func json(_ report: Report, path: String, records: Int, schema: SchemaChoice? = nil) -> JSONValue {
        guard case .object(var o) = RecordingValidation.json(report.findings, path: path, schema: schema) else { return .null }
        o["records"] = .int(records)
        o["damaged"] = .bool(report.damaged)
        return .object(o)
    }
}
