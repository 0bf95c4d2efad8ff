import Analysis
import ArgumentParser
import QMP
import Recording

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
        discussion: """
            Analyses:
            \(AnalyzeCommand.analysisList)

            Each output says which clock it uses (the recorder's receive time or
            QEMU's event timestamp). --format json is documented in docs/ANALYSIS.md
            (times as t_ns since the recording's start and as ISO 8601 wall clock).
            --svg writes a standalone plot of the series analyses (balloon, rtc,
            runstate) and, for triage, the incident as one timeline: run state,
            every event in lanes, error replies, and the findings as numbered flags
            (numbered as in the table); --chart prints a terminal chart of them.

            Exit status: 0 success, 2 unreadable recording, 64 bad usage (unknown
            analysis, no plot for that analysis).
            """)

    /// The analyses with their summaries, wrapped to fit 80 columns (the help is not rewrapped nicely).
    static var analysisList: String {
        Analyses.names.map { name in
            var lines = ["  " + name]
            var line = "     "
            for word in (Analyses.summary(of: name) ?? "").split(separator: " ") {
                if line.count + word.count + 1 > 78 { lines.append(line); line = "     " }
                line += " " + word
            }
            lines.append(line)
            return lines.joined(separator: "\n")
        }.joined(separator: "\n")
    }

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json, csv }

    @Flag(help: "List the analyses and exit.")
    var list = false

    @Argument(help: "The analysis: \(Analyses.names.joined(separator: ", ")).",
              completion: .list(Analyses.names))
    var name: String?

    @Argument(help: "The recording (.qmprec or .qmprec.gz).", completion: .file(extensions: ["qmprec", "gz"]))
    var file: String?

    @Option(help: "Only records from this time (see 'qmpreplay --help' for the time syntax).")
    var from: TimeSpec?

    @Option(help: "Only records up to this time (inclusive).")
    var to: TimeSpec?

    @Option(help: "Output format: table, json or csv.")
    var format: Format = .table

    @Option(help: "Also write an SVG plot to this file (balloon, rtc, runstate; triage: the incident's timeline).", completion: .file(extensions: ["svg"]))
    var svg: String?

    @Flag(help: "Print a terminal chart instead of the table (balloon, rtc, runstate, triage).")
    var chart = false

    func run() throws {
        let out = Output.stdout
        if list {
            for n in Analyses.names { out.line(n.padding(15) + (Analyses.summary(of: n) ?? "")) }
            out.flush()
            return
        }
        guard let name else { throw fail("analyze: name an analysis (\(Analyses.names.joined(separator: ", "))) or use --list", code: Exit.usage) }
        guard Analyses.summary(of: name) != nil else {
            throw fail("analyze: unknown analysis '\(name)'; valid analyses: \(Analyses.names.joined(separator: ", "))", code: Exit.usage)
        }
        guard let file else { throw fail("analyze: missing the recording (qmpreplay analyze \(name) FILE)", code: Exit.usage) }
        let r = try openRecording(file, strict: false)
        let lo: Int64? = from.map { spec in
            if case .record(let n) = spec { return r.isEmpty ? 0 : r.time(min(n, r.count - 1)) }
            return spec.resolveTime(in: r)
        }
        let hi: Int64? = to.map { $0.resolveTime(in: r) }
        let progress = Progress(label: "analyze \(name)", total: r.count)
        let report: AnalysisReport
        do {
            report = try Analyses.run(name, on: r, from: lo, to: hi, progress: r.count > 200_000 ? { done, _ in progress.update(done) } : nil)
        } catch {
            throw fail(error.description, code: Exit.usage)
        }
        progress.finish()
        if let svg {
            guard let text = report.svg() else {
                throw fail("analyze: '\(name)' is not a series and has no plot (plots: balloon, rtc, runstate, triage)", code: Exit.usage)
            }
            do {
                try writeText(text, to: svg)
            } catch {
                throw fail("cannot write \(svg): \(error)")
            }
        }
        if chart {
            guard let c = report.terminalChart(width: terminalColumns(), height: 14) else {
                throw fail("analyze: '\(name)' is not a series and has no chart (charts: balloon, rtc, runstate, triage)", code: Exit.usage)
            }
            out.write(c)
            out.flush()
            return
        }
        switch format {
        case .json:
            // Bytes straight to the output: no 20-30 MB String to build and validate on the way.
            out.writeLarge(report.json.serializedBytes(.pretty(indent: 2)))
            out.line()
        case .csv: out.write(report.csv())
        case .table: out.write(report.table(colors: out.colors, width: terminalColumns()))
        }
        out.flush()
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

/// The terminal's width when standard output is one, else $COLUMNS, else 100.
func terminalColumns() -> Int {
    var ws = winsize()
    if isatty(1) == 1, ioctl(1, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col > 20 { return Int(ws.ws_col) }
    if let c = getenv("COLUMNS").flatMap({ Int(String(cString: $0)) }), c > 20 { return c }
    return 100
}
