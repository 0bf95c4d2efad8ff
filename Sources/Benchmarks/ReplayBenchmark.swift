import Logging
import QMP
import Recording
import Replay
import Transport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `qmpreplay bench replay`: how punctual and how fast the fake QEMU is, measured from the
/// client's side of a real unix socket (figures in docs/REPLAY.md). Nothing here prints.
public enum ReplayBenchmark {
    /// Lateness percentiles (µs) of one run, as the client saw it and as the server scheduled it.
    public struct Timing: Sendable {
        public var speed: Double
        public var events: Int
        public var clientP50us: Double
        public var clientP99us: Double
        public var clientMaxUs: Double
        public var serverP50us: Double
        public var serverP99us: Double
        public var serverMaxUs: Double
    }

    public struct Result: Sendable {
        public var timings: [Timing] = []
        public var maxSpeedEvents = 0
        public var maxSpeedSeconds = 0.0
        public var maxSpeedEventsPerSecond: Double { maxSpeedSeconds > 0 ? Double(maxSpeedEvents) / maxSpeedSeconds : 0 }
        /// Max speed to many clients at once, each on its own timeline: events delivered in
        /// all, over the time from the first negotiation to the last arrival.
        public var manyClients = 0
        public var manyEvents = 0
        public var manyComplete = 0
        public var manySeconds = 0.0
        public var manyEventsPerSecond: Double { manySeconds > 0 ? Double(manyEvents) / manySeconds : 0 }
        public var sharedClients = 0
        public var sharedEvents = 0
        public var sharedSpeed = 0.0
        /// Clients that received every event, of `sharedClients`.
        public var sharedComplete = 0
        public var sharedWorstP99us = 0.0
        public var sharedWorstMaxUs = 0.0
        public var sharedDropped = 0
        /// The server's own release lateness on the shared timeline (p99 and max over clients).
        public var sharedServerP99us = 0.0
        public var sharedServerMaxUs = 0.0
        /// Load average (1 min) when the benchmark ended: the figures mean little on a busy machine.
        public var loadAverage = 0.0
    }

    /// A bursty session: negotiation, then from 1 s on every 50 ms a burst of `burst` events 100 µs apart,
    /// and a lone event between bursts, for `seconds`.
    public static func writeBurstyRecording(path: String, seconds: Double, burst: Int = 10) throws {
        var lines: [(Int64, Direction, String)] = []
        lines.append((0, .qemu, #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#))
        lines.append((1_000_000, .client, #"{"execute":"qmp_capabilities"}"#))
        lines.append((1_100_000, .qemu, #"{"return": {}}"#))
        // The first burst comes 1 s after negotiation, so that clients of a shared timeline
        // (started by the first to negotiate) have all negotiated by then.
        var t: Int64 = 1_000_000_000
        let end = Int64(seconds * 1e9)
        var n = 0
        while t < end {
            for k in 0..<burst {
                lines.append((t + Int64(k) * 100_000, .qemu, event(n, t + Int64(k) * 100_000)))
                n += 1
            }
            lines.append((t + 25_000_000, .qemu, event(n, t + 25_000_000)))
            n += 1
            t += 50_000_000
        }
        try write(lines, to: path)
    }

    /// `count` events 1 µs apart (for the max-speed run).
    public static func writeFloodRecording(path: String, count: Int) throws {
        var lines: [(Int64, Direction, String)] = []
        lines.reserveCapacity(count + 3)
        lines.append((0, .qemu, #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#))
        lines.append((1_000_000, .client, #"{"execute":"qmp_capabilities"}"#))
        lines.append((1_100_000, .qemu, #"{"return": {}}"#))
        for n in 0..<count { lines.append((2_000_000 + Int64(n) * 1000, .qemu, event(n, 2_000_000 + Int64(n) * 1000))) }
        try write(lines, to: path)
    }

    static func event(_ n: Int, _ t: Int64) -> String {
        let us = 1_763_632_800_000_000 + t / 1000
        return #"{"timestamp": {"seconds": \#(us / 1_000_000), "microseconds": \#(us % 1_000_000)}, "event": "BALLOON_CHANGE", "data": {"actual": \#(1_073_741_824 - (n % 256) * 4096)}}"#
    }

    static func write(_ lines: [(Int64, Direction, String)], to path: String) throws {
        let header = RecordingHeader(startMicros: 1_763_632_800_000_000, source: "bench", mode: .synthetic, host: "bench", qemuVersion: "7.2.0")
        let w = try RecordingWriter(path: path, header: header)
        for (t, d, text) in lines {
            try w.message(time: t, connection: 1, from: d, QMPMessage(bytes: Array(text.utf8) + (d == .qemu ? [0x0D, 0x0A] : [0x0A])))
        }
        try w.finish(reason: "complete")
    }

    /// A reading client: negotiates, then notes the arrival time of each event line.
    final class Reader: @unchecked Sendable {
        let fd: Int32
        var sentAt: Int64 = 0
        var arrivals: [Int64] = []
        var error: String?
        let clock = MonotonicClock()

        init(_ ep: Endpoint, expect: Int) throws {
            fd = try Sockets.connect(ep)
            arrivals.reserveCapacity(expect)
        }

        /// Reads the greeting, negotiates and records `expect` events (or stops at EOF).
        func run(expect: Int) {
            // The benchmark measures the server: its own readers ask for the CPU promptly too.
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, -10)
            var buf = [UInt8](repeating: 0, count: 1 << 16)
            var lines = 0
            var sent = false
            while arrivals.count < expect {
                let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { error = "connection closed after \(arrivals.count) events"; return }
                let now = clock.now()
                for i in 0..<n where buf[i] == 0x0A {
                    lines += 1
                    if lines == 1 && !sent {
                        sent = true
                        sentAt = clock.now()
                        Sockets.writeAll(fd, Array(#"{"execute":"qmp_capabilities"}"#.utf8) + [0x0A])
                    } else if lines >= 3 {
                        arrivals.append(now)
                    }
                }
            }
        }

        func close() { Glibc.close(fd) }
    }

    /// Percentile in µs of nanosecond values.
    static func percentile(_ xs: [Int64], _ p: Double) -> Double { Double(SessionReport.percentile(xs, p)) / 1000 }

    /// A server on `workDir/name` with clock-only releases (no barriers: the pure schedule).
    private static func serve(_ rec: Recording, speed: Double?, shared: Bool = false, realtime: Bool, at path: String) throws -> (ReplayServer, Endpoint) {
        var o = ReplayOptions()
        o.realtime = realtime
        o.speed = speed
        o.clockOnly = true
        o.shared = shared
        // The benchmark measures; what the server says (clients connecting) is not its output.
        let server = try ReplayServer(recording: rec, options: o, logger: Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() })
        let ep = Endpoint.unix(path)
        try server.start(listen: ep, socketMode: 0o600)
        return (server, ep)
    }

    /// Runs the three measurements; `workDir` holds the recordings and sockets.
    public static func run(realtime rt: Bool = false, workDir: String, seconds: Double = 6, floodEvents: Int = 400_000, clients: Int = 100,
                           sharedSpeed: Double = 10, speeds: [Double] = [1, 10, 100],
                           progress: (String) -> Void = { _ in }) throws -> Result {
        var result = Result()
        let bursty = workDir + "/bursty.qmprec"
        try writeBurstyRecording(path: bursty, seconds: seconds)
        let rec = try Recording(path: bursty)

        // 1. Lateness at each speed, one client, clock-only (no barriers: pure schedule).
        for speed in speeds {
            progress("lateness at speed \(speed)")
            let (server, ep) = try serve(rec, speed: speed, realtime: rt, at: workDir + "/lat.sock")
            let script = server.script
            let expect = script.clockEvents.count
            let reader = try Reader(ep, expect: expect)
            reader.run(expect: expect)
            reader.close()
            usleep(100_000)
            server.stop()
            if let e = reader.error { throw ReplayError.socket("lateness run: \(e)") }
            var late: [Int64] = []
            for (k, at) in reader.arrivals.enumerated() {
                let ev = script.events[script.clockEvents[k]]
                let due = reader.sentAt + Int64(Double(ev.time - script.spanStart) / speed)
                late.append(max(0, at - due))
            }
            let sr = server.reports.first
            result.timings.append(Timing(
                speed: speed, events: expect,
                clientP50us: percentile(late, 0.5), clientP99us: percentile(late, 0.99), clientMaxUs: percentile(late, 1),
                serverP50us: Double(sr?.latenessPercentile(0.5) ?? 0) / 1000, serverP99us: Double(sr?.latenessPercentile(0.99) ?? 0) / 1000,
                serverMaxUs: Double(sr?.lateness.max() ?? 0) / 1000))
        }

        // 2. Max speed to one client.
        progress("max speed, \(floodEvents) events")
        let flood = workDir + "/flood.qmprec"
        try writeFloodRecording(path: flood, count: floodEvents)
        do {
            let (server, ep) = try serve(try Recording(path: flood), speed: nil, realtime: rt, at: workDir + "/max.sock")
            let reader = try Reader(ep, expect: floodEvents)
            reader.run(expect: floodEvents)
            reader.close()
            server.stop()
            if let e = reader.error { throw ReplayError.socket("max-speed run: \(e)") }
            result.maxSpeedEvents = reader.arrivals.count
            result.maxSpeedSeconds = Double((reader.arrivals.last ?? reader.sentAt) - reader.sentAt) / 1e9
        }

        // 2b. Max speed to `clients` clients at once, each on its own timeline.
        progress("max speed, \(clients) clients")
        do {
            let per = max(1000, floodEvents / 20)
            let few = workDir + "/flood-many.qmprec"
            try writeFloodRecording(path: few, count: per)
            let (server, ep) = try serve(try Recording(path: few), speed: nil, realtime: rt, at: workDir + "/many.sock")
            var readers: [Reader] = []
            for _ in 0..<clients { readers.append(try Reader(ep, expect: per)) }
            let threads = readers.map { r in JoinableThread { r.run(expect: per) } }
            for t in threads { t.join() }
            for r in readers { r.close() }
            server.stop()
            let first = readers.map(\.sentAt).min() ?? 0
            let last = readers.compactMap(\.arrivals.last).max() ?? first
            result.manyClients = clients
            result.manyEvents = readers.reduce(0) { $0 + $1.arrivals.count }
            result.manyComplete = readers.filter { $0.arrivals.count == per }.count
            result.manySeconds = Double(last - first) / 1e9
        }

        // 3. Many clients on one shared timeline.
        progress("\(clients) clients, shared timeline at speed \(sharedSpeed)")
        do {
            let (server, ep) = try serve(rec, speed: sharedSpeed, shared: true, realtime: rt, at: workDir + "/shared.sock")
            let expect = server.script.clockEvents.count
            // All connect and negotiate before the timeline starts, so all expect every event:
            // the first negotiation starts it, so readers must be ready first.
            var readers: [Reader] = []
            for _ in 0..<clients { readers.append(try Reader(ep, expect: expect)) }
            let threads = readers.map { r in JoinableThread { r.run(expect: expect) } }
            for t in threads { t.join() }
            for r in readers { r.close() }
            usleep(100_000)
            server.stop()
            let script = server.script
            // Lateness against the timeline's start: the first client's negotiation.
            let start = readers.map(\.sentAt).min() ?? 0
            var worst99 = 0.0, worstMax = 0.0
            var complete = 0
            for r in readers {
                if r.arrivals.count == expect { complete += 1 }
                var late: [Int64] = []
                for (k, at) in r.arrivals.enumerated() {
                    let ev = script.events[script.clockEvents[k]]
                    late.append(max(0, at - (start + Int64(Double(ev.time - script.spanStart) / sharedSpeed))))
                }
                worst99 = max(worst99, percentile(late, 0.99))
                worstMax = max(worstMax, percentile(late, 1))
            }
            result.sharedClients = clients
            result.sharedEvents = expect
            result.sharedSpeed = sharedSpeed
            result.sharedComplete = complete
            result.sharedWorstP99us = worst99
            result.sharedWorstMaxUs = worstMax
            result.sharedDropped = server.reports.filter { $0.dropped != nil }.count
            result.sharedServerP99us = Double(server.reports.map { $0.latenessPercentile(0.99) }.max() ?? 0) / 1000
            result.sharedServerMaxUs = Double(server.reports.compactMap { $0.lateness.max() }.max() ?? 0) / 1000
        }
        var load = [Double](repeating: 0, count: 3)
        if getloadavg(&load, 3) > 0 { result.loadAverage = load[0] }
        return result
    }
}
