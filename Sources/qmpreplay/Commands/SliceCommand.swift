import ArgumentParser
import Options
import QMP
import Recording
import Shell

struct SliceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slice",
        abstract: "Write a time span of a recording, or a filter's matches, as a new recording.",
        usage: HelpText.usage("qmpreplay slice FILE [--from T] [--to T] [--filter EXPR] -o OUT [--force] [--no-redact]"),
        discussion: HelpText.format("""
            The shell's export on the command line (the same code): the records from --from to
            --to (--to included; times as everywhere, see 'qmpreplay --help'), only those
            matching --filter when given (the shell's filter language, docs/SHELL.md "Filter
            expressions": event STOP, command ~ 'block*', kind error, data.action == 'stop',
            and/or/not), written with the original header plus a label exported-from naming
            the source, the records and the filter. Records keep their times and exact bytes;
            secrets are redacted unless --no-redact (the header says so). An existing OUT is
            never replaced without --force, and never the recording being read.

            Exit status: 0 written; 1 nothing matched (nothing written); 2 FILE unreadable or
            OUT cannot be written or exists; 64 bad command line (a bad time or filter).
            """))

    @Argument(help: "The recording (.qmprec or .qmprec.gz).", completion: .file(extensions: ["qmprec", "gz"]))
    var file: String

    @OptionGroup var span: TimeSpanOptions

    @Option(help: ArgumentHelp("Keep only records matching this filter expression.", valueName: "EXPR"))
    var filter: String?

    @Option(name: .shortAndLong, help: "The recording to write.")
    var output: String

    @Flag(help: "Replace OUT if it exists.")
    var force = false

    @Flag(name: .customLong("no-redact"), help: "Keep secrets the recording holds.")
    var noRedact = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        var expression: FilterExpression?
        if let filter {
            do { expression = try FilterExpression(parsing: filter) } catch {
                throw fail("--filter: column \(error.column): \(error.message)", code: Exit.usage)
            }
        }
        let r = try openRecording(file, strict: false)
        let records = try resolveSpan(span, in: r).records
        let matches = expression.map { e in records.filter { e.matches(r, $0) } } ?? Array(records)
        guard let first = matches.first, let last = matches.last else {
            warn("nothing to write: " + (records.isEmpty ? "the span holds no record" : "no record in the span matches the filter"))
            throw ExitCode(Exit.findings)
        }
        let what = "#\(records.lowerBound)..#\(records.upperBound - 1)" + (filter.map { " filter \($0)" } ?? "")
        let selected = Set(matches)
        let result: RecordingExport.Result
        do {
            result = try RecordingExport.write(r, range: first...last, to: output, force: force, redact: !noRedact, what: what) {
                selected.contains($0)
            }
        } catch {
            throw fail(error.description)
        }
        let out = Output.stdout
        if json {
            var o = JSONObject()
            o["input"] = .string(file)
            o["output"] = .string(output)
            o["records"] = .int(result.records)
            o["first"] = .int(first)
            o["last"] = .int(last)
            o["redactions"] = .int(result.redactions)
            out.line(JSONValue.object(o).serialized(.pretty(indent: 2)))
        } else {
            let secrets = result.redactions > 0 ? "; \(plural(result.redactions, "secret")) redacted" : ""
            out.line("wrote \(plural(result.records, "record")) (#\(first)..#\(last)) to \(output)\(secrets)")
        }
        out.flush()
    }
}
