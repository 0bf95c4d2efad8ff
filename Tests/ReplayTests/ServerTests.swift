import QMP
import Recording
import Testing
@testable import Replay

import Transport

#if canImport(Glibc)
import Glibc
#endif

/// The server's control API (what the shell's `replay ...` commands call) over a real socket.
struct ServerTests {
    /// Reads CR LF lines from a blocking socket with a timeout.
    final class LineReader {
        let fd: Int32
        var buf: [UInt8] = []
        init(_ fd: Int32) {
            self.fd = fd
            var tv = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
        func line() -> String? {
            while true {
                if let i = buf.firstIndex(of: 0x0A) {
                    let l = String(decoding: buf[..<max(0, i - 1)], as: UTF8.self)
                    buf.removeFirst(i + 1)
                    return l
                }
                var chunk = [UInt8](repeating: 0, count: 4096)
                let n = recv(fd, &chunk, chunk.count, 0)
                if n <= 0 { return nil }
                buf += chunk[0..<n]
            }
        }
        func send(_ s: String) { Sockets.writeAll(fd, Array(s.utf8)) }
    }

    @Test func controlAPIAndCleanStop() throws {
        let r = try TestRecording.recording()
        let path = TestRecording.tempPath("s.sock")
        var o = ReplayOptions()
        o.clockOnly = true
        o.speed = 1
        let server = try ReplayServer(recording: r, options: o)
        let logs = LogBox()
        server.onLog = { logs.add($0) }
        try server.start(listen: .unix(path), socketMode: 0o600)
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o600)

        let fd = try Sockets.connect(.unix(path))
        let c = LineReader(fd)
        #expect(c.line()?.hasPrefix(#"{"QMP""#) == true)
        c.send(#"{"execute":"qmp_capabilities"}"# + "\n")
        #expect(c.line() == #"{"return": {}}"#)
        server.pause()
        var s = server.status()
        #expect(s.paused && s.clients == 1 && s.negotiatedClients == 1 && s.speed == 1)
        #expect(s.description.contains("paused"))
        server.setSpeed(nil)
        server.seek(toMicros: 8_000_000)
        server.resume()
        // From 8 s at max speed: RESUME (8.00005 s) then RTC_CHANGE.
        #expect(c.line()?.contains("RESUME") == true)
        #expect(c.line()?.contains("RTC_CHANGE") == true)
        s = server.status()
        #expect(s.eventsSent == 2 && s.speed == nil && !s.paused)
        server.stop()
        #expect(c.line() == nil)
        close(fd)
        #expect(server.reports.count == 1)
        #expect(server.reports[0].eventsSent == 2)
        #expect(!server.status().running)
        #expect(stat(path, &st) != 0)
        #expect(logs.all.contains { $0.contains("client 1 connected") })
    }

    @Test func slowClientIsDroppedOthersGoOn() throws {
        // 20,000 events 1 µs apart, replayed at max speed in a loop.
        var lines = Array(TestRecording.session.prefix(3))
        for k in 0..<2000 { lines.append((2_000_000_000 + Int64(k) * 1000, .qemu, TestRecording.ev("RTC_CHANGE", 2, data: #"{"offset": \#(k)}"#))) }
        let r = try TestRecording.recording(lines)
        let path = TestRecording.tempPath("d.sock")
        var o = ReplayOptions()
        o.speed = nil
        o.loop = true
        o.clientBufferLimit = 64 << 10
        // At max speed the replay follows each reader, so a non-reader is caught by the stall timeout.
        o.stallTimeout = 300_000_000
        let server = try ReplayServer(recording: r, options: o)
        try server.start(listen: .unix(path), socketMode: 0o600)
        defer { server.stop() }
        let slowFD = try Sockets.connect(.unix(path))
        let slow = LineReader(slowFD)
        _ = slow.line()
        slow.send(#"{"execute":"qmp_capabilities"}"# + "\n")
        let fastFD = try Sockets.connect(.unix(path))
        let fast = LineReader(fastFD)
        _ = fast.line()
        fast.send(#"{"execute":"qmp_capabilities"}"# + "\n")
        // Keep reading on the fast client until the slow one is dropped.
        var got = 0
        var droppedClient: Int?
        let t0 = MonotonicClock().now()
        while droppedClient == nil, MonotonicClock().now() - t0 < 10_000_000_000 {
            for _ in 0..<1000 where fast.line() != nil { got += 1 }
            droppedClient = server.reports.first { $0.dropped?.contains("nothing written for") == true }?.client
        }
        #expect(droppedClient == 1)
        // ... and the fast one is still served.
        var more = 0
        for _ in 0..<5000 where fast.line() != nil { more += 1 }
        #expect(more == 5000)
        #expect(got > 1000)
        #expect(server.status().clients == 1)
        close(slowFD)
        close(fastFD)
    }
}

final class LogBox: @unchecked Sendable {
    private let lock = Lock()
    private var lines: [String] = []
    func add(_ s: String) { lock.withLock { lines.append(s) } }
    var all: [String] { lock.withLock { lines } }
}
