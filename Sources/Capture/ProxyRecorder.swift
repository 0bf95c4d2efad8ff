import Logging
import NIOCore
import NIOPosix
import QMP
import Recording
import Transport

#if canImport(Glibc)
import Glibc
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

    var limits: PairLimits { PairLimits(peerBuffer: peerBufferLimit, linger: lingerNanos) }
}

/// `qmpreplay record --listen --upstream`: a transparent proxy between a management client
/// and QEMU. Each client gets its own connection to QEMU; bytes pass both ways unchanged
/// (same bytes, same order, no re-framing) and are handed to the recorder after they have
/// been forwarded, so recording never delays traffic.
///
/// On swift-nio: one event loop serves the listener and every pair (`ProxyServer`), and
/// each client's channel is glued to its own QEMU channel (`ProxyPair`). Nothing on the loop
/// waits for a peer: what a peer does not take waits in its own channel, so a client that
/// stops reading delays no other client and no stop, and past `peerBufferLimit` it is
/// disconnected. A failing output (ENOSPC, EIO) does not stop forwarding: the sink notes the
/// loss and retries.
///
/// Example: `let p = ProxyRecorder(config: cfg, options: opts); try p.start(); ...; p.stop(by: "test"); let outcome = p.wait()`.
public final class ProxyRecorder: CaptureRecorder {
    public let config: ProxyModeConfig
    public let options: CaptureOptions
    private let context: RecorderContext
    private let control = RecorderControl()
    private let running = Guarded<Running?>(nil)

    /// What `start` set up and `wait` takes down.
    private struct Running: Sendable {
        let listener: Channel
        let sink: CaptureSink
        let start: Int64
        let done: EventLoopFuture<String>
    }

    /// The logger hears clients come and go (metadata `conn`, `peer`) and peers dropped.
    public init(config: ProxyModeConfig, options: CaptureOptions, context: RecorderContext = RecorderContext()) {
        self.config = config
        self.options = options
        self.context = context
    }

    public func stop(by name: String) { control.requestStop(by: name) }

    public func trigger(_ trigger: IncidentTrigger) { control.trigger(trigger, clock: context.clock) }

    public var progress: CaptureProgress? { control.progress(context.clock) }

    /// Listens, probes QEMU's version, creates the file and starts serving clients; returns
    /// once clients can connect. Throws when nothing can be recorded (no listen socket, no file).
    public func start() throws {
        let (config, context) = (self.config, self.context)
        let (t0, startWall, loop, server) = try context.begin { ProxyServer(config: config, context: context, start: $0, wallStart: $1, loop: $2) }
        let listener: Channel
        do {
            listener = try Bootstraps.listen(config.listen, mode: config.socketMode, group: loop) { ch in
                ch.eventLoop.makeCompletedFuture { server.value.accepted(ch) }
            }
        } catch {
            try? loop.submit { server.value.abandon() }.wait()
            throw error
        }
        // One client accepted per turn, so that `--max-clients` can close the door in time.
        _ = try? listener.setOption(.maxMessagesPerRead, value: 1).wait()
        var labels = config.labels
        labels.append((key: "listen", value: config.listen.description))
        let version = ProxyRecorder.probeVersion(config.upstream, loop: loop)
        let header = RecordingHeader(
            startMicros: startWall, source: config.upstream.description, mode: .proxy,
            qemuVersion: version, redacted: options.redact, labels: labels)
        let sink: CaptureSink
        do {
            sink = try CaptureSink(header: header, options: options.clocked(context.clock, since: t0), logger: context.logger)
        } catch {
            try? loop.submit { server.value.abandon() }.wait()
            close(listener)
            throw error
        }
        context.logger.info("listening on \(config.listen), forwarding to \(config.upstream)")
        control.recording(into: sink, since: t0)
        let done = try loop.submit {
            server.value.begin(listener: listener, sink: sink, versionNote: VersionNote(headerHasVersion: version != nil))
        }.wait()
        running.withLock { $0 = Running(listener: listener, sink: sink, start: t0, done: done) }
        control.deliverStops { name in loop.execute { server.value.stop(by: name) } }
    }

    /// Waits until the recording ends (a stop, `--duration`, `--once`), then writes what is
    /// queued and the trailer.
    public func wait() -> CaptureOutcome {
        guard let r = running.withLock({ $0 }) else {
            return CaptureOutcome(reason: "not started", stats: CaptureStats(), end: CaptureEnd(trailerWritten: false, error: "the proxy was not started"))
        }
        let reason = (try? r.done.wait()) ?? "error"
        close(r.listener)
        let end = r.sink.finish(reason: reason, time: context.clock.now() - r.start)
        return CaptureOutcome(reason: reason, stats: r.sink.currentStats, end: end)
    }

    public func run() throws -> CaptureOutcome {
        try start()
        return wait()
    }

    private func close(_ listener: Channel) {
        try? listener.close().wait()
        if case .unix(let p) = config.listen { unlink(p) }
    }

    /// QEMU's version from a short probe connection before any client arrives (QEMU sends
    /// its greeting to every new connection); `nil` when QEMU does not greet within `timeout`.
    static func probeVersion(_ ep: Endpoint, loop: EventLoop, timeout: TimeAmount = .seconds(1)) -> String? {
        let found = loop.makePromise(of: String?.self)
        let connected = Bootstraps.connectLater(ep, group: loop) { ch in
            ch.eventLoop.makeCompletedFuture {
                try ch.pipeline.syncOperations.addHandlers([ByteToMessageHandler(QMPFrameDecoder()), GreetingProbe(found)])
            }
        }
        connected.whenFailure { _ in found.succeed(nil) }
        let timer = loop.scheduleTask(in: timeout) { found.succeed(nil) }
        let version = (try? found.futureResult.wait()) ?? nil
        timer.cancel()
        connected.whenSuccess { $0.close(promise: nil) }
        return version
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

/// Reads the first QMP message of a probe connection: QEMU's version if it is the greeting.
private final class GreetingProbe: ChannelInboundHandler {
    typealias InboundIn = Frame

    private let found: EventLoopPromise<String?>

    init(_ found: EventLoopPromise<String?>) { self.found = found }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .greeting(let g) = unwrapInboundIn(data).message().body {
            found.succeed(g.version?.description)
        } else {
            found.succeed(nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) { found.succeed(nil) }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        found.succeed(nil)
        context.close(promise: nil)
    }
}

/// The proxy's accept side, on one event loop: admits clients up to `maxClients` (the
/// others wait unread, as they would in QEMU's listen backlog), gives each its own
/// `ProxyPair` and QEMU connection, and ends the recording on `--once`, `--duration` or a
/// stop. Tests drive it on an `EmbeddedEventLoop` with `EmbeddedChannel`s for clients and
/// an upstream connector of their own.
final class ProxyServer {
    /// Connects a pair to QEMU; the channel's pipeline gets `pair.handler(for: .upstream)`.
    typealias Connector = (ProxyPair) -> EventLoopFuture<Channel>

    private let config: ProxyModeConfig
    private let context: RecorderContext
    private let start: Int64
    private let loop: EventLoop
    private let connect: Connector

    private var sink: CaptureSink?
    private var listener: Channel?
    private var versionNote = VersionNote(headerHasVersion: true)
    private var done: EventLoopPromise<String>?
    private var waiting: [Channel] = []
    private var pairs: [UInt32: ProxyPair] = [:]
    private var nextConn: UInt32 = 1
    private var lastSessionLostQEMU = false
    private var finished = false
    private var clockWatch: ClockWatch
    private var durationTimer: Scheduled<Void>?
    private var clockTimer: Scheduled<Void>?

    init(config: ProxyModeConfig, context: RecorderContext, start: Int64, wallStart: Int64, loop: EventLoop, connect: Connector? = nil) {
        self.config = config
        self.context = context
        self.start = start
        self.loop = loop
        clockWatch = ClockWatch(startWall: wallStart)
        let upstream = config.upstream
        self.connect = connect ?? { pair in
            let bound = NIOLoopBound(pair, eventLoop: loop)
            return Bootstraps.connectLater(upstream, group: loop) { ch in
                ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(bound.value.handler(for: .upstream)) }
            }
        }
    }

    private func now() -> Int64 { context.clock.now() - start }

    /// Clients that arrive wait unread until the server begins and a place is free.
    func accepted(_ ch: Channel) {
        try? ch.syncOptions?.setOption(.autoRead, value: false)
        guard !finished else {
            ch.close(promise: nil)
            return
        }
        waiting.append(ch)
        admit()
    }

    /// Starts serving into `sink`; the future gives the trailer's reason when it is over.
    func begin(listener: Channel?, sink: CaptureSink, versionNote: VersionNote) -> EventLoopFuture<String> {
        let done = loop.makePromise(of: String.self)
        self.done = done
        self.sink = sink
        self.listener = listener
        self.versionNote = versionNote
        if let d = config.duration {
            durationTimer = loop.assumeIsolated().scheduleTask(in: .nanoseconds(max(0, d - now()))) {
                self.finish("duration", closing: "duration reached")
            }
        }
        scheduleClockCheck()
        admit()
        return done.futureResult
    }

    /// The recorder could not start (no file): whoever waits is let go.
    func abandon() {
        finished = true
        for ch in waiting { ch.close(promise: nil) }
        waiting.removeAll()
    }

    func stop(by name: String) {
        finish(RecorderControl.trailerReason(stoppedBy: name), closing: "stopped by \(name)")
    }

    /// Ends the recording: pairs still open are ended with `closing` as their close reason.
    func finish(_ reason: String, closing why: String) {
        guard !finished, let done else { return }
        finished = true
        durationTimer?.cancel()
        clockTimer?.cancel()
        for conn in pairs.keys.sorted() { pairs[conn]?.stop(why) }
        for ch in waiting { ch.close(promise: nil) }
        waiting.removeAll()
        done.succeed(reason)
    }

    private func scheduleClockCheck() {
        clockTimer = loop.assumeIsolated().scheduleTask(in: .seconds(1)) {
            if let sink = self.sink { self.clockWatch.note(into: sink, at: self.now(), wall: self.context.wallClock()) }
            self.scheduleClockCheck()
        }
    }

    /// Gives waiting clients a pair each, as long as places are free; the listener stops
    /// accepting while none is.
    private func admit() {
        guard let sink, !finished else { return }
        while pairs.count < config.maxClients && !waiting.isEmpty {
            let ch = waiting.removeFirst()
            let conn = nextConn
            nextConn += 1
            let pair = ProxyPair(conn: conn, peer: Self.describe(ch.remoteAddress), client: ch, upstreamName: config.upstream.description,
                                 limits: config.limits, sink: sink, clock: context.clock, start: start, logger: context.logger, versionNote: versionNote)
            pairs[conn] = pair
            pair.over.futureResult.assumeIsolated().whenSuccess { end in self.ended(conn, end) }
            connect(pair).assumeIsolated().whenComplete { result in
                switch result {
                case .success(let up): pair.attach(upstream: up)
                case .failure(let e): pair.connectFailed(e)
                }
            }
        }
        try? listener?.syncOptions?.setOption(.autoRead, value: pairs.count + waiting.count < config.maxClients)
    }

    private func ended(_ conn: UInt32, _ end: PairEnd) {
        pairs[conn] = nil
        lastSessionLostQEMU = end.qemuClosed
        guard !finished else { return }
        if config.once && pairs.isEmpty {
            finish(lastSessionLostQEMU ? "upstream lost (--once)" : "complete (--once)", closing: "")
        } else {
            admit()
        }
    }

    /// `unix`, or `tcp:HOST:PORT` for a TCP client.
    static func describe(_ a: SocketAddress?) -> String {
        guard let a, let ip = a.ipAddress, let port = a.port else { return "unix" }
        return "tcp:\(ip):\(port)"
    }
}
