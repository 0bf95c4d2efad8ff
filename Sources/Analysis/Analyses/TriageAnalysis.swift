import QMP
import Recording

/// `triage`: every other analysis in one pass over the recording, their findings grouped
/// (one per analysis, code and subject: "NIC vnet0: ...", "rtc: guest set its clock 412
/// times ...", see `FindingGroup`) and ranked (errors, then warnings, then notes; within
/// each, by impact), each with the records to jump to. In the shell, `triage` then
/// `goto #N` is the investigation loop.
public enum TriageAnalysis {
    public static let name = "triage"
    public static let summary = "all analyses in one pass: ranked findings with the record numbers to jump to"

    static func combine(_ parts: [(name: String, clock: AnalysisClock, result: any AnalysisResult)], context: AnalysisContext) -> TriageResult {
        TriageResult(context: context, parts: parts.map { TriageResult.Part(name: $0.name, clock: $0.clock, result: $0.result) })
    }
}

public struct TriageResult: StreamedJSONResult {
    public struct Part: Sendable {
        public var name: String
        public var clock: AnalysisClock
        public var result: any AnalysisResult
    }

    public let context: AnalysisContext
    public let parts: [Part]
    /// Each part's findings grouped (by that analysis's own wording), in `parts` order.
    let partFindings: [[AnalysisFinding]]
    /// All groups, ranked.
    public let groupedFindings: [AnalysisFinding]

    init(context: AnalysisContext, parts: [Part]) {
        self.context = context
        self.parts = parts
        partFindings = parts.map { $0.result.groupedFindings }
        groupedFindings = partFindings.flatMap { $0 }.sorted(by: AnalysisFinding.ranked)
    }

    /// Already grouped: a group of one per entry.
    public var findings: [AnalysisFinding] { groupedFindings }

    /// Each part's own members stream under `results.<part>`: the document of a 47-million
    /// record recording is written without ever being a tree (docs/INDEX.md, "Memory").
    public var streamedMembers: [StreamedMember] {
        var counts = JSONObject()
        for s in FindingSeverity.allCases { counts[s.rawValue] = .int(groupedFindings.filter { $0.severity == s }.count) }
        var occurrences = JSONObject()
        for s in FindingSeverity.allCases {
            occurrences[s.rawValue] = .int(groupedFindings.filter { $0.severity == s }.reduce(0) { $0 + $1.count })
        }
        let context = self.context
        let results: [StreamedMember] = zip(parts, partFindings).map { p, f in
            .object(p.name, [.value("clock", .string(p.clock.rawValue))] + p.result.membersToStream
                + [.array("findings", count: f.count, element: { f[$0].json(context) })])
        }
        return [.value("counts", .object(counts)), .value("occurrences", .object(occurrences)), .object("results", results)]
    }

    public func table(colors: Bool, width: Int) -> String {
        let f = groupedFindings
        let st = TextStyle(colors)
        let total = f.reduce(0) { $0 + $1.count }
        var s = "  " + FindingSeverity.allCases.map { sev in
            let n = f.filter { $0.severity == sev }.count
            return "\(n) \(sev.rawValue)\(n == 1 || sev == .info ? "" : "s")"
        }.joined(separator: ", ")
        s += " (\(f.count) finding\(f.count == 1 ? "" : "s") grouping \(total) occurrence\(total == 1 ? "" : "s"))\n\n"
        s += st.bold("Findings, most important first") + "\n"
        s += FindingsTable.render(f, colors: colors, width: width, context: context)
        return s
    }

    public func csv() -> String {
        var c = CSV(["rank", "severity", "analysis", "code", "t_ns", "wall", "message", "records", "subject", "count", "end_ns", "record_count"])
        for (n, f) in groupedFindings.enumerated() {
            c.add(["\(n + 1)", f.severity.rawValue, f.analysis, f.code, "\(f.time)", context.wall(f.time) ?? "", f.message,
                   f.records.map { "\($0)" }.joined(separator: " "), f.subject, "\(f.count)", "\(f.end)", "\(f.recordCount)"])
        }
        return c.string
    }
}
