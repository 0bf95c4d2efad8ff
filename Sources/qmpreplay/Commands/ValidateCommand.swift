import ArgumentParser
import Fleet
import QMP
import Recording

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check a recording against QMP's rules, QEMU's schema and the event catalog.",
        usage: HelpText.usage("""
            qmpreplay validate FILE [--schema FILE] [--json] [--verbose] [--strict]
            qmpreplay validate FILE|DIR|PATTERN... [--format jsonl|table] [--jobs N]
            """),
        discussion: HelpText.format("""
            Checks against the QEMU schema that applies (the recording's own query-qmp-schema
            reply, else the schema shipped for the QEMU version in its greeting, else only the seed
            catalog; --schema FILE names another: a query-qmp-schema reply or a recording holding
            one; 'qmpreplay info' says which applies and why): every event and its data, every
            command and its arguments (unknown command or argument, missing argument, wrong type,
            value outside an enum, exec-oob of a command that does not allow it), every successful
            reply against the command's return type, and use of deprecated or unstable commands,
            arguments, values and events (notes). A command QEMU refused anyway is a note; one QEMU
            accepted is an error (the schema does not describe that QEMU). Also every reply against
            a preceding command id, negotiation order (no command before qmp_capabilities succeeds,
            no event before negotiation), documented follow-ups that never came (BLOCK_IO_ERROR
            action=stop -> STOP, WATCHDOG reset/shutdown/pause -> RESET/SHUTDOWN/STOP), and damage
            in the file. docs/CATALOG.md explains each finding.

            Each finding is printed as FILE:LINE: SEVERITY: MESSAGE [code]. Severities: error and
            warning are findings; info (unknown events, members newer than the catalog, commands
            left unanswered at a disconnect) is shown with --verbose and never fails validation.
            --json output is described in docs/JSON.md.

            Several recordings (files, directories searched for *.qmprec and *.qmprec.gz, quoted
            patterns) are checked on every core and give one line each: JSON Lines by default (file,
            host, VM, time span, and the --json document as "result"; docs/FLEET.md), or a table
            line with --format table. A damaged file is one error line; the run goes on.

            Exit status: 0 clean; 1 findings; 2 unreadable (with several: any of them, after all
            were read; else 1 when any had findings); 64 bad command line.
            """))

    @Argument(help: "The recording (.qmprec or .qmprec.gz); several, directories or patterns for one line each.",
              completion: .file(extensions: ["qmprec", "gz"]))
    var files: [String]

    @OptionGroup var check: CheckOptions

    enum Format: String, ExpressibleByArgument, CaseIterable { case text, json, jsonl, table }

    @Option(help: "Output format: text or json (as --json); jsonl or table (one line per recording, jsonl the default for several).")
    var format: Format?

    @OptionGroup var fleet: FleetOptions

    @OptionGroup var cacheOptions: CacheOptions

    @Flag(help: "Treat any bad line as an error (exit 2).")
    var strict = false

    func run() throws {
        let (verbose, schema) = (check.verbose, check.schema)
        if FleetRun.isFleet(files, jsonl: format == .jsonl) {
            return try runFleet(schema: schema)
        }
        let file = files[0]
        let json = check.json || format == .json
        let r = try openRecording(file, strict: strict, cache: cacheOptions.cache)
        let choice = try schemaChoice(for: r, file: schema)
        let progress = Progress(label: "validating", total: r.count)
        let findings = RecordingValidation.run(r, schema: choice) { progress.update($0) }
        progress.finish()
        let out = Output.stdout
        let failing = findings.filter { $0.severity >= .warning }
        if json {
            out.line(RecordingValidation.json(findings, path: file, schema: choice).serialized(.pretty(indent: 2)))
        } else {
            let st = Style(out)
            if verbose { out.line(st.dim("\(file): checked against \(choice.summary): \(choice.reason)")) }
            for f in findings where verbose || f.severity >= .warning {
                out.line(findingLine(f, file: file, style: st))
            }
            let summary = "\(file): \(plural(r.count, "record")), \(SeverityTally(findings).text); schema: \(choice.shortLabel)"
            out.line(failing.isEmpty ? st.green(summary) : summary)
        }
        out.flush()
        if !failing.isEmpty { throw ExitCode(Exit.findings) }
    }

    /// `validate` over many recordings (docs/FLEET.md): one JSON or table line each.
    private func runFleet(schema: String?) throws {
        let lineFormat: FleetRun.Format
        switch format ?? (check.json ? .json : .jsonl) {
        case .jsonl: lineFormat = .jsonl
        case .table, .text: lineFormat = .table
        case .json: throw fail("validate: several recordings give one line each: use --format jsonl (or table)", code: Exit.usage)
        }
        let override = try schema.map { file in
            do { return try RecordingSchema.load(file: file) } catch { throw fail("--schema: \(error)") }
        }
        try FleetRun(command: "validate", format: lineFormat, strict: strict, jobs: fleet.jobs, cache: cacheOptions.cache).run(files) { path, r in
            let choice = RecordingSchema.choose(for: r, override: override)
            let findings = RecordingValidation.run(r, schema: choice)
            let tally = SeverityTally(findings)
            return FleetAnswer(result: RecordingValidation.json(findings, path: path, schema: choice), summary: tally.text,
                               status: tally.errors + tally.warnings > 0 ? Exit.findings : Exit.ok)
        }
    }
}
