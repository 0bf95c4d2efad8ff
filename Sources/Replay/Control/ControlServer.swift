import NIOCore
import NIOPosix
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// Where the control API listens (`serve --control`): a unix socket any number of test
/// processes may connect to, or the process's stdin and stdout. Each line a peer writes is
/// one request, answered by `ReplayControl.handle(line:)` with one line, in order. It runs on
/// the replay server's own event loop, so a request acts between two turns of the replay,
/// never in the middle of one, and the events a `step` releases are written to their
/// clients' sockets before the reply to `step` is written.
///
/// Example: `let c = try ControlServer.listen(.unix("/tmp/ctl.sock"), control: ctl)`;
/// then `echo '{"cmd":"status"}' | socat - UNIX-CONNECT:/tmp/ctl.sock`.
public final class ControlServer: Sendable {
    private let channel: Channel
    /// A unix socket's path, removed on `close`.
    private let path: String?

    private init(channel: Channel, path: String? = nil) {
        self.channel = channel
        self.path = path
    }

    /// Listens on `ep` (a unix socket gets `mode`, 0600 by default).
    public static func listen(_ ep: Endpoint, control: ReplayControl, mode: mode_t = 0o600) throws(SocketError) -> ControlServer {
        let ch = try Bootstraps.listen(ep, mode: mode, group: control.server.loop) { ch in
            ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(ControlLineHandler(control: control)) }
        }
        if case .unix(let p) = ep { return ControlServer(channel: ch, path: p) }
        return ControlServer(channel: ch)
    }

    /// Reads requests from stdin and writes replies to stdout (`serve --control -`). Stdin
    /// must be a pipe, a socket or a terminal (swift-nio reads only those without blocking).
    public static func standardIO(control: ReplayControl) throws(ControlError) -> ControlServer {
        var st = stat()
        if fstat(0, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG || (st.st_mode & S_IFMT) == S_IFDIR {
            throw ControlError(.badRequest, "stdin is a file: the control API reads a pipe, a socket or a terminal (use --control PATH for a socket)")
        }
        do { return ControlServer(channel: try pipe(control)) } catch {
            throw ControlError(.badRequest, "stdin cannot be read as a stream (\(error)): give a pipe, a socket or a terminal, or --control PATH")
        }
    }

    private static func pipe(_ control: ReplayControl) throws -> Channel {
        try NIOPipeBootstrap(group: control.server.loop)
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(ControlLineHandler(control: control)) }
            }
            .takingOwnershipOfDescriptors(input: dup(0), output: dup(1)).wait()
    }

    /// Stops listening (or reading stdin); returns when closed.
    public func close() {
        try? channel.close().wait()
        if let path { unlink(path) }
    }
}

/// Splits a control connection's bytes into lines and answers each (see `ControlServer`), in
/// order: a `wait` holds the requests after it until it is answered.
final class ControlLineHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let control: ReplayControl
    private var pending: [UInt8] = []
    /// Requests not answered yet, in order ("" stands for one that was too long).
    private var queued: [String] = []
    /// A request is being answered (a `wait` may take a while).
    private var busy = false
    private var answering = false
    /// A peer sending an endless line is cut off here (requests are a few dozen bytes).
    static let lineLimit = 1 << 20

    init(control: ReplayControl) { self.control = control }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buf = unwrapInboundIn(data)
        buf.withUnsafeReadableBytes { pending.append(contentsOf: $0) }
        while let nl = pending.firstIndex(of: 0x0A) {
            let line = String(decoding: pending[..<nl], as: UTF8.self)
            pending.removeSubrange(...nl)
            if line.contains(where: { !$0.isWhitespace }) { queued.append(line) }
        }
        if pending.count > ControlLineHandler.lineLimit {
            pending.removeAll()
            queued.append("")
        }
        answer(context)
    }

    private func answer(_ context: ChannelHandlerContext) {
        answering = true
        defer { answering = false }
        while !busy, !queued.isEmpty {
            let line = queued.removeFirst()
            guard !line.isEmpty else {
                send(ControlReply.json(ControlError(.badRequest, "request longer than \(ControlLineHandler.lineLimit) bytes")), context)
                continue
            }
            busy = true
            let me = NIOLoopBound(self, eventLoop: context.eventLoop)
            let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
            // Called on the loop: at once for most requests, later for a `wait`.
            control.handle(line: line) { reply in
                let h = me.value
                h.busy = false
                h.send(reply, ctx.value)
                if !h.answering { h.answer(ctx.value) }
            }
        }
    }

    private func send(_ reply: String, _ context: ChannelHandlerContext) {
        var out = context.channel.allocator.buffer(capacity: reply.utf8.count + 1)
        out.writeString(reply)
        out.writeInteger(UInt8(0x0A))
        context.writeAndFlush(NIOAny(out), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
