import Logging
import QMP
import Recording
import Replay
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// What idle clients cost the fake QEMU: `clients` clients connect to `serve` of a recording
/// with `events` events (one a second, so an idle client is sent almost nothing while it is
/// measured), negotiate and then only listen. The process's resident memory is read before,
/// with every client negotiated, and after they have all left (issue 13's target: 1,000
/// clients on a 116,000-event recording under 300 MB).
///
/// Example: `ReplayMemoryBenchmark.run(workDir: "/tmp/x", clients: 1000, events: 116_000)`.
public enum ReplayMemoryBenchmark {
    public struct Result: Sendable {
        public var clients = 0
        public var negotiated = 0
        public var events = 0
        /// Resident set size in bytes: server alone, with the clients, after they left.
        public var rssBefore = 0
        public var rssWithClients = 0
        public var rssAfter = 0
        public var perClient: Double { negotiated == 0 ? 0 : Double(rssWithClients - rssBefore) / Double(negotiated) }
    }

    /// VmRSS of this process, in bytes (0 when /proc is not readable).
    public static func residentBytes() -> Int { statusBytes("VmRSS:") }

    /// VmHWM of this process: the most resident memory it ever had, in bytes.
    public static func peakResidentBytes() -> Int { statusBytes("VmHWM:") }

    /// A size field of /proc/self/status (`VmRSS:`, `VmHWM:`), in bytes.
    static func statusBytes(_ field: String) -> Int {
        // /proc files report size 0: read until EOF.
        let fd = open("/proc/self/status", O_RDONLY)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            bytes += chunk[..<n]
        }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix(field) {
            let digits = line.dropFirst(field.count).filter(\.isNumber)
            return (Int(digits) ?? 0) * 1024
        }
        return 0
    }

    public static func run(workDir: String, clients: Int = 1000, events: Int = 116_000,
                           progress: (String) -> Void = { _ in }) throws -> Result {
        // Each client is two descriptors here (its socket and the server's end).
        var lim = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
        lim.rlim_cur = max(lim.rlim_cur, min(lim.rlim_max, rlim_t(clients * 2 + 256)))
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)

        let path = workDir + "/idle.qmprec"
        var lines: [(Int64, Direction, String)] = []
        lines.append((0, .qemu, #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#))
        lines.append((1_000_000, .client, #"{"execute":"qmp_capabilities"}"#))
        lines.append((1_100_000, .qemu, #"{"return": {}}"#))
        for n in 0..<events {
            let t = 2_000_000_000 + Int64(n) * 1_000_000_000
            lines.append((t, .qemu, ReplayBenchmark.event(n, t)))
        }
        try ReplayBenchmark.write(lines, to: path)
        let rec = try Recording(path: path)
        var o = ReplayOptions()
        o.maxClients = clients + 1
        let server = try ReplayServer(recording: rec, options: o, logger: Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() })
        let ep = Endpoint.unix(workDir + "/idle.sock")
        try server.start(listen: ep, socketMode: 0o600)
        defer { server.stop() }

        var r = Result()
        r.clients = clients
        r.events = events
        r.rssBefore = residentBytes()
        progress("connecting \(clients) clients")
        var fds: [Int32] = []
        let negotiate = Array(#"{"execute":"qmp_capabilities"}"#.utf8) + [0x0A]
        var buf = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<clients {
            let fd = try Sockets.connect(ep)
            fds.append(fd)
            // Greeting, then negotiation and its reply: each client is negotiated before the next.
            _ = recv(fd, &buf, buf.count, 0)
            Sockets.writeAll(fd, negotiate)
            var got = 0
            while got == 0 || !buf[..<got].contains(0x0A) {
                let n = recv(fd, &buf[got], buf.count - got, 0)
                if n <= 0 { break }
                got += n
            }
            if buf[..<got].starts(with: Array(#"{"return""#.utf8)) { r.negotiated += 1 }
        }
        r.rssWithClients = residentBytes()
        progress("\(r.negotiated) negotiated; closing them")
        for fd in fds { close(fd) }
        // The server notices each close on its loop: wait until every session has ended.
        _ = server.reports(after: clients - 1)
        r.rssAfter = residentBytes()
        return r
    }
}
