import Foundation
import QMP
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// A real QEMU started for one comparison (`diff-qemu`) or one `serve --record-missing`:
/// its command line plus `-qmp` on a unix socket in a private directory, its QMP
/// connection (greeting read, not yet negotiated), and its stderr kept for errors.
/// Blocking: every call waits on the socket (`FDWait`) with a deadline.
///
/// Example: `let q = try LiveQEMU(argv: ["qemu-system-x86_64", "-machine", "none"])`;
/// `try q.send(#"{"execute":"qmp_capabilities"}"#)`; `try q.next(within: 5_000_000_000)`.
public final class LiveQEMU {
    public let argv: [String]
    /// The greeting QEMU sent.
    public private(set) var greeting = JSONObject()
    private let process: Process
    private let dir: String
    private var fd: Int32 = -1
    private var input: [UInt8] = []

    /// Starts QEMU and connects to its monitor; `startTimeout` ns for both.
    public init(argv: [String], startTimeout: Int64 = 20_000_000_000) throws(LiveQEMUError) {
        guard !argv.isEmpty else { throw LiveQEMUError("an empty QEMU command line") }
        var template = Array("/tmp/qmpreplay-live-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw LiveQEMUError("cannot make a private directory in /tmp: \(String(cString: strerror(errno)))")
        }
        dir = String(cString: made)
        let sock = dir + "/qmp.sock"
        self.argv = argv + ["-qmp", "unix:\(sock),server=on,wait=off"]
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = self.argv
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: dir + "/stderr", contents: nil)
        process.standardError = FileHandle(forWritingAtPath: dir + "/stderr")
        do { try process.run() } catch {
            throw LiveQEMUError("cannot start \(argv[0]): \(error)")
        }
        let deadline = MonotonicClock().now() + startTimeout
        var connected = false
        while !connected {
            if !process.isRunning { throw LiveQEMUError("\(argv[0]) exited (status \(process.terminationStatus)) before its monitor was up: \(LiveQEMU.tail(dir + "/stderr"))") }
            if MonotonicClock().now() > deadline { stop(); throw LiveQEMUError("\(argv[0])'s monitor did not come up within \(startTimeout / 1_000_000_000)s") }
            connected = LiveQEMU.connect(sock).map { fd = $0; return true } ?? false
            if !connected { usleep(10_000) }
        }
        var g: JSONObject?
        do { g = try LiveQEMU.readGreeting(self, deadline: deadline) } catch { stop(); throw error }
        guard let greeting = g else { stop(); throw LiveQEMUError("\(argv[0]) sent no greeting") }
        self.greeting = greeting
    }

    private static func readGreeting(_ q: LiveQEMU, deadline: Int64) throws(LiveQEMUError) -> JSONObject? {
        try q.next(within: max(0, deadline - MonotonicClock().now()))
    }

    private static func connect(_ path: String) -> Int32? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { close(fd); return nil }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
            p[bytes.count] = 0
        }
        let r = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if r != 0 { close(fd); return nil }
        return fd
    }

    /// Writes one message (a newline is added).
    public func send(_ text: String) throws(LiveQEMUError) {
        var bytes = Array(text.utf8) + [0x0A]
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw LiveQEMUError("writing to QEMU's monitor: \(String(cString: strerror(errno)))") }
            off += n
        }
    }

    /// The next message QEMU writes, within `ns`; nil when the time ran out. Throws when the
    /// monitor closed (QEMU exited) or wrote something that is not a JSON object.
    public func next(within ns: Int64) throws(LiveQEMUError) -> JSONObject? {
        let deadline = MonotonicClock().now() + ns
        while true {
            if let nl = input.firstIndex(of: 0x0A) {
                let line = Array(input[..<nl])
                input.removeSubrange(...nl)
                guard line.contains(where: { $0 != 0x0D && $0 != 0x20 }) else { continue }
                guard case .object(let o)? = try? JSONParser.parse(line) else {
                    throw LiveQEMUError("QEMU wrote a line that is not a JSON object: \(String(decoding: line.prefix(200), as: UTF8.self))")
                }
                return o
            }
            let left = deadline - MonotonicClock().now()
            guard left > 0 else { return nil }
            let ev = FDWait.wait(fd, for: Int16(POLLIN), timeoutMs: Int32(min(left / 1_000_000 + 1, 60_000)))
            if ev == 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw LiveQEMUError("QEMU closed its monitor\(process.isRunning ? "" : " and exited")") }
            input += chunk[..<n]
        }
    }

    /// True while the QEMU process runs.
    public var isRunning: Bool { process.isRunning }

    /// Ends QEMU (SIGTERM, then SIGKILL after a second) and removes the private directory.
    public func stop() {
        if fd >= 0 { close(fd); fd = -1 }
        if process.isRunning {
            process.terminate()
            for _ in 0..<100 where process.isRunning { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: dir)
    }

    deinit { stop() }

    private static func tail(_ path: String) -> String {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        let t = text.split(separator: "\n").suffix(3).joined(separator: " | ")
        return t.isEmpty ? "(no output)" : t
    }
}

/// A real QEMU could not be started or talked to; the message names the binary and the reason.
public struct LiveQEMUError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}
