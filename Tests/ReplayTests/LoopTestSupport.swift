import Logging
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOEmbedded
import QMP
import Recording
import Synchronization
import TestSupport
import Transport
@testable import Replay

/// Stands for the kernel's socket buffer between the server and a test client: it takes at
/// most `room` bytes (a write's promise completes once all of it was taken); the rest waits
/// until the client reads (`read`). A client that never reads is one whose room runs out.
final class TestSocket: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var held: [(buf: ByteBuffer, promise: EventLoopPromise<Void>?)] = []
    private var flushedCount = 0
    private(set) var room: Int
    private var context: ChannelHandlerContext?

    init(room: Int) { self.room = room }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        held.append((unwrapOutboundIn(data), promise))
    }

    func flush(context: ChannelHandlerContext) {
        flushedCount = held.count
        if let input = failNextFlush {
            // What NIO does when a write fails (the client went away): drain the input still
            // in the socket, inside the flush, then close.
            failNextFlush = nil
            context.fireChannelRead(NIOAny(input))
            close(context: context, mode: .all, promise: nil)
            return
        }
        pass(context)
    }

    /// The next flush fails as a write to a vanished client does, after delivering `input`.
    var failNextFlush: ByteBuffer?

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        let dropped = held
        held = []
        flushedCount = 0
        for h in dropped { h.promise?.fail(IOError(errnoCode: EPIPE, reason: "writev")) }
        context.close(mode: mode, promise: promise)
    }

    /// The client reads `n` bytes out of the socket buffer: that much room again.
    func read(_ n: Int) {
        room += n
        if let c = context { pass(c) }
    }

    var heldBytes: Int { held.reduce(0) { $0 + $1.buf.readableBytes } }

    private func pass(_ ctx: ChannelHandlerContext) {
        var any = false
        while room > 0, flushedCount > 0 {
            var (buf, p) = held[0]
            let n = min(room, buf.readableBytes)
            room -= n
            if n == buf.readableBytes {
                held.removeFirst()
                flushedCount -= 1
                ctx.write(wrapOutboundOut(buf), promise: p)
            } else {
                let part = buf.readSlice(length: n)!
                held[0] = (buf, p)
                ctx.write(wrapOutboundOut(part), promise: nil)
            }
            any = true
        }
        if any { ctx.flush() }
    }
}

/// A fake QEMU on an `EmbeddedEventLoop`, its clients on `EmbeddedChannel`s: every step of
/// the server happens inside the test's calls, at the loop's time.
final class LoopHarness {
    let loop = EmbeddedEventLoop()
    let clock: LoopClock
    let script: ReplayScript
    let server: ReplayServer
    let logs = LogLines()

    init(_ lines: [(Int64, Direction, String)] = TestRecording.session, options: ReplayOptions = ReplayOptions()) throws {
        var o = options
        o.raisePriority = false
        clock = LoopClock(loop)
        script = try ReplayScript(recording: TestRecording.recording(lines), options: o)
        server = try ReplayServer(script: script, options: o, clock: clock, group: loop, logger: logs.logger)
    }

    /// A client; with `room`, behind a socket buffer of that size that it reads only when told.
    func connect(room: Int? = nil, peer: String? = nil) throws -> TestClient {
        let ch = EmbeddedChannel(loop: loop)
        let socket = room.map { TestSocket(room: $0) }
        if let s = socket { try ch.pipeline.syncOperations.addHandler(s) }
        try ch.pipeline.syncOperations.addHandler(server.makeHandler(peer: peer))
        ch.connect(to: try SocketAddress(unixDomainSocketPath: "/fake"), promise: nil)
        loop.run()
        return TestClient(ch, socket, loop)
    }

    func advance(_ ns: Int64) { loop.advanceTime(by: .nanoseconds(ns)) }
}

/// One test client: what it sends goes through the server's handler at once; what the
/// server wrote (and the socket took) is read back as lines.
final class TestClient {
    let channel: EmbeddedChannel
    let socket: TestSocket?
    let loop: EmbeddedEventLoop
    private var pending: [UInt8] = []
    private(set) var bytesReceived = 0

    init(_ channel: EmbeddedChannel, _ socket: TestSocket?, _ loop: EmbeddedEventLoop) {
        self.channel = channel
        self.socket = socket
        self.loop = loop
    }

    func send(_ s: String) throws {
        try channel.writeInbound(ByteBuffer(string: s))
        loop.run()
    }

    /// The client closes its sending side (a QMP client that quits).
    func closeInput() {
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        loop.run()
    }

    /// Complete lines received since the last call (without their CR LF).
    func lines() throws -> [String] {
        while let b = try channel.readOutbound(as: ByteBuffer.self) {
            bytesReceived += b.readableBytes
            pending += b.readableBytesView
        }
        var out: [String] = []
        var start = 0
        for i in pending.indices.dropFirst() where pending[i] == 0x0A && pending[i - 1] == 0x0D {
            out.append(String(decoding: pending[start..<(i - 1)], as: UTF8.self))
            start = i + 1
        }
        pending.removeFirst(start)
        return out
    }

    /// Reads the greeting and negotiates.
    func negotiate() throws {
        _ = try lines()
        try send(#"{"execute":"qmp_capabilities"}"# + "\n")
        _ = try lines()
    }

    /// Frees `n` bytes of its socket buffer (it read them).
    func read(_ n: Int) {
        socket?.read(n)
        loop.run()
    }

    var isOpen: Bool { channel.isActive }
}
