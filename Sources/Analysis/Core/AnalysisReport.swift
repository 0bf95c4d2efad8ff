import QMP
import Recording

/// How much a finding matters; triage ranks errors first.
public enum FindingSeverity: String, Sendable, Comparable, CaseIterable {
    case error, warning, info

    var rank: Int {
        switch self {
        case .error: return 0
        case .warning: return 1
        case .info: return 2
        }
    }

    public static func < (a: FindingSeverity, b: FindingSeverity) -> Bool { a.rank < b.rank }
}

/// Something an analysis wants a person to look at, with the records to jump to.
///
/// Analyses report one finding per occurrence; reports group them (`FindingGroup`) by
/// analysis, code, subject and severity, so that what a person reads is one line per kind
/// of problem and subject, with how often it happened and when.
///
/// Example: `warning balloon/flapping "balloon flapping for 15m00s between 1.0 GiB and
/// 960.0 MiB" records [812, 1650]`.
public struct AnalysisFinding: Sendable, Hashable {
    public var severity: FindingSeverity
    /// The analysis that found it (`runstate`).
    public var analysis: String
    /// A stable code (`paused`, `flapping`, `invisible-changes`, ...), documented in ANALYSIS.md.
    public var code: String
    /// What it is about: a NIC (`vnet0`), a job type, a device, a command, a throttle key
    /// (`""` when the analysis has one subject). Findings are grouped by analysis, code and subject.
    public var subject: String
    public var message: String
    /// Record numbers (0-based, `#N`), the most relevant first; for a group, the first
    /// `FindingGroup.recordLimit` of its occurrences, in time order.
    public var records: [Int]
    /// How many records the finding names in all (`records` may be capped).
    public var recordCount: Int
    /// When it happened (ns since the start; receive clock); for a group, the first occurrence.
    public var time: Int64
    /// For a group, the last occurrence (ns since the start); `time` for a single one.
    public var end: Int64
    /// How many occurrences it stands for (1 unless grouped).
    public var count: Int
    /// Size of the impact, for ranking within a severity (seconds affected, count, ...);
    /// for a group, the sum over its occurrences.
    public var weight: Double
    /// The quantity the message is about (seconds paused, an RTC step in seconds, ...),
    /// which a group summarises (total, range); `nil` when there is none.
    public var value: Double?

    public init(_ severity: FindingSeverity, _ analysis: String, _ code: String, _ message: String,
                subject: String = "", records: [Int], time: Int64, weight: Double = 0, value: Double? = nil) {
        self.severity = severity; self.analysis = analysis; self.code = code; self.subject = subject; self.message = message
        self.records = records; self.recordCount = records.count; self.time = time; self.end = time
        self.count = 1; self.weight = weight; self.value = value
    }

    func json(_ ctx: AnalysisContext) -> JSONValue {
        var o = JSONObject()
        o["severity"] = .string(severity.rawValue)
        o["analysis"] = .string(analysis)
        o["code"] = .string(code)
        o["subject"] = .string(subject)
        o["message"] = .string(message)
        o["count"] = .int(count)
        o["records"] = .array(records.prefix(FindingGroup.recordLimit).map { .int($0) })
        o["record_count"] = .int(recordCount)
        o["t_ns"] = .int(time)
        o["wall"] = ctx.wall(time).map { .string($0) } ?? .null
        o["end_ns"] = .int(end)
        o["end_wall"] = ctx.wall(end).map { .string($0) } ?? .null
        o["weight"] = .number(JSONNumber(text: fmt(weight, 3)))
        return .object(o)
    }

    /// Triage order: severity, then impact, then time.
    static func ranked(_ a: AnalysisFinding, _ b: AnalysisFinding) -> Bool {
        if a.severity != b.severity { return a.severity < b.severity }
        if a.weight != b.weight { return a.weight > b.weight }
        if a.time != b.time { return a.time < b.time }
        return (a.analysis, a.code, a.subject) < (b.analysis, b.code, b.subject)
    }
}

/// The result of running one analysis over (a range of) a recording, ready to render.
public struct AnalysisReport: Sendable {
    public var name: String
    public var summary: String
    public var clock: AnalysisClock
    public let context: AnalysisContext
    public let result: any AnalysisResult

    /// The whole JSON document: the common envelope (docs/ANALYSIS.md) and the result.
    public var json: JSONValue {
        var o = envelope
        o.members.append(contentsOf: result.jsonMembers)
        o["findings"] = .array(findings.map { $0.json(context) })
        return .object(o)
    }

    /// The common members every analysis's document starts with (docs/ANALYSIS.md).
    var envelope: JSONObject {
        var o = JSONObject()
        o["analysis"] = .string(name)
        o["schema"] = .int(1)
        o["file"] = .string(context.recording.path)
        o["clock"] = .string(clock.rawValue)
        o["clock_note"] = .string(clock.note)
        o["start"] = context.startMicros.map { .string(WallClock.iso8601(micros: $0)) } ?? .null
        o["start_us"] = context.startMicros.map { .int($0) } ?? .null
        var range = JSONObject()
        range["from_ns"] = .int(context.rangeStart)
        range["to_ns"] = .int(context.rangeEnd)
        range["from_wall"] = context.wall(context.rangeStart).map { .string($0) } ?? .null
        range["to_wall"] = context.wall(context.rangeEnd).map { .string($0) } ?? .null
        range["first_record"] = .int(context.firstRecord)
        range["end_record"] = .int(context.endRecord)
        o["range"] = .object(range)
        return o
    }

    public func table(colors: Bool, width: Int) -> String {
        let st = TextStyle(colors)
        var s = st.bold("\(name)") + " — \(summary)\n"
        s += st.dim("clock: \(clock.rawValue) (\(clock.note))") + "\n"
        let from = context.wall(context.rangeStart) ?? DurationFormat.clock(context.rangeStart)
        let to = context.wall(context.rangeEnd) ?? DurationFormat.clock(context.rangeEnd)
        s += st.dim("range: records #\(context.firstRecord)..<#\(context.endRecord), \(from) .. \(to)") + "\n\n"
        s += result.table(colors: colors, width: width)
        if name != "triage", !findings.isEmpty {
            s += "\n" + st.bold("Findings") + "\n"
            s += FindingsTable.render(findings, colors: colors, width: width, context: context)
        }
        return s
    }

    /// The ranked findings alone, numbered from 1, each with its records (at most `limit`
    /// findings; `nil`: all), as triage shows them; for the shell's `triage`.
    public func findingsTable(colors: Bool, width: Int, limit: Int? = nil) -> String {
        let f = findings
        return FindingsTable.render(limit.map { Array(f.prefix($0)) } ?? f, colors: colors, width: width, context: context)
    }

    public func csv() -> String { result.csv() }
    public func svg() -> String? { result.svg() }
    public func terminalChart(width: Int, height: Int) -> String? { result.terminalChart(width: width, height: height) }
    /// The findings grouped (one per analysis, code, subject and severity) and ranked:
    /// severity, then weight, then time.
    public var findings: [AnalysisFinding] { result.groupedFindings }
}

/// The list of findings (triage's main output, and every analysis's footer): per finding a
/// numbered line with severity, first occurrence and the message (wrapped to the width),
/// then the records to jump to.
///
/// Example:
/// ```
///   1.  error    +00:00:07.887  runstate: VM paused for 10.248s after BLOCK_IO_ERROR on
///                               drive-virtio-disk0 (write)
///                               records @13 @14
/// ```
/// Records are written `@N`, the record-number form that a POSIX shell passes unquoted
/// (`--from @13`; `#13` would start a comment there); the shell takes both.
enum FindingsTable {
    /// `@12 @40 @77 … (2288 records)`: the first records of a finding, and how many there are in all.
    static func records(_ f: AnalysisFinding, limit: Int = 6) -> String {
        var s = f.records.prefix(limit).map { "@\($0)" }.joined(separator: " ")
        if f.recordCount > limit { s += " … (\(f.recordCount) records)" }
        return s
    }

    static func render(_ findings: [AnalysisFinding], colors: Bool, width: Int, context: AnalysisContext) -> String {
        if findings.isEmpty { return "  (nothing to report)\n" }
        let st = TextStyle(colors)
        let numberWidth = "\(findings.count).".count
        let times = findings.map { DurationFormat.clock($0.time) }
        let timeWidth = times.map(\.count).max() ?? 0
        let indent = 2 + numberWidth + 2 + 7 + 2 + timeWidth + 2
        var out = ""
        for (n, f) in findings.enumerated() {
            let sevText = f.severity.rawValue.padded(7)
            let sev: String
            switch f.severity {
            case .error: sev = st.red(sevText)
            case .warning: sev = st.yellow(sevText)
            case .info: sev = st.dim(sevText)
            }
            let pad = String(repeating: " ", count: indent)
            // Width 0: no terminal, no limit (the message stays on one line).
            let text = "\(f.analysis): \(f.message)"
            let lines = width > 0 ? wrap(text, width: max(30, width - indent)) : [text]
            out += "  " + "\(n + 1).".padded(numberWidth) + "  " + sev + "  " + times[n].padded(timeWidth) + "  " + lines[0] + "\n"
            for l in lines.dropFirst() { out += pad + l + "\n" }
            if !f.records.isEmpty { out += pad + st.dim("records " + records(f)) + "\n" }
        }
        return out
    }

    /// Words of `text` in lines of at most `width` characters (a longer word gets a line of its own).
    static func wrap(_ text: String, width: Int) -> [String] {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: false) {
            if !line.isEmpty, line.count + 1 + word.count > width {
                lines.append(line)
                line = String(word)
            } else {
                line += (line.isEmpty ? "" : " ") + word
            }
        }
        lines.append(line)
        return lines
    }
}

extension String {
    /// Padded with spaces on the right to `n` characters.
    func padded(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}
