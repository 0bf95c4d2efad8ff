import Logging
import NIOCore
import QMP
import Recording
import Transport

/// A command the recorder sends itself: `query-status`, or `balloon {"value": 1073741824}`,
/// or a whole JSON object `{"execute": "x", "arguments": {...}}`.
public struct RecorderCommand: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var arguments: JSONObject?

    public init(name: String, arguments: JSONObject? = nil) { self.name = name; self.arguments = arguments }

    public init(parsing text: String) throws(JSONParseError) {
        let t = String(text.drop { $0 == " " || $0 == "\t" })
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

    /// The header's labels: the user's, the polls, and a warning when polling changed what
    /// QEMU emits.
    var headerLabels: [(key: String, value: String)] {
        var labels = self.labels
        if !polls.isEmpty {
            labels.append((key: "polls", value: polls.map { "\($0.command.name)@\(DurationFormat.short($0.interval))" }.joined(separator: ",")))
        }
        if polls.contains(where: { $0.command.name == "query-rx-filter" }) {
            labels.append((key: "rx-filter-polled", value: "true: query-rx-filter re-arms NIC_RX_FILTER_CHANGED, so this capture changed what QEMU emitted"))
        }
        return labels
    }
}

/// `qmpreplay record --connect`: connects to QEMU, negotiates, runs its own init and poll
/// commands, and records everything both ways until QEMU closes, a stop, or --duration.
///
/// On swift-nio: the connection is a channel on one event loop (`ClientDriver`), polls and
/// reconnect attempts are timers on that loop, and receive times come from the injected
/// clock. `run()` blocks its caller: it waits for QEMU's greeting (the header carries its
/// version), creates the file, and waits for the end.
///
/// Example: `let rec = ClientRecorder(config: cfg, options: opts); Signals.onStop { rec.stop(by: $0) }; try rec.run()`.
public final class ClientRecorder: CaptureRecorder {
    public let config: ClientModeConfig
    public let options: CaptureOptions
    private let context: RecorderContext
    private let control = RecorderControl()

    /// The shortest `--poll` interval: QEMU answers one command at a time, and the recorder
    /// keeps one of its own in flight.
    public static let minimumPollInterval: Int64 = 10_000_000

    /// The logger hears QEMU go away and come back (metadata `conn`).
    public init(config: ClientModeConfig, options: CaptureOptions, context: RecorderContext = RecorderContext()) {
        self.config = config
        self.options = options
        self.context = context
    }

    public func stop(by name: String) { control.requestStop(by: name) }

    public func trigger(_ trigger: IncidentTrigger) { control.trigger(trigger, clock: context.clock) }

    /// The driver, once `run()` has started it: where `send` goes.
    private let started = Guarded<(loop: EventLoop, driver: NIOLoopBound<ClientDriver>)?>(nil)

    /// Sends a command of the caller's own (the live shell's `send`) on the recorded
    /// connection, recorded like any client command, with an id of the recorder's
    /// (`qmpreplay-shell-N`); `reply` gets QEMU's reply (a return or an error message), or
    /// an error when there is no connection to QEMU or it went away first. Callable from
    /// any thread; `reply` runs on the recorder's event loop.
    public func send(_ command: RecorderCommand, reply: @escaping @Sendable (Result<QMPMessage, SocketError>) -> Void) {
        guard let (loop, driver) = started.withLock({ $0 }) else {
            reply(.failure(SocketError(endpoint: config.endpoint.description, reason: "not connected to QEMU yet", errno: 0)))
            return
        }
        loop.execute { driver.value.inject(command, reply: reply) }
    }

    public var progress: CaptureProgress? { control.progress(context.clock) }

    /// Runs until the session ends. Throws only when nothing could be recorded at all.
    public func run() throws -> CaptureOutcome {
        let (config, context) = (self.config, self.context)
        let (t0, startWall, loop, driver) = try context.begin { ClientDriver(config: config, context: context, start: $0, wallStart: $1, loop: $2) }
        // Read the greeting before creating the file, so the header carries QEMU's version.
        let greeted = try loop.submit { driver.value.begin() }.wait()
        control.deliverStops { name in loop.execute { driver.value.stop(by: name) } }
        let version = try greeted.wait()
        let header = RecordingHeader(
            startMicros: startWall, source: config.endpoint.description, mode: .client, qemuVersion: version,
            redacted: options.redact, labels: config.headerLabels)
        let sink: CaptureSink
        do {
            sink = try CaptureSink(header: header, options: options.clocked(context.clock, since: t0), logger: context.logger)
        } catch {
            loop.execute { driver.value.abandon() }
            throw error
        }
        control.recording(into: sink, since: t0)
        started.withLock { $0 = (loop, driver) }
        defer { started.withLock { $0 = nil } }
        let done = try loop.submit { driver.value.record(into: sink) }.wait()
        let reason = (try? done.wait()) ?? "error"
        let lost = (try? loop.submit { driver.value.lostConnections }.wait()) ?? 0
        let end = sink.finish(reason: reason, time: context.clock.now() - t0)
        var stats = sink.currentStats
        stats.qemuLost = max(stats.qemuLost, lost)
        return CaptureOutcome(reason: reason, stats: stats, end: end)
    }

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
        /// Replies to commands injected with `send` (ids starting `injectedPrefix`), in the
        /// order they came, for the driver to hand over.
        var injectedReplies: [(id: String, reply: QMPMessage)] = []

        static let injectedPrefix = "qmpreplay-shell-"

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
                case .return(let r) where r.id?.stringValue?.hasPrefix(Session.injectedPrefix) == true:
                    injectedReplies.append((r.id!.stringValue!, m))
                case .error(let e) where e.id?.stringValue?.hasPrefix(Session.injectedPrefix) == true:
                    injectedReplies.append((e.id!.stringValue!, m))
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
