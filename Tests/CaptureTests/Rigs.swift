import Logging
import NIOCore
import NIOEmbedded
import QMP
import Recording
@testable import Capture

import TestSupport
import Transport

#if canImport(Glibc)
import Glibc
#endif

// Test rigs for the recorders' event-loop logic on NIO's EmbeddedEventLoop: time only moves
// when a test advances it, so timers (drain quiet, linger, polls, reconnects, --duration)
// are tested exactly and without sleeping.

/// A peer that stops reading: writes through it are held (their promises too) until
/// `release()`, so what the proxy forwards waits for this peer as for a full socket.
final class HoldWrites: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var held: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        held.append((unwrapOutboundIn(data), promise))
    }

    func flush(context: ChannelHandlerContext) {}

    /// The peer reads again: everything held goes out.
    func release() {
        guard let context else { return }
        let all = held
        held = []
        for (b, p) in all { context.write(wrapOutboundOut(b), promise: p) }
        context.flush()
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        let all = held
        held = []
        for (_, p) in all { p?.fail(ChannelError.ioOnClosedChannel) }
        context.close(mode: mode, promise: promise)
    }
}

func scratchDir(_ name: String) -> String {
    let d = "/tmp/qmpreplay-\(name)-\(getpid())-\(Int.random(in: 0..<1_000_000))"
    mkdir(d, 0o700)
    return d
}

let fakeGreeting = #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"# + "\r\n"

extension EmbeddedChannel {
    /// Everything written to this channel so far, as text.
    func written() throws -> String {
        var out = ""
        while let b = try readOutbound(as: ByteBuffer.self) { out += String(buffer: b) }
        return out
    }

    /// The peer ends its input (EOF), as a socket with half-closure allowed reports it.
    func peerSendsEOF() {
        pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
    }

    func closeIfOpen() {
        _ = try? finish(acceptAlreadyClosed: true)
    }
}

/// What every loop rig has: an `EmbeddedEventLoop` and its clock, a scratch directory, a log
/// book, the channels made on the loop, and the end of a test: the sink finished, the
/// channels closed, the loop shut down, the file read back.
class LoopRig {
    let loop = EmbeddedEventLoop()
    let clock: LoopClock
    let dir: String
    let log = LogLines(leveled: true)
    var channels: [EmbeddedChannel] = []

    init(_ name: String) {
        clock = LoopClock(loop)
        dir = scratchDir(name)
    }

    /// The recorder's context: the loop's time (wall clock included, so no jump is seen).
    var context: RecorderContext {
        let clock = self.clock
        return RecorderContext(clock: clock, wallClock: { clock.now() / 1000 }, logger: log.logger, group: loop)
    }

    func makeSink(_ mode: CaptureMode, _ file: String) throws -> CaptureSink {
        let header = RecordingHeader(startMicros: 1_763_632_800_000_000, source: "unix:/fake/qemu.sock", mode: mode, redacted: true)
        return try CaptureSink(header: header, options: CaptureOptions(output: dir + "/" + file))
    }

    /// An open channel on the loop, connected to `address`, with `handlers`.
    func channel(_ handlers: [ChannelHandler] = [], to address: SocketAddress) throws -> EmbeddedChannel {
        let ch = EmbeddedChannel(handlers: handlers, loop: loop)
        try ch.connect(to: address).wait()
        channels.append(ch)
        return ch
    }

    /// A connection to QEMU as the recorders' connectors make it: `handler` on an open channel.
    func qemuConnection(_ handler: ChannelHandler) -> EventLoopFuture<Channel> {
        do {
            return loop.makeSucceededFuture(try channel([handler], to: SocketAddress(unixDomainSocketPath: "/fake/qemu.sock")))
        } catch {
            return loop.makeFailedFuture(error)
        }
    }

    /// A future's value if it has one yet.
    func value<T>(_ f: EventLoopFuture<T>?) -> T? {
        var v: T?
        f?.assumeIsolated().whenSuccess { v = $0 }
        return v
    }

    func advance(ms: Int64) { loop.advanceTime(by: .milliseconds(ms)) }

    func finish(_ sink: CaptureSink?, reason: String, file: String) throws -> Recording {
        sink?.finish(reason: reason, time: clock.now())
        for c in channels { c.closeIfOpen() }
        try loop.syncShutdownGracefully()
        return try Recording(path: dir + "/" + file)
    }
}

/// One `ProxyPair` between two `EmbeddedChannel`s (the client's and QEMU's) on one
/// `EmbeddedEventLoop`, recording into a real sink.
final class GlueRig: LoopRig {
    private(set) var sink: CaptureSink!
    private(set) var client: EmbeddedChannel!
    private(set) var upstream: EmbeddedChannel!
    private(set) var pair: ProxyPair!
    private(set) var end: PairEnd?
    /// Present when the client (QEMU) does not read.
    let clientHold: HoldWrites?
    let upstreamHold: HoldWrites?

    init(limits: PairLimits = PairLimits(peerBuffer: 1 << 20, linger: 1_000_000_000),
         clientReads: Bool = true, qemuReads: Bool = true) throws {
        clientHold = clientReads ? nil : HoldWrites()
        upstreamHold = qemuReads ? nil : HoldWrites()
        super.init("glue")
        sink = try makeSink(.proxy, "p.qmprec")
        client = try channel(clientHold.map { [$0] } ?? [], to: SocketAddress(ipAddress: "127.0.0.1", port: 40000))
        upstream = try channel(upstreamHold.map { [$0] } ?? [], to: SocketAddress(unixDomainSocketPath: "/fake/qemu.sock"))
        pair = ProxyPair(conn: 1, peer: "tcp:127.0.0.1:40000", client: client, upstreamName: "unix:/fake/qemu.sock", limits: limits,
                         sink: sink, clock: clock, start: 0, logger: log.logger, versionNote: VersionNote(headerHasVersion: true))
        try upstream.pipeline.syncOperations.addHandler(pair.handler(for: .upstream))
        pair.over.futureResult.assumeIsolated().whenSuccess { self.end = $0 }
        pair.attach(upstream: upstream)
    }

    var ended: Bool { end != nil }

    func qemu(_ text: String) throws { try upstream.writeInbound(ByteBuffer(string: text)) }
    func clientSends(_ text: String) throws { try client.writeInbound(ByteBuffer(string: text)) }

    /// Ends the recording and reads it back.
    func recording() throws -> Recording { try finish(sink, reason: "test", file: "p.qmprec") }
}

/// Options for tests that check everything was recorded: the stop writes all that is queued
/// however slow the build (under ThreadSanitizer the encoder is many times slower, and the
/// usual stop budget would note the rest as a span instead).
func completeOptions(_ output: String) -> CaptureOptions {
    var o = CaptureOptions(output: output)
    o.stopBudget = 60_000_000_000
    return o
}

/// A proxy recorder in front of a `FastQMPPeer`, both in directory `d`, started (clients
/// can connect); `tune` adjusts its configuration first.
func proxyBeforeFastPeer(_ d: String, context: RecorderContext = RecorderContext(),
                         _ tune: (inout ProxyModeConfig, inout CaptureOptions) -> Void = { _, _ in }) throws
    -> (proxy: ProxyRecorder, config: ProxyModeConfig, peer: FastQMPPeer) {
    let peer = try FastQMPPeer(path: d + "/qemu.sock")
    var cfg = ProxyModeConfig(listen: .unix(d + "/proxy.sock"), upstream: .unix(d + "/qemu.sock"))
    var opt = completeOptions(d + "/p.qmprec")
    tune(&cfg, &opt)
    let proxy = ProxyRecorder(config: cfg, options: opt, context: context)
    try proxy.start()
    return (proxy, cfg, peer)
}

extension Recording {
    /// Close records: (connection, by, reason, time).
    func closes() throws -> [(conn: UInt32, by: String, reason: String, time: Int64)] {
        try (0..<count).filter { kind($0) == .close }.compactMap { i in
            let rec = try record(at: i)
            if case .close(let by, let reason) = rec.body { return (connection(i), by, reason, rec.time) }
            return nil
        }
    }

    /// Notes: (connection, text).
    func notes() throws -> [(conn: UInt32, text: String)] {
        try (0..<count).filter { kind($0) == .note }.compactMap { i in
            if case .note(let text, _) = try record(at: i).body { return (connection(i), text) }
            return nil
        }
    }

    /// One direction's bytes on one connection, as text.
    func stream(_ dir: Direction, conn: UInt32) throws -> String {
        var out: [UInt8] = []
        for i in 0..<count where connection(i) == conn && direction(i) == dir {
            out += try rawBytes(i) ?? []
        }
        return String(decoding: out, as: UTF8.self)
    }
}
