import Logging
import QMP
import Recording
import Synchronization

import Transport
import Capture
import TestSupport
import Replay
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Measures what the proxy costs: the round-trip latency a command gains by going through
/// `ProxyRecorder` instead of straight to the same socket, and how many messages per
/// second pass through it (while being recorded). Runs against a real QEMU when given its
/// socket, or against `FastQMPPeer`, a minimal in-process QMP server that answers at once.
public enum ProxyBenchmark {
    public struct Result: Sendable {
        public var upstream: String
        public var iterations: Int
        public var direct: [Int64]
        public var proxied: [Int64]
        public var messages: Int
        public var seconds: Double
        public var recorded: Int

        public func percentile(_ xs: [Int64], _ p: Double) -> Int64 {
            let s = xs.sorted()
            guard !s.isEmpty else { return 0 }
            return s[min(s.count - 1, Int(Double(s.count - 1) * p))]
        }
        public var messagesPerSecond: Double { Double(messages) / seconds }
    }

    public static func run(upstream given: Endpoint?, iterations: Int, floodMessages: Int, workDir: String) throws -> Result {
        var peer: FastQMPPeer?
        let upstream: Endpoint
        if let given {
            upstream = given
        } else {
            let p = try FastQMPPeer(path: workDir + "/fake-qemu.sock")
            peer = p
            upstream = .unix(workDir + "/fake-qemu.sock")
        }
        defer { peer?.stop() }
        let listen = Endpoint.unix(workDir + "/proxy.sock")
        let output = workDir + "/proxy-bench.qmprec"
        var cfg = ProxyModeConfig(listen: listen, upstream: upstream)
        cfg.maxClients = 4
        // Quiet: the benchmark prints its figures only.
        let quiet = RecorderContext(logger: Logger(label: "qmpreplay.bench") { _ in SwiftLogNoOpLogHandler() })
        let proxy = ProxyRecorder(config: cfg, options: CaptureOptions(output: output), context: quiet)
        try proxy.start()   // returns once the proxy accepts clients

        let cmd = Array("{\"execute\":\"query-status\"}\n".utf8)
        var d: [Int64] = [], p: [Int64] = []
        let proxied: LineClient
        if peer != nil {
            // Alternate direct and proxied round trips so both see the same machine noise.
            let direct = try LineClient(upstream)
            proxied = try LineClient(listen)
            for i in 0..<(iterations + 50) {
                let a = try direct.roundTrip(cmd)
                let b = try proxied.roundTrip(cmd)
                if i >= 50 { d.append(a); p.append(b) }  // warm-up
            }
            direct.close()
        } else {
            // QEMU's monitor serves one connection at a time: direct first, then proxied,
            // in alternating blocks so that both still see similar machine noise.
            let blocks = 10
            for _ in 0..<blocks {
                let direct = try LineClient(upstream)
                for i in 0..<(iterations / blocks + 5) { let a = try direct.roundTrip(cmd); if i >= 5 { d.append(a) } }
                direct.close()
                usleep(20_000)
                let c = try LineClient(listen)
                for i in 0..<(iterations / blocks + 5) { let b = try c.roundTrip(cmd); if i >= 5 { p.append(b) } }
                c.close()
                usleep(20_000)
            }
            proxied = try LineClient(listen)
        }
        // Throughput: pipelined commands (and, against the fake peer, an event flood).
        let t0 = WallClock.monotonicNanos()
        var messages = 0
        if peer != nil {
            messages = try proxied.flood(floodMessages)
        } else {
            messages = try proxied.pipelined(cmd, count: floodMessages)
        }
        let secs = Double(WallClock.monotonicNanos() - t0) / 1e9
        proxied.close()
        proxy.stop(by: "the benchmark")
        _ = proxy.wait()
        let recorded = (try? Recording(path: output).count) ?? 0
        return Result(upstream: given?.description ?? "in-process fast QMP peer", iterations: iterations, direct: d, proxied: p,
                      messages: messages, seconds: secs, recorded: recorded)
    }
}
