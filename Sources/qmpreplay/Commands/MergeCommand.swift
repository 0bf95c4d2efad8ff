import ArgumentParser
import QMP
import Recording

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Combine recordings of the same VM from different sources into one timeline.",
        usage: HelpText.usage("qmpreplay merge A B [C ...] -o OUT [--force] [--no-redact] [--json]"),
        discussion: HelpText.format("""
            For recordings of one VM made apart: a proxy capture and a libvirt-log import, two
            monitors of one QEMU, the source and destination QEMUs of a migration. OUT holds
            every record of every source, each source's connections renumbered apart (source
            1's first), each source's records in their recorded order, on the first source's
            receive clock. The other sources are shifted onto it by QEMU's event timestamps
            (the same on every monitor for the same event): by the events both hold when there
            are any (the median difference; the residuals say how well the clocks agree), else
            through each QEMU's own event timestamps (the QEMUs' wall clocks taken as one),
            else by the headers' wall clocks. How each source was aligned is printed and
            written into OUT as a note record at its start. Secrets are redacted unless
            --no-redact. docs/REPAIR.md has the details.

            Exit status: 0 merged; 2 a recording cannot be read, or OUT exists (without
            --force) or cannot be written; 64 bad command line (fewer than two recordings).
            """))

    @Argument(help: "The recordings, the first being the reference clock.", completion: .file(extensions: ["qmprec", "gz"]))
    var files: [String] = []

    @Option(name: .shortAndLong, help: "The recording to write.")
    var output: String

    @Flag(help: "Replace OUT if it exists (never one of the inputs).")
    var force = false

    @Flag(name: .customLong("no-redact"), help: "Keep secrets the recordings hold.")
    var noRedact = false

    @Flag(help: "Print the alignment as JSON.")
    var json = false

    func validate() throws {
        guard files.count >= 2 else { throw ValidationError("merge takes at least two recordings (A B ... -o OUT)") }
    }

    func run() throws {
        let sources = try files.map { try openRecording($0, strict: false) }
        let alignments = RecordingMerge.align(sources)
        let result: RecordingMerge.Result
        do {
            result = try RecordingMerge.write(sources, alignments: alignments, to: output, force: force, redact: !noRedact)
        } catch {
            throw fail(error.description)
        }
        let out = Output.stdout
        if json {
            var o = JSONObject()
            o["output"] = .string(output)
            o["records"] = .int(result.records)
            o["sources"] = .array(sources.enumerated().map { k, r in
                let a = alignments[k]
                var x = JSONObject()
                x["path"] = .string(r.path)
                x["records"] = .int(r.count)
                x["method"] = .string(a.method.rawValue)
                x["shift_ns"] = .int(a.shift)
                x["events"] = .int(a.events)
                x["residual_min_ns"] = .int(a.residualMin)
                x["residual_max_ns"] = .int(a.residualMax)
                x["connections"] = .object(JSONObject(result.connections.filter { $0.source == k }.map { JSONObject.Member(key: String($0.old), value: .int(Int($0.new))) }))
                return .object(x)
            })
            o["redactions"] = .int(result.redactions)
            out.line(JSONValue.object(o).serialized(.pretty(indent: 2)))
        } else {
            for (k, r) in sources.enumerated() {
                let cs = result.connections.filter { $0.source == k }.map { "c\($0.old)->c\($0.new)" }.joined(separator: " ")
                out.line("source \(k + 1): \(r.path): \(plural(r.count, "record")), \(cs.isEmpty ? "no connection" : cs); \(RecordingMerge.describe(alignments[k]))")
            }
            out.line("\(output): \(plural(result.records, "record")) (one note per source included)" + (result.redactions > 0 ? "; \(plural(result.redactions, "secret")) redacted" : ""))
        }
        out.flush()
        for (k, a) in alignments.enumerated() where a.method == .wallClock {
            warn("\(files[k]) has no event with a timestamp: placed by its header's wall clock, which may be off")
        }
    }
}
