import ArgumentParser
import QMP
import Recording

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check a recording in depth: the file, its connections and its traffic.",
        usage: HelpText.usage("qmpreplay doctor FILE [--schema FILE] [--json] [--verbose]"),
        discussion: HelpText.format("""
            Everything validate checks (negotiation, replies paired with commands, the schema,
            follow-ups), plus the file itself: the header, torn and non-JSON lines, NUL runs,
            carriage returns inside lines and mixed line ends, times going backwards, the
            trailer (missing, or counting other records than the file holds, or records after
            it), the connections' structure (a second open without a close, messages after a
            close or on connection 0) and the recorder's own loss reports (gap notes, the
            trailer's dropped count). Damage to the file has codes starting file: or is one of
            nul-bytes, mixed-line-ends, lone-cr, bad-record, recorder-dropped, gap; 'qmpreplay
            recover' repairs it. docs/REPAIR.md lists every code.

            Each finding is printed as FILE:LINE: SEVERITY: MESSAGE [code] (a missing trailer is
            on the line after the last). --json: validate's JSON plus "records" and "damaged".

            Exit status: 0 healthy; 1 findings about the traffic only; 3 the file is damaged
            (recover helps); 2 unreadable or not a recording; 64 bad command line.
            """))

    @Argument(help: "The recording (.qmprec or .qmprec.gz).", completion: .file(extensions: ["qmprec", "gz"]))
    var file: String

    @OptionGroup var check: CheckOptions

    static let damagedExit: Int32 = 3

    func run() throws {
        let (json, verbose, schema) = (check.json, check.verbose, check.schema)
        let r = try openRecording(file, strict: false)
        let choice = try schemaChoice(for: r, file: schema)
        let report = RecordingDoctor.run(r, schema: choice)
        let out = Output.stdout
        let failing = report.findings.filter { $0.severity >= .warning }
        if json {
            out.line(RecordingDoctor.json(report, path: file, records: r.count, schema: choice).serialized(.pretty(indent: 2)))
        } else {
            let st = Style(out)
            for f in report.findings where verbose || f.severity >= .warning {
                out.line(findingLine(f, file: file, style: st))
            }
            let damage = report.findings.filter(RecordingDoctor.isDamage).count
            var summary = "\(file): \(plural(r.count, "record")), \(plural(r.lineCount, "line")); "
            if failing.isEmpty {
                summary += "healthy"
            } else if report.damaged {
                summary += "damaged (\(plural(damage, "finding")) about the file; 'qmpreplay recover \(file) -o FIXED.qmprec' keeps every intact record), \(plural(failing.count - damage, "other finding"))"
            } else {
                summary += "the file is intact; \(plural(failing.count, "finding")) about the traffic"
            }
            out.line(failing.isEmpty ? st.green(summary) : summary)
        }
        out.flush()
        if report.damaged { throw ExitCode(DoctorCommand.damagedExit) }
        if !failing.isEmpty { throw ExitCode(Exit.findings) }
    }
}
