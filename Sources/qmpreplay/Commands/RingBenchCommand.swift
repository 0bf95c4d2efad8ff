import ArgumentParser
import Benchmarks
import Options
import QMP
import Recording
import Shell

/// `qmpreplay bench ring`: the dashcam's memory over a month of polling (docs/PERFORMANCE.md).
struct BenchRingCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ring",
        abstract: "Measure the dashcam's memory: a month of 1 Hz polling through record --ring's sink, on a virtual clock.",
        discussion: """
            Feeds --days days of query-status polling at 1 Hz (command and reply: 172,800
            messages a day; 30 days are 5,184,000 messages) through the recorder's sink in dashcam
            mode, on a virtual clock, and prints per day the ring's records and bytes and the
            process's resident memory; then peak resident memory, and one incident file written at
            the end. The ring must stay within its bound and the resident memory flat once the
            window is full. Every record is matched against the default triggers, as record --ring
            does (--no-event-triggers: the ring alone). Build in release mode for the time figure.
            """)

    @Option(help: "Simulated days of polling.")
    var days: Int = 30

    static let defaultRing = DurationValue(nanoseconds: 600_000_000_000)
    @Option(help: ArgumentHelp("The ring's window.", valueName: "duration", default: defaultRing), transform: DurationValue.parse)
    var ring = defaultRing

    static let defaultBound = ByteSize(bytes: 64 << 20)
    @Option(help: ArgumentHelp("The ring's byte bound (--ring-max).", valueName: "size", default: defaultBound), transform: ByteSize.parse)
    var ringMax = defaultBound

    @Flag(name: .customLong("no-event-triggers"), help: "Do not match records against the default triggers (measures the ring alone).")
    var noEventTriggers = false

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if days < 1 { throw ValidationError("--days must be at least 1") }
    }

    func run() throws {
        let dir = BenchScratch.make("ring")
        defer { BenchScratch.remove(dir) }
        let r: RingBenchmark.Result
        do {
            let detector = noEventTriggers ? nil : IncidentTriggers(rules: try IncidentTriggers.rules([]))
            r = try RingBenchmark.run(workDir: dir, days: days, window: ring.nanoseconds, bound: ringMax.bytes, detector: detector) {
                BenchScratch.progress($0)
            }
        } catch {
            throw fail("ring benchmark failed: \(error)")
        }
        let mb = { (b: Int) in DurationFormat.fixed(Double(b) / 1_048_576, 1) }
        if json {
            let o = JSONObject([
                "days": .int(days), "messages": .int(r.messages), "window_ns": .int(ring.nanoseconds), "bound_bytes": .int(r.bound),
                "ring_peak_bytes": .int(r.ringPeakBytes), "peak_rss_bytes": .int(r.peakRSS), "lost_messages": .int(r.lost),
                "incident_records": .int(r.incidentRecords), "incident_bytes": .int(r.incidentBytes), "seconds": .number(JSONNumber(text: DurationFormat.fixed(r.seconds, 1))),
                "samples": .array(r.samples.map { s in .object(JSONObject([
                    "day": .int(s.day), "messages": .int(s.messages), "ring_records": .int(s.ringRecords),
                    "ring_bytes": .int(s.ringBytes), "rss_bytes": .int(s.rss),
                ])) }),
            ])
            Output.stdout.line(JSONValue.object(o).serialized(.pretty(indent: 2)))
        } else {
            Output.stdout.line("ring: \(days) day\(days == 1 ? "" : "s") of 1 Hz polling, \(r.messages) messages through a \(ring) ring (bound \(formatBytes(r.bound))) in \(DurationFormat.fixed(r.seconds, 1)) s")
            Output.stdout.line("  day  messages    ring records  ring KiB  RSS MiB")
            for s in r.samples {
                Output.stdout.line("  \(pad(s.day, 3))  \(pad(s.messages, 10))  \(pad(s.ringRecords, 12))  \(pad(s.ringBytes / 1024, 8))  \(mb(s.rss))")
            }
            Output.stdout.line("  ring peak \(r.ringPeakBytes / 1024) KiB; peak RSS \(mb(r.peakRSS)) MiB; lost \(r.lost) messages; incident at the end: \(r.incidentRecords) records, \(r.incidentBytes / 1024) KiB")
        }
        Output.stdout.flush()
    }

    private func pad(_ n: Int, _ w: Int) -> String {
        let s = String(n)
        return String(repeating: " ", count: max(0, w - s.count)) + s
    }
}
