import Logging
import NIOCore
import QMP
import Recording
import Transport

/// How a proxied session behaves at its edges (`ProxyModeConfig` sets them).
struct PairLimits: Sendable {
    /// Bytes that may wait for a peer that does not read; beyond it the pair is ended.
    var peerBuffer: Int
    /// How long bytes still waiting for one side are given after the other side closed.
    var linger: Int64
    /// After the client left, its QEMU connection closes once QEMU has been quiet this long
    /// (within the linger): time for QEMU to finish answering what the client had sent.
    var drainQuiet: Int64 = 150_000_000
}

/// How a proxied session ended, for `--once` and the exit status.
struct PairEnd: Sendable {
    /// QEMU closed the connection (the proxy counts the session as QEMU lost).
    var qemuClosed: Bool
}

/// One client's session through the proxy: the client's channel glued to its own QEMU
/// connection. Bytes read on one side are written to the other unchanged and at once, and
/// only then handed to the sink with their receive time, so recording never delays traffic.
///
/// Each side's writes are counted until its socket took them. What a peer does not take
/// waits in that peer's own channel, so a slow peer slows only its own pair (the event loop
/// never waits for it); past `limits.peerBuffer` the recorder ends the pair, so a client that
/// stops reading (or a QEMU that stops taking input) can grow neither QEMU's output nor the
/// proxy's memory without bound. When one side closes, the other is given what still waits
/// for it, for at most `limits.linger`. When the client leaves, QEMU's answers to what it had
/// sent are still read and recorded until QEMU has been quiet for `limits.drainQuiet`:
/// otherwise QEMU 7.2 writes them to the next connection of the monitor, before its greeting
/// (docs/RECORDER.md, Proxy mode).
///
/// Confined to the event loop of its two channels (`ProxyServer` makes it; the tests glue two
/// `EmbeddedChannel`s): `attach(upstream:)` once QEMU is connected, then a `ConnectionHandler`
/// on each channel feeds it reads and closes, and `over` completes when both are closing.
final class ProxyPair: ConnectionOwner {
    enum Side {
        case client, upstream

        var other: Side { self == .client ? .upstream : .client }
        var direction: Direction { self == .client ? .client : .qemu }
    }

    private enum Phase { case connecting, open, lingering, closed }

    let conn: UInt32
    let peer: String
    let client: Channel
    private(set) var upstream: Channel?
    /// Completes when the session is over and both channels are being closed.
    let over: EventLoopPromise<PairEnd>

    private let upstreamName: String
    private let limits: PairLimits
    private let sink: CaptureSink
    private let clock: ReplayClock
    private let start: Int64
    private let logger: Logger
    private let versionNote: VersionNote

    private var phase = Phase.connecting
    /// Bytes written to each side that its socket has not taken yet.
    private var waitingForClient = 0
    private var waitingForUpstream = 0
    /// QEMU's first bytes, if they came before `attach` (they are passed on then).
    private var early: [(Int64, ByteBuffer)] = []
    private var qemuClosed = false
    /// The client left (its close is recorded when the pair closes): QEMU's answers to what
    /// it had sent are still read and recorded, so that they cannot reach the next client.
    private var clientLeft: (time: Int64, reason: String)?
    private var quiet = false
    private var lingerTimer: Scheduled<Void>?
    private var quietTimer: Scheduled<Void>?

    init(conn: UInt32, peer: String, client: Channel, upstreamName: String, limits: PairLimits,
         sink: CaptureSink, clock: ReplayClock, start: Int64, logger: Logger, versionNote: VersionNote) {
        self.conn = conn
        self.peer = peer
        self.client = client
        self.upstreamName = upstreamName
        self.limits = limits
        self.sink = sink
        self.clock = clock
        self.start = start
        var l = logger
        l[metadataKey: "conn"] = "\(conn)"
        l[metadataKey: "peer"] = "\(peer)"
        self.logger = l
        self.versionNote = versionNote
        over = client.eventLoop.makePromise(of: PairEnd.self)
    }

    private var loop: NIOIsolatedEventLoop { client.eventLoop.assumeIsolated() }
    private func now() -> Int64 { clock.now() - start }

    /// The handler that feeds this pair what happens on one side's channel.
    func handler(for side: Side) -> ConnectionHandler<ProxyPair> { ConnectionHandler(self, side) }

    /// QEMU is connected: the session starts (open record), the client is read from now on.
    func attach(upstream ch: Channel) {
        guard phase == .connecting else {
            ch.close(promise: nil)   // stopped while connecting
            return
        }
        upstream = ch
        phase = .open
        sink.open(now(), conn, peer: peer, info: JSONObject(["upstream": .string(upstreamName)]))
        logger.info("client connected")
        do {
            try client.pipeline.syncOperations.addHandler(handler(for: .client))
            try client.syncOptions?.setOption(.autoRead, value: true)
        } catch {
            ended(.client, error: error, gone: true)
            return
        }
        let pending = early
        early = []
        for (t, b) in pending { received(b, from: .upstream, at: t) }
    }

    /// QEMU could not be reached: the client is closed and the attempt noted.
    func connectFailed(_ error: Error) {
        guard phase == .connecting else { return }
        phase = .closed
        client.close(promise: nil)
        let text = (error as? SocketError)?.description ?? "\(error)"
        sink.note(now(), conn, "a client connected but QEMU could not be reached: \(text); client closed", JSONObject(["peer": .string(peer)]))
        logger.warning("a client connected but QEMU could not be reached: \(text); client closed")
        over.succeed(PairEnd(qemuClosed: false))
    }

    /// Ends the session for the recorder (a stop, `--duration`): the close record says `why`.
    func stop(_ why: String) {
        switch phase {
        case .connecting:
            phase = .closed
            client.close(promise: nil)
            over.succeed(PairEnd(qemuClosed: false))
        case .open: endByRecorder(why)
        case .lingering: closeNow()
        case .closed: break
        }
    }

    // MARK: Events from the channels

    func read(_ buffer: ByteBuffer, on side: Side) {
        received(buffer, from: side, at: now())
    }

    private func received(_ buffer: ByteBuffer, from side: Side, at t: Int64) {
        switch phase {
        case .open:
            forward(buffer, to: side.other)
            let bytes = Array(buffer.readableBytesView)
            sink.data(t, conn, side.direction, bytes)
            if side == .upstream { versionNote.check(bytes, at: t, sink) }
            let waiting = side == .upstream ? waitingForClient : waitingForUpstream
            if waiting > limits.peerBuffer {
                let who = side == .upstream ? "the client stopped reading" : "QEMU stopped reading its input"
                let why = "\(who): \(waiting) bytes were waiting (limit \(limits.peerBuffer)); the client was disconnected and its QEMU connection closed"
                logger.warning("\(why)")
                endByRecorder(why)
            }
        case .lingering where side == .upstream && clientLeft != nil:
            // QEMU answering a client that left: recorded, sent nowhere.
            sink.data(t, conn, .qemu, Array(buffer.readableBytesView))
            startQuietTimer()
        case .connecting where side == .upstream:
            early.append((t, buffer))
        default:
            // Nowhere to go (QEMU has closed): neither forwarded nor, since it never
            // reached QEMU, recorded.
            break
        }
    }

    /// A side closed: `gone` when its channel is closed altogether (not only its input).
    func ended(_ side: Side, error: Error?, gone: Bool) {
        let t = now()
        switch phase {
        case .open where side == .upstream:
            sink.qemuClosed(t, conn, error: error.map(errorText), then: "client disconnected")
            qemuClosed = true
            beginLinger()
            closeIfDone()
        case .open:
            let at = DurationFormat.clock(t)
            let why = error.map { "client lost at \(at) (\(errorText($0))); QEMU's pending output read, upstream connection closed" }
                ?? "client closed (eof) at \(at); QEMU's pending output read, upstream connection closed"
            clientLeft = (t, why)
            beginLinger()
            startQuietTimer()
        case .lingering where side == .upstream && clientLeft != nil:
            closeNow()   // QEMU closed while its last answers were being read
        case .lingering where side == .client && clientLeft == nil && gone:
            closeNow()   // the client vanished while QEMU's last bytes were given to it
        default:
            break
        }
    }

    // MARK: Forwarding

    private func forward(_ buffer: ByteBuffer, to side: Side) {
        guard let ch = side == .client ? client : upstream else { return }
        let n = buffer.readableBytes
        if side == .client { waitingForClient += n } else { waitingForUpstream += n }
        let written = ch.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenComplete { result in
            self.taken(n, by: side, result)
        }
        ch.writeAndFlush(buffer, promise: written)
    }

    /// `n` bytes written to `side` were taken by its socket (or failed: that peer is gone).
    private func taken(_ n: Int, by side: Side, _ result: Result<Void, Error>) {
        if side == .client { waitingForClient -= n } else { waitingForUpstream -= n }
        switch result {
        case .success: closeIfDone()
        case .failure(let e): ended(side, error: e, gone: true)
        }
    }

    // MARK: The end

    private func beginLinger() {
        phase = .lingering
        lingerTimer = loop.scheduleTask(in: .nanoseconds(limits.linger)) { self.closeNow() }
    }

    private func startQuietTimer() {
        quiet = false
        quietTimer?.cancel()
        quietTimer = loop.scheduleTask(in: .nanoseconds(limits.drainQuiet)) {
            self.quiet = true
            self.closeIfDone()
        }
    }

    /// While lingering: closes once nothing waits for the side still there (and, after the
    /// client left, once QEMU has been quiet).
    private func closeIfDone() {
        guard phase == .lingering else { return }
        if clientLeft != nil {
            if waitingForUpstream == 0 && quiet { closeNow() }
        } else if waitingForClient == 0 {
            closeNow()
        }
    }

    private func endByRecorder(_ why: String) {
        guard phase == .open else { return }
        sink.close(now(), conn, by: "recorder", reason: why)
        qemuClosed = false
        closeNow()
    }

    /// Closes both channels now (what still waits for them is dropped).
    private func closeNow() {
        guard phase != .closed else { return }
        phase = .closed
        lingerTimer?.cancel()
        quietTimer?.cancel()
        if let left = clientLeft { sink.close(now(), conn, by: "client", reason: left.reason) }
        client.close(promise: nil)
        upstream?.close(promise: nil)
        over.succeed(PairEnd(qemuClosed: qemuClosed))
    }
}

/// The note with QEMU's version, written once, when the header could not carry it (QEMU was
/// not up at start): the first greeting that passes through the proxy.
final class VersionNote {
    private var done: Bool

    init(headerHasVersion: Bool) { done = headerHasVersion }

    func check(_ bytes: [UInt8], at t: Int64, _ sink: CaptureSink) {
        guard !done, let v = ProxyRecorder.firstMessage(bytes).version else { return }
        done = true
        sink.note(t, 0, "QEMU \(v)", JSONObject(["qemu": .string(v)]))
    }
}
