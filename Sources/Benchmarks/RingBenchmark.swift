import Capture
import Foundation
import Logging
import QMP
import Recording

#if canImport(Glibc)
import Glibc
#endif

/// `qmpreplay bench ring`: a month of 1 Hz polling (`query-status` and its reply, one pair a
/// second of a virtual clock) fed through the recorder's sink in dashcam mode (framing,
/// redaction, encoding, the ring), with the ring's bytes and the process's resident memory
/// sampled every simulated day (with the event triggers the caller gives: the default ones
/// match every record). The ring must stay within its bound and the resident memory
/// must not grow once the window is full. At the end one trigger writes an incident file,
/// which must hold the window.
public enum RingBenchmark {
    /// One sample, at the end of a simulated day.
    public struct Sample: Sendable {
        public var day: Int
        public var messages: Int
        public var ringRecords: Int
        public var ringBytes: Int
        public var rss: Int
    }

    public struct Result: Sendable {
        public var samples: [Sample] = []
        public var messages = 0
        public var bound = 0
        public var ringPeakBytes = 0
        /// VmHWM: the most resident memory the process ever had.
        public var peakRSS = 0
        public var lost = 0
        public var incidentRecords = 0
        public var incidentBytes: Int64 = 0
        public var seconds = 0.0
    }

    /// Feeds `days` of polling through a ring of `window` (ns) capped at `bound` bytes, in
    /// `workDir` (the incident file goes there).
    /// `detector`: the event triggers every record goes through (the CLI passes the default ones).
    public static func run(workDir: String, days: Int = 30, window: Int64 = 600_000_000_000, bound: Int = 64 << 20,
                           detector: (any IncidentDetector)? = nil, progress: (String) -> Void = { _ in }) throws -> Result {
        var options = CaptureOptions(output: workDir + "/unused.qmprec")
        options.stopBudget = 600_000_000_000
        var cam = DashcamOptions(bound: RingBound(nanoseconds: window, bytes: bound), directory: workDir + "/incidents")
        cam.after = 0
        cam.detector = detector
        options.ring = cam
        var quiet = Logger(label: "qmpreplay.bench.ring")
        quiet.logLevel = .warning
        let sink = try CaptureSink(header: RecordingHeader(startMicros: WallClock.nowMicros(), source: "bench", mode: .client),
                                   options: options, logger: quiet)
        var result = Result()
        result.bound = bound
        let t0 = WallClock.monotonicNanos()
        let second: Int64 = 1_000_000_000
        sink.open(0, 1, peer: "bench")
        sink.data(1000, 1, .qemu, Array(#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#.utf8) + [13, 10])
        sink.data(2000, 1, .client, Array(#"{"execute": "qmp_capabilities", "id": 0}"#.utf8) + [10])
        sink.data(3000, 1, .qemu, Array(#"{"return": {}, "id": 0}"#.utf8) + [13, 10])
        var n = 0
        for day in 1...days {
            for s in 0..<86_400 {
                n += 1
                let t = Int64((day - 1) * 86_400 + s + 1) * second
                sink.data(t, 1, .client, Array(#"{"execute": "query-status", "id": \#(n)}"#.utf8) + [10])
                sink.data(t + 400_000, 1, .qemu, Array(#"{"return": {"status": "running", "singlestep": false, "running": true}, "id": \#(n)}"#.utf8) + [13, 10])
                // Never outrun the encoder (its input queue would drop chunks and count them),
                // and keep the backlog small: the queues keep the capacity of the largest
                // backlog they held, which would show in the resident memory as steps that
                // have nothing to do with the ring.
                if n % 256 == 0 { while sink.queuedBytes > 256 << 10 { usleep(200) } }
            }
            while sink.queuedBytes > 0 { usleep(1000) }
            let st = sink.currentStats
            result.samples.append(Sample(day: day, messages: 2 * n, ringRecords: st.ringRecords, ringBytes: st.ringBytes, rss: ReplayMemoryBenchmark.residentBytes()))
            progress("day \(day): \(2 * n) messages, ring \(st.ringRecords) records, \(st.ringBytes) bytes")
        }
        let end = Int64(days * 86_400 + 1) * second
        sink.trigger(end, IncidentTrigger(source: "control", name: "control", detail: "bench ring: end of the month"))
        sink.finish(reason: "bench", time: end + 1)
        let st = sink.currentStats
        result.messages = 2 * n
        result.ringPeakBytes = st.ringPeakBytes
        result.lost = st.lostMessages
        result.peakRSS = ReplayMemoryBenchmark.peakResidentBytes()
        if let part = st.parts.last {
            result.incidentBytes = part.bytes
            result.incidentRecords = (try? Recording(path: part.path).count) ?? 0
        }
        result.seconds = Double(WallClock.monotonicNanos() - t0) / 1e9
        return result
    }
}
