import QMP
import Recording

import Transport
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
    /// Bytes that may wait for a peer that does not read (a client that stopped reading,
    /// or a QEMU that does not take its input); beyond it the client is disconnected (and
    /// its QEMU connection closed) rather than holding up anyone else.
    public var peerBufferLimit = 16 << 20
    /// How long bytes still waiting for one side are given after the other side closed.
    public var lingerNanos: Int64 = 1_000_000_000

    public init(listen: Endpoint, upstream: Endpoint) { self.listen = listen; self.upstream = upstream }
}

/// Bytes waiting to be sent to one socket, sent without ever blocking.
struct OutputBuffer {
    private var bytes: [UInt8] = []
    private var head = 0

    var count: Int { bytes.count - head }
    var isEmpty: Bool { head == bytes.count }

    /// Sends what the socket takes now; returns the error that makes the peer unusable.
    mutating func flush(_ fd: Int32) -> Int32? {
        while head < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + head, bytes.count - head, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n > 0 { head += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
            return n < 0 ? errno : EPIPE
        }
        if head == bytes.count {
            bytes.removeAll(keepingCapacity: bytes.capacity <= 1 << 20)
            head = 0
        } else if head > 1 << 16 && head * 2 > bytes.count {
            bytes.removeFirst(head)
            head = 0
        }
        return nil
    }

    /// Forwards `chunk`: sent at once when nothing is waiting, the rest kept.
    mutating func send(_ chunk: ArraySlice<UInt8>, to fd: Int32) -> Int32? {
        bytes.append(contentsOf: chunk)
        return flush(fd)
    }
}

/// `qmpreplay record --listen --upstream`: a transparent proxy between a management client
/// and QEMU. Each client gets its own connection to QEMU; bytes pass both ways unchanged
/// (same bytes, same order, no re-framing) and are handed to the recorder after they have
/// been forwarded, so recording never delays traffic.
///
/// One poll loop serves every client and never blocks: what a peer does not take at once
/// waits in that peer's own buffer (sent when poll says it is writable), and a peer whose
/// buffer grows past `peerBufferLimit` is disconnected, so a client that stops reading
/// can delay no other client and no stop signal. A failing output (ENOSPC, EIO) does not
/// stop forwarding: the sink notes the loss and retries.
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
        var toClient = OutputBuffer()
        var toUpstream = OutputBuffer()
        /// Set when one side has closed: the other side's waiting bytes are given until then.
        var lingerUntil: Int64?
        /// The client left (its close is recorded when the pair closes): QEMU's answers to what
        /// it had sent are still read and recorded, so that they cannot reach the next client.
        var clientLeft: (time: Int64, reason: String)?
        /// When QEMU last sent something after the client left.
        var lastUpstreamData: Int64 = 0

        init(conn: UInt32, client: Int32, upstream: Int32, peer: String) {
            self.conn = conn; self.client = client; self.upstream = upstream; self.peer = peer
        }
    }

    private let wake: [Int32]
    /// After a client left, its QEMU connection closes once QEMU has been quiet this long
    /// (or the linger ends): time for QEMU to finish answering what the client had sent.
    static let drainQuiet: Int64 = 150_000_000

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
        Sockets.setNonBlocking(listenFD)
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
        for m in sink.takeMessages() { onInfo?(m) }
        onInfo?("listening on \(config.listen), forwarding to \(config.upstream)")

        var pairs: [Pair] = []
        var nextConn: UInt32 = 1
        var sessions = 0
        var lastSessionLostQEMU = false
        var reason = ""
        var lastTick: Int64 = 0
        var buf = [UInt8](repeating: 0, count: 65536)
        var clock = ClockWatch(startWall: startWall)
        var versionNoted = false

        /// Closes both sockets now (what still waits for them is dropped).
        func closeNow(_ i: Int) {
            if let left = pairs[i].clientLeft {
                sink.close(now(), pairs[i].conn, by: "client", reason: left.reason)
            }
            close(pairs[i].client)
            close(pairs[i].upstream)
            pairs.remove(at: i)
        }
        /// Ends a session by the recorder (stop, duration, a peer that does not read).
        func endByRecorder(_ i: Int, _ why: String) {
            sink.close(now(), pairs[i].conn, by: "recorder", reason: why)
            sessions += 1
            lastSessionLostQEMU = false
            closeNow(i)
        }
        /// One side closed: record it now, give the other side what still waits for it.
        func sideClosed(_ i: Int, fromQEMU: Bool, error: Int32?) {
            let t = now()
            if fromQEMU {
                sink.qemuClosed(t, pairs[i].conn, error: error.map { String(cString: strerror($0)) }, then: "client disconnected")
                lastSessionLostQEMU = true
            } else {
                // docs/RECORDER.md: QEMU may still be answering what the client sent; if the
                // upstream connection closed now, QEMU 7.2 can write that answer to the next
                // connection of the monitor, before its greeting. So QEMU's output is read
                // (and recorded) until it has been quiet for `drainQuiet`, within the linger.
                let left = DurationFormat.clock(t)
                let why = error.map { "client lost at \(left) (\(String(cString: strerror($0)))); QEMU's pending output read, upstream connection closed" }
                    ?? "client closed (eof) at \(left); QEMU's pending output read, upstream connection closed"
                pairs[i].clientLeft = (t, why)
                pairs[i].lastUpstreamData = t
                lastSessionLostQEMU = false
            }
            sessions += 1
            pairs[i].lingerUntil = t + config.lingerNanos
        }

        loop: while true {
            var fds: [pollfd] = [pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)]
            fds.append(pollfd(fd: wake[0], events: Int16(POLLIN), revents: 0))
            let acceptOpen = pairs.count < config.maxClients
            fds.append(pollfd(fd: acceptOpen ? listenFD : -1, events: Int16(POLLIN), revents: 0))
            let base = fds.count
            var timeout: Int64 = 100
            for p in pairs {
                if let l = p.lingerUntil {
                    // Only the sides that still have bytes to take are watched (the side that
                    // closed would report a hang-up at every poll).
                    fds.append(pollfd(fd: p.toClient.isEmpty ? -1 : p.client, events: Int16(POLLOUT), revents: 0))
                    // After the client left, QEMU's side is also read (its answers are drained).
                    let upstreamEvents = (p.toUpstream.isEmpty ? 0 : POLLOUT) | (p.clientLeft != nil ? POLLIN : 0)
                    fds.append(pollfd(fd: upstreamEvents == 0 ? -1 : p.upstream, events: Int16(upstreamEvents), revents: 0))
                    timeout = min(timeout, max(0, (l - now()) / 1_000_000 + 1))
                    if p.clientLeft != nil { timeout = min(timeout, Self.drainQuiet / 1_000_000 + 1) }
                } else {
                    fds.append(pollfd(fd: p.client, events: Int16(POLLIN | (p.toClient.isEmpty ? 0 : POLLOUT)), revents: 0))
                    fds.append(pollfd(fd: p.upstream, events: Int16(POLLIN | (p.toUpstream.isEmpty ? 0 : POLLOUT)), revents: 0))
                }
            }
            let r = poll(&fds, nfds_t(fds.count), Int32(timeout))
            if r < 0 && errno != EINTR { reason = "error"; break }
            if fds[0].revents != 0 || fds[1].revents != 0 {
                let by = fds[0].revents != 0 ? StopSignal.name : "request"
                reason = fds[0].revents != 0 ? "signal" : "stopped"
                for i in pairs.indices.reversed() {
                    if pairs[i].lingerUntil != nil { closeNow(i) } else { endByRecorder(i, "stopped by \(by)") }
                }
                break
            }
            // Data first (in fd order), then new clients.
            var i = 0
            var slot = base
            while i < pairs.count {
                let cr = fds[slot].revents, ur = fds[slot + 1].revents
                slot += 2
                var gone = false
                // Writable: send what waits.
                if cr & Int16(POLLOUT) != 0, let e = pairs[i].toClient.flush(pairs[i].client) {
                    if pairs[i].lingerUntil == nil {
                        sink.close(now(), pairs[i].conn, by: "client", reason: "client lost while forwarding (\(String(cString: strerror(e)))); upstream connection closed")
                        sessions += 1
                        lastSessionLostQEMU = false
                    }
                    closeNow(i)
                    continue
                }
                if ur & Int16(POLLOUT) != 0, let e = pairs[i].toUpstream.flush(pairs[i].upstream) {
                    if pairs[i].lingerUntil == nil {
                        sideClosed(i, fromQEMU: true, error: e)
                    }
                    closeNow(i)
                    continue
                }
                if let l = pairs[i].lingerUntil {
                    var upstreamGone = false
                    if pairs[i].clientLeft != nil, ur & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                        // QEMU answering a client that left: record it, send it nowhere.
                        let n = buf.withUnsafeMutableBytes { recv(pairs[i].upstream, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                        if n > 0 {
                            let t = now()
                            sink.data(t, pairs[i].conn, .qemu, Array(buf[..<n]))
                            pairs[i].lastUpstreamData = t
                        } else if n == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
                            upstreamGone = true
                        }
                    }
                    let drained = pairs[i].clientLeft == nil || now() - pairs[i].lastUpstreamData >= Self.drainQuiet
                    if (pairs[i].toClient.isEmpty && pairs[i].toUpstream.isEmpty && drained) || now() >= l || upstreamGone
                        || cr & Int16(POLLERR | POLLHUP) != 0 || (pairs[i].clientLeft == nil && ur & Int16(POLLERR | POLLHUP) != 0) {
                        closeNow(i)
                    } else {
                        i += 1
                    }
                    continue
                }
                // Readable: read one chunk, forward it, then record it.
                for fromQEMU in [true, false] where !gone {
                    let rev = fromQEMU ? ur : cr
                    guard rev & Int16(POLLIN | POLLHUP | POLLERR) != 0 else { continue }
                    let from = fromQEMU ? pairs[i].upstream : pairs[i].client
                    let n = buf.withUnsafeMutableBytes { recv(from, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                    let t = now()
                    if n > 0 {
                        let chunk = buf[..<n]
                        let err = fromQEMU ? pairs[i].toClient.send(chunk, to: pairs[i].client)
                                           : pairs[i].toUpstream.send(chunk, to: pairs[i].upstream)
                        sink.data(t, pairs[i].conn, fromQEMU ? .qemu : .client, Array(chunk))
                        if fromQEMU && !versionNoted, let g = ProxyRecorder.firstMessage(chunk).version {
                            versionNoted = true
                            sink.note(t, 0, "QEMU \(g)", JSONObject(["qemu": .string(g)]))
                        }
                        if let e = err {
                            // The receiving side is gone.
                            if fromQEMU {
                                sink.close(t, pairs[i].conn, by: "client", reason: "client gone while forwarding (\(String(cString: strerror(e)))); upstream connection closed")
                                sessions += 1
                                lastSessionLostQEMU = false
                            } else {
                                sideClosed(i, fromQEMU: true, error: e)
                            }
                            closeNow(i)
                            gone = true
                            break
                        }
                        let waiting = fromQEMU ? pairs[i].toClient.count : pairs[i].toUpstream.count
                        if waiting > config.peerBufferLimit {
                            let who = fromQEMU ? "the client stopped reading" : "QEMU stopped reading its input"
                            let why = "\(who): \(waiting) bytes were waiting (limit \(config.peerBufferLimit)); the client was disconnected and its QEMU connection closed"
                            onInfo?("client \(pairs[i].conn): \(why)")
                            endByRecorder(i, why)
                            gone = true
                        }
                    } else if n == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
                        let e: Int32? = n < 0 ? errno : nil
                        sideClosed(i, fromQEMU: fromQEMU, error: e)
                        // Nothing more is read from either side; what waits for the other is still sent.
                        if pairs[i].clientLeft == nil && pairs[i].toClient.isEmpty && pairs[i].toUpstream.isEmpty { closeNow(i); gone = true }
                        break
                    }
                }
                if !gone { i += 1 }
            }
            if config.once && sessions > 0 && pairs.isEmpty {
                reason = lastSessionLostQEMU ? "upstream lost (--once)" : "complete (--once)"
                break
            }
            if acceptOpen, fds[base - 1].revents != 0, let (cfd, peer) = Sockets.accept(listenFD) {
                let conn = nextConn
                nextConn += 1
                do {
                    let ufd = try Sockets.connect(config.upstream)
                    Sockets.setNonBlocking(cfd)
                    Sockets.setNonBlocking(ufd)
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
            for m in sink.takeMessages() { onInfo?(m) }
            let t = now()
            if let d = config.duration, t >= d {
                reason = "duration"
                for i in pairs.indices.reversed() {
                    if pairs[i].lingerUntil != nil { closeNow(i) } else { endByRecorder(i, "duration reached") }
                }
                break loop
            }
            if let jump = clock.check(monotonic: t) {
                sink.note(t, 0, "the host wall clock jumped by \(DurationFormat.short(jump * 1000)); record times (monotonic) are unaffected",
                          JSONObject(["jump_us": .int(jump)]))
            }
            if t - lastTick >= 500_000_000 { lastTick = t; onTick?(t, sink.currentStats) }
        }
        let end = sink.finish(reason: reason, time: now())
        for m in sink.takeMessages() { onInfo?(m) }
        return CaptureOutcome(reason: reason, stats: sink.currentStats, end: end)
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
