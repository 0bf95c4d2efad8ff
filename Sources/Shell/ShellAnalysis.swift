import Analysis
import Options
import QMP
import Recording

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The shell's `analyze`, `plot` and `triage`: the analyses of the `Analysis` module run over
/// the recording (or a span of it) and shown at the terminal's width. `triage` numbers its
/// findings and lists their records; `goto #N` then jumps to one (the investigation loop).
///
/// Example: `analyze balloon --from 10s --to #500`, `plot rtc --here`, `triage 10`,
/// `plot triage --svg incident.svg` (the incident as one picture, findings numbered as in `triage`).
extension ShellSession {
    /// The options shared by the three commands, parsed from the words after the command.
    struct AnalysisArguments {
        var name: String?
        /// The span (ns since the start), resolved from --from, --to and --here.
        var from: Int64?
        var to: Int64?
        var json = false
        var limit: Int?
        /// `plot ... --svg FILE`: write the SVG there instead of drawing in the terminal.
        var svg: String?
    }

    private var analysisColors: Bool { colorOverride ?? out.colors }

    /// `NAME [--from T] [--to T] [--here] [--json]`; `triage` takes `[N]` instead of a name;
    /// `plot` takes `--svg FILE` instead of `--json`.
    func parseAnalysisArguments(_ arg: String, command: String, wantsName: Bool) throws(ShellError) -> AnalysisArguments {
        var a = AnalysisArguments()
        var span = TimeSpan()
        var words = arg.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        func value(_ option: String) throws(ShellError) -> String {
            guard !words.isEmpty else { throw ShellError("\(command): \(option) needs a time, e.g. \(option) 10s, \(option) #120 or a mark") }
            return words.removeFirst()
        }
        while !words.isEmpty {
            let w = words.removeFirst()
            switch w {
            case "--from": span.from = try analysisTime(try value(w))
            case "--to": span.to = try analysisTime(try value(w))
            case "--here":
                try requireAnalysisRecords()
                span.to = TimeArgument(record: cursor)
            case "--json" where command != "plot": a.json = true
            case "--svg" where command == "plot":
                guard !words.isEmpty, !words[0].hasPrefix("--") else {
                    throw ShellError("plot: --svg needs a file name, e.g. plot triage --svg incident.svg")
                }
                a.svg = words.removeFirst()
            default:
                if w.hasPrefix("--") {
                    let options = ["--from", "--to", "--here", command == "plot" ? "--svg" : "--json"]
                    throw ShellError("\(command): unknown option '\(w)'\(Suggestions.didYouMean(w, among: options)) (options: --from T, --to T, --here\(command == "plot" ? ", --svg FILE" : ", --json"))")
                }
                if wantsName, a.name == nil {
                    a.name = w
                } else if !wantsName, a.limit == nil, let n = Int(w), n > 0 {
                    a.limit = n
                } else {
                    throw ShellError("\(command): unexpected '\(w)'; usage: \(ShellSession.spec(command)?.usage ?? command)")
                }
            }
        }
        // As the command line's --from/--to (Options), against the cursor for relative times.
        do {
            let resolved = try span.resolve(in: recording, current: cursor)
            (a.from, a.to) = (resolved.start, resolved.end)
        } catch {
            throw ShellError("\(command): --to is before --from")
        }
        return a
    }

    private func requireAnalysisRecords() throws(ShellError) {
        if recording.isEmpty { throw ShellError("the recording has no records") }
    }

    /// A time for --from/--to: a time, `#N`, or a mark (its record).
    private func analysisTime(_ text: String) throws(ShellError) -> TimeArgument {
        try requireAnalysisRecords()
        if let m = marks.mark(named: text), m.record < recording.count { return TimeArgument(record: m.record, text: text) }
        let spec: TimeSpec
        do { spec = try TimeSpec.parse(text) } catch {
            throw ShellError("'\(text)' is neither a time, a record number nor a mark: \(error.reason); e.g. 12.5s, @120, 10:00:05")
        }
        if case .record(let n) = spec, n >= recording.count {
            throw ShellError("record #\(n) is out of range; the recording has records #0 to #\(recording.count - 1)")
        }
        return TimeArgument(spec: spec, text: text)
    }

    private func runAnalysis(_ name: String, _ a: AnalysisArguments) throws(ShellError) -> AnalysisReport {
        do {
            return try Analyses.run(name, on: recording, from: a.from, to: a.to)
        } catch {
            throw ShellError(error.description)
        }
    }

    private func analysisName(_ a: AnalysisArguments, command: String) throws(ShellError) -> String {
        guard let name = a.name else {
            throw ShellError("\(command) needs an analysis: \(Analyses.names.joined(separator: ", "))")
        }
        guard Analyses.summary(of: name) != nil else {
            throw ShellError("unknown analysis '\(name)'\(Suggestions.didYouMean(name, among: Analyses.names)) (analyses: \(Analyses.names.joined(separator: ", ")))")
        }
        return name
    }

    /// `analyze NAME [--from T] [--to T] [--here] [--json]`: the analysis's table (or JSON).
    func analyze(_ arg: String) throws(ShellError) {
        let a = try parseAnalysisArguments(arg, command: "analyze", wantsName: true)
        let report = try runAnalysis(try analysisName(a, command: "analyze"), a)
        out.write(a.json ? report.json.serialized(.pretty(indent: 2)) + "\n" : report.table(colors: analysisColors, width: out.width))
    }

    /// `plot NAME [--from T] [--to T] [--here] [--svg FILE]`: the series as a terminal chart, as
    /// wide as the terminal; `plot triage` draws the incident's timeline (findings' numbers,
    /// run state, events per lane, then the findings, numbered as in `triage`). With
    /// `--svg FILE` the same picture is written as SVG (for triage: flags, band, lanes and
    /// legends, docs/ANALYSIS.md) and the shell says where.
    func plot(_ arg: String) throws(ShellError) {
        let a = try parseAnalysisArguments(arg, command: "plot", wantsName: true)
        let name = try analysisName(a, command: "plot")
        guard PlotSeries.about(name) != nil else {
            throw ShellError("'\(name)' is not a series and has no plot; plots: \(PlotSeries.names.joined(separator: ", ")) ('analyze \(name)' shows its table)")
        }
        let report = try runAnalysis(name, a)
        let noData = ShellError(PlotSeries.noData(name, in: a.from != nil || a.to != nil ? "this range" : "this recording"))
        if let path = a.svg {
            guard let svg = report.svg() else { throw noData }
            guard path != recording.path else { throw ShellError("refusing to overwrite the recording being read") }
            try Self.writeFile(svg, to: path)
            let what = name == "triage"
                ? "the triage timeline (\(report.findings.count) finding\(report.findings.count == 1 ? "" : "s"), numbered as in 'triage')"
                : "the \(name) plot"
            out.write("wrote \(what) to \(path)\n")
            return
        }
        guard let chart = report.terminalChart(width: out.width, height: 16) else { throw noData }
        out.write(chart)
    }

    /// Writes `text` to `path` (created or truncated), whole.
    static func writeFile(_ text: String, to path: String) throws(ShellError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw ShellError("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ShellError("cannot write \(path): \(String(cString: strerror(errno)))")
            }
            off += n
        }
    }

    /// `triage [N] [--from T] [--to T] [--here] [--json]`: the findings of every analysis, grouped
    /// and ranked, numbered, each with the records to `goto`.
    func triage(_ arg: String) throws(ShellError) {
        let a = try parseAnalysisArguments(arg, command: "triage", wantsName: false)
        let report = try runAnalysis("triage", a)
        if a.json {
            out.write(report.json.serialized(.pretty(indent: 2)) + "\n")
            return
        }
        let f = report.findings
        triageFindings = f.map { finding in
            var summary = "\(finding.severity.rawValue) \(finding.analysis): \(finding.message)"
            if summary.count > 100 { summary = String(summary.prefix(99)) + "…" }
            return (summary, finding.records)
        }
        let bySeverity = FindingSeverity.allCases.map { sev in
            let n = f.filter { $0.severity == sev }.count
            return "\(n) \(sev.rawValue)\(n == 1 || sev == .info ? "" : "s")"
        }.joined(separator: ", ")
        let occurrences = f.reduce(0) { $0 + $1.count }
        let c = report.context
        out.write("triage of #\(c.firstRecord)..#\(max(c.firstRecord, c.endRecord - 1)) (\(report.clock.rawValue) clock): \(bySeverity)"
                  + " (\(f.count) finding\(f.count == 1 ? "" : "s") grouping \(occurrences) occurrence\(occurrences == 1 ? "" : "s"))\n")
        if f.isEmpty { return }
        out.write(report.findingsTable(colors: analysisColors, width: out.width, limit: a.limit))
        if let n = a.limit, n < f.count { out.write("… \(f.count - n) more ('triage' without a number lists them all)\n") }
        if let first = f.first?.records.first {
            out.write("'goto N' jumps to finding N ('goto 1' is @\(first), its first record); 'goto @REC' to any record listed\n")
        }
    }
}

/// The analyses that draw (`plot`, `analyze --svg/--chart`), and what a recording needs for
/// each: "no balloon data" rather than "not a series" when it is only the data that is missing.
public enum PlotSeries {
    public static let names = ["balloon", "rtc", "runstate", "triage"]

    /// What the plot of `name` is drawn from; nil when `name` has no plot.
    public static func about(_ name: String) -> String? {
        switch name {
        case "balloon": return "BALLOON_CHANGE events or query-balloon replies"
        case "rtc": return "RTC_CHANGE events"
        case "runstate": return "run-state changes (STOP, RESUME, SHUTDOWN, ... or query-status replies)"
        case "triage": return "records"
        default: return nil
        }
    }

    /// `no balloon data in this recording (no BALLOON_CHANGE events or query-balloon replies)`.
    public static func noData(_ name: String, in place: String) -> String {
        let what = name == "rtc" ? "RTC" : name == "runstate" ? "run-state" : name
        return "no \(what) data in \(place) (no \(about(name) ?? "records")): nothing to plot"
    }
}
