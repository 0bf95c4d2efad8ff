import Capture
import QMP
import Recording
import Shell
import TestSupport
import Transport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Measures the live shell's latency: from a message arriving at the recorder's socket to
/// its record printed at a following cursor. The shell records (`LiveRecorder`, as `shell
/// --connect` does) and follows the file it writes the way the terminal loop does
/// (`LiveWait`, then `ShellSession.refresh()`); another thread makes QEMU (or the in-process
/// fast peer) send one message every `interval`. A record's arrival is its receive time in
/// the file (the recorder's clock, started just after the benchmark's own stamp, so the
/// figures are if anything a little high); it is printed when `refresh` returns with it.
public enum LiveShellBenchmark {
    public struct Result: Sendable {
        public var upstream: String
        /// Nanoseconds from arrival to print, one per message from QEMU.
        public var latencies: [Int64]
        /// Records in the recording when the measurement started (the backlog).
        public var backlog: Int
        public var records: Int

        public func percentile(_ p: Double) -> Int64 {
            let s = latencies.sorted()
            guard !s.isEmpty else { return 0 }
            return s[min(s.count - 1, Int(Double(s.count - 1) * p))]
        }
    }

    /// Discards what the session prints (the figures are the point).
    final class NullOutput: ShellOutput {
        func write(_ s: String) {}
        var colors: Bool { false }
        var width: Int { 120 }
    }

    public static func run(upstream given: Endpoint?, samples: Int, intervalNanos: Int64, backlog: Int, workDir: String) throws -> Result {
        var peer: FastQMPPeer?
        let upstream: Endpoint
        if let given {
            upstream = given
        } else {
            peer = try FastQMPPeer(path: workDir + "/fake-qemu.sock")
            upstream = .unix(workDir + "/fake-qemu.sock")
        }
        defer { peer?.stop() }
        var cfg = ClientModeConfig(endpoint: upstream)
        cfg.initCommands = []
        var options = CaptureOptions(output: workDir + "/live-bench.qmprec")
        options.replaceExisting = true
        let live = LiveRecorder(config: cfg, options: options)
        let start = WallClock.monotonicNanos()
        let session = try ShellSession(recording: try live.start(), out: NullOutput())
        session.goLive(recorder: live)
        defer { live.stop() }
        let wait = LiveWait(path: session.recording.path)

        // The fast peer can grow a backlog first (BALLOON_CHANGE events), so that the figure
        // includes extending a large index.
        if peer != nil && backlog > 0 {
            live.recorder.send(RecorderCommand(name: "flood", arguments: JSONObject(["n": .int(backlog)]))) { _ in }
            while session.recording.count < backlog {
                _ = wait.next(input: -1)
                session.refresh()
            }
        }
        let first = session.recording.count
        // QEMU answers query-status; the fast peer's flood of 1 is one event and a return.
        let command = peer != nil ? RecorderCommand(name: "flood", arguments: JSONObject(["n": .int(1)]))
            : RecorderCommand(name: "query-status")
        let sender = JoinableThread {
            for _ in 0..<samples {
                live.recorder.send(command) { _ in }
                usleep(UInt32(intervalNanos / 1000))
            }
        }
        var latencies: [Int64] = []
        let wanted = samples * (peer != nil ? 2 : 1)
        var seen = first
        let deadline = WallClock.monotonicNanos() + Int64(samples) * intervalNanos + 10_000_000_000
        while latencies.count < wanted && WallClock.monotonicNanos() < deadline {
            _ = wait.next(input: -1)
            session.refresh()
            let printed = WallClock.monotonicNanos()
            let r = session.recording
            while seen < r.count {
                if r.direction(seen) == .qemu { latencies.append(printed - (start + r.time(seen))) }
                seen += 1
            }
        }
        sender.join()
        return Result(upstream: upstream.description, latencies: latencies, backlog: first, records: session.recording.count)
    }
}
