import Analysis
import ArgumentParser
import QMP
import Recording

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `qmpreplay bench analyze`: times `triage` and `balloon` on a (seeded, synthesised)
/// recording, and jq doing the balloon selection on the same file, side by side.
struct BenchAnalyzeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyze",
        abstract: "Measure the analyses (triage, balloon) and compare the balloon selection with jq.",
        discussion: """
            Build in release mode for meaningful figures: swift build -c release, then
            .build/release/qmpreplay bench analyze. Each figure is the best of --repeat runs.
            The jq side selects the BALLOON_CHANGE series from the same file:
              jq -c 'select(.k=="event" and .n=="BALLOON_CHANGE") | [.t, .msg.data.actual]'
            and is compared with qmpreplay opening (indexing) the file and running the whole
            balloon analysis (which also pairs query-balloon replies and balloon targets).
            """)

    @Option(help: "A recording to measure; default: synthesise one (profile mixed).")
    var file: String?

    @Option(help: "Records to synthesise when no --file is given.")
    var records: Int = 1_000_000

    @Option(help: "Seed for the synthesised recording.")
    var seed: UInt64 = 42

    @Option(help: "Repetitions of each timed step (the best is reported).")
    var `repeat`: Int = 3

    @Flag(help: "Skip the jq comparison.")
    var noJq = false

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let path = try file ?? benchRecording(records: records, seed: seed)
        var results = JSONObject()
        results["file"] = .string(path)
        let reps = max(1, `repeat`)
        func best(_ body: () throws -> Void) rethrows -> Double {
            var b = Int64.max
            for _ in 0..<reps {
                let t0 = WallClock.monotonicNanos()
                try body()
                b = min(b, WallClock.monotonicNanos() - t0)
            }
            return Double(b) / 1e6
        }
        var rec: Recording?
        let openMs = try best { rec = try openRecording(path, strict: false) }
        let r = rec!
        results["records"] = .int(r.count)
        results["bytes"] = .int(r.bytes.count)
        results["open_index_ms"] = num(openMs)
        var findings = 0
        let triageMs = try best { findings = try Analyses.run("triage", on: r).findings.count }
        results["triage_ms"] = num(triageMs)
        results["triage_findings"] = .int(findings)
        results["triage_with_open_ms"] = num(triageMs + openMs)
        var samples = 0
        let balloonMs = try best {
            let rep = try Analyses.run("balloon", on: r)
            samples = rep.json["samples"]?.arrayValue?.count ?? 0
        }
        results["balloon_ms"] = num(balloonMs)
        results["balloon_with_open_ms"] = num(balloonMs + openMs)
        results["balloon_samples"] = .int(samples)
        if !noJq {
            let filter = #"select(.k=="event" and .n=="BALLOON_CHANGE") | [.t, .msg.data.actual]"#
            let cmd = "jq -c '\(filter)' '\(path)' > /dev/null 2>&1"
            var status: Int32 = 0
            let jqMs = best { status = system(cmd) }
            if status == 0 {
                results["jq_balloon_ms"] = num(jqMs)
                results["balloon_speedup_vs_jq"] = num(jqMs / (balloonMs + openMs))
            } else {
                results["jq_balloon_ms"] = .null
                results["jq_note"] = .string("jq failed or is not installed (status \(status))")
            }
        }
        let out = Output.stdout
        if json {
            out.line(JSONValue.object(results).serialized(.pretty(indent: 2)))
        } else {
            for m in results.members { out.line(m.key.padding(26) + (m.value.stringValue ?? m.value.serialized())) }
        }
        out.flush()
    }

    private func num(_ v: Double) -> JSONValue { .number(JSONNumber(text: DurationFormat.fixed(v, 1))) }
}
