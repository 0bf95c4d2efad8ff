import QMP
import Recording

/// An unknown analysis name, with the valid ones (for a usage error).
public struct UnknownAnalysisError: Error, CustomStringConvertible, Sendable {
    public let name: String
    public var description: String {
        "unknown analysis '\(name)'; valid analyses: \(Analyses.names.joined(separator: ", "))"
    }
}

/// The one entry point for every analysis: by name, for the CLI, the shell and the notebooks.
///
/// Example: `try Analyses.run("balloon", on: recording).json`.
public enum Analyses {
    struct Entry: Sendable {
        var name: String
        var summary: String
        var clock: AnalysisClock
        /// It pairs replies with commands (its interest or the VM model wants some).
        var pairs: Bool
        /// It wants every command (its pass reads every record).
        var allCommands: Bool
        var make: @Sendable (AnalysisContext, Int) -> AnalysisBox
    }

    static func entry<A: Analysis>(_ type: A.Type) -> Entry {
        let i = A.interest
        return Entry(name: A.name, summary: A.summary, clock: A.clock,
                     pairs: A.usesModel || !i.commands.isEmpty || i.allCommands || i.errorReplies,
                     allCommands: i.allCommands) { ctx, n in TypedBox(A(context: ctx), index: n) }
    }

    /// The analyses triage combines, in the order they appear in its output.
    static let entries: [Entry] = [
        entry(BalloonAnalysis.self),
        entry(RTCAnalysis.self),
        entry(NICRxFilterAnalysis.self),
        entry(RunstateAnalysis.self),
        entry(BlockJobsAnalysis.self),
        entry(SessionsAnalysis.self),
        entry(CommandsAnalysis.self),
        entry(ThrottleAnalysis.self),
        entry(IncidentsAnalysis.self),
    ]

    /// Every analysis name, `triage` last.
    public static var names: [String] { entries.map(\.name) + [TriageAnalysis.name] }

    /// Whether analysis `name` pairs replies with commands, and so reads every command's and
    /// reply's id key (`Recording.idKeys()`, docs/INDEX.md "Reply pairing"): a caller opening
    /// a recording for it lets the index be stored once, with the keys.
    public static func pairsReplies(_ name: String) -> Bool {
        name == TriageAnalysis.name ? entries.contains(where: \.pairs) : entries.first { $0.name == name }?.pairs ?? false
    }

    /// For opening a recording for analysis `name` (`RecordingOptions.replyPartners`): what
    /// makes the reply partners at open, when the analysis pairs replies and its pass over a
    /// whole recording can be sparse (it does not want every command: not `commands`,
    /// `incidents` or `triage`); nil otherwise (a pass over every record keeps them anyway).
    public static func replyPartners(for name: String) -> (@Sendable (Recording, IDKeys) -> ReplyPartners)? {
        guard let e = entries.first(where: { $0.name == name }), e.pairs, !e.allCommands else { return nil }
        return InputDriver.replyPartners
    }

    /// One line describing an analysis; `nil` for an unknown name.
    public static func summary(of name: String) -> String? {
        if name == TriageAnalysis.name { return TriageAnalysis.summary }
        return entries.first { $0.name == name }?.summary
    }

    /// Runs an analysis over `recording`, limited to [from, to] (ns since the start).
    /// `progress` is called with (records done, records in range) now and then.
    public static func run(_ name: String, on recording: Recording, from: Int64? = nil, to: Int64? = nil,
                           progress: ((Int, Int) -> Void)? = nil) throws(UnknownAnalysisError) -> AnalysisReport {
        try run(name, on: recording, from: from, to: to, progress: progress, sparse: true)
    }

    /// As `run`; `sparse: false` makes the pass read every record even when the recording's
    /// reply partners would let it skip (`AnalysisRunner.sparse`), for the tests.
    static func run(_ name: String, on recording: Recording, from: Int64? = nil, to: Int64? = nil,
                    progress: ((Int, Int) -> Void)?, sparse: Bool) throws(UnknownAnalysisError) -> AnalysisReport {
        let context = AnalysisContext(recording: recording, from: from, to: to)
        if name == TriageAnalysis.name {
            let boxes = entries.enumerated().map { $0.element.make(context, $0.offset) }
            AnalysisRunner(context: context, boxes: boxes, sparse: sparse).run(progress: progress)
            var parts: [(name: String, clock: AnalysisClock, result: any AnalysisResult)] = []
            for (e, b) in zip(entries, boxes) { parts.append((e.name, e.clock, b.finish())) }
            let result = TriageAnalysis.combine(parts, context: context)
            return AnalysisReport(name: TriageAnalysis.name, summary: TriageAnalysis.summary, clock: .receive,
                                  context: context, result: result)
        }
        guard let e = entries.first(where: { $0.name == name }) else { throw UnknownAnalysisError(name: name) }
        let box = e.make(context, 0)
        AnalysisRunner(context: context, boxes: [box], sparse: sparse).run(progress: progress)
        return AnalysisReport(name: e.name, summary: e.summary, clock: e.clock, context: context, result: box.finish())
    }
}
