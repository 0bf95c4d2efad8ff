import Logging
import NIOCore
import QMP
import Recording
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// Everything a running fake QEMU knows, confined to its one event loop: the clients, the
/// shared timeline, the controls' state, and the reports of finished sessions. Channel
/// handlers call in when bytes arrive or a client goes; timers scheduled on the loop call in
/// when a release falls due; `ReplayServer` hops here for every control and query.
///
/// Bytes move in turns (`pump`): release what is due into the session's queue, hand the queue
/// to the channel (one ByteBuffer per write), check the drop rules, arm the next timer. A
/// write the socket takes at once completes inside the flush and asks for another round; a
/// client that does not read leaves its timeline waiting (max speed) or its queue growing
/// (then it is dropped), and nobody else waits for it.
///
/// Example: `core.received(bytes, from: client)` with `{"execute":"stop","id":1}` queues the
/// gated STOP event and the reply, writes both, and re-arms the client's timeline.
final class ReplayCore {
    let script: ReplayScript
    let options: ReplayOptions
    let clock: ReplayClock
    let loop: EventLoop
    let logger: Logger
    private let wallOffsetMicros: Int64

    private(set) var clients: [ReplayClient] = []
    private var nextClient = 1
    private(set) var paused = false
    private(set) var speed: Double?
    private(set) var shared: Scheduler?
    private var sharedWakeup = Wakeup()
    private var sharedPumping = false
    private var sharedAgain = false
    private(set) var reports: [SessionReport] = []
    private var eventsSentFinished = 0
    private(set) var failedFast = false
    /// Between `start` and the end of the server.
    var running = false
    /// Set by the first `shutDown`: no client is admitted any more.
    private(set) var stopping = false
    private(set) var finished = false
    var endpoint: Endpoint?
    var listener: Channel?
    /// Outbound mode (`start(connectingTo:)`): how long the consumer may be quiet at the end.
    var linger: Int64?
    private var lastInput: Int64
    private var lingerWakeup = Wakeup()
    /// Reused for each read's bytes.
    private var input: [UInt8] = []
    /// The control API's holds (Control/ReplayCore+Control.swift), applied to every timeline
    /// and session, new ones included.
    var holds: [ControlHold] = []
    var nextHold = 1
    /// `serve --record-missing`: the real QEMU that answers what the recording cannot.
    var missing: MissingRecorder?
    /// The control API's pending `wait`s.
    var waiters: [ControlWaiter] = []
    var nextWaiter = 1
    private var reportWaiters: [(after: Int, promise: EventLoopPromise<[SessionReport]>)] = []
    /// Completed when the server has closed its listener and every client.
    let done: EventLoopPromise<Void>
    /// Runs on the loop as the server finishes (the serving thread's priority is restored there).
    var onFinish: [() -> Void] = []

    init(script: ReplayScript, options: ReplayOptions, clock: ReplayClock, loop: EventLoop, logger: Logger) {
        self.script = script
        self.options = options
        self.clock = clock
        self.loop = loop
        self.logger = logger
        speed = options.speed
        paused = options.startPaused
        wallOffsetMicros = MonotonicClock.wallOffsetMicros(clock)
        lastInput = clock.now()
        done = loop.makePromise(of: Void.self)
    }

    /// At max speed a timeline runs only while less than this is queued for its client: the
    /// replay then goes as fast as the client reads, well below the drop limit.
    var watermark: Int { min(256 << 10, options.clientBufferLimit / 4) }

    // MARK: clients come and go

    /// A new connection: its session, greeting queued and sent; nil when refused.
    func admit(context: ChannelHandlerContext, peer: String) -> ReplayClient? {
        if stopping { return nil }
        if clients.count >= options.maxClients {
            logger.warning("refused a client: \(options.maxClients) clients already", metadata: ["peer": "\(peer)"])
            return nil
        }
        var o = options
        o.speed = speed
        let s = ServerSession(script: script, options: o, clock: clock, client: nextClient, peer: peer, ownTimeline: !options.shared)
        if paused { s.scheduler?.pause() }
        applyHolds(to: s)
        if let m = missing { s.passThrough = { m.answer($0, id: $1) } }
        let now = clock.now()
        let c = ReplayClient(number: nextClient, peer: peer, session: s, context: context, now: now)
        nextClient += 1
        lastInput = now
        clients.append(c)
        if linger == nil { logger.info("client \(c.number) connected", metadata: ["peer": "\(peer)"]) }
        s.connect()
        pump(c)
        return c
    }

    /// Client bytes: answered (and whatever the answers release) in the same turn.
    func received(_ buf: ByteBuffer, from c: ReplayClient) {
        guard !c.ended else { return }
        if c.pumping {
            // Only a failing write gets here: NIO drains the connection's input (all of it, not
            // 2 KiB) inside our flush before it closes. Answering a dying client's whole backlog
            // at once held everybody else up for milliseconds; it waits for the end of the turn.
            c.deferredInput.writeImmutableBuffer(buf)
            return
        }
        let now = clock.now()
        c.noteIdle(now)
        // As an array slice: the framer's generic `push` is not specialised across modules,
        // and over a slice of raw bytes it paid for generic metadata on every byte.
        input.removeAll(keepingCapacity: true)
        buf.withUnsafeReadableBytes { input.append(contentsOf: $0) }
        c.session.receive(input[...])
        logSessionLines(c)
        lastInput = now
        pump(c)
        if options.shared { pumpShared() }
        checkWaiters()
        if c.session.failedFast && !failedFast {
            failedFast = true
            logger.notice("strict divergence with --fail-fast: \(c.session.report.divergences.last?.message ?? "")",
                          metadata: ["client": "\(c.number)"])
            shutDown("fail-fast")
        }
    }

    /// Ends a client: what is queued goes out if the socket takes it now (last words, e.g. the
    /// reply to `quit`; not for a dropped client), then the channel closes and the session's
    /// report is kept. Safe to call more than once.
    func close(_ c: ReplayClient, reason: String) {
        guard !c.ended else { return }
        c.ended = true
        c.wakeup.cancel()
        c.stallCheck.cancel()
        if c.dropReason == nil && c.unfed > 0 && c.context.channel.isActive {
            c.context.writeAndFlush(NIOAny(copyUnfed(c, c.unfed)), promise: nil)
        }
        c.context.close(promise: nil)
        c.session.finish(reason: reason)
        let r = c.session.report
        eventsSentFinished += r.eventsSent
        reports.append(r)
        clients.removeAll { $0 === c }
        logger.info("client \(c.number) disconnected: \(reason)")
        wakeReportWaiters()
        if linger != nil && clients.isEmpty && !stopping { shutDown("replay finished") }
    }

    /// The session's own notes (events held back and why, ...), once each, as log lines.
    private func logSessionLines(_ c: ReplayClient) {
        for l in c.session.takeLogLines() { logger.notice("\(l)", metadata: ["client": "\(c.number)"]) }
    }

    /// After `quit` or a shutdown the session reads no more; once everything queued has been
    /// written, the connection closes, as QEMU's does (docs/QEMU-FACTS.md, "quit and SIGTERM").
    private func closeIfFlushed(_ c: ReplayClient) -> Bool {
        guard c.session.closeAfterFlush, !c.ended, c.session.pendingOutputCount == 0, c.inFlight == 0 else { return false }
        close(c, reason: stopping ? "server stopped" : "client quit (QEMU closes the connection after quit)")
        return true
    }

    private func drop(_ c: ReplayClient, _ reason: String) {
        c.dropReason = reason
        c.session.markDropped(reason)
        logger.warning("client \(c.number) dropped: \(reason)")
        close(c, reason: "dropped")
    }

    // MARK: turns

    /// One client's turn: release what its own timeline has due, hand the queue to the
    /// channel, apply the drop rules and arm the next wake-up.
    func pump(_ c: ReplayClient) {
        guard !c.ended else { return }
        if c.pumping { c.again = true; return }
        c.pumping = true
        var rounds = 0
        repeat {
            c.again = false
            c.noteIdle(clock.now())
            c.session.releaseDue(watermark: watermark)
            feed(c)
            rounds += 1
        } while c.again && !c.ended && rounds < 16
        c.pumping = false
        guard !c.ended else { return }
        logSessionLines(c)
        if closeIfFlushed(c) { return }
        if c.deferredInput.readableBytes > 0 {
            let input = c.deferredInput
            c.deferredInput.clear()
            return received(input, from: c)
        }
        guard !checkLimits(c) else { return }
        if c.again {
            // A reader as fast as the server: let the loop serve the others before going on.
            c.wakeup.arm(at: clock.now(), clock: clock, loop: loop) { c.wakeup.fired(); self.pump(c) }
        } else if let d = c.session.nextDeadline,
                  c.session.scheduler?.speed != nil || c.session.pendingOutputCount < watermark {
            // At max speed a full queue waits for the socket instead (a write's completion pumps).
            c.wakeup.arm(at: d, clock: clock, loop: loop) { c.wakeup.fired(); self.pump(c) }
        }
        armStallCheck(c)
        armLinger()
        checkWaiters()
    }

    /// Hands queued bytes to the channel, up to `maxInFlight`, and flushes once.
    private func feed(_ c: ReplayClient) {
        var wrote = false
        while !c.ended && c.inFlight < ReplayClient.maxInFlight && c.unfed > 0 {
            // A chaos cut or a delayed reply (docs/TESTING-CLIENTS.md) may hold the rest back.
            let n = min(c.unfed, ReplayClient.writeChunk, ReplayClient.maxInFlight - c.inFlight, c.session.writeAllowance(inFlight: c.inFlight))
            guard n > 0 else { break }
            let buf = copyUnfed(c, n)
            c.inFlight += n
            let p = loop.makePromise(of: Void.self)
            p.futureResult.assumeIsolated().whenComplete { r in self.wrote(n, r, c) }
            c.context.write(NIOAny(buf), promise: p)
            wrote = true
        }
        if wrote && !c.ended { c.context.flush() }
    }

    private func copyUnfed(_ c: ReplayClient, _ n: Int) -> ByteBuffer {
        var buf = c.context.channel.allocator.buffer(capacity: n)
        let from = c.inFlight
        c.session.withPendingOutput { p in _ = buf.writeBytes(UnsafeRawBufferPointer(rebasing: p[from..<(from + n)])) }
        return buf
    }

    /// The socket took a write (or failed it).
    private func wrote(_ n: Int, _ r: Result<Void, Error>, _ c: ReplayClient) {
        guard !c.ended else { return }
        switch r {
        case .success:
            c.inFlight -= n
            c.session.consumeOutput(n)
            c.lastProgress = clock.now()
            if closeIfFlushed(c) { return }
            // What a completed write can let through: more queued bytes, or (at max speed)
            // more events under the watermark. At a finite speed with nothing left to hand
            // over, the next release is already armed.
            if c.inFlight > ReplayClient.maxInFlight / 2 {
                // More completions follow soon: refill in larger turns (fewer, larger writes).
            } else if c.unfed > 0 || (c.session.scheduler?.speed ?? speed) == nil {
                pump(c)
            } else if linger != nil {
                armLinger()
            }
            if options.shared && speed == nil { pumpShared() }
        case .failure(let e):
            close(c, reason: "write error: \(ReplayCore.describe(e))")
        }
    }

    /// The drop rules; true when the client was dropped.
    private func checkLimits(_ c: ReplayClient) -> Bool {
        guard !c.ended else { return true }
        let now = clock.now()
        let pending = c.session.pendingOutputCount
        if pending == 0 { c.lastProgress = now }
        if pending > options.clientBufferLimit {
            drop(c, "not reading: \(pending) bytes queued, more than the \(options.clientBufferLimit)-byte limit")
            return true
        }
        if pending > 0 && now - c.lastProgress > options.stallTimeout {
            drop(c, "not reading: nothing written for \(DurationFormat.short(options.stallTimeout)) with \(pending) bytes queued")
            return true
        }
        return false
    }

    private func armStallCheck(_ c: ReplayClient) {
        guard !c.ended, c.session.pendingOutputCount > 0 else { return }
        c.stallCheck.arm(at: c.lastProgress + options.stallTimeout + 1, clock: clock, loop: loop) {
            c.stallCheck.fired()
            guard !c.ended, !self.checkLimits(c) else { return }
            self.armStallCheck(c)
        }
    }

    /// The shared timeline (`--shared`): started by the first negotiated client; each release
    /// formatted once and queued for every negotiated client.
    func pumpShared() {
        guard options.shared, !stopping else { return }
        if sharedPumping { sharedAgain = true; return }
        if shared == nil {
            guard clients.contains(where: { $0.session.negotiated }) else { return }
            let evs = script.clockEvents
            let s = Scheduler(times: evs.map { script.events[$0].time }, spanStart: script.spanStart, spanEnd: script.spanEnd,
                              speed: speed, maxGap: options.maxGap, loop: options.loop, clock: clock)
            if paused { s.pause() }
            applyHolds(to: s)
            s.start()
            shared = s
        }
        guard let s = shared else { return }
        sharedPumping = true
        var rounds = 0
        var more = false
        repeat {
            sharedAgain = false
            var released = releaseShared(s)
            for c in clients {
                // Writing to many clients takes a while: releases that fall due meanwhile go
                // out in this round (to the clients not fed yet) instead of the next.
                if speed != nil, let d = s.nextDeadline(), d <= clock.now() { released += releaseShared(s) }
                feed(c)
            }
            rounds += 1
            more = sharedAgain || released >= 4096 || (speed != nil && (s.nextDeadline().map { $0 <= clock.now() } ?? false))
                || clients.contains { $0.unfed > 0 && $0.inFlight < ReplayClient.maxInFlight }
        } while more && rounds < 8
        sharedPumping = false
        for c in clients where !checkLimits(c) { armStallCheck(c) }
        checkWaiters()
        guard !stopping, let d = s.nextDeadline() else { return }
        if more {
            sharedWakeup.arm(at: clock.now(), clock: clock, loop: loop) { self.sharedWakeup.fired(); self.pumpShared() }
        } else if speed != nil || clients.contains(where: { $0.session.negotiated && $0.session.pendingOutputCount < watermark }) {
            sharedWakeup.arm(at: d, clock: clock, loop: loop) { self.sharedWakeup.fired(); self.pumpShared() }
        }
    }

    /// Releases what the shared timeline has due (at most 4096) to every negotiated client;
    /// at max speed only while one of them has room under the watermark.
    private func releaseShared(_ s: Scheduler) -> Int {
        let now = clock.now()
        for c in clients { c.noteIdle(now) }
        var batch = 0
        while batch < 4096 {
            if speed == nil && !clients.contains(where: { $0.session.negotiated && $0.session.pendingOutputCount < watermark }) { break }
            guard let r = s.next() else { break }
            let k = script.clockEvents[r.item]
            let bytes = options.retime
                ? ServerSession.retimed(script, k, due: r.due, speed: speed, wallOffsetMicros: wallOffsetMicros)
                : script.eventBytes[k]
            for c in clients where !c.ended { c.session.deliver(bytes, release: r) }
            batch += 1
        }
        return batch
    }

    /// Every timeline moved: each client's turn and the shared one run again at once.
    func pumpAll() {
        for c in clients {
            c.wakeup.cancel()
            pump(c)
        }
        sharedWakeup.cancel()
        pumpShared()
    }

    // MARK: outbound mode

    /// Outbound replays end when the timeline is over, nothing is queued and the consumer
    /// has been quiet for the linger time (ten times that before it negotiated).
    private func armLinger() {
        guard let linger, !stopping, let c = clients.first else { return }
        let quietUntil = lastInput + (c.session.negotiated ? linger : linger * 10) + 1
        // Not quiet long enough yet: look again then. Otherwise the next turn (the last
        // release, a write taken) brings us back here.
        guard quietUntil > clock.now() || outboundDone() else {
            return
        }
        lingerWakeup.arm(at: quietUntil, clock: clock, loop: loop) {
            self.lingerWakeup.fired()
            if self.outboundDone() { self.shutDown("replay finished") } else { self.armLinger() }
        }
    }

    private func outboundDone() -> Bool {
        guard let linger, let c = clients.first else { return false }
        let now = clock.now()
        guard c.session.negotiated || now - lastInput > linger * 10 else { return false }
        let timelineOver = c.session.scheduler?.finished ?? true
        return timelineOver && c.session.pendingOutputCount == 0 && now - lastInput > linger
    }

    // MARK: controls

    func eachTimeline(_ body: (Scheduler) -> Void) {
        if let s = shared { body(s) }
        for c in clients { if let s = c.session.scheduler { body(s) } }
    }

    func pause() {
        paused = true
        eachTimeline { $0.pause() }
    }

    func resume() {
        paused = false
        eachTimeline { $0.resume() }
        pumpAll()
    }

    /// `nil` is max speed. New clients start at the current speed.
    func setSpeed(_ s: Double?) {
        speed = s
        eachTimeline { $0.setSpeed(s) }
        pumpAll()
    }

    /// Moves every timeline to recording time `us` (µs since the recording started).
    func seek(toMicros us: Int64) {
        eachTimeline { $0.seek(to: us * 1000) }
        pumpAll()
    }

    func status() -> ReplayStatus {
        let now = clock.now()
        let sched = shared ?? clients.first(where: { $0.session.negotiated })?.session.scheduler
        var next: Int?
        var pos = script.spanStart
        if let s = sched {
            if s.position < s.count { next = script.events[script.clockEvents[s.position]].record }
            pos = s.recordingTime(at: now)
        }
        return ReplayStatus(
            endpoint: endpoint?.description ?? "-", running: running && !finished, clients: clients.count,
            negotiatedClients: clients.filter { $0.session.negotiated }.count, paused: paused, speed: speed,
            nextRecord: next, positionMicros: pos / 1000,
            eventsSent: eventsSentFinished + clients.reduce(0) { $0 + $1.session.report.eventsSent },
            sessionsFinished: reports.count)
    }

    /// The reports after the first `cursor`, as soon as there are any (or the server finished).
    func reports(after cursor: Int) -> EventLoopFuture<[SessionReport]> {
        if reports.count > cursor || finished { return loop.makeSucceededFuture(Array(reports.dropFirst(cursor))) }
        let p = loop.makePromise(of: [SessionReport].self)
        reportWaiters.append((cursor, p))
        return p.futureResult
    }

    private func wakeReportWaiters() {
        let ready = reportWaiters.filter { reports.count > $0.after || finished }
        reportWaiters.removeAll { reports.count > $0.after || finished }
        for w in ready { w.promise.succeed(Array(reports.dropFirst(w.after))) }
    }

    /// Closes every client (with `reason`) and the listener; the server then is finished.
    func shutDown(_ reason: String) {
        guard !stopping else { return }
        stopping = true
        sharedWakeup.cancel()
        lingerWakeup.cancel()
        for c in clients { close(c, reason: reason) }
        closeListener()
    }

    /// Stopping as QEMU does on SIGINT/SIGTERM: every negotiated client gets SHUTDOWN
    /// (`host-signal`) and then EOF; a client that does not take it within `grace` is closed
    /// anyway. No new client is accepted meanwhile.
    func shutDownBySignal(grace: Int64 = 1_000_000_000) {
        guard !stopping else { return }
        stopping = true
        sharedWakeup.cancel()
        lingerWakeup.cancel()
        for c in clients {
            c.session.shutdown()
            pump(c)
        }
        if let l = listener { l.close(promise: nil) }
        finishWhenClientsLeave(deadline: clock.now() + grace)
    }

    private func finishWhenClientsLeave(deadline: Int64) {
        if clients.isEmpty || clock.now() >= deadline {
            for c in clients { close(c, reason: "server stopped") }
            return closeListener()
        }
        lingerWakeup.arm(at: min(deadline, clock.now() + 10_000_000), clock: clock, loop: loop) {
            self.lingerWakeup.fired()
            self.finishWhenClientsLeave(deadline: deadline)
        }
    }

    private func closeListener() {
        guard let l = listener else { return finish() }
        l.close(promise: nil)
        l.closeFuture.assumeIsolated().whenComplete { _ in self.finish() }
    }

    private func finish() {
        guard !finished else { return }
        if listener != nil, case .unix(let path)? = endpoint { unlink(path) }
        listener = nil
        finished = true
        for f in onFinish { f() }
        onFinish = []
        wakeReportWaiters()
        done.succeed(())
    }

    /// A channel error as people read it: `Connection reset by peer`.
    static func describe(_ e: Error) -> String {
        if let io = e as? IOError { return String(cString: strerror(io.errnoCode)) }
        if let c = e as? ChannelError, c == .ioOnClosedChannel || c == .eof || c == .outputClosed { return "connection closed" }
        return "\(e)"
    }
}
