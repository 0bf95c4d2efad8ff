import ArgumentParser
import QMP
import Recording

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check a recording against QMP's rules and the event catalog.",
        usage: HelpText.usage("qmpreplay validate FILE [--json] [--verbose] [--strict]"),
        discussion: HelpText.format("""
            Checks every event against the catalog (unknown event, missing member, wrong JSON type,
            value outside the documented set), every reply against a preceding command id,
            negotiation order (no command before qmp_capabilities succeeds, no event before
            negotiation), documented follow-ups that never came (BLOCK_IO_ERROR action=stop -> STOP,
            WATCHDOG reset/shutdown/pause -> RESET/SHUTDOWN/STOP), and damage in the file.

            Each finding is printed as FILE:LINE: SEVERITY: MESSAGE [code]. Severities: error and
            warning are findings; info (unknown events, members newer than the catalog, commands
            left unanswered at a disconnect) is shown with --verbose and never fails validation.
            --json output is described in docs/JSON.md.

            Exit status: 0 clean; 1 findings; 2 unreadable; 64 bad command line.
            """))

    @Argument(help: "The recording (.qmprec or .qmprec.gz).", completion: .file(extensions: ["qmprec", "gz"]))
    var file: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Flag(name: .shortAndLong, help: "Also print notes (info findings).")
    var verbose = false

    @Flag(help: "Treat any bad line as an error (exit 2).")
    var strict = false

    func run() throws {
        let r = try openRecording(file, strict: strict)
        let progress = Progress(label: "validating", total: r.count)
        let findings = RecordingValidation.run(r) { progress.update($0) }
        progress.finish()
        let out = Output.stdout
        let failing = findings.filter { $0.severity >= .warning }
        if json {
            out.line(RecordingValidation.json(findings, path: file).serialized(.pretty(indent: 2)))
        } else {
            let st = Style(out)
            for f in findings where verbose || f.severity >= .warning {
                let loc = f.line.map { "\(file):\($0)" } ?? file
                let sev: String
                switch f.severity {
                case .error: sev = st.red("error")
                case .warning: sev = st.yellow("warning")
                case .info: sev = st.dim("note")
                }
                // @N: the record number as --from/--to take it unquoted.
                let rec = f.record.map { " (@\($0))" } ?? ""
                out.line("\(loc): \(sev): \(f.message)\(rec) [\(f.code)]")
            }
            let errors = findings.filter { $0.severity == .error }.count
            let warnings = findings.filter { $0.severity == .warning }.count
            let notes = findings.filter { $0.severity == .info }.count
            let summary = "\(file): \(plural(r.count, "record")), \(plural(errors, "error")), \(plural(warnings, "warning")), \(plural(notes, "note"))"
            out.line(failing.isEmpty ? st.green(summary) : summary)
        }
        out.flush()
        if !failing.isEmpty { throw ExitCode(Exit.findings) }
    }
}
