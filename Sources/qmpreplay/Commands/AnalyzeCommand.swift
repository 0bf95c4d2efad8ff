import Analysis
import ArgumentParser
import Fleet
import Options
import QMP
import Recording
import Shell

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `qmpreplay analyze NAME FILE`: one analysis (or `triage`) over a recording, as a table,
/// JSON (docs/ANALYSIS.md), CSV, an SVG plot or a terminal chart.
struct AnalyzeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyze",
        abstract: "Run an analysis over a recording (balloon, rtc, nic-rx-filter, runstate, ..., triage).",
        usage: HelpText.usage("""
            qmpreplay analyze NAME FILE [--from T] [--to T] [--format table|json|csv] [--svg FILE] [--chart]
            qmpreplay analyze NAME FILE|DIR|PATTERN... [--format jsonl|table] [--findings-only] [--jobs N]
            qmpreplay analyze --list
            """),
        discussion: HelpText.format("""
            Analyses:
            \(AnalyzeCommand.analysisList)

            Each output says which clock it uses (the recorder's receive time or QEMU's event
            timestamp). --format json is documented in docs/ANALYSIS.md (times as t_ns since the
            recording's start and as ISO 8601 wall clock). --svg writes a standalone plot of the
            series analyses (balloon, rtc, runstate) and, for triage, the incident as one
            timeline: run state, every event in lanes, error replies, and the findings as
            numbered flags (numbered as in the table); --chart prints a terminal chart of them.
            Tables are as wide as the terminal, and not cut when the output is not a terminal.

            --from and --to take the time syntax of 'qmpreplay --help': -2s, 12.5s, @160 (a
            record, as triage lists them; #160 works too when quoted).

            Several recordings (files, directories searched for *.qmprec and *.qmprec.gz,
            quoted patterns): each is analysed on its own, on every core (--jobs), and gives one
            JSON line (--format jsonl, the default then) naming its file, host, VM and time span
            with the analysis's JSON document as "result" (docs/FLEET.md; DuckDB and Spark read
            it as it is), or one table line; a damaged file is one error line and the run goes on.

            Examples:
              qmpreplay analyze triage rec.qmprec
              qmpreplay analyze triage /var/log/qmp/ > fleet.jsonl
              qmpreplay analyze runstate rec.qmprec --from @13 --to -1s
              qmpreplay analyze balloon rec.qmprec --svg balloon.svg

            Exit status: 0 success (also when a series has no data to plot: a warning says so
            and no SVG or chart is made); 2 unreadable recording (with several: any of them, after
            all were read) or unwritable --svg file; 64
            bad command line (unknown analysis, a time that does not parse, --to before --from,
            --svg or --chart for an analysis that is not a series).
            """))

    /// The analyses with their summaries, one item each (laid out by HelpText).
    static var analysisList: String {
        let width = (Analyses.names.map(\.count).max() ?? 0) + 2
        return Analyses.names.map { "  " + $0.padding(width) + " " + (Analyses.summary(of: $0) ?? "") }.joined(separator: "\n")
    }

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json, csv, jsonl }

    @Flag(help: "List the analyses and exit.")
    var list = false

    @Argument(help: "The analysis: \(Analyses.names.joined(separator: ", ")).",
              completion: .list(Analyses.names))
    var name: String?

    @Argument(help: "The recording (.qmprec or .qmprec.gz); several, directories or patterns for one JSON line each.",
              completion: .file(extensions: ["qmprec", "gz"]))
    var files: [String] = []

    @OptionGroup var span: TimeSpanOptions

    @Option(help: "Output format: table, json or csv; jsonl (one line per recording, the default for several).")
    var format: Format?

    @OptionGroup var fleet: FleetOptions

    @OptionGroup var cacheOptions: CacheOptions

    @Option(help: "Also write an SVG plot to this file (balloon, rtc, runstate; triage: the incident's timeline).", completion: .file(extensions: ["svg"]))
    var svg: String?

    @Flag(help: "Print a terminal chart instead of the table (balloon, rtc, runstate, triage).")
    var chart = false

    @Flag(help: "JSON and JSON Lines keep the envelope, counts and findings only (not the series): a small line per recording in a fleet.")
    var findingsOnly = false

    func run() throws {
        let out = Output.stdout
        if list {
            for n in Analyses.names { out.line(n.padding(15) + (Analyses.summary(of: n) ?? "")) }
            out.flush()
            return
        }
        guard let name else { throw fail("analyze: name an analysis (\(Analyses.names.joined(separator: ", "))) or use --list", code: Exit.usage) }
        guard Analyses.summary(of: name) != nil else {
            throw fail("analyze: unknown analysis '\(name)'\(Suggestions.didYouMean(name, among: Analyses.names)) (analyses: \(Analyses.names.joined(separator: ", ")))", code: Exit.usage)
        }
        guard let file = files.first else { throw fail("analyze: missing the recording (qmpreplay analyze \(name) FILE)", code: Exit.usage) }
        if FleetRun.isFleet(files, jsonl: format == .jsonl) {
            return try runFleet(name)
        }
        let format = self.format ?? .table
        // The reply partners are made at open for a pass over the whole recording only.
        let whole = span.from == nil && span.to == nil
        let r = try openRecording(file, strict: false, cache: cacheOptions.cache, pairsReplies: Analyses.pairsReplies(name),
                                  replyPartners: whole ? Analyses.replyPartners(for: name) : nil)
        let resolved = try resolveSpan(span, in: r)
        if (svg != nil || chart), PlotSeries.about(name) == nil {
            throw fail("analyze: '\(name)' is not a series and has no plot or chart (plots: \(PlotSeries.names.joined(separator: ", ")))", code: Exit.usage)
        }
        let progress = Progress(label: "analyze \(name)", total: r.count)
        let report: AnalysisReport
        do {
            report = try Analyses.run(name, on: r, from: resolved.start, to: resolved.end, progress: r.count > 200_000 ? { done, _ in progress.update(done) } : nil)
        } catch {
            throw fail(error.description, code: Exit.usage)
        }
        progress.finish()
        if let svg {
            guard let text = report.svg() else {
                warn(PlotSeries.noData(name, in: file) + "; no SVG written")
                return
            }
            do {
                try writeText(text, to: svg)
            } catch {
                throw fail("cannot write \(svg): \(error)")
            }
        }
        if chart {
            guard let c = report.terminalChart(width: terminalColumns() ?? 100, height: 14) else {
                warn(PlotSeries.noData(name, in: file))
                return
            }
            out.write(c)
            out.flush()
            return
        }
        switch format {
        case .json:
            // Bytes straight to the output in chunks: no tree of the whole document, no
            // 20-30 MB String to build and validate on the way.
            report.writeJSON(indent: 2, only: findingsOnly ? AnalyzeCommand.findingsMembers : nil) { out.writeLarge($0) }
            out.line()
        case .csv: out.write(report.csv())
        case .table: out.write(report.table(colors: out.colors, width: terminalColumns() ?? 0))
        case .jsonl: break
        }
        out.flush()
    }

    /// The members `--findings-only` keeps of an analysis document (docs/ANALYSIS.md): the
    /// common envelope, triage's counts, and the ranked findings.
    static let findingsMembers: Set<String> = ["analysis", "schema", "file", "clock", "clock_note", "start", "start_us", "range",
                                               "counts", "occurrences", "findings"]

    /// One analysis over many recordings (docs/FLEET.md): one JSON or table line each.
    private func runFleet(_ name: String) throws {
        guard svg == nil, !chart else { throw fail("analyze: --svg and --chart take one recording (several give one JSON line each)", code: Exit.usage) }

        let lineFormat: FleetRun.Format
        switch format ?? .jsonl {
        case .jsonl: lineFormat = .jsonl
        case .table: lineFormat = .table
        case .json, .csv: throw fail("analyze: several recordings give one line each: use --format jsonl (or table)", code: Exit.usage)
        }
        let span = self.span.span, only = findingsOnly
        try FleetRun(command: "analyze", analysis: name, format: lineFormat, strict: false, jobs: fleet.jobs, cache: cacheOptions.cache).run(files) { _, r in
            let resolved = try span.resolve(in: r)
            let report = try Analyses.run(name, on: r, from: resolved.start, to: resolved.end)
            // The document straight to bytes: a fleet line never holds its result as a tree.
            return FleetAnswer(resultBytes: report.jsonBytes(.compact, only: only ? AnalyzeCommand.findingsMembers : nil),
                               summary: SeverityTally(report.findings).text)
        }
    }
}

struct WriteError: Error, CustomStringConvertible {
    var description: String
}

func writeText(_ text: String, to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw WriteError(description: String(cString: strerror(errno))) }
    defer { close(fd) }
    var bytes = Array(text.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
        if n < 0 { if errno == EINTR { continue }; throw WriteError(description: String(cString: strerror(errno))) }
        off += n
    }
}

/// The terminal's width when standard output is one, else $COLUMNS when it is exported; nil
/// when output goes to a pipe or file, where tables are not cut.
func terminalColumns() -> Int? {
    var ws = winsize()
    if isatty(1) == 1, ioctl(1, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col > 20 { return Int(ws.ws_col) }
    if let c = getenv("COLUMNS").flatMap({ Int(String(cString: $0)) }), c > 20 { return c }
    return nil
}
