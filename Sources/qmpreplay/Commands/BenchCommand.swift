import ArgumentParser
import Foundation
import Benchmarks
import Capture
import Options
import QMP
import Recording
import Shell

import Transport
import Synth
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks: reading (index, info, seeks), the recorder's proxy and dashcam ring, the shell (and the live shell), replay, analyses and fleets.",
        discussion: "Build in release mode for meaningful figures: swift run -c release qmpreplay bench ...",
        subcommands: [BenchIndexCommand.self, BenchProxyCommand.self, BenchShellCommand.self, BenchAnalyzeCommand.self, BenchReplayCommand.self, BenchReplayMemoryCommand.self, BenchRingCommand.self, BenchFleetCommand.self, BenchLiveCommand.self],
        defaultSubcommand: BenchIndexCommand.self)
}

/// A benchmark's figures: one `name  value` line each, or the object as JSON.
func printFigures(_ o: JSONObject, json: Bool) {
    let out = Output.stdout
    if json {
        out.line(JSONValue.object(o).serialized(.pretty(indent: 2)))
    } else {
        for m in o.members { out.line(m.key.padding(24) + (m.value.stringValue ?? m.value.serialized())) }
    }
    out.flush()
}

/// The seeded synthetic recording a benchmark runs on, made once and kept in /tmp.
func benchRecording(records: Int, seed: UInt64) throws -> String {
    let path = "/tmp/qmpreplay-bench-\(seed)-\(records).qmprec"
    guard access(path, R_OK) != 0 else { return path }
    do {
        try Synthesizer(seed: seed, profile: .mixed).write(records: records, to: path)
    } catch {
        throw fail(error.description)
    }
    return path
}

struct BenchIndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
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
        let path = try file ?? benchRecording(records: records, seed: seed)
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

        // The persistent index (docs/INDEX.md), in a cache of its own: the first open (scan
        // and write the entry), then re-opens and `info`s that read it.
        let cacheDir = "/tmp/qmpreplay-bench-cache-\(getpid())"
        defer { _ = try? FileManager.default.removeItem(atPath: cacheDir) }
        let cache = IndexCache(directory: cacheDir)
        var t = WallClock.monotonicNanos()
        _ = try openRecording(path, strict: false, cache: cache)
        results["cold_open_and_store_ms"] = num(Double(WallClock.monotonicNanos() - t) / 1e6, 2)
        _ = RecordingSummary.of(try openRecording(path, strict: false, cache: cache))
        var reopenBest = Int64.max, cachedInfoBest = Int64.max
        for _ in 0..<max(1, `repeat`) {
            t = WallClock.monotonicNanos()
            let rr = try openRecording(path, strict: false, cache: cache)
            reopenBest = min(reopenBest, WallClock.monotonicNanos() - t)
            guard rr.cacheOutcome == .hit else { throw fail("bench: the cached index was not used (\(rr.cacheOutcome?.rawValue ?? "no cache"))") }
            t = WallClock.monotonicNanos()
            let ri = try openRecording(path, strict: false, cache: cache)
            _ = RecordingSummary.of(ri).json.serialized(.pretty(indent: 2))
            cachedInfoBest = min(cachedInfoBest, WallClock.monotonicNanos() - t)
        }
        results["reopen_cached_ms"] = num(Double(reopenBest) / 1e6, 2)
        results["info_cached_ms"] = num(Double(cachedInfoBest) / 1e6, 2)

        // Seeks: 100,000 random probes, by time and by number.
        var rng = SplitMix64(seed: 7)
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

struct BenchProxyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "Measure the recording proxy: added round-trip latency per command and messages per second.",
        discussion: """
            Without --upstream, an in-process QMP peer that answers at once stands in for QEMU, so
            the figures are the proxy's own cost. With --upstream unix:PATH (a real QEMU), direct
            and proxied round trips of query-status alternate so that both see the same noise,
            and throughput is measured with pipelined commands.
            """)

    @Option(help: "A real QEMU's QMP socket; default: the in-process fast peer.")
    var upstream: String?

    @Option(help: "Round trips measured each way.")
    var iterations: Int = 5000

    @Option(help: "Messages for the throughput run (events from the fast peer, or pipelined commands to QEMU).")
    var messages: Int = 200_000

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let dir = BenchScratch.make("proxy")
        defer { BenchScratch.remove(dir) }
        let up: Endpoint?
        do { up = try upstream.map { try Endpoint(parsing: $0) } } catch { throw fail("\(error)", code: Exit.usage) }
        let r: ProxyBenchmark.Result
        do {
            r = try ProxyBenchmark.run(upstream: up, iterations: iterations, floodMessages: messages, workDir: dir)
        } catch {
            throw fail("proxy benchmark failed: \(error)")
        }
        func us(_ ns: Int64) -> JSONValue { .number(JSONNumber(text: DurationFormat.fixed(Double(ns) / 1000, 1))) }
        var o = JSONObject()
        o["upstream"] = .string(r.upstream)
        o["iterations"] = .int(r.iterations)
        let dp50 = r.percentile(r.direct, 0.5), dp99 = r.percentile(r.direct, 0.99)
        let pp50 = r.percentile(r.proxied, 0.5), pp99 = r.percentile(r.proxied, 0.99)
        o["direct_p50_us"] = us(dp50)
        o["direct_p99_us"] = us(dp99)
        o["proxied_p50_us"] = us(pp50)
        o["proxied_p99_us"] = us(pp99)
        o["added_p50_us"] = us(pp50 - dp50)
        o["added_p99_us"] = us(pp99 - dp99)
        o["throughput_messages"] = .int(r.messages)
        o["throughput_seconds"] = .number(JSONNumber(text: DurationFormat.fixed(r.seconds, 3)))
        o["messages_per_second"] = .int(Int(r.messagesPerSecond))
        o["records_recorded"] = .int(r.recorded)
        printFigures(o, json: json)
    }
}

struct BenchLiveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "live",
        abstract: "Measure the live shell: from a message arriving at the recorder to its record printed at a following cursor.",
        discussion: """
            The shell records (as 'shell --connect' does) and follows its own file as the terminal
            loop does; one message a --interval arrives from QEMU (--connect unix:PATH: replies to
            query-status) or from an in-process fast peer (an event and a reply each time). The
            latency of each is the time from its receive time in the file to the moment the
            session has printed it. --backlog N first fills the recording with N events (fast
            peer only), so that extending a large index is part of the figure. Target: p99 at
            or below 50 ms (docs/SHELL.md, "Live").
            """)

    @Option(help: "A real QEMU's QMP socket; default: the in-process fast peer.")
    var connect: String?

    @Option(help: "Messages measured (one per --interval).")
    var samples: Int = 200

    static let defaultInterval = DurationValue(nanoseconds: 20_000_000)
    @Option(help: ArgumentHelp("Time between two messages.", valueName: "duration", default: defaultInterval), transform: DurationValue.parse)
    var interval = defaultInterval

    @Option(help: "Events recorded before measuring (fast peer only).")
    var backlog: Int = 0

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let dir = BenchScratch.make("live")
        defer { BenchScratch.remove(dir) }
        let up: Endpoint?
        do { up = try connect.map { try Endpoint(parsing: $0) } } catch { throw fail("\(error)", code: Exit.usage) }
        let r: LiveShellBenchmark.Result
        do {
            r = try LiveShellBenchmark.run(upstream: up, samples: max(1, samples), intervalNanos: interval.nanoseconds, backlog: max(0, backlog), workDir: dir)
        } catch {
            throw fail("live benchmark failed: \(error)")
        }
        func ms(_ ns: Int64) -> JSONValue { .number(JSONNumber(text: DurationFormat.fixed(Double(ns) / 1e6, 2))) }
        var o = JSONObject()
        o["upstream"] = .string(r.upstream)
        o["messages"] = .int(r.latencies.count)
        o["backlog_records"] = .int(r.backlog)
        o["records"] = .int(r.records)
        o["latency_p50_ms"] = ms(r.percentile(0.5))
        o["latency_p90_ms"] = ms(r.percentile(0.9))
        o["latency_p99_ms"] = ms(r.percentile(0.99))
        o["latency_max_ms"] = ms(r.percentile(1))
        o["target_ms"] = .int(50)
        printFigures(o, json: json)
    }
}

struct BenchShellCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shell",
        abstract: "Measure the shell's moves (next, prev, seek, show, state, next NAME, list) on a large recording.",
        discussion: "Runs the shell's own commands (output discarded) and reports mean / p99 / max per command in milliseconds.")

    @Option(help: "A recording to measure; default: a 1,000,000-record synthetic one.")
    var file: String?

    @Option(help: "Repetitions of each command.")
    var count: Int = 1000

    @Flag(help: "Print JSON.")
    var json = false

    final class Null: ShellOutput {
        var bytes = 0
        func write(_ s: String) { bytes += s.utf8.count }
        var colors: Bool { false }
        var width: Int { 120 }
    }

    func run() throws {
        let path = try file ?? benchRecording(records: 1_000_000, seed: 42)
        let t0 = WallClock.monotonicNanos()
        let r = try openRecording(path, strict: false)
        let openMs = Double(WallClock.monotonicNanos() - t0) / 1e6
        let session: ShellSession
        do { session = try ShellSession(recording: r, out: Null()) } catch { throw fail(error.message) }
        var rng = SplitMix64(seed: 9)
        func random() -> Int { Int(rng.next() % UInt64(max(r.count, 1))) }
        var o = JSONObject()
        o["file"] = .string(path)
        o["records"] = .int(r.count)
        o["open_ms"] = .number(JSONNumber(text: DurationFormat.fixed(openMs, 1)))
        func measure(_ name: String, _ n: Int, before: () -> String? = { nil }, _ line: () -> String) {
            var ts: [Int64] = []
            for _ in 0..<n {
                if let b = before() { try? session.execute(b) }
                let cmd = line()
                let a = WallClock.monotonicNanos()
                try? session.execute(cmd)
                ts.append(WallClock.monotonicNanos() - a)
            }
            ts.sort()
            let mean = Double(ts.reduce(0, +)) / Double(max(ts.count, 1)) / 1e6
            var x = JSONObject()
            x["mean_ms"] = .number(JSONNumber(text: DurationFormat.fixed(mean, 3)))
            x["p99_ms"] = .number(JSONNumber(text: DurationFormat.fixed(Double(ts[min(ts.count - 1, ts.count * 99 / 100)]) / 1e6, 3)))
            x["max_ms"] = .number(JSONNumber(text: DurationFormat.fixed(Double(ts.last ?? 0) / 1e6, 3)))
            o[name] = .object(x)
        }
        measure("seek #N", count) { "seek #\(random())" }
        measure("seek time", count) { "seek \(r.time(random()))ns" }
        measure("next", count) { "next" }
        measure("prev", count) { "prev" }
        measure("show", count) { "show" }
        measure("next STOP", min(count, 200)) { "next STOP" }
        measure("list 20", min(count, 200)) { "list 20" }
        measure("state (first, far)", 1, before: { "seek #\(r.count - 1)" }) { "state" }
        measure("state (random)", min(count, 200), before: { "seek #\(random())" }) { "state" }
        let out = Output.stdout
        if json {
            out.line(JSONValue.object(o).serialized(.pretty(indent: 2)))
        } else {
            for m in o.members { out.line(m.key.padding(22) + (m.value.stringValue ?? m.value.serialized())) }
        }
        out.flush()
    }
}

/// The scratch folder of one benchmark run (sockets, recordings), and its progress lines.
enum BenchScratch {
    /// `/tmp/qmpreplay-NAME-bench-PID`, private to this user.
    static func make(_ name: String) -> String {
        let dir = "/tmp/qmpreplay-\(name)-bench-\(getpid())"
        mkdir(dir, 0o700)
        return dir
    }

    static func remove(_ dir: String) { _ = system("rm -rf '\(dir)'") }

    /// A step of a long benchmark, on a terminal only (standard error).
    static func progress(_ step: String) {
        if Output.stderr.isTerminal { Output.stderr.line("... \(step)"); Output.stderr.flush() }
    }
}
