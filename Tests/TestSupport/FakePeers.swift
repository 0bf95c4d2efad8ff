import QMP
import Recording
import Synchronization
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// A blocking QMP client for the benchmark: greeting, negotiation, then line round trips.
public final class LineClient {
    public let fd: Int32
    private var buf = [UInt8](repeating: 0, count: 1 << 16)
    private var pending: [UInt8] = []
    /// Start of the unread part of `pending` (lines are consumed by moving this, not by
    /// shifting the array, which made reading a large burst quadratic).
    private var start = 0

    /// Connects; with `negotiate`, reads the greeting and negotiates. A read that waits more
    /// than 30 s fails (a test that would hang fails instead).
    public init(_ ep: Endpoint, negotiate: Bool = true) throws {
        fd = try Sockets.connect(ep)
        var tv = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard negotiate else { return }
        _ = try readLine()  // greeting
        _ = try roundTrip(Array("{\"execute\":\"qmp_capabilities\"}\n".utf8))
    }

    public func close() { Glibc.close(fd) }

    public func send(_ bytes: [UInt8]) { Sockets.writeAll(fd, bytes) }

    struct Closed: Error {}

    public func readLine() throws -> ArraySlice<UInt8> {
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
    public func roundTrip(_ cmd: [UInt8]) throws -> Int64 {
        let t0 = WallClock.monotonicNanos()
        Sockets.writeAll(fd, cmd)
        while true {
            let line = try readLine()
            if line.starts(with: Array("{\"return\"".utf8)) || line.starts(with: Array("{\"error\"".utf8)) { break }
        }
        return WallClock.monotonicNanos() - t0
    }

    /// Sends `count` commands in batches and reads all replies; returns messages moved both ways.
    public func pipelined(_ cmd: [UInt8], count: Int) throws -> Int {
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
    public func flood(_ n: Int) throws -> Int {
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
public final class FastQMPPeer: @unchecked Sendable {
    private let listenFD: Int32
    private var threads: [JoinableThread] = []
    /// Read by the accept loop while `stop()` sets it from another thread.
    private let stopped = Atomic<Bool>(false)
    private let path: String

    public init(path: String) throws {
        self.path = path
        listenFD = try Sockets.listen(.unix(path))
        let acceptor = JoinableThread { [unowned self] in self.acceptLoop() }
        threads.append(acceptor)
    }

    public func stop() {
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
                // A command with an id gets it back, as from QEMU (the live shell's recorder
                // pairs its replies by id); the benchmarks' commands carry none.
                if line.firstRange(of: Array("\"id\"".utf8)) != nil, let id = (try? JSONParser.parse(line))?["id"] {
                    out += Array(#"{"return": {}, "id": "#.utf8) + id.serializedBytes() + [0x7D, 13, 10]
                } else {
                    out += ret
                }
                line.removeAll(keepingCapacity: true)
            }
            if !out.isEmpty { Sockets.writeAll(fd, out) }
        }
        close(fd)
    }
}
