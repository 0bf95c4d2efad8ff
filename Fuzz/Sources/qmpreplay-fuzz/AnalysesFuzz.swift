import QMP
import Recording
import Shell

#if canImport(Glibc)
import Glibc
#endif

/// The analyses and the shell's model over real recordings with extreme message values
/// (`RecordingMutator`): every analysis, each on its own and as triage, over the whole
/// recording and over a span, with every output (JSON, table, CSV, SVG, terminal chart);
/// and the shell's `state` and `find` as a user runs them. Invariants: nothing traps, and
/// the state at the last record is the same with checkpoints every 3 records as without.
enum AnalysesFuzz {
    static func open(_ bytes: [UInt8]) -> Recording {
        let mutated = RecordingMutator.mutate(bytes)
        // `QMPREPLAY_FUZZ_DUMP=FILE Scripts/fuzz --reproduce analyses crash-...` writes the
        // mutated recording, to open with qmpreplay or turn into a regression test.
        if let dump = getenv("QMPREPLAY_FUZZ_DUMP").map({ String(cString: $0) }) {
            let fd = Glibc.open(dump, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            if fd >= 0 {
                _ = mutated.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                close(fd)
            }
        }
        guard let r = try? Recording(bytes: FileBytes(bytes: mutated), path: "fuzz.qmprec") else {
            preconditionFailure("lenient open failed")
        }
        return r
    }

    static func analyses(_ bytes: [UInt8]) {
        let r = open(bytes)
        func render(_ report: AnalysisReport) {
            _ = report.json.serializedBytes(.pretty(indent: 2))
            _ = report.table(colors: true, width: 100)
            _ = report.findingsTable(colors: false, width: 60, limit: 5)
            _ = report.csv()
            _ = report.svg()
            _ = report.terminalChart(width: 80, height: 14)
        }
        for name in Analyses.names {
            guard let report = try? Analyses.run(name, on: r) else { preconditionFailure("\(name) refused") }
            render(report)
        }
        // A span that starts mid-recording (state before it is unknown to the analyses).
        let mid = r.isEmpty ? 0 : r.time(r.count / 2)
        guard let span = try? Analyses.run("triage", on: r, from: mid, to: r.duration) else { preconditionFailure("triage refused") }
        render(span)
        _ = RecordingSummary(r).json.serialized(.compact)
    }

    final class Sink: ShellOutput {
        var count = 0
        func write(_ s: String) { count &+= s.utf8.count }
        var colors: Bool { false }
        var width: Int { 100 }
    }

    /// The shell as a user drives it: `state` at the start, middle and end, `find` with
    /// comparisons on the members the mutator breaks, `show` of what was found, `triage`.
    static func shell(_ bytes: [UInt8]) {
        let r = open(bytes)
        guard let session = try? ShellSession(recording: r, out: Sink()) else { return }
        let last = max(0, r.count - 1)
        let script = [
            "state", "seek #\(last / 2)", "state", "show", "last", "state", "first",
            "find data.actual < 1G", "find data.offset > 100", "find timestamp.seconds < 0",
            "find event BALLOON* or event RTC_CHANGE", "find has data.reason", "find arguments.value >= 9223372036854775807",
            "find time 1s..9999999h", "next STOP", "state", "prev", "info", "list 5", "triage 3",
        ]
        for line in script { try? session.execute(line) }
        guard r.count > 0 else { return }
        let checkpointed = StateTracker(recording: r, checkpointInterval: 3).state(at: last)
        let straight = StateTracker(recording: r, checkpointInterval: Int.max).state(at: last)
        precondition(checkpointed == straight, "checkpoints changed the state")
    }
}
