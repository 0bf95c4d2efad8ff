import QMP
import Recording

import Transport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
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
/// One background thread runs a poll loop over the listening socket, every client and a wake
/// pipe (the style of `ProxyRecorder`): it reads client input into each `ServerSession`,
/// releases due events, and writes without ever blocking. A client whose queued output
/// passes `clientBufferLimit`, or stays unread for `stallTimeout`, is dropped with a logged
/// reason, so one slow or hostile client cannot hold up the others.
///
/// Example: `let s = try ReplayServer(recording: r, options: o); try s.start(listen: .unix("/tmp/q"), socketMode: 0o600)`.
public final class ReplayServer: @unchecked Sendable {
    public let script: ReplayScript
    public let options: ReplayOptions
    let clock: ReplayClock

    /// Log lines (client connected, dropped, ...); set before `start`.
    public var onLog: (@Sendable (String) -> Void)?
    /// Called after each client session with its fidelity summary; set before `start`.
    public var onSessionEnd: (@Sendable (SessionReport) -> Void)?

    private final class Client {
        let fd: Int32
        let session: ServerSession
        let number: Int
        var lastProgress: Int64
        var closing: String?
        var dropReason: String?
        init(fd: Int32, session: ServerSession, number: Int, now: Int64) {
            self.fd = fd; self.session = session; self.number = number; lastProgress = now
        }
    }

    private let lock = Lock()
    private var clients: [Client] = []
    private var listenFD: Int32 = -1
    private var endpoint: Endpoint?
    private var outbound = false
    private var wake: [Int32] = [-1, -1]
    private var thread: JoinableThread?
    private var running = false
    private var stopRequested = false
    private var paused = false
    private var speed: Double?
    private var shared: Scheduler?
    private var nextClient = 1
    private var finishedReports: [SessionReport] = []
    private var eventsSentFinished = 0
    private var failedFast = false
    private var lastInput: Int64 = 0
    private let wallOffsetMicros: Int64
    private let doneLock = Lock()
    private var done = false

    public init(recording: Recording, options: ReplayOptions) throws {
        try options.validate()
        self.options = options
        script = try ReplayScript(recording: recording, options: options)
        clock = MonotonicClock()
        speed = options.speed
        wallOffsetMicros = MonotonicClock.wallOffsetMicros(clock)
    }

    /// A server over an already built script, with a chosen clock.
    public init(script: ReplayScript, options: ReplayOptions, clock: ReplayClock = MonotonicClock()) throws {
        try options.validate()
        self.script = script
        self.options = options
        self.clock = clock
        speed = options.speed
        wallOffsetMicros = MonotonicClock.wallOffsetMicros(clock)
    }

    deinit {
        for fd in wake where fd >= 0 { close(fd) }
    }

    // MARK: lifecycle

    /// Listens and serves on a background thread; returns once the socket accepts connections.
    public func start(listen: Endpoint, socketMode: mode_t) throws {
        let fd: Int32
        do { fd = try Sockets.listen(listen, mode: socketMode, backlog: 128) } catch {
            throw ReplayError.socket("cannot listen on \(listen): \(error.reason)")
        }
        Sockets.setNonBlocking(fd)
        lock.withLock { listenFD = fd; endpoint = listen }
        try launch()
        log("serving \(script.path) (connection \(script.connection), \(script.events.count) events, \(script.commands.count) commands) on \(listen)")
    }

    /// Connects out to a listening consumer and replays to it as if it had connected
    /// (`qmpreplay replay --to`); the replay ends when the consumer disconnects, or when the
    /// timeline is over and the consumer has been quiet for `linger`.
    public func start(connectingTo ep: Endpoint, linger: Int64 = 1_000_000_000) throws {
        let fd: Int32
        do { fd = try Sockets.connect(ep) } catch { throw ReplayError.socket("cannot connect to \(ep): \(error.reason)") }
        lock.withLock {
            endpoint = ep
            outbound = true
            lingerNanos = linger
            addClient(fd: fd, peer: ep.description)
        }
        try launch()
    }
    private var lingerNanos: Int64 = 1_000_000_000

    private func launch() throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw ReplayError.socket("cannot create a pipe: \(String(cString: strerror(errno)))") }
        for f in fds { Sockets.setNonBlocking(f); _ = fcntl(f, F_SETFD, FD_CLOEXEC) }
        signal(SIGPIPE, SIG_IGN)
        lock.withLock {
            wake = fds
            running = true
        }
        thread = JoinableThread { [self] in self.loop() }
    }

    /// Closes every client and the listener and joins the thread; reports are made for every
    /// session still open. Safe to call more than once and from any thread.
    public func stop() {
        lock.withLock { stopRequested = true }
        poke()
        if let t = lock.withLock({ () -> JoinableThread? in let t = thread; thread = nil; return t }) { t.join() }
    }

    /// Blocks until the server stops (by `stop`, fail-fast, or the end of an outbound replay).
    public func wait() {
        while !doneLock.withLock({ done }) { usleep(20_000) }
        if let t = lock.withLock({ () -> JoinableThread? in let t = thread; thread = nil; return t }) { t.join() }
    }

    /// True once the serving thread has ended.
    public var isFinished: Bool { doneLock.withLock { done } }

    /// Every finished session's report, in the order they ended.
    public var reports: [SessionReport] { lock.withLock { finishedReports } }

    /// True when a `--strict --fail-fast` session hit a divergence (the server then stopped).
    public var stoppedByFailFast: Bool { lock.withLock { failedFast } }

    private func poke() {
        var b: UInt8 = 1
        let w = lock.withLock { wake[1] }
        if w >= 0 { _ = write(w, &b, 1) }
    }

    // MARK: control (any thread)

    /// Applies a control to every timeline (shared and per client) under the lock, then wakes the loop.
    private func control(_ update: () -> Void = {}, _ body: (Scheduler) -> Void) {
        lock.withLock {
            update()
            if let s = shared { body(s) }
            for c in clients { if let s = c.session.scheduler { body(s) } }
        }
        poke()
    }

    public func pause() { control({ paused = true }) { $0.pause() } }

    public func resume() { control({ paused = false }) { $0.resume() } }

    /// `nil` is max speed. New clients start at the current speed.
    public func setSpeed(_ s: Double?) { control({ speed = s }) { $0.setSpeed(s) } }

    /// Moves every timeline to recording time `toMicros` (µs since the recording started).
    public func seek(toMicros us: Int64) { control { $0.seek(to: us * 1000) } }

    /// Bytes read from one client per turn of the poll loop.
    static let readPerTurn = 2 << 10

    public func status() -> ReplayStatus {
        lock.withLock {
            let now = clock.now()
            let sched = shared ?? clients.first(where: { $0.session.negotiated })?.session.scheduler
            var next: Int?
            var pos = script.spanStart
            if let s = sched {
                if s.position < s.count { next = script.events[script.clockEvents[s.position]].record }
                pos = s.recordingTime(at: now)
            }
            return ReplayStatus(
                endpoint: endpoint?.description ?? "-", running: running, clients: clients.count,
                negotiatedClients: clients.filter { $0.session.negotiated }.count, paused: paused, speed: speed,
                nextRecord: next, positionMicros: pos / 1000,
                eventsSent: eventsSentFinished + clients.reduce(0) { $0 + $1.session.report.eventsSent },
                sessionsFinished: finishedReports.count)
        }
    }

    private func log(_ s: String) { onLog?(s) }

    /// At max speed a timeline runs only while less than this is queued for its client: the
    /// replay then goes as fast as the client reads, well below the drop limit.
    private var watermark: Int { min(256 << 10, options.clientBufferLimit / 4) }

    // MARK: the loop

    private func addClient(fd: Int32, peer: String) {
        Sockets.setNonBlocking(fd)
        var o = options
        o.speed = speed
        let s = ServerSession(script: script, options: o, clock: clock, client: nextClient, peer: peer, ownTimeline: !options.shared)
        if paused { s.scheduler?.pause() }
        s.connect()
        clients.append(Client(fd: fd, session: s, number: nextClient, now: clock.now()))
        nextClient += 1
        lastInput = clock.now()
    }

    private func loop() {
        if options.raisePriority {
            // Linux: PRIO_PROCESS with who 0 sets the calling thread's nice value only. The
            // thread sleeps between releases, so this costs others little; refused is fine.
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, -10)
        }
        if options.realtime {
            // Refused without CAP_SYS_NICE; the kernel's RT throttling still leaves others 5%.
            var p = sched_param(sched_priority: 10)
            _ = pthread_setschedparam(pthread_self(), SCHED_FIFO, &p)
        }
        var buf = [UInt8](repeating: 0, count: 64 << 10)
        var pfds: [pollfd] = []
        var logs: [String] = []
        var ended: [SessionReport] = []
        while true {
            // --- under the lock: timelines, writes, housekeeping; build the poll set.
            lock.lock()
            if stopRequested {
                for c in clients where c.closing == nil { c.closing = "server stopped" }
                finishClosed(&ended, &logs)
                lock.unlock()
                break
            }
            let now = clock.now()
            releaseShared()
            for c in clients where c.closing == nil { c.session.releaseDue(watermark: watermark) }
            flushAll(now)
            checkLimits(now, &logs)
            finishClosed(&ended, &logs)
            if failedFast || (outbound && clients.isEmpty) || outboundDone(now) {
                for c in clients where c.closing == nil { c.closing = failedFast ? "fail-fast" : "replay finished" }
                finishClosed(&ended, &logs)
                lock.unlock()
                break
            }
            pfds.removeAll(keepingCapacity: true)
            pfds.append(pollfd(fd: wake[0], events: Int16(POLLIN), revents: 0))
            let listening = listenFD >= 0 && clients.count < options.maxClients
            pfds.append(pollfd(fd: listening ? listenFD : -1, events: Int16(POLLIN), revents: 0))
            for c in clients {
                var ev = Int16(POLLIN)
                if c.session.pendingOutputCount > 0 { ev |= Int16(POLLOUT) }
                pfds.append(pollfd(fd: c.fd, events: ev, revents: 0))
            }
            // The next release; at max speed a timeline whose client has a full queue waits
            // for POLLOUT instead (flow control), so the loop never spins.
            var deadline: Int64?
            for c in clients where c.closing == nil {
                guard let d = c.session.nextDeadline else { continue }
                if speed == nil && c.session.pendingOutputCount >= watermark { continue }
                deadline = min(deadline ?? d, d)
            }
            if let s = shared, let d = s.nextDeadline() {
                if speed != nil || clients.contains(where: { $0.session.negotiated && $0.session.pendingOutputCount < watermark }) {
                    deadline = min(deadline ?? d, d)
                }
            }
            if outbound { deadline = min(deadline ?? now + 100_000_000, now + 100_000_000) }
            let currentClients = clients
            lock.unlock()

            for l in logs { log(l) }
            logs.removeAll()
            for r in ended { onSessionEnd?(r) }
            ended.removeAll()

            // --- without the lock: wait for I/O or the next release.
            var timeout: Int32 = 1000
            if let d = deadline {
                let left = d - clock.now()
                if left <= 0 { timeout = 0 }
                else if left > 2_000_000 { timeout = Int32(min((left - 1_000_000) / 1_000_000, 1000)) }
                else {
                    // poll() counts whole milliseconds: check I/O, then sleep the rest exactly.
                    if poll(&pfds, nfds_t(pfds.count), 0) == 0 { clock.sleep(until: d) ; continue }
                    timeout = 0
                }
            }
            let n = poll(&pfds, nfds_t(pfds.count), timeout)
            if n <= 0 { continue }

            lock.lock()
            if pfds[0].revents != 0 { while read(wake[0], &buf, buf.count) > 0 {} }
            if pfds[1].revents & Int16(POLLIN) != 0, listenFD >= 0 {
                // Accept everything waiting (bounded), so a burst of clients is not served late.
                for _ in 0..<64 {
                    guard let (fd, peer) = Sockets.accept(listenFD) else { break }
                    if clients.count >= options.maxClients {
                        logs.append("refused a client from \(peer): \(options.maxClients) clients already")
                        close(fd)
                        continue
                    }
                    addClient(fd: fd, peer: peer)
                    logs.append("client \(nextClient - 1) connected (\(peer))")
                }
            }
            for (k, c) in currentClients.enumerated() where c.closing == nil {
                let re = pfds[k + 2].revents
                guard re != 0 else { continue }
                if re & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                    // One bounded read per client per turn: a flood cannot starve the others.
                    // 2 KiB keeps a turn short (a turn's input from a hostile client is parsed and
                    // answered before due events are released again: 64 KiB let 5 hostile clients
                    // push 100 others' p99 lateness to 23 ms, 2 KiB to about 2 ms), and is still several
                    // ordinary commands.
                    let got = buf.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, min($0.count, ReplayServer.readPerTurn), Int32(MSG_DONTWAIT)) }
                    if got > 0 {
                        c.session.receive(buf[0..<got])
                        lastInput = clock.now()
                        if c.session.failedFast {
                            failedFast = true
                            logs.append("client \(c.number): strict divergence with --fail-fast: \(c.session.report.divergences.last?.message ?? "")")
                        }
                    } else if got == 0 {
                        c.closing = "client closed the connection"
                    } else if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                        c.closing = "read error: \(String(cString: strerror(errno)))"
                    }
                }
            }
            lock.unlock()
        }
        lock.withLock {
            if listenFD >= 0 {
                close(listenFD)
                if case .unix(let p)? = endpoint { unlink(p) }
                listenFD = -1
            }
            running = false
        }
        for l in logs { log(l) }
        for r in ended { onSessionEnd?(r) }
        doneLock.withLock { done = true }
    }

    /// Outbound replays end when the timeline is over, nothing is queued and the consumer
    /// has been quiet for the linger time.
    private func outboundDone(_ now: Int64) -> Bool {
        guard outbound, let c = clients.first else { return false }
        guard c.session.negotiated || now - lastInput > lingerNanos * 10 else { return false }
        let timelineOver = c.session.scheduler?.finished ?? true
        return timelineOver && c.session.pendingOutputCount == 0 && now - lastInput > lingerNanos
    }

    /// The shared timeline (`--shared`): started by the first negotiated client, each release
    /// formatted once and queued for every negotiated client.
    private func releaseShared() {
        guard options.shared else { return }
        if shared == nil {
            guard clients.contains(where: { $0.session.negotiated }) else { return }
            let evs = script.clockEvents
            let s = Scheduler(times: evs.map { script.events[$0].time }, spanStart: script.spanStart, spanEnd: script.spanEnd,
                              speed: speed, maxGap: options.maxGap, loop: options.loop, clock: clock)
            if paused { s.pause() }
            s.start()
            shared = s
        }
        guard let s = shared else { return }
        var batch = 0
        while batch < 4096 {
            if speed == nil, !clients.contains(where: { $0.session.negotiated && $0.closing == nil && $0.session.pendingOutputCount < watermark }) { break }
            guard let r = s.next() else { break }
            let k = script.clockEvents[r.item]
            let bytes = options.retime
                ? ServerSession.retimed(script, k, due: r.due, speed: speed, wallOffsetMicros: wallOffsetMicros)
                : script.events[k].bytes
            for c in clients where c.closing == nil { c.session.deliver(bytes, release: r) }
            batch += 1
        }
    }

    private func flushAll(_ now: Int64) {
        for c in clients where c.closing == nil || c.dropReason == nil {
            // Writing to many clients takes a while: releases that fall due meanwhile go out
            // in the same round instead of waiting for the next one.
            if let s = shared, let d = s.nextDeadline(), d <= clock.now() { releaseShared() }
            guard c.session.pendingOutputCount > 0 else { c.lastProgress = now; continue }
            while c.session.pendingOutputCount > 0 {
                let n = c.session.withPendingOutput { p in send(c.fd, p.baseAddress, min(p.count, 1 << 20), Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                if n > 0 {
                    c.session.consumeOutput(n)
                    c.lastProgress = now
                    continue
                }
                if n < 0 && errno == EINTR { continue }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
                if c.closing == nil { c.closing = "write error: \(String(cString: strerror(errno)))" }
                break
            }
        }
    }

    private func checkLimits(_ now: Int64, _ logs: inout [String]) {
        for c in clients where c.closing == nil {
            let pending = c.session.pendingOutputCount
            if pending > options.clientBufferLimit {
                c.dropReason = "not reading: \(pending) bytes queued, more than the \(options.clientBufferLimit)-byte limit"
            } else if pending > 0 && now - c.lastProgress > options.stallTimeout {
                c.dropReason = "not reading: nothing written for \(DurationFormat.short(options.stallTimeout)) with \(pending) bytes queued"
            }
            if let d = c.dropReason {
                c.closing = "dropped"
                c.session.markDropped(d)
                logs.append("client \(c.number) dropped: \(d)")
            }
        }
    }

    private func finishClosed(_ ended: inout [SessionReport], _ logs: inout [String]) {
        guard clients.contains(where: { $0.closing != nil }) else { return }
        var keep: [Client] = []
        for c in clients {
            guard let reason = c.closing else { keep.append(c); continue }
            if c.dropReason == nil && c.session.pendingOutputCount > 0 {
                // Last words (e.g. the reply to `quit`) go out if the socket takes them now.
                _ = c.session.withPendingOutput { p in send(c.fd, p.baseAddress, p.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            }
            close(c.fd)
            c.session.finish(reason: reason)
            let r = c.session.report
            eventsSentFinished += r.eventsSent
            finishedReports.append(r)
            ended.append(r)
            logs.append("client \(c.number) disconnected: \(reason)")
        }
        clients = keep
    }
}
