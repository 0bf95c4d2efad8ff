import Logging
import NIOCore
import QMP
import Recording
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// A snapshot of a running replay, for `replay status` and logs.
public struct ReplayStatus: Sendable, CustomStringConvertible {
    public var endpoint: String
    public var running: Bool
    public var clients: Int
    public var negotiatedClients: Int
    public var paused: Bool
    public var speed: Double?
    /// Record number of the next event to release (nil when none is left).
    public var nextRecord: Int?
    /// Position in recording time, µs since the recording started.
    public var positionMicros: Int64
    /// Events sent to all clients, finished sessions included.
    public var eventsSent: Int
    public var sessionsFinished: Int

    public var description: String {
        let sp = speed.map { "\(DurationFormat.fixed($0, $0 < 1 ? 2 : 1))x" } ?? "max"
        let pos = DurationFormat.fixed(Double(positionMicros) / 1e6, 3) + "s"
        let next = nextRecord.map { " (next #\($0))" } ?? ""
        return "\(running ? (paused ? "paused" : "playing") : "stopped") on \(endpoint): speed \(sp), position \(pos)\(next), "
            + "\(clients) client(s) (\(negotiatedClients) negotiated), \(eventsSent) events sent, \(sessionsFinished) session(s) finished"
    }
}

/// The fake QEMU: serves a recording to QMP clients on a unix or tcp socket.
///
/// Built on swift-nio: the listener and every client live on one event loop, each client's
/// `ServerSession` behind a channel handler, and releases are tasks scheduled on that loop
/// at their due times (NIO's deadlines and `MonotonicClock` are both CLOCK_MONOTONIC). A
/// client whose queued output passes `clientBufferLimit`, or stays unread for `stallTimeout`,
/// is dropped with a logged reason, so one slow or hostile client cannot hold up the others.
/// The controls below may be called from any thread: they run on the loop and return when
/// done. Diagnostics go to `logger` (a client connected, dropped, refused).
///
/// Example: `let s = try ReplayServer(recording: r, options: o); try s.start(listen: .unix("/tmp/q"), socketMode: 0o600)`.
public final class ReplayServer: Sendable {
    public let script: ReplayScript
    public let options: ReplayOptions
    let loop: EventLoop
    private let core: NIOLoopBoundBox<ReplayCore>
    private let done: EventLoopFuture<Void>
    /// Completed when serving ends; also on release, for a server that was never started
    /// (a command that fails between making and starting it), which NIO would otherwise
    /// report as a leaked promise. Completing it a second time does nothing.
    private let donePromise: EventLoopPromise<Void>

    /// Serves `recording` on a loop of `group` (default: the process's shared loops).
    public convenience init(recording: Recording, options: ReplayOptions, group: EventLoopGroup = EventLoops.shared,
                            logger: Logger = Logger(label: "qmpreplay.replay")) throws {
        try options.validate()
        try self.init(script: ReplayScript(recording: recording, options: options), options: options, group: group, logger: logger)
    }

    /// A server over an already built script. The clock must read the loop's time: the
    /// default for a real loop, the loop's own `now` for an `EmbeddedEventLoop` in tests.
    public init(script: ReplayScript, options: ReplayOptions, clock: ReplayClock = MonotonicClock(),
                group: EventLoopGroup = EventLoops.shared, logger: Logger = Logger(label: "qmpreplay.replay")) throws {
        try options.validate()
        // A schedule given outright must fit the recording (one slot per event, in order).
        if let given = options.chaos?.schedule { try ChaosPlan(script: script).check(given) }
        self.script = script
        self.options = options
        loop = group.next()
        let c = ReplayCore(script: script, options: options, clock: clock, loop: loop, logger: logger)
        done = c.done.futureResult
        donePromise = c.done
        core = NIOLoopBoundBox.makeBoxSendingValue(c, eventLoop: loop)
    }

    deinit {
        let p = donePromise
        loop.execute { p.succeed(()) }
    }

    // MARK: lifecycle

    /// Listens and serves; returns once the socket accepts connections.
    public func start(listen ep: Endpoint, socketMode: mode_t) throws {
        let box = core
        let channel: Channel
        do {
            channel = try Bootstraps.listen(ep, mode: socketMode, group: loop) { ch in
                ch.eventLoop.makeCompletedFuture { try ReplayServer.setUp(ch, ReplayChannelHandler(core: box.value)) }
            }
        } catch {
            throw ReplayError.socket("cannot listen on \(ep): \(ReplayServer.reason(error))")
        }
        let s = script
        onLoop(()) { core in
            core.endpoint = ep
            core.listener = channel
            core.running = true
            self.raisePriority(core)
            core.logger.info("serving \(s.path) (connection \(s.connection), \(s.events.count) events, \(s.commands.count) commands) on \(ep)")
        }
    }

    /// Connects out to a listening consumer and replays to it as if it had connected
    /// (`qmpreplay replay --connect-to`); the replay ends when the consumer disconnects, or when
    /// the timeline is over and the consumer has been quiet for `linger`.
    public func start(connectingTo ep: Endpoint, linger: Int64 = 1_000_000_000) throws {
        let box = core
        beginOutbound(to: ep, linger: linger)
        onLoop(()) { self.raisePriority($0) }
        do {
            _ = try Bootstraps.connect(ep, group: loop) { ch in
                ch.eventLoop.makeCompletedFuture { try ReplayServer.setUp(ch, ReplayChannelHandler(core: box.value, peer: ep.description)) }
            }
        } catch {
            onLoop(()) { $0.shutDown("cannot connect") }
            throw ReplayError.socket("cannot connect to \(ep): \(ReplayServer.reason(error))")
        }
    }

    /// Outbound mode from here on: the first client is the consumer at `ep`, and the server
    /// ends with it (tests attach an `EmbeddedChannel` as the consumer).
    func beginOutbound(to ep: Endpoint, linger: Int64) {
        onLoop(()) { core in
            core.endpoint = ep
            core.linger = linger
            core.running = true
        }
    }

    /// A client channel's pipeline: reads of at most `readPerTurn` bytes, one per turn of the
    /// loop, so a flood cannot starve the others; then the session's handler.
    private static func setUp(_ ch: Channel, _ handler: ReplayChannelHandler) throws {
        let sync = ch.pipeline.syncOperations
        try ch.syncOptions?.setOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: readPerTurn))
        try ch.syncOptions?.setOption(.maxMessagesPerRead, value: 1)
        try sync.addHandler(handler)
    }

    /// Bytes read from one client per turn of the loop. 2 KiB keeps a turn short (a turn's
    /// input from a hostile client is parsed and answered before due events are released
    /// again: 64 KiB let 5 hostile clients push 100 others' p99 lateness to 23 ms, 2 KiB to
    /// about 2 ms), and is still several ordinary commands.
    static let readPerTurn = 2 << 10

    /// Closes every client and the listener; reports are made for every session still open.
    /// Returns when the server has finished. Safe to call more than once and from any thread
    /// but the loop's own.
    public func stop() {
        onLoop(()) { $0.shutDown("server stopped") }
        wait()
    }

    /// Stops as QEMU does on SIGINT/SIGTERM: SHUTDOWN (`host-signal`) to every negotiated
    /// client, then EOF (within `grace`), then the server is finished.
    public func stopBySignal(grace: Int64 = 1_000_000_000) {
        onLoop(()) { $0.shutDownBySignal(grace: grace) }
        wait()
    }

    /// Blocks until the server finishes (by `stop`, fail-fast, or the end of an outbound replay).
    public func wait() {
        guard !loop.inEventLoop else { return }
        try? done.wait()
    }

    /// True once the server has finished.
    public var isFinished: Bool { onLoop(true) { $0.finished } }

    /// Every finished session's report, in the order they ended.
    public var reports: [SessionReport] { onLoop([]) { $0.reports } }

    /// Blocks until a session ends beyond the first `cursor` reports, or the server finishes;
    /// returns the reports after `cursor` (empty when the server finished with none new).
    ///
    /// Example: `var seen = 0; while case let new = s.reports(after: seen), !new.isEmpty { seen += new.count; ... }`.
    public func reports(after cursor: Int) -> [SessionReport] {
        let f: EventLoopFuture<[SessionReport]> = onLoop(loop.makeSucceededFuture([])) { $0.reports(after: cursor) }
        if loop.inEventLoop { return [] }
        return (try? f.wait()) ?? []
    }

    /// True when a `--strict --fail-fast` session hit a divergence (the server then stopped).
    public var stoppedByFailFast: Bool { onLoop(false) { $0.failedFast } }

    // MARK: control (any thread)

    public func pause() { onLoop(()) { $0.pause() } }

    public func resume() { onLoop(()) { $0.resume() } }

    /// `nil` is max speed. New clients start at the current speed.
    public func setSpeed(_ s: Double?) { onLoop(()) { $0.setSpeed(s) } }

    /// Moves every timeline to recording time `toMicros` (µs since the recording started).
    public func seek(toMicros us: Int64) { onLoop(()) { $0.seek(toMicros: us) } }

    public func status() -> ReplayStatus {
        onLoop(ReplayStatus(endpoint: "-", running: false, clients: 0, negotiatedClients: 0, paused: false, speed: nil,
                            nextRecord: nil, positionMicros: 0, eventsSent: 0, sessionsFinished: 0)) { $0.status() }
    }

    /// A handler for one more client channel on this server's loop (tests attach it to an
    /// `EmbeddedChannel`).
    func makeHandler(peer: String? = nil) -> ReplayChannelHandler { ReplayChannelHandler(core: core.value, peer: peer) }

    /// Runs `body` on the loop and returns its result (at once when already there);
    /// `fallback` when the loop is gone.
    func onLoop<T: Sendable>(_ fallback: @autoclosure () -> T, _ body: @escaping @Sendable (ReplayCore) -> T) -> T {
        let box = core
        if loop.inEventLoop { return body(box.value) }
        return (try? loop.submit { body(box.value) }.wait()) ?? fallback()
    }

    /// The serving thread asks for nice -10 (and SCHED_FIFO with `realtime`) while it serves;
    /// the loop's thread gets its old priority back when the server finishes.
    private func raisePriority(_ core: ReplayCore) {
        guard options.raisePriority || options.realtime else { return }
        let saved = ThreadPriority.raise(nice: options.raisePriority ? -10 : nil, realtime: options.realtime)
        core.onFinish.append { saved.restore() }
    }

    private static func reason(_ e: Error) -> String {
        guard let s = e as? SocketError else { return "\(e)" }
        return s.errno != 0 ? String(cString: strerror(s.errno)) : s.reason
    }
}

/// The calling thread's scheduling priority, raised for punctual releases and restored
/// afterwards. On Linux `setpriority(PRIO_PROCESS, 0, ...)` and `sched_setscheduler(0, ...)`
/// act on the calling thread only. Refusals (no CAP_SYS_NICE) are fine: the server still works.
struct ThreadPriority {
    private var nice: Int32?
    private var policy: Int32?
    private var param = sched_param()

    static func raise(nice n: Int32?, realtime: Bool) -> ThreadPriority {
        var saved = ThreadPriority()
        if let n {
            errno = 0
            let old = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
            if errno == 0, old > n, setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, n) == 0 { saved.nice = old }
        }
        if realtime {
            // The kernel's RT throttling still leaves other work 5% of the CPU.
            let oldPolicy = sched_getscheduler(0)
            var oldParam = sched_param()
            var p = sched_param(sched_priority: 10)
            if oldPolicy >= 0, sched_getparam(0, &oldParam) == 0, sched_setscheduler(0, SCHED_FIFO, &p) == 0 {
                saved.policy = oldPolicy
                saved.param = oldParam
            }
        }
        return saved
    }

    func restore() {
        if let policy {
            var p = param
            _ = sched_setscheduler(0, policy, &p)
        }
        if let nice { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, nice) }
    }
}
