import NIOCore
import QMP
import Recording
import Testing
@testable import Replay
import TestSupport
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// The server over a real unix socket and real (blocking) clients: the control API the
/// shell's `replay ...` commands call, and a clean stop. Timing and drop rules are tested on
/// an embedded loop (ServerLoopTests); these assert behaviour only.
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
        let logs = LogLines()
        let server = try ReplayServer(recording: r, options: o, logger: logs.logger)
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
        #expect(logs.contains("client 1 connected [peer=unix]"))
        #expect(logs.contains("client 1 disconnected: server stopped"))
    }

    /// A command that fails between making a server and starting it (a bad option found
    /// late) drops it unstarted: its end-of-serving promise is completed on release, not
    /// leaked (in a debug build NIO stops the process on a leaked promise).
    @Test func aServerNeverStartedIsReleasedCleanly() throws {
        let r = try TestRecording.recording()
        var loop: EventLoop?
        do {
            let server = try ReplayServer(recording: r, options: ReplayOptions(), logger: LogLines().logger)
            loop = server.loop
        }
        // The release queued the completion on the server's loop; let it run.
        try loop?.submit {}.wait()
        #expect(loop != nil)
    }

    @Test func replyGoesOutBeforeTheClientsHalfCloseEndsTheSession() throws {
        var lines = Array(TestRecording.session.prefix(3))
        lines.append((2_000_000_000, .client, #"{"execute":"quit"}"#))
        lines.append((2_000_100_000, .qemu, #"{"return": {}}"#))
        let r = try TestRecording.recording(lines)
        let path = TestRecording.tempPath("q.sock")
        let server = try ReplayServer(recording: r, options: ReplayOptions(), logger: LogLines().logger)
        try server.start(listen: .unix(path), socketMode: 0o600)
        defer { server.stop() }
        let fd = try Sockets.connect(.unix(path))
        defer { close(fd) }
        let c = LineReader(fd)
        #expect(c.line()?.hasPrefix(#"{"QMP""#) == true)
        // Negotiation and quit in one write, then the client's side shut, as a quitting client does.
        c.send(#"{"execute":"qmp_capabilities"}"# + "\n" + #"{"execute":"quit","id":9}"# + "\n")
        shutdown(fd, Int32(SHUT_WR))
        #expect(c.line() == #"{"return": {}}"#)
        #expect(c.line() == #"{"return": {}, "id": 9}"#)
        #expect(c.line()?.contains(#""event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}"#) == true)
        #expect(c.line() == nil)
        let report = server.reports(after: 0)
        #expect(report.count == 1 && report[0].closeReason == "the client sent quit")
        #expect(report[0].commandsMatched == 1 && report[0].commandsReceived == 2)
    }
}
