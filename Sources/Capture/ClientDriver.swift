import Logging
import NIOCore
import QMP
import Recording
import Transport

/// The client recorder's side of the event loop: one QMP connection to QEMU at a time, its
/// greeting, negotiation, `--init` and `--poll` commands (`ClientRecorder.Session`), the
/// reconnect attempts, `--duration` and stops, all as events and timers on one loop.
///
/// Two steps, because the file's header needs QEMU's version: `begin()` connects (retrying
/// with `--reconnect`) and its future gives the version once QEMU greeted; the recorder then
/// creates the file and calls `record(into:)`, whose future gives the trailer's reason when
/// the recording is over. Receive times and poll due times come from `clock`; timers are set
/// from them, so a test drives everything on an `EmbeddedEventLoop` whose time is the clock's.
final class ClientDriver: ConnectionOwner {
    /// Connects to QEMU; the channel's pipeline gets `handler`.
    typealias Connector = (ConnectionHandler<ClientDriver>) -> EventLoopFuture<Channel>

    private enum Phase { case connecting, greeting, greeted, recording, reconnecting, finished }

    /// Connections QEMU closed without SHUTDOWN (killed, crashed).
    private(set) var lostConnections = 0

    private let config: ClientModeConfig
    private let clock: ReplayClock
    private let start: Int64
    private let wallClock: @Sendable () -> Int64
    private let logger: Logger
    private let loop: EventLoop
    private let connect: Connector

    private var phase = Phase.connecting
    private var greeted: EventLoopPromise<String?>?
    private var done: EventLoopPromise<String>?
    private var sink: CaptureSink?
    private var channel: Channel?
    /// The connection attempt the current channel belongs to; events of older ones are stale.
    private var attempt = 0
    private var conn: UInt32 = 1
    private var session: ClientRecorder.Session
    private var nextID = 1
    private var reason = ""
    /// Commands injected with `inject`, waiting for their replies, by id.
    private var injected: [String: @Sendable (Result<QMPMessage, SocketError>) -> Void] = [:]
    private var nextInjected = 1
    /// Injected before negotiation completed: sent once it has.
    private var injectLater: [(RecorderCommand, @Sendable (Result<QMPMessage, SocketError>) -> Void)] = []

    // Before the file exists: what QEMU sent, and how the connection ended if it did.
    private var early: [(Int64, [UInt8])] = []
    private var probe = QMPFramer()
    private var version: String?
    private var connectedAt: Int64 = 0
    private var endedEarly: (time: Int64, error: Error?)?
    private var stopEarly: String?
    private var firstError: SocketError?
    /// After a reconnect, the open record waits for QEMU's first bytes (a connection that
    /// closes before QEMU says anything is retried, not recorded).
    private var pendingOpen: Int64?

    private var clockWatch: ClockWatch
    private var retryTimer: Scheduled<Void>?
    private var greetTimer: Scheduled<Void>?
    private var pollTimer: Scheduled<Void>?
    private var durationTimer: Scheduled<Void>?
    private var checkTimer: Scheduled<Void>?
    private var checks = 0

    /// Between connection attempts with `--reconnect`.
    static let retryInterval: Int64 = 250_000_000
    /// How long QEMU's greeting is waited for before recording starts without a version.
    static let greetingTimeout: Int64 = 5_000_000_000
    /// How often the output's health is checked (client mode stops when the output fails).
    static let checkInterval: Int64 = 100_000_000

    init(config: ClientModeConfig, context: RecorderContext, start: Int64, wallStart: Int64, loop: EventLoop, connect: Connector? = nil) {
        self.config = config
        clock = context.clock
        self.start = start
        wallClock = context.wallClock
        logger = context.logger
        self.loop = loop
        session = ClientRecorder.Session(config: config)
        clockWatch = ClockWatch(startWall: wallStart)
        let endpoint = config.endpoint
        self.connect = connect ?? { handler in
            let bound = NIOLoopBound(handler, eventLoop: loop)
            return Bootstraps.connectLater(endpoint, group: loop) { ch in
                ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(bound.value) }
            }
        }
    }

    private func now() -> Int64 { clock.now() - start }
    private var isolated: NIOIsolatedEventLoop { loop.assumeIsolated() }

    private func after(_ ns: Int64, _ body: @escaping () -> Void) -> Scheduled<Void> {
        isolated.scheduleTask(in: .nanoseconds(max(0, ns)), body)
    }

    private var durationOver: Bool { config.duration.map { now() >= $0 } ?? false }

    // MARK: Steps

    /// Connects; the future gives QEMU's version once it greeted (nil if it did not within
    /// the greeting timeout), or fails when QEMU cannot be reached (first error kept).
    func begin() -> EventLoopFuture<String?> {
        let p = loop.makePromise(of: String?.self)
        greeted = p
        if let d = config.duration {
            durationTimer = after(d - now()) { self.durationReached() }
        }
        attemptConnection()
        return p.futureResult
    }

    /// Starts recording into `sink`: the open record, what QEMU sent so far, then the session.
    func record(into sink: CaptureSink) -> EventLoopFuture<String> {
        let p = loop.makePromise(of: String.self)
        done = p
        self.sink = sink
        phase = .recording
        sink.open(connectedAt, conn, peer: config.endpoint.description, info: JSONObject(["role": .string("client")]))
        for (t, b) in early {
            sink.data(t, conn, .qemu, b)
            session.feed(b)
        }
        early = []
        scheduleCheck()
        if let e = endedEarly {
            qemuGone(at: e.time, error: e.error)
        } else if let name = stopEarly {
            stop(by: name)
        } else if durationOver {
            durationReached()
        } else {
            drive()
        }
        return p.futureResult
    }

    /// The file could not be created: nothing more is done.
    func abandon() {
        phase = .finished
        cancelTimers()
        channel?.close(promise: nil)
        channel = nil
    }

    func stop(by name: String) {
        switch phase {
        case .connecting:
            fail(firstError ?? SocketError(endpoint: config.endpoint.description, reason: "stopped before QEMU could be reached", errno: 0))
        case .greeting, .greeted:
            stopEarly = name
            greetingDone()
        case .recording:
            if pendingOpen == nil { sink?.close(now(), conn, by: "recorder", reason: "stopped by \(name)") }
            finish(RecorderControl.trailerReason(stoppedBy: name))
        case .reconnecting:
            finish(RecorderControl.trailerReason(stoppedBy: name))
        case .finished:
            break
        }
    }

    private func durationReached() {
        switch phase {
        case .connecting:
            fail(firstError ?? SocketError(endpoint: config.endpoint.description, reason: "stopped before QEMU could be reached", errno: 0))
        case .recording:
            if pendingOpen == nil { sink?.close(now(), conn, by: "recorder", reason: "duration reached") }
            finish("duration")
        case .reconnecting:
            finish("duration")
        case .greeting, .greeted, .finished:
            break   // checked again when recording starts
        }
    }

    // MARK: The connection

    private func attemptConnection() {
        attempt += 1
        let mine = attempt
        connect(ConnectionHandler(self, mine)).assumeIsolated().whenComplete { result in
            guard mine == self.attempt else { return }
            switch result {
            case .success(let ch): self.connected(ch)
            case .failure(let e): self.connectFailed(e)
            }
        }
    }

    private func retryLater() {
        retryTimer = after(Self.retryInterval) { self.attemptConnection() }
    }

    private func connected(_ ch: Channel) {
        switch phase {
        case .connecting:
            channel = ch
            connectedAt = now()
            early = []
            probe = QMPFramer()
            phase = .greeting
            greetTimer = after(Self.greetingTimeout) { self.greetingDone() }
        case .reconnecting:
            channel = ch
            session = ClientRecorder.Session(config: config)
            pendingOpen = now()
            phase = .recording
        default:
            ch.close(promise: nil)
        }
    }

    private func connectFailed(_ error: Error) {
        switch phase {
        case .connecting:
            if firstError == nil { firstError = Bootstraps.error(config.endpoint, "cannot connect", error) }
            guard config.reconnect, !durationOver else { return fail(firstError!) }
            retryLater()
        case .reconnecting:
            retryLater()
        default:
            break
        }
    }

    /// Bytes from QEMU on connection attempt `from`.
    func read(_ buffer: ByteBuffer, on from: Int) {
        guard from == attempt else { return }
        let bytes = Array(buffer.readableBytesView)
        let t = now()
        switch phase {
        case .greeting:
            early.append((t, bytes))
            if let first = (probe.push(bytes) + probe.drain()).first {
                if case .greeting(let g) = first.message().body { version = g.version?.description }
                greetingDone()
            }
        case .greeted:
            early.append((t, bytes))
        case .recording:
            guard let sink else { return }
            if let o = pendingOpen {
                sink.open(o, conn, peer: config.endpoint.description, info: JSONObject(["role": .string("client"), "reconnect": .bool(true)]))
                pendingOpen = nil
                var l = logger
                l[metadataKey: "conn"] = "\(conn)"
                l.info("reconnected to QEMU")
            }
            sink.data(t, conn, .qemu, bytes)
            session.feed(bytes)
            deliverInjectedReplies()
            drive()
        default:
            break
        }
    }

    /// Connection attempt `from` ended (`error`: the socket error; nil for QEMU's EOF).
    func ended(_ from: Int, error: Error?, gone: Bool) {
        guard from == attempt, let ch = channel else { return }
        attempt += 1   // later events of this channel are stale
        ch.close(promise: nil)
        channel = nil
        let t = now()
        switch phase {
        case .greeting where early.isEmpty && config.reconnect:
            // A connection QEMU closes before saying anything (a dying QEMU's socket) is not
            // a session: retried, not recorded.
            greetTimer?.cancel()
            phase = .connecting
            retryLater()
        case .greeting:
            endedEarly = (t, error)
            greetingDone()
        case .greeted:
            endedEarly = (t, error)
        case .recording:
            qemuGone(at: t, error: error)
        default:
            break
        }
    }

    private func greetingDone() {
        guard phase == .greeting else { return }
        greetTimer?.cancel()
        phase = .greeted
        greeted?.succeed(version)
    }

    /// QEMU closed the recorded connection (or it was reset).
    private func qemuGone(at t: Int64, error: Error?) {
        pollTimer?.cancel()
        failInjected("QEMU closed the connection before replying")
        if pendingOpen == nil, let sink {
            let why: String
            if let error {
                why = "upstream lost: \(errorText(error))"
            } else if session.sawShutdown {
                why = "eof: QEMU closed the connection after SHUTDOWN"
            } else {
                why = "upstream lost: QEMU closed the connection without SHUTDOWN"
            }
            sink.close(t, conn, by: "qemu", reason: why)
            reason = session.sawShutdown && error == nil ? "eof" : "upstream lost"
            if reason != "eof" { lostConnections += 1 }
            guard config.reconnect else { return finish(reason) }
            var l = logger
            l[metadataKey: "conn"] = "\(conn)"
            if reason == "eof" { l.info("QEMU closed the connection (\(why)); waiting to reconnect") } else { l.warning("QEMU closed the connection (\(why)); waiting to reconnect") }
            conn += 1
            phase = .reconnecting
            attemptConnection()
        } else {
            // QEMU closed again before saying anything: its socket is still dying.
            pendingOpen = nil
            phase = .reconnecting
            retryLater()
        }
    }

    // MARK: Injected commands

    /// Sends `command` now, recorded as the client's, whatever the recorder has in flight:
    /// QEMU answers commands in the order it reads them (docs/QEMU-FACTS.md, "Wire
    /// protocol"), and the recorder tells the replies apart by id.
    func inject(_ command: RecorderCommand, reply: @escaping @Sendable (Result<QMPMessage, SocketError>) -> Void) {
        if phase == .recording, pendingOpen == nil, channel != nil, !session.negotiated {
            injectLater.append((command, reply))
            return
        }
        guard phase == .recording, pendingOpen == nil, let sink, let ch = channel, session.negotiated else {
            reply(.failure(SocketError(endpoint: config.endpoint.description, reason: "not connected to QEMU", errno: 0)))
            return
        }
        let id = ClientRecorder.Session.injectedPrefix + "\(nextInjected)"
        nextInjected += 1
        injected[id] = reply
        let bytes = command.bytes(id: id)
        ch.writeAndFlush(ByteBuffer(bytes: bytes), promise: nil)
        sink.data(now(), conn, .client, bytes)
    }

    private func deliverInjectedReplies() {
        if session.negotiated && !injectLater.isEmpty {
            let later = injectLater
            injectLater = []
            for (c, r) in later { inject(c, reply: r) }
        }
        guard !session.injectedReplies.isEmpty else { return }
        for (id, m) in session.injectedReplies { injected.removeValue(forKey: id)?(.success(m)) }
        session.injectedReplies = []
    }

    /// The connection is gone: injected commands will not be answered.
    private func failInjected(_ why: String) {
        let waiting = Array(injected.values) + injectLater.map(\.1)
        injected = [:]
        injectLater = []
        for r in waiting { r(.failure(SocketError(endpoint: config.endpoint.description, reason: why, errno: 0))) }
    }

    // MARK: The session

    /// Sends what the session has to send now (negotiation, the next init or poll command)
    /// and sets the timer for the next poll.
    private func drive() {
        guard phase == .recording, let sink, let ch = channel else { return }
        for bytes in session.commandsToSend(now: now(), nextID: &nextID) {
            ch.writeAndFlush(ByteBuffer(bytes: bytes), promise: nil)
            sink.data(now(), conn, .client, bytes)
        }
        pollTimer?.cancel()
        pollTimer = nil
        if let due = session.nextDue() {
            pollTimer = after(due - now()) { self.drive() }
        }
    }

    /// Client mode records and nothing else: a failed output ends it. Once a second, a host
    /// wall-clock jump is noted.
    private func scheduleCheck() {
        checkTimer = after(Self.checkInterval) {
            guard self.phase == .recording || self.phase == .reconnecting, let sink = self.sink else { return }
            if let e = sink.failure {
                if self.phase == .recording && self.pendingOpen == nil {
                    sink.close(self.now(), self.conn, by: "recorder", reason: "the output failed: \(e)")
                }
                return self.finish("error: \(e)")
            }
            self.checks += 1
            if self.checks % 10 == 0 { self.clockWatch.note(into: sink, at: self.now(), wall: self.wallClock()) }
            self.scheduleCheck()
        }
    }

    // MARK: The end

    private func cancelTimers() {
        for t in [retryTimer, greetTimer, pollTimer, durationTimer, checkTimer] { t?.cancel() }
    }

    /// Nothing could be recorded (QEMU unreachable, or stopped before it was).
    private func fail(_ error: SocketError) {
        phase = .finished
        cancelTimers()
        greeted?.fail(error)
    }

    private func finish(_ reason: String) {
        guard phase != .finished else { return }
        failInjected("the recording ended before QEMU replied")
        phase = .finished
        cancelTimers()
        channel?.close(promise: nil)
        channel = nil
        done?.succeed(reason)
    }
}
