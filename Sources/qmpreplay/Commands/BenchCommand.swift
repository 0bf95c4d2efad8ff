import ArgumentParser
import QMP
import Recording

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure opening/indexing, info, seeks and decoding on a recording (synthesised when none is given).",
        discussion: """
            Build in release mode for meaningful figures: swift run -c release qmpreplay bench.
            Each figure is the best of --repeat runs, to resist noise on a shared machine.
            Scripts/bench runs this together with peers (grep, jq) on the same file.
            """)

    @Option(help: "A recording to measure; default: synthesise one.")
    var file: String?

    @Option(help: "Records to synthesise when no --file is given (about 160 bytes each).")
    var records: Int = 650_000

    @Option(help: "Seed for the synthesised recording.")
    var seed: UInt64 = 42

    @Option(help: "Repetitions of each timed step (the best is reported).")
    var `repeat`: Int = 5

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        var results = JSONObject()
        let path: String
        if let file {
            path = file
        } else {
            path = "/tmp/qmpreplay-bench-\(seed)-\(records).qmprec"
            if access(path, R_OK) != 0 {
                let t0 = WallClock.monotonicNanos()
                do {
                    try Synthesizer(seed: seed, profile: .mixed).write(records: records, to: path)
                } catch {
                    throw fail(error.description)
                }
                results["synth_seconds"] = .number(JSONNumber(text: DurationFormat.fixed(Double(WallClock.monotonicNanos() - t0) / 1e9, 3)))
            }
        }
        results["file"] = .string(path)

        var best = Int64.max
        var rec: Recording?
        let rssBefore = maxRSS()
        for _ in 0..<max(1, `repeat`) {
            let t0 = WallClock.monotonicNanos()
            let r = try openRecording(path, strict: false)
            best = min(best, WallClock.monotonicNanos() - t0)
            rec = r
        }
        let r = rec!
        let mb = Double(r.bytes.count) / 1e6
        results["bytes"] = .int(r.bytes.count)
        results["records"] = .int(r.count)
        results["open_index_ms"] = num(Double(best) / 1e6, 2)
        results["index_mb_per_s"] = num(mb / (Double(best) / 1e9), 0)
        results["index_bytes_per_record"] = .int(Recording.indexBytesPerRecord)
        results["max_rss_mb"] = num(Double(maxRSS()) / 1024, 1)
        results["rss_growth_mb"] = num(Double(maxRSS() - rssBefore) / 1024, 1)

        var infoBest = Int64.max
        for _ in 0..<max(1, `repeat`) {
            let t0 = WallClock.monotonicNanos()
            let rr = try openRecording(path, strict: false)
            _ = RecordingSummary(rr).json.serialized(.pretty(indent: 2))
            infoBest = min(infoBest, WallClock.monotonicNanos() - t0)
        }
        results["info_ms"] = num(Double(infoBest) / 1e6, 2)

        // Seeks: 100,000 random probes, by time and by number.
        var rng = SplitMix(seed: 7)
        let n = 100_000
        let dur = max(r.duration, 1)
        var probes = (0..<n).map { _ in Int64(rng.next() % UInt64(dur)) }
        var sink = 0
        var t0 = WallClock.monotonicNanos()
        for p in probes { sink &+= r.firstIndex(atOrAfter: p) }
        results["seek_time_ns"] = num(Double(WallClock.monotonicNanos() - t0) / Double(n), 1)
        probes = (0..<n).map { _ in Int64(rng.next() % UInt64(max(r.count, 1))) }
        t0 = WallClock.monotonicNanos()
        for p in probes { sink &+= Int(r.time(Int(p)) & 1) + r.line(Int(p)) }
        results["seek_number_ns"] = num(Double(WallClock.monotonicNanos() - t0) / Double(n), 1)
        // Full decode of random records (what `show` does).
        let m = 20_000
        t0 = WallClock.monotonicNanos()
        for p in probes.prefix(m) { if let x = try? r.record(at: Int(p)) { sink &+= x.line } }
        results["decode_record_us"] = num(Double(WallClock.monotonicNanos() - t0) / Double(m) / 1000, 2)
        if sink == 42 { print("") }

        let out = Output.stdout
        if json {
            out.line(JSONValue.object(results).serialized(.pretty(indent: 2)))
        } else {
            for m in results.members {
                let v = m.value.stringValue ?? m.value.serialized()
                out.line(m.key.padding(24) + v)
            }
        }
        out.flush()
    }

    private func num(_ v: Double, _ digits: Int) -> JSONValue { .number(JSONNumber(text: DurationFormat.fixed(v, digits))) }

    private func maxRSS() -> Int {
        var u = rusage()
        getrusage(__rusage_who_t(0), &u)  // RUSAGE_SELF
        return u.ru_maxrss
    }
}

/// A tiny deterministic generator for benchmark probes.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
