import QMP
import Recording

import Transport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A command the recorder sends itself: `query-status`, or `balloon {"value": 1073741824}`,
/// or a whole JSON object `{"execute": "x", "arguments": {...}}`.
public struct RecorderCommand: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var arguments: JSONObject?

    public init(name: String, arguments: JSONObject? = nil) { self.name = name; self.arguments = arguments }

    public init(parsing text: String) throws(JSONParseError) {
        let t = text.trimmingLeadingSpaces()
        if t.hasPrefix("{") {
            let v = try JSONParser.parse(t)
            guard let n = v["execute"]?.stringValue else { throw JSONParseError(offset: 0, reason: "a command object needs \"execute\"") }
            name = n
            arguments = v["arguments"]?.objectValue
        } else if let space = t.firstIndex(of: " ") {
            name = String(t[..<space])
            let v = try JSONParser.parse(String(t[space...]))
            guard let o = v.objectValue else { throw JSONParseError(offset: 0, reason: "arguments must be a JSON object") }
            arguments = o
        } else {
            guard !t.isEmpty else { throw JSONParseError(offset: 0, reason: "empty command") }
            name = t
        }
    }

    public var description: String {
        arguments.map { "\(name) \(JSONValue.object($0).serialized())" } ?? name
    }

    func bytes(id: String) -> [UInt8] {
        var o = JSONObject()
        o["execute"] = .string(name)
        if let arguments { o["arguments"] = .object(arguments) }
        o["id"] = .string(id)
        return JSONValue.object(o).serializedBytes(.compact) + [0x0A]
    }
}

/// `query-balloon@5s`: a command issued every interval.
public struct PollSpec: Sendable, Hashable {
    public var command: RecorderCommand
    public var interval: Int64

    public init(command: RecorderCommand, interval: Int64) { self.command = command; self.interval = interval }
}

public struct ClientModeConfig: Sendable {
    public var endpoint: Endpoint
    public var enableOOB = false
    public var initCommands: [RecorderCommand] = ClientModeConfig.defaultInit
    public var polls: [PollSpec] = []
    public var duration: Int64?
    public var reconnect = false
    public var labels: [(key: String, value: String)] = []

    public static let defaultInit = [
        RecorderCommand(name: "query-version"), RecorderCommand(name: "query-status"), RecorderCommand(name: "query-qmp-schema"),
    ]

    public init(endpoint: Endpoint) { self.endpoint = endpoint }
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

/// `qmpreplay record --connect`: connects to QEMU, negotiates, runs its own init and poll
/// commands, and records everything both ways until QEMU closes, a signal, or --duration.
public final class ClientRecorder {
    public let config: ClientModeConfig
    public let options: CaptureOptions
    /// Called every ~0.5 s with the elapsed time, for the status line.
    public var onTick: ((Int64, CaptureStats) -> Void)?
    /// Called for messages the user should see (connection lost, reconnecting...).
    public var onInfo: ((String) -> Void)?

    private var t0: Int64 = 0
    private var nextID = 1

    /// The shortest `--poll` interval: QEMU answers one command at a time, and the recorder
    /// keeps one of its own in flight.
    public static let minimumPollInterval: Int64 = 10_000_000

    public init(config: ClientModeConfig, options: CaptureOptions) {
        self.config = config
        self.options = options
    }

    private func now() -> Int64 { WallClock.monotonicNanos() - t0 }

    /// Waits up to `timeoutMs` for data on `fd` or the stop signal.
    private func readSome(_ fd: Int32, stopFD: Int32, timeoutMs: Int32) -> (bytes: [UInt8]?, eof: Bool, stop: Bool, error: Int32) {
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)]
        let r = poll(&fds, 2, timeoutMs)
        if r < 0 { return (nil, false, false, 0) }
        if fds[1].revents != 0 { return (nil, false, true, 0) }
        guard fds[0].revents != 0 else { return (nil, false, false, 0) }
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n > 0 { return (Array(buf[..<n]), false, false, 0) }
        if n == 0 { return (nil, true, false, 0) }
        if errno == EINTR || errno == EAGAIN { return (nil, false, false, 0) }
        return (nil, true, false, errno)
    }

    /// Connects, retrying every 250 ms with `--reconnect`; `nil` when stopped (signal,
    /// duration) first.
    private func connect(stopFD: Int32, firstError: inout SocketError?) -> Int32? {
        while true {
            do {
                return try Sockets.connect(config.endpoint)
            } catch {
                if firstError == nil { firstError = error }
                guard config.reconnect else { return nil }
                if let d = config.duration, now() >= d { return nil }
                var p = pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)
                if poll(&p, 1, 250) > 0 { return nil }
            }
        }
    }

    /// Runs until the session ends. Throws only when nothing could be recorded at all.
    public func run() throws -> CaptureOutcome {
        let stopFD = StopSignal.install()
        t0 = WallClock.monotonicNanos()
        let startWall = WallClock.nowMicros()
        var fd: Int32 = -1
        var connectedAt: Int64 = 0
        // Read the greeting before creating the file, so the header carries QEMU's version.
        // A connection that closes before QEMU said anything (a dying QEMU's socket) is not
        // a session: with --reconnect it is retried, not recorded.
        var early: [(Int64, [UInt8])] = []
        var version: String?
        var firstError: SocketError?
        first: while true {
            guard let c = connect(stopFD: stopFD, firstError: &firstError) else {
                throw firstError ?? SocketError(endpoint: config.endpoint.description, reason: "stopped before QEMU could be reached", errno: 0)
            }
            fd = c
            connectedAt = now()
            early = []
            var probe = QMPFramer()
            let greetDeadline = WallClock.monotonicNanos() + 5_000_000_000
            greeting: while WallClock.monotonicNanos() < greetDeadline {
                let r = readSome(fd, stopFD: stopFD, timeoutMs: 100)
                if let b = r.bytes {
                    early.append((now(), b))
                    for f in probe.push(b) + probe.drain() {
                        if case .greeting(let g) = f.message().body { version = g.version?.description }
                        break greeting
                    }
                }
                if r.stop { break }
                if r.eof {
                    if early.isEmpty && config.reconnect {
                        close(fd)
                        fd = -1
                        var p = pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)
                        if poll(&p, 1, 250) > 0 {
                            throw SocketError(endpoint: config.endpoint.description, reason: "stopped before QEMU greeted", errno: 0)
                        }
                        continue first
                    }
                    break
                }
            }
            break
        }
        var labels = config.labels
        if !config.polls.isEmpty {
            labels.append((key: "polls", value: config.polls.map { "\($0.command.name)@\(DurationFormat.short($0.interval))" }.joined(separator: ",")))
        }
        if config.polls.contains(where: { $0.command.name == "query-rx-filter" }) {
            labels.append((key: "rx-filter-polled", value: "true: query-rx-filter re-arms NIC_RX_FILTER_CHANGED, so this capture changed what QEMU emitted"))
        }
        let header = RecordingHeader(
            startMicros: startWall, source: config.endpoint.description, mode: .client, qemuVersion: version,
            redacted: options.redact, labels: labels)
        let sink: CaptureSink
        do {
            sink = try CaptureSink(header: header, options: options)
        } catch {
            close(fd)
            throw error
        }
        for m in sink.takeMessages() { onInfo?(m) }
        var conn: UInt32 = 1
        sink.open(connectedAt, conn, peer: config.endpoint.description, info: JSONObject(["role": .string("client")]))
        for (t, b) in early { sink.data(t, conn, .qemu, b) }

        var reason = ""
        var session = Session(config: config)
        for (_, b) in early { session.feed(b) }
        var lastTick: Int64 = 0
        var clock = ClockWatch(startWall: startWall)
        /// After a reconnect, the open record waits for QEMU's first bytes (a connection
        /// that closes before QEMU says anything is retried, not recorded).
        var pendingOpen: Int64?

        outer: while true {
            // Drive the session: negotiate, then send init and poll commands one at a time.
            for bytes in session.commandsToSend(now: now(), nextID: &nextID) {
                if !Sockets.writeAll(fd, bytes, stopFD: stopFD) { break }
                sink.data(now(), conn, .client, bytes)
            }
            if let d = config.duration, now() >= d {
                reason = "duration"
                if pendingOpen == nil { sink.close(now(), conn, by: "recorder", reason: "duration reached") }
                break
            }
            // Wake for the next poll that falls due, not only every 50 ms.
            var wait: Int64 = 50_000_000
            if let due = session.nextDue() { wait = min(wait, max(due - now(), 0)) }
            let r = readSome(fd, stopFD: stopFD, timeoutMs: Int32((wait + 999_999) / 1_000_000))
            let t = now()
            if let b = r.bytes {
                if let o = pendingOpen {
                    sink.open(o, conn, peer: config.endpoint.description, info: JSONObject(["role": .string("client"), "reconnect": .bool(true)]))
                    pendingOpen = nil
                    onInfo?("reconnected (connection \(conn))")
                }
                sink.data(t, conn, .qemu, b)
                session.feed(b)
            }
            if r.stop {
                reason = "signal"
                if pendingOpen == nil { sink.close(t, conn, by: "recorder", reason: "stopped by \(StopSignal.name)") }
                break
            }
            if r.eof {
                close(fd)
                fd = -1
                if pendingOpen == nil {
                    let why: String
                    if r.error != 0 {
                        why = "upstream lost: \(String(cString: strerror(r.error)))"
                    } else if session.sawShutdown {
                        why = "eof: QEMU closed the connection after SHUTDOWN"
                    } else {
                        why = "upstream lost: QEMU closed the connection without SHUTDOWN"
                    }
                    sink.close(t, conn, by: "qemu", reason: why)
                    reason = session.sawShutdown && r.error == 0 ? "eof" : "upstream lost"
                    if reason != "eof" { lostConnections += 1 }
                    guard config.reconnect else { break }
                    onInfo?("QEMU closed the connection (\(why)); waiting to reconnect")
                    conn += 1
                }
                // Reconnect (a connection QEMU closes before greeting is retried silently).
                while true {
                    if let d = config.duration, now() >= d { reason = "duration"; break outer }
                    if let c = try? Sockets.connect(config.endpoint) { fd = c; break }
                    var p = pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)
                    if poll(&p, 1, 250) > 0 { reason = "signal"; break outer }
                }
                session = Session(config: config)
                pendingOpen = now()
            }
            if let e = sink.failure {
                // Client mode records and nothing else: a failed output ends it.
                reason = "error: \(e)"
                if pendingOpen == nil { sink.close(now(), conn, by: "recorder", reason: "the output failed: \(e)") }
                break
            }
            for m in sink.takeMessages() { onInfo?(m) }
            if let jump = clock.check(monotonic: now()) {
                sink.note(now(), 0, "the host wall clock jumped by \(DurationFormat.short(jump * 1000)); record times (monotonic) are unaffected",
                          JSONObject(["jump_us": .int(jump)]))
            }
            if t - lastTick >= 500_000_000 { lastTick = t; onTick?(t, sink.currentStats) }
        }
        if fd >= 0 { close(fd) }
        let end = sink.finish(reason: reason, time: now())
        for m in sink.takeMessages() { onInfo?(m) }
        var stats = sink.currentStats
        stats.qemuLost = max(stats.qemuLost, lostConnections)
        return CaptureOutcome(reason: reason, stats: stats, end: end)
    }

    private var lostConnections = 0

    /// The client side of one QMP session: negotiation, then one command in flight at a time.
    struct Session {
        let config: ClientModeConfig
        var framer = QMPFramer()
        var greeted = false
        var offersOOB = false
        var negotiationSent = false
        var negotiated = false
        var inflight: String?
        var queue: [RecorderCommand] = []
        var nextPoll: [Int64]
        var sawShutdown = false

        init(config: ClientModeConfig) {
            self.config = config
            queue = config.initCommands
            nextPoll = config.polls.map { _ in 0 }
        }

        mutating func feed(_ bytes: [UInt8]) {
            for f in framer.push(bytes) + framer.drain() {
                let m = f.message()
                switch m.body {
                case .greeting(let g):
                    greeted = true
                    offersOOB = g.offersOOB
                case .return(let r) where r.id?.stringValue == inflight && inflight != nil:
                    if inflight == "qmpreplay-caps" { negotiated = true }
                    inflight = nil
                case .error(let e) where e.id?.stringValue == inflight && inflight != nil:
                    inflight = nil
                case .event(let e) where e.name == "SHUTDOWN":
                    sawShutdown = true
                default:
                    break
                }
            }
        }

        /// When the next poll falls due, if one could be sent then.
        func nextDue() -> Int64? {
            guard negotiated, inflight == nil, queue.isEmpty, !nextPoll.isEmpty else { return nil }
            return nextPoll.min()
        }

        mutating func commandsToSend(now: Int64, nextID: inout Int) -> [[UInt8]] {
            guard greeted, inflight == nil else { return [] }
            if !negotiationSent {
                negotiationSent = true
                inflight = "qmpreplay-caps"
                var cmd = RecorderCommand(name: "qmp_capabilities")
                if config.enableOOB && offersOOB {
                    cmd.arguments = JSONObject(["enable": .array([.string("oob")])])
                }
                return [cmd.bytes(id: "qmpreplay-caps")]
            }
            guard negotiated else { return [] }
            if queue.isEmpty {
                for (i, p) in config.polls.enumerated() where now >= nextPoll[i] {
                    queue.append(p.command)
                    // Keep the cadence (a little late is caught up; much too late starts over).
                    let due = nextPoll[i]
                    nextPoll[i] = due > 0 && now - due < p.interval ? due + p.interval : now + p.interval
                }
            }
            guard !queue.isEmpty else { return [] }
            let cmd = queue.removeFirst()
            let id = "qmpreplay-\(nextID)"
            nextID += 1
            inflight = id
            return [cmd.bytes(id: id)]
        }
    }
}

/// Notices host wall-clock jumps while recording: the offset between the wall clock and
/// the monotonic clock should stay put; a change of more than a second is a jump.
struct ClockWatch {
    let startWall: Int64
    var lastOffset: Int64 = 0
    var lastCheck: Int64 = -1_000_000_000

    init(startWall: Int64) { self.startWall = startWall }

    mutating func check(monotonic ns: Int64) -> Int64? {
        guard ns - lastCheck >= 1_000_000_000 else { return nil }
        lastCheck = ns
        let offset = WallClock.nowMicros() - startWall - ns / 1000
        defer { lastOffset = offset }
        let jump = offset - lastOffset
        return abs(jump) > 1_000_000 ? jump : nil
    }
}
