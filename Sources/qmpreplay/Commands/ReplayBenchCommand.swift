import ArgumentParser
import Benchmarks
import QMP
import Recording
import Replay

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct BenchReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Measure the fake QEMU: release lateness at speed 1, 10 and 100, events/s at max speed to 1 and to many clients, many clients on one timeline.",
        discussion: """
            Runs 'serve' in-process on unix sockets with synthetic recordings and reading clients on
            threads. Lateness is measured on the client side (arrival against the recorded schedule,
            from the moment the client sent qmp_capabilities) and on the server side (release against
            schedule). Build in release mode for meaningful figures:
              swift build -c release && .build/release/qmpreplay bench replay
            """)

    @Option(help: "Length of the bursty recording (seconds at speed 1).")
    var seconds: Double = 6

    @Option(help: "Events for the max-speed run.")
    var events: Int = 400_000

    @Option(help: "Clients on the shared timeline.")
    var clients: Int = 100

    @Flag(help: "Serve from a SCHED_FIFO thread (as 'serve --realtime').")
    var realtime = false

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let dir = BenchScratch.make("replay")
        defer { BenchScratch.remove(dir) }
        let r: ReplayBenchmark.Result
        do {
            r = try ReplayBenchmark.run(realtime: realtime, workDir: dir, seconds: seconds, floodEvents: events, clients: clients) { BenchScratch.progress($0) }
        } catch {
            throw fail("replay benchmark failed: \(error)")
        }
        func n(_ v: Double, _ d: Int = 1) -> JSONValue { .number(JSONNumber(text: DurationFormat.fixed(v, d))) }
        var o = JSONObject()
        var lat: [JSONValue] = []
        for t in r.timings {
            lat.append(.object(JSONObject([
                "speed": n(t.speed, 0), "events": .int(t.events),
                "client_p50_us": n(t.clientP50us), "client_p99_us": n(t.clientP99us), "client_max_us": n(t.clientMaxUs),
                "server_p50_us": n(t.serverP50us), "server_p99_us": n(t.serverP99us), "server_max_us": n(t.serverMaxUs),
            ])))
        }
        o["lateness"] = .array(lat)
        o["max_speed"] = .object(JSONObject([
            "events": .int(r.maxSpeedEvents), "seconds": n(r.maxSpeedSeconds, 3), "events_per_second": .int(Int(r.maxSpeedEventsPerSecond)),
        ]))
        o["max_speed_many"] = .object(JSONObject([
            "clients": .int(r.manyClients), "clients_complete": .int(r.manyComplete), "events": .int(r.manyEvents),
            "seconds": n(r.manySeconds, 3), "events_per_second": .int(Int(r.manyEventsPerSecond)),
        ]))
        o["shared"] = .object(JSONObject([
            "clients": .int(r.sharedClients), "speed": n(r.sharedSpeed, 0), "events": .int(r.sharedEvents),
            "clients_complete": .int(r.sharedComplete), "dropped": .int(r.sharedDropped),
            "worst_client_p99_us": n(r.sharedWorstP99us), "worst_client_max_us": n(r.sharedWorstMaxUs),
            "server_p99_us": n(r.sharedServerP99us), "server_max_us": n(r.sharedServerMaxUs),
        ]))
        o["load_average"] = n(r.loadAverage, 2)
        let out = Output.stdout
        if json {
            out.line(JSONValue.object(o).serialized(.pretty(indent: 2)))
        } else {
            out.line("lateness (µs)      events   client p50    p99     max   server p50    p99     max")
            for t in r.timings {
                let cols = [t.clientP50us, t.clientP99us, t.clientMaxUs, t.serverP50us, t.serverP99us, t.serverMaxUs]
                    .map { DurationFormat.fixed($0, 1).leftPadding(7) }
                out.line("  speed \(DurationFormat.fixed(t.speed, 0).padding(10))\(String(t.events).leftPadding(7))   \(cols[0]) \(cols[1]) \(cols[2])   \(cols[3]) \(cols[4]) \(cols[5])")
            }
            out.line("max speed, 1 client: \(r.maxSpeedEvents) events in \(DurationFormat.fixed(r.maxSpeedSeconds, 3)) s = \(Int(r.maxSpeedEventsPerSecond)) events/s")
            out.line("max speed, \(r.manyClients) clients (own timelines): \(r.manyComplete)/\(r.manyClients) got every event; \(r.manyEvents) events in \(DurationFormat.fixed(r.manySeconds, 3)) s = \(Int(r.manyEventsPerSecond)) events/s in all")
            out.line("shared timeline, \(r.sharedClients) clients at speed \(DurationFormat.fixed(r.sharedSpeed, 0)): \(r.sharedComplete)/\(r.sharedClients) got all \(r.sharedEvents) events, \(r.sharedDropped) dropped, worst client p99 \(DurationFormat.fixed(r.sharedWorstP99us, 1)) µs, max \(DurationFormat.fixed(r.sharedWorstMaxUs, 1)) µs; server release p99 \(DurationFormat.fixed(r.sharedServerP99us, 1)) µs, max \(DurationFormat.fixed(r.sharedServerMaxUs, 1)) µs")
            out.line("load average at the end: \(DurationFormat.fixed(r.loadAverage, 2)) (figures are noisy on a busy machine)")
        }
        out.flush()
    }
}

struct BenchReplayMemoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay-memory",
        abstract: "Measure what idle clients cost the fake QEMU: resident memory with N negotiated, listening clients, and after they leave.",
        discussion: """
            Serves (in-process, unix socket) a synthetic recording with --events events one second
            apart, connects --clients clients that negotiate and then only listen, and reads the
            process's resident memory (VmRSS) before, with every client connected, and after all
            have left. Target (docs/PERFORMANCE.md): 1,000 clients on 116,000 events under 300 MB.
            """)

    @Option(help: "Clients to connect.")
    var clients: Int = 1000

    @Option(help: "Events in the recording.")
    var events: Int = 116_000

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let dir = BenchScratch.make("memory")
        defer { BenchScratch.remove(dir) }
        let r: ReplayMemoryBenchmark.Result
        do {
            r = try ReplayMemoryBenchmark.run(workDir: dir, clients: clients, events: events) { BenchScratch.progress($0) }
        } catch {
            throw fail("replay memory benchmark failed: \(error)")
        }
        let mb = { (b: Int) in DurationFormat.fixed(Double(b) / 1_048_576, 1) }
        if json {
            let o = JSONObject([
                "clients": .int(r.clients), "negotiated": .int(r.negotiated), "events": .int(r.events),
                "rss_before_bytes": .int(r.rssBefore), "rss_with_clients_bytes": .int(r.rssWithClients),
                "rss_after_bytes": .int(r.rssAfter), "bytes_per_client": .int(Int(r.perClient)),
            ])
            Output.stdout.line(JSONValue.object(o).serialized(.pretty(indent: 2)))
        } else {
            Output.stdout.line("replay memory: \(r.negotiated)/\(r.clients) clients negotiated on \(r.events) events")
            Output.stdout.line("  resident before \(mb(r.rssBefore)) MiB, with clients \(mb(r.rssWithClients)) MiB (\(mb(Int(r.perClient))) MiB or \(Int(r.perClient) / 1024) KiB per client), after they left \(mb(r.rssAfter)) MiB")
        }
        Output.stdout.flush()
    }
}
