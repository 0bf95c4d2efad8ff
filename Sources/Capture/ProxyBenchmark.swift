import QMP
import Recording
import Synchronization

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
        let proxy = ProxyRecorder(config: cfg, options: CaptureOptions(output: output))
        let thread = JoinableThread { _ = try? proxy.run() }
        // Wait for the proxy socket.
        for _ in 0..<200 where (try? Sockets.connect(listen)).map({ close($0); return false }) ?? true { usleep(10_000) }

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
        usleep(200_000)
        proxy.stop()
        thread.join()
        let recorded = (try? Recording(path: output).count) ?? 0
        return Result(upstream: given?.description ?? "in-process fast QMP peer", iterations: iterations, direct: d, proxied: p,
                      messages: messages, seconds: secs, recorded: recorded)
    }
}

/// A blocking QMP client for the benchmark: greeting, negotiation, then line round trips.
final class LineClient {
    let fd: Int32
    private var buf = [UInt8](repeating: 0, count: 1 << 16)
    private var pending: [UInt8] = []
    /// Start of the unread part of `pending` (lines are consumed by moving this, not by
    /// shifting the array, which made reading a large burst quadratic).
    private var start = 0

    init(_ ep: Endpoint) throws {
        fd = try Sockets.connect(ep)
        _ = try readLine()  // greeting
        _ = try roundTrip(Array("{\"execute\":\"qmp_capabilities\"}\n".utf8))
    }

    func close() { Glibc.close(fd) }

    struct Closed: Error {}

    func readLine() throws -> ArraySlice<UInt8> {
        while true {
            if let nl = pending[start...].firstIndex(of: 0x0A) {
                let line = pending[start..<nl]
                start = nl + 1
                return line
            }
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { throw Closed() }
            if start > 0 {
                pending.removeFirst(start)
                start = 0
            }
            pending += buf[..<n]
        }
    }

    /// Sends a command and waits for its reply (skipping events); returns ns.
    func roundTrip(_ cmd: [UInt8]) throws -> Int64 {
        let t0 = WallClock.monotonicNanos()
        Sockets.writeAll(fd, cmd)
        while true {
            let line = try readLine()
            if line.starts(with: Array("{\"return\"".utf8)) || line.starts(with: Array("{\"error\"".utf8)) { break }
        }
        return WallClock.monotonicNanos() - t0
    }

    /// Sends `count` commands in batches and reads all replies; returns messages moved both ways.
    func pipelined(_ cmd: [UInt8], count: Int) throws -> Int {
        var sent = 0, replies = 0
        while replies < count {
            if sent - replies < 64 && sent < count {
                let batch = min(64, count - sent)
                Sockets.writeAll(fd, Array(repeating: cmd, count: batch).flatMap { $0 })
                sent += batch
            }
            let line = try readLine()
            if line.starts(with: Array("{\"return\"".utf8)) || line.starts(with: Array("{\"error\"".utf8)) { replies += 1 }
        }
        return sent + replies
    }

    /// Asks the fake peer for `n` events and reads them all; returns messages received.
    func flood(_ n: Int) throws -> Int {
        Sockets.writeAll(fd, Array("{\"execute\":\"flood\",\"arguments\":{\"n\":\(n)}}\n".utf8))
        var got = 0
        while true {
            let line = try readLine()
            got += 1
            if line.starts(with: Array("{\"return\"".utf8)) { return got }
        }
    }
}

/// A minimal QMP server that answers every command at once with `{"return": {}}` and, for
/// `flood`, first sends N BALLOON_CHANGE events: a peer fast enough that the benchmark
/// measures the proxy, not QEMU.
final class FastQMPPeer: @unchecked Sendable {
    private let listenFD: Int32
    private var threads: [JoinableThread] = []
    /// Read by the accept loop while `stop()` sets it from another thread.
    private let stopped = Atomic<Bool>(false)
    private let path: String

    init(path: String) throws {
        self.path = path
        listenFD = try Sockets.listen(.unix(path))
        let acceptor = JoinableThread { [unowned self] in self.acceptLoop() }
        threads.append(acceptor)
    }

    func stop() {
        stopped.store(true, ordering: .releasing)
        // Wake the accept loop, wait for it, and only then close: closing a descriptor that
        // another thread is blocked on could let a new socket reuse its number underneath it.
        shutdown(listenFD, Int32(SHUT_RDWR))
        for t in threads { t.join() }
        threads.removeAll()
        close(listenFD)
        unlink(path)
    }

    private func acceptLoop() {
        while !stopped.load(ordering: .acquiring), let (fd, _) = Sockets.accept(listenFD) {
            JoinableThread { FastQMPPeer.serve(fd) }.detach()
        }
    }

    private static func serve(_ fd: Int32) {
        let greeting = Array(#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "fast-peer"}, "capabilities": []}}"#.utf8) + [13, 10]
        Sockets.writeAll(fd, greeting)
        let ret = Array(#"{"return": {}}"#.utf8) + [13, 10]
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        var line: [UInt8] = []
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            var out: [UInt8] = []
            for c in buf[..<n] {
                if c != 0x0A { line.append(c); continue }
                if let r = line.firstRange(of: Array("\"flood\"".utf8)), r.lowerBound > 0,
                   let v = try? JSONParser.parse(line), let count = v["arguments"]?["n"]?.int64Value {
                    var burst: [UInt8] = []
                    for i in 0..<Int(count) {
                        burst += Array(#"{"timestamp": {"seconds": 1763632800, "microseconds": \#(i % 1_000_000)}, "event": "BALLOON_CHANGE", "data": {"actual": \#(1_073_741_824 - i * 4096)}}"#.utf8) + [13, 10]
                        if burst.count > 1 << 16 { Sockets.writeAll(fd, burst); burst.removeAll(keepingCapacity: true) }
                    }
                    Sockets.writeAll(fd, burst)
                }
                out += ret
                line.removeAll(keepingCapacity: true)
            }
            if !out.isEmpty { Sockets.writeAll(fd, out) }
        }
        close(fd)
    }
}

/// A pthread that runs a closure and can be joined.
public final class JoinableThread: @unchecked Sendable {
    private var tid = pthread_t()
    private let body: () -> Void

    public init(_ body: @escaping () -> Void) {
        self.body = body
        let ctx = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&tid, nil, { p in
            let me = Unmanaged<JoinableThread>.fromOpaque(p!).takeRetainedValue()
            me.body()
            return nil
        }, ctx)
    }

    public func join() { pthread_join(tid, nil) }
    public func detach() { pthread_detach(tid) }
}
