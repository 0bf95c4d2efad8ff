import ArgumentParser
import QMP
import Recording
import Synth

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `qmpreplay bench fleet`: a fleet command over a folder of many recordings, timed as a
/// whole process (what a user waits for), with its peak memory (docs/FLEET.md, "Speed").
struct BenchFleetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet",
        abstract: "Measure 'analyze triage DIR' over many small recordings (and, with --big, over large ones).",
        discussion: HelpText.format("""
            Synthesises --files recordings of --records records each into a scratch folder (varied
            profiles, 20 hosts, one VM each), then runs this binary's 'analyze triage DIR --format
            jsonl' as a child process --repeat times and reports the best wall time, recordings per
            second and the child's peak RSS. With --big N it also runs over N names of one
            --big-records synthetic recording (links to one file: the same bytes read N times, as
            N distinct files would be), to show that memory stays bounded by the workers, not the
            fleet. Build in release mode for meaningful figures.
            """))

    @Option(help: "Small recordings to make.")
    var files: Int = 10_000

    @Option(help: "Records in each small recording.")
    var records: Int = 100

    @Option(help: "Also run over this many large recordings (0: skip).")
    var big: Int = 0

    @Option(help: "Records in the large recording.")
    var bigRecords: Int = 1_000_000

    @Option(help: "Workers (--jobs of the measured command; 0: one per core).")
    var jobs: Int = 0

    @Option(help: "Runs of each measurement (the best is reported).")
    var `repeat`: Int = 3

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let scratch = BenchScratch.make("fleet")
        defer { BenchScratch.remove(scratch) }
        let small = scratch + "/small"
        mkdir(small, 0o700)
        BenchScratch.progress("synthesising \(files) recordings of \(records) records")
        let profiles = SynthProfile.allCases
        for i in 0..<files {
            var s = Synthesizer(seed: UInt64(i + 1), profile: profiles[i % profiles.count])
            s.host = "host-\(i % 20)"
            s.labels = [(key: "vm", value: "vm-\(i)")]
            do { try s.write(records: records, to: small + "/vm-\(i).qmprec") } catch { throw fail(error.description) }
        }
        var o = JSONObject()
        o["files"] = .int(files)
        o["records_each"] = .int(records)
        o["jobs"] = .int(jobs)
        let smallRun = try measure(small, expectLines: files)
        o["small_best_s"] = .number(JSONNumber(text: DurationFormat.fixed(smallRun.seconds, 3)))
        o["small_recordings_per_s"] = .int(Int(Double(files) / smallRun.seconds))
        o["small_peak_rss_mib"] = .number(JSONNumber(text: DurationFormat.fixed(Double(smallRun.peakKiB) / 1024, 1)))
        if big > 0 {
            let bigDir = scratch + "/big"
            mkdir(bigDir, 0o700)
            BenchScratch.progress("synthesising one recording of \(bigRecords) records, linked \(big) times")
            let one = try benchRecording(records: bigRecords, seed: 42)
            for i in 0..<big { symlink(one, bigDir + "/big-\(i).qmprec") }
            let bigRun = try measure(bigDir, expectLines: big, runs: 1)
            o["big_files"] = .int(big)
            o["big_records_each"] = .int(bigRecords)
            o["big_s"] = .number(JSONNumber(text: DurationFormat.fixed(bigRun.seconds, 1)))
            o["big_peak_rss_mib"] = .number(JSONNumber(text: DurationFormat.fixed(Double(bigRun.peakKiB) / 1024, 1)))
        }
        let out = Output.stdout
        if json {
            out.line(JSONValue.object(o).serialized(.pretty(indent: 2)))
        } else {
            for m in o.members { out.line(m.key.padding(26) + m.value.serialized()) }
        }
        out.flush()
    }

    /// Runs `analyze triage DIR` as a child; the best of `runs` wall times and the largest peak RSS.
    private func measure(_ dir: String, expectLines: Int, runs: Int? = nil) throws -> (seconds: Double, peakKiB: Int) {
        var best = Double.infinity, peak = 0
        let output = dir + ".jsonl"
        for n in 0..<(runs ?? max(1, self.repeat)) {
            BenchScratch.progress("analyze triage \(dir) (run \(n + 1))")
            let t0 = WallClock.monotonicNanos()
            let (status, rss) = try spawn([selfPath(), "analyze", "triage", dir, "--format", "jsonl", "--jobs", String(jobs)], stdout: output)
            let secs = Double(WallClock.monotonicNanos() - t0) / 1e9
            guard status == 0 else { throw fail("bench fleet: analyze triage \(dir) exited with \(status)") }
            let lines = countLines(output)
            guard lines == expectLines else { throw fail("bench fleet: \(lines) lines for \(expectLines) recordings") }
            best = min(best, secs)
            peak = max(peak, rss)
        }
        return (best, peak)
    }

    private func selfPath() -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        return n > 0 ? String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    }

    /// fork/exec with stdout to a file; the exit status and the child's peak RSS in KiB.
    private func spawn(_ argv: [String], stdout path: String) throws -> (Int32, Int) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ)
        guard rc == 0 else { throw fail("bench fleet: cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (exit, usage.ru_maxrss)
    }

    private func countLines(_ path: String) -> Int {
        guard let f = fopen(path, "r") else { return -1 }
        defer { fclose(f) }
        var n = 0
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let k = fread(&buf, 1, buf.count, f)
            if k <= 0 { break }
            for b in buf[..<k] where b == 10 { n += 1 }
        }
        return n
    }
}
