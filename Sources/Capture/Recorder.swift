import Logging
import NIOCore
import QMP
import Recording
import Transport

/// What the CLI drives, in either mode: `run()` records until the session ends (blocking the
/// caller), `stop(by:)` ends it from any thread (the CLI calls it from its signal handler),
/// and `progress` is read by the status line on the CLI's own timer.
///
/// Example: `Signals.onStop { rec.stop(by: $0) }; let outcome = try rec.run()`.
public protocol CaptureRecorder: AnyObject, Sendable {
    /// Records until the session ends; throws only when nothing could be recorded at all.
    func run() throws -> CaptureOutcome
    /// Ends the recording: connections are closed with a close record saying `stopped by
    /// NAME`, what is queued is written (within the stop budget), then the trailer. A name
    /// starting with `SIG` is a signal (trailer reason `signal`).
    func stop(by name: String)
    /// Elapsed time and counters while recording (`nil` before the file exists).
    var progress: CaptureProgress? { get }
    /// Dashcam mode: writes an incident file now (a signal or the control socket asked);
    /// ignored before recording starts and outside dashcam mode.
    func trigger(_ trigger: IncidentTrigger)
}

/// What a recorder runs with: the clock of its receive times and timers, the wall clock of
/// its header and jump notes, the logger that hears what the user should know (clients come
/// and go, peers dropped, the output failing), and the event loops. The defaults are the real
/// ones; tests give a clock they move by hand.
///
/// Example: `ProxyRecorder(config: cfg, options: opts, context: RecorderContext(logger: Logger(label: "x")))`.
public struct RecorderContext: Sendable {
    /// Nanoseconds; receive times are read from it (relative to the recorder's start).
    public var clock: ReplayClock
    /// Microseconds since the epoch.
    public var wallClock: @Sendable () -> Int64
    public var logger: Logger
    public var group: EventLoopGroup

    public init(clock: ReplayClock = MonotonicClock(), wallClock: @escaping @Sendable () -> Int64 = { WallClock.nowMicros() },
                logger: Logger = Logger(label: "qmpreplay.record"), group: EventLoopGroup = EventLoops.shared) {
        self.clock = clock
        self.wallClock = wallClock
        self.logger = logger
        self.group = group
    }

    /// The start of a run: the time base and wall-clock anchor, one event loop for all of the
    /// recorder's sockets, and the recorder's loop side (`make`, called on that loop).
    func begin<Side>(_ make: @escaping @Sendable (_ start: Int64, _ wallStart: Int64, _ loop: EventLoop) -> Side) throws
        -> (start: Int64, wallStart: Int64, loop: EventLoop, side: NIOLoopBound<Side>) {
        let start = clock.now()
        let wallStart = wallClock()
        let loop = group.next()
        let side = try loop.submit { NIOLoopBound(make(start, wallStart, loop), eventLoop: loop) }.wait()
        return (start, wallStart, loop, side)
    }
}

/// A reading for the status line: `recording 00:01:05  1200 records  40 events  310 KB`.
public struct CaptureProgress: Sendable {
    /// Nanoseconds since the recorder started.
    public var elapsed: Int64
    public var stats: CaptureStats
}

/// How a recording ended, for the trailer, the summary and the exit status.
public struct CaptureOutcome: Sendable {
    /// The trailer's reason (`eof`, `upstream lost`, `signal`, `duration`, ...).
    public var reason: String
    public var stats: CaptureStats
    /// How the file was ended (trailer written, or why not).
    public var end: CaptureEnd

    public init(reason: String, stats: CaptureStats, end: CaptureEnd) {
        self.reason = reason; self.stats = stats; self.end = end
    }

    /// Why the file could not be ended cleanly, if so.
    public var error: String? { end.error }
    /// QEMU went away without SHUTDOWN (killed, crashed) at least once.
    public var qemuLost: Bool { stats.qemuLost > 0 || reason.hasPrefix("upstream lost") }
    /// Records are missing (dropped, lost to a write error, or cut by the stop).
    public var incomplete: Bool { stats.incomplete || !end.trailerWritten }
}

/// The part of a recorder that other threads touch: a stop asked from anywhere (a signal
/// handler in the CLI, a test, a benchmark) before or while the recorder runs, and the sink
/// whose counters the status line reads. Everything else of a recorder lives on its event loop.
final class RecorderControl: Sendable {
    private struct State {
        var stop: String?
        var deliver: (@Sendable (String) -> Void)?
        var sink: CaptureSink?
        var start: Int64 = 0
    }

    private let state = Guarded(State())

    /// The first stop counts; later ones (a second Ctrl-C) find the recorder already stopping.
    func requestStop(by name: String) {
        let deliver = state.withLock { s -> (@Sendable (String) -> Void)? in
            guard s.stop == nil else { return nil }
            s.stop = name
            return s.deliver
        }
        deliver?(name)
    }

    /// Where stops go from now on (a hop onto the recorder's event loop); a stop asked
    /// before is passed on at once.
    func deliverStops(_ deliver: @escaping @Sendable (String) -> Void) {
        let pending = state.withLock { s -> String? in
            s.deliver = deliver
            return s.stop
        }
        if let pending { deliver(pending) }
    }

    func recording(into sink: CaptureSink, since start: Int64) {
        state.withLock { s in
            s.sink = sink
            s.start = start
        }
    }

    /// Passes a trigger to the sink, stamped with the recorder's clock.
    func trigger(_ trigger: IncidentTrigger, clock: ReplayClock) {
        guard let (sink, start) = state.withLock({ s in s.sink.map { ($0, s.start) } }) else { return }
        sink.trigger(clock.now() - start, trigger)
    }

    func progress(_ clock: ReplayClock) -> CaptureProgress? {
        guard let (sink, start) = state.withLock({ s in s.sink.map { ($0, s.start) } }) else { return nil }
        return CaptureProgress(elapsed: clock.now() - start, stats: sink.currentStats)
    }

    /// The trailer's reason for a stop: `signal` for SIGINT, SIGTERM, SIGHUP; `stopped` else.
    static func trailerReason(stoppedBy name: String) -> String {
        name.hasPrefix("SIG") ? "signal" : "stopped"
    }
}

/// Notices host wall-clock jumps while recording: the offset between the wall clock and
/// the monotonic clock should stay put; a change of more than a second is a jump. The
/// recorders check it once a second and note a jump in the file (`jump_us`).
struct ClockWatch {
    let startWall: Int64
    var lastOffset: Int64 = 0

    init(startWall: Int64) { self.startWall = startWall }

    /// The jump (µs) since the last check, given the recorder's time (`ns` since its start)
    /// and the wall clock (`wall`, µs since the epoch) read together; nil when none.
    mutating func check(monotonic ns: Int64, wall: Int64 = WallClock.nowMicros()) -> Int64? {
        let offset = wall - startWall - ns / 1000
        defer { lastOffset = offset }
        let jump = offset - lastOffset
        return abs(jump) > 1_000_000 ? jump : nil
    }

    /// Checks, and notes a jump in `sink`.
    mutating func note(into sink: CaptureSink, at t: Int64, wall: Int64) {
        guard let jump = check(monotonic: t, wall: wall) else { return }
        sink.note(t, 0, "the host wall clock jumped by \(DurationFormat.short(jump * 1000)); record times (monotonic) are unaffected",
                  JSONObject(["jump_us": .int(jump)]))
    }
}

/// What a connection's channel reports to the recorder side that owns it (`ProxyPair` for
/// each side of a pair, `ClientDriver` for each connection attempt): bytes read, and the end
/// of the connection: the peer's end of input (`gone` false: the channel is still open) or
/// the channel's close (`gone` true), with the error that caused it if any.
protocol ConnectionOwner: AnyObject {
    /// Which of the owner's connections (a side, an attempt).
    associatedtype Tag
    func read(_ buffer: ByteBuffer, on tag: Tag)
    func ended(_ tag: Tag, error: Error?, gone: Bool)
}

/// Feeds a `ConnectionOwner` what happens on one channel. Errors close the channel; the
/// close then reports the first error.
final class ConnectionHandler<Owner: ConnectionOwner>: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let owner: Owner
    private let tag: Owner.Tag
    private var error: Error?

    init(_ owner: Owner, _ tag: Owner.Tag) {
        self.owner = owner
        self.tag = tag
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        owner.read(unwrapInboundIn(data), on: tag)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            owner.ended(tag, error: nil, gone: false)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.error = self.error ?? error
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        owner.ended(tag, error: error, gone: true)
    }
}

/// The text of an error that ended a connection: the system's reason for a socket error,
/// NIO's description otherwise.
func errorText(_ error: Error) -> String {
    if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
    return "\(error)"
}

#if canImport(Glibc)
import Glibc
#endif
