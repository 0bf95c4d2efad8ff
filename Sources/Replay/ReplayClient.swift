import NIOCore
import Transport

/// One connected client of the fake QEMU as the server's loop sees it: its protocol
/// (`ServerSession`, bytes in → bytes out) and what the socket has done with the bytes.
///
/// The session's output buffer is the client's whole queue: bytes stay in it until the socket
/// has taken them (a write's promise succeeded), so `session.pendingOutputCount` is what the
/// drop rules and max-speed flow control look at. At most `maxInFlight` of those bytes are
/// handed to the channel at a time, in writes of at most `writeChunk`, each one ByteBuffer,
/// refilled once the channel holds half of that or less.
///
/// Example: a client that negotiated and was sent 300 KiB it has not read yet has
/// `pendingOutputCount == 307200`, of which `inFlight == 262144` sit in the channel.
final class ReplayClient {
    let number: Int
    let peer: String
    let session: ServerSession
    let context: ChannelHandlerContext
    /// Bytes at the front of the session's output that the channel holds (written, not yet taken).
    var inFlight = 0
    /// The last time the queue was empty or the socket took bytes (for `stallTimeout`).
    var lastProgress: Int64
    /// Set once the client is closed and reported; nothing more happens to it.
    var ended = false
    var dropReason: String?
    /// Reentrancy of `ReplayCore.pump`: a write that completes inside a flush asks for another round.
    var pumping = false
    var again = false
    /// Input that arrived during this client's own turn (see `ReplayCore.received`).
    var deferredInput = ByteBuffer()
    /// The next release of its own timeline.
    var wakeup = Wakeup()
    /// When a queue that is not moving should be looked at again.
    var stallCheck = Wakeup()

    /// Largest write handed to the channel; also how often a slow reader's progress is seen.
    /// (One max-speed reader took 10-11 million events/s with 32 KiB, fewer with 64 KiB and
    /// 6.5 million with 256 KiB: smaller writes keep the socket fed while the next is made.)
    static let writeChunk = 32 << 10
    /// Most bytes handed to the channel and not yet taken by the socket.
    static let maxInFlight = 256 << 10

    init(number: Int, peer: String, session: ServerSession, context: ChannelHandlerContext, now: Int64) {
        self.number = number
        self.peer = peer
        self.session = session
        self.context = context
        lastProgress = now
    }

    /// Before output is added: an empty queue counts as progress (a stall is measured from
    /// the moment bytes start waiting, not from the last write long ago).
    func noteIdle(_ now: Int64) {
        if session.pendingOutputCount == 0 { lastProgress = now }
    }

    var unfed: Int { session.pendingOutputCount - inFlight }
}

/// A timer on the server's loop that keeps only its earliest deadline: arming it for a later
/// time than the one pending is a no-op (the early firing re-arms), for an earlier time it
/// replaces it. Deadlines are in the server clock's nanoseconds.
struct Wakeup {
    private var task: Scheduled<Void>?
    private(set) var deadline: Int64?

    mutating func arm(at d: Int64, clock: ReplayClock, loop: EventLoop, _ body: @escaping () -> Void) {
        if let t = deadline, t <= d { return }
        task?.cancel()
        deadline = d
        task = loop.assumeIsolated().scheduleTask(in: .nanoseconds(max(0, d - clock.now()))) { body() }
    }

    /// Called first thing when the timer fires.
    mutating func fired() {
        task = nil
        deadline = nil
    }

    mutating func cancel() {
        task?.cancel()
        fired()
    }
}

/// The NIO side of one client connection: turns channel events into calls on the server's
/// loop-confined core. Added to each accepted (or, with `--connect-to`, connected) channel.
final class ReplayChannelHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let core: ReplayCore
    /// The peer as reports name it; nil means "from the channel's remote address".
    private let fixedPeer: String?
    private var client: ReplayClient?

    init(core: ReplayCore, peer: String? = nil) {
        self.core = core
        fixedPeer = peer
    }

    func channelActive(context: ChannelHandlerContext) {
        let peer = fixedPeer ?? ReplayChannelHandler.describe(context.channel.remoteAddress)
        client = core.admit(context: context, peer: peer)
        if client == nil { context.close(promise: nil) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let c = client else { return }
        let buf = unwrapInboundIn(data)
        core.received(buf, from: c)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The client shut its sending side: like QEMU, the monitor connection ends; what is
        // queued for it goes out first (the reply to `quit` before the close).
        if let e = event as? ChannelEvent, e == .inputClosed, let c = client {
            core.close(c, reason: "client closed the connection")
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let c = client { core.close(c, reason: "client closed the connection") }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let c = client { core.close(c, reason: "read error: \(ReplayCore.describe(error))") }
        context.close(promise: nil)
    }

    /// `unix` for a unix-socket client (it has no name), `tcp:HOST:PORT` for TCP.
    static func describe(_ a: SocketAddress?) -> String {
        switch a {
        case .v4?: return "tcp:\(a?.ipAddress ?? ""):\(a?.port ?? 0)"
        case .v6?: return "tcp:[\(a?.ipAddress ?? "")]:\(a?.port ?? 0)"
        default: return "unix"
        }
    }
}
