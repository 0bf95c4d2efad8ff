import QMP
import Recording

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct ProxyModeConfig: Sendable {
    public var listen: Endpoint
    public var upstream: Endpoint
    /// QEMU's own monitor serves one client at a time; more must be asked for.
    public var maxClients = 1
    /// Stop after the first client session.
    public var once = false
    public var duration: Int64?
    public var socketMode: mode_t = 0o600
    public var labels: [(key: String, value: String)] = []

    public init(listen: Endpoint, upstream: Endpoint) { self.listen = listen; self.upstream = upstream }
}

/// `qmpreplay record --listen --upstream`: a transparent proxy between a management client
/// and QEMU. Each client gets its own connection to QEMU; bytes pass both ways unchanged
/// (same bytes, same order, no re-framing) and are handed to the recorder after they have
/// been forwarded, so recording never delays traffic.
public final class ProxyRecorder {
    public let config: ProxyModeConfig
    public let options: CaptureOptions
    public var onTick: ((Int64, CaptureStats) -> Void)?
    public var onInfo: ((String) -> Void)?

    private struct Pair {
        var conn: UInt32
        var client: Int32
        var upstream: Int32
        var peer: String
    }

    private let wake: [Int32]

    public init(config: ProxyModeConfig, options: CaptureOptions) {
        self.config = config
        self.options = options
        var fds: [Int32] = [-1, -1]
        _ = pipe(&fds)
        wake = fds
    }

    deinit { close(wake[0]); close(wake[1]) }

    /// Stops a running proxy from another thread (as a signal would).
    public func stop() {
        var b: UInt8 = 1
        _ = write(wake[1], &b, 1)
    }

    public func run() throws -> CaptureOutcome {
        let stopFD = StopSignal.install()
        let t0 = WallClock.monotonicNanos()
        func now() -> Int64 { WallClock.monotonicNanos() - t0 }
        let startWall = WallClock.nowMicros()
        let listenFD = try Sockets.listen(config.listen, mode: config.socketMode)
        defer {
            close(listenFD)
            if case .unix(let p) = config.listen { unlink(p) }
        }
        var labels = config.labels
        labels.append((key: "listen", value: config.listen.description))
        let header = RecordingHeader(
            startMicros: startWall, source: config.upstream.description, mode: .proxy,
            qemuVersion: ProxyRecorder.probeVersion(config.upstream), redacted: options.redact, labels: labels)
        let sink = try CaptureSink(header: header, options: options)
        onInfo?("listening on \(config.listen), forwarding to \(config.upstream)")

        var pairs: [Pair] = []
        var nextConn: UInt32 = 1
        var sessions = 0
        var reason = ""
        var lastTick: Int64 = 0
        var buf = [UInt8](repeating: 0, count: 65536)
        var clock = ClockWatch(startWall: startWall)
        var versionNoted = false

        func closePair(_ i: Int, by: String, reason: String) {
            let p = pairs[i]
            close(p.client)
            close(p.upstream)
            sink.close(now(), p.conn, by: by, reason: reason)
            pairs.remove(at: i)
            sessions += 1
        }

        loop: while true {
            var fds: [pollfd] = [pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)]
            fds.append(pollfd(fd: wake[0], events: Int16(POLLIN), revents: 0))
            let acceptOpen = pairs.count < config.maxClients
            fds.append(pollfd(fd: acceptOpen ? listenFD : -1, events: Int16(POLLIN), revents: 0))
            let base = fds.count
            for p in pairs {
                fds.append(pollfd(fd: p.client, events: Int16(POLLIN), revents: 0))
                fds.append(pollfd(fd: p.upstream, events: Int16(POLLIN), revents: 0))
            }
            let r = poll(&fds, nfds_t(fds.count), 100)
            if r < 0 && errno != EINTR { reason = "error"; break }
            if fds[0].revents != 0 || fds[1].revents != 0 {
                let by = fds[0].revents != 0 ? StopSignal.name : "request"
                reason = fds[0].revents != 0 ? "signal" : "stopped"
                for i in pairs.indices.reversed() { closePair(i, by: "recorder", reason: "stopped by \(by)") }
                break
            }
            // Data first (in fd order), then new clients.
            var i = 0
            var slot = base
            while i < pairs.count {
                let cr = fds[slot].revents, ur = fds[slot + 1].revents
                slot += 2
                var closed = false
                for (from, to, dir, rev) in [(pairs[i].upstream, pairs[i].client, Direction.qemu, ur),
                                            (pairs[i].client, pairs[i].upstream, Direction.client, cr)] where rev != 0 && !closed {
                    let n = buf.withUnsafeMutableBytes { recv(from, $0.baseAddress, $0.count, 0) }
                    let t = now()
                    if n > 0 {
                        let ok = buf.withUnsafeBytes { Sockets.writeAll(to, UnsafeRawBufferPointer(rebasing: $0[..<n])) }
                        let chunk = Array(buf[..<n])
                        sink.data(t, pairs[i].conn, dir, chunk)
                        if !versionNoted && dir == .qemu, let g = ProxyRecorder.firstMessage(chunk).version {
                            versionNoted = true
                            sink.note(t, 0, "QEMU \(g)", JSONObject(["qemu": .string(g)]))
                        }
                        if !ok {
                            closePair(i, by: dir == .qemu ? "client" : "qemu", reason: dir == .qemu ? "client gone while forwarding" : "upstream lost while forwarding")
                            closed = true
                        }
                    } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                        let e = n < 0 ? String(cString: strerror(errno)) : "eof"
                        if dir == .qemu {
                            closePair(i, by: "qemu", reason: n == 0 ? "upstream closed (eof); client disconnected" : "upstream lost (\(e)); client disconnected")
                        } else {
                            closePair(i, by: "client", reason: n == 0 ? "client closed (eof); upstream connection closed" : "client lost (\(e)); upstream connection closed")
                        }
                        closed = true
                    }
                }
                if !closed { i += 1 }
            }
            if config.once && sessions > 0 && pairs.isEmpty { reason = "complete (--once)"; break }
            if acceptOpen, fds[base - 1].revents != 0, let (cfd, peer) = Sockets.accept(listenFD) {
                let conn = nextConn
                nextConn += 1
                do {
                    let ufd = try Sockets.connect(config.upstream)
                    pairs.append(Pair(conn: conn, client: cfd, upstream: ufd, peer: peer))
                    sink.open(now(), conn, peer: peer, info: JSONObject(["upstream": .string(config.upstream.description)]))
                    onInfo?("client \(conn) connected (\(peer))")
                } catch {
                    close(cfd)
                    sink.note(now(), conn, "a client connected but QEMU could not be reached: \(error.description); client closed",
                              JSONObject(["peer": .string(peer)]))
                    onInfo?("client \(conn): \(error.description)")
                    sessions += 1
                }
            }
            if sink.failure != nil {
                reason = "error"
                for i in pairs.indices.reversed() { closePair(i, by: "recorder", reason: "recording failed") }
                break
            }
            let t = now()
            if let d = config.duration, t >= d {
                reason = "duration"
                for i in pairs.indices.reversed() { closePair(i, by: "recorder", reason: "duration reached") }
                break loop
            }
            if let jump = clock.check(monotonic: t) {
                sink.note(t, 0, "the host wall clock jumped by \(DurationFormat.short(jump * 1000)); record times (monotonic) are unaffected",
                          JSONObject(["jump_us": .int(jump)]))
            }
            if t - lastTick >= 500_000_000 { lastTick = t; onTick?(t, sink.currentStats) }
        }
        if let e = sink.failure ?? sink.finish(reason: reason, time: now()) {
            return CaptureOutcome(reason: "error", stats: sink.currentStats, error: e.description)
        }
        return CaptureOutcome(reason: reason, stats: sink.currentStats, error: nil)
    }

    /// QEMU's version from a short probe connection before any client arrives (QEMU sends
    /// its greeting to every new connection); `nil` when QEMU is not reachable yet.
    static func probeVersion(_ ep: Endpoint) -> String? {
        guard let fd = try? Sockets.connect(ep) else { return nil }
        defer { close(fd) }
        var got: [UInt8] = []
        let deadline = WallClock.monotonicNanos() + 1_000_000_000
        var buf = [UInt8](repeating: 0, count: 4096)
        while WallClock.monotonicNanos() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) >= 0 else { return nil }
            if p.revents == 0 { continue }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { return nil }
            got += buf[..<n]
            let first = firstMessage(got)
            if first.complete { return first.version }
        }
        return nil
    }

    /// The first message of a QEMU stream: whether it is complete yet, and QEMU's version
    /// when it is the greeting.
    static func firstMessage<C: Collection>(_ bytes: C) -> (complete: Bool, version: String?) where C.Element == UInt8 {
        var f = QMPFramer()
        guard let first = (f.push(bytes) + f.drain()).first else { return (false, nil) }
        if case .greeting(let g) = first.message().body { return (true, g.version?.description) }
        return (true, nil)
    }
}
