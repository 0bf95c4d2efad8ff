import QMP
import Recording

/// One recorded connection turned into what a fake QEMU needs: the greeting, the commands
/// with their replies, and the events with what holds them back. Built once per server and
/// shared read-only by every client session.
///
/// Example: in `lifecycle-qemu.qmprec`, `stop` (#8) has the reply #10 and the STOP event #9,
/// recorded between them, is *gated* on it (released when a client sends `stop`); the
/// SHUTDOWN after `quit`'s reply would be *behind a barrier*: never sent before that reply.
public struct ReplayScript: Sendable {
    /// A recorded client command and its recorded answer.
    public struct Command: Sendable {
        public var record: Int
        public var line: Int
        public var time: Int64
        public var name: String
        public var arguments: JSONObject?
        /// The command as the recorded client sent it.
        public var json: JSONValue
        /// The recorded reply (`return` or `error` object), nil when none was recorded.
        public var reply: JSONObject?
        public var replyTime: Int64?
        /// Events recorded while this command ran (between it and its reply), in order.
        public var gatedEvents: [Int] = []
        public var isNegotiation: Bool { name == "qmp_capabilities" }
        /// The command as recorded without its id, for messages: `{"execute":"balloon","arguments":{...}}`.
        public var display: String {
            var o = json.objectValue ?? JSONObject()
            o["id"] = nil
            return JSONValue.object(o).serialized(.compact)
        }
    }

    /// A recorded event, ready to send.
    public struct Event: Sendable {
        public var record: Int
        public var line: Int
        public var time: Int64
        public var name: String
        /// Exact recorded bytes, ending in `\r\n` (docs/QEMU-FACTS.md, "Framing").
        public var bytes: [UInt8]
        /// QEMU's timestamp in µs since the epoch, when it had one.
        public var timestampMicros: Int64?
        /// The command whose execution raised it (it was recorded before that command's reply).
        public var gate: Int?
        /// The last command answered before it in the recording: the event must not be
        /// released before the client has had that reply.
        public var barrier: Int?
    }

    /// A key for exact matching: name and arguments (JSONObject equality ignores order).
    struct Key: Hashable, Sendable {
        var name: String
        var arguments: JSONObject?
    }

    public let path: String
    public let connection: UInt32
    public let greetingBytes: [UInt8]
    /// Every connection of the recording that carries QMP messages (one is replayed).
    public let connections: [UInt32]
    /// When the recording has several connections and none was chosen: which one is served
    /// and how to serve another (the CLI prints it once).
    public func connectionNotice(chosen: UInt32?) -> String? {
        guard connections.count > 1, chosen == nil else { return nil }
        return "\(path) has \(connections.count) connections (\(connections.map(String.init).joined(separator: ", "))); "
            + "serving connection \(connection), the first with a greeting: --connection N serves another"
    }
    /// The capabilities the greeting offers (`["oob"]` since QEMU 2.12).
    public let capabilities: [String]
    public var offersOOB: Bool { capabilities.contains("oob") }
    /// True when the recording had no greeting on this connection and a QEMU-like one was made.
    public let greetingSynthesized: Bool
    public let commands: [Command]
    public let events: [Event]
    /// Each event's exact bytes (`events[k].bytes`), apart: what every release copies out, read
    /// without touching the rest of the event (at max speed a release is ~100 ns).
    public let eventBytes: [[UInt8]]
    /// The events released on the clock, within the span, in recorded order: all of them,
    /// except with `EventRelease.commands`, where gated events come only with their replies.
    public let clockEvents: [Int]
    /// For each clock event: its time, barrier and gate, as the scheduler takes them (built
    /// once and shared by every client's scheduler).
    public let clockTimes: [Int64]
    public let clockBarriers: [Scheduler.Barrier?]
    public let clockGates: [Scheduler.Barrier?]
    /// The clock events' times with `--max-gap` applied, from the span's start: what each
    /// scheduler counts in. Built once here and shared, so a client costs its cursor and its
    /// queued output, not a copy of the timeline (docs/PERFORMANCE.md, "Replay memory").
    public let clockVirtualTimes: [Int64]
    /// The `--max-gap` `clockVirtualTimes` was built with.
    public let clockMaxGap: Int64?
    /// Whether any clock event has a barrier or a gate (`Scheduler.anyHold`), once for all clients.
    public let clockHasHolds: Bool
    /// How events wait for commands in this replay (`ReplayOptions.effectiveRelease`).
    public let release: EventRelease
    /// What the replayed QEMU knows about its commands.
    public let commandTable: CommandTable
    /// Start and end of the replayed span (recording ns).
    public let spanStart: Int64
    public let spanEnd: Int64
    /// Recording start in µs since the epoch (for retiming).
    public let startMicros: Int64
    let byKey: [Key: [Int]]
    let byName: [String: [Int]]

    /// Reads the chosen connection of `recording`; throws when there is nothing to replay.
    public init(recording r: Recording, options: ReplayOptions) throws(ReplayError) {
        path = r.path
        startMicros = r.header?.startMicros ?? 0
        // docs/QEMU-FACTS.md, "Disconnect": each connection is its own session with its own greeting;
        // the main one is the first with a greeting.
        var conn: UInt32? = options.connection
        if conn == nil {
            for i in 0..<r.count where r.kind(i) == .greeting && r.direction(i) == .qemu { conn = r.connection(i); break }
        }
        if conn == nil {
            for i in 0..<r.count where r.kind(i).isMessage && r.connection(i) > 0 { conn = r.connection(i); break }
        }
        guard let c = conn else { throw ReplayError.recording("\(r.path): no QMP messages to replay") }
        if options.connection != nil, !(0..<r.count).contains(where: { r.connection($0) == c && r.kind($0).isMessage }) {
            let known = Set((0..<r.count).map { r.connection($0) }).filter { $0 > 0 }.sorted()
            throw ReplayError.recording("\(r.path): connection \(c) has no messages (connections: \(known.map(String.init).joined(separator: ", ")))")
        }
        connection = c
        var withMessages = Set<UInt32>()
        for i in 0..<r.count where r.connection(i) > 0 && r.kind(i).isMessage { withMessages.insert(r.connection(i)) }
        connections = withMessages.sorted()

        var greetBytes: [UInt8]?
        var caps: [String] = []
        var cmds: [Command] = []
        var evs: [Event] = []
        /// Requests waiting for their reply, oldest first (docs/QEMU-FACTS.md, "Ordering without
        /// oob": one at a time, replies in order); nil entries are input that was not a command.
        var pending = ReplyQueue<Int?>()
        var lastAnswered: Int?
        var negotiationReply: Int64?

        for i in 0..<r.count where r.connection(i) == c {
            let kind = r.kind(i)
            guard kind.isMessage else { continue }
            let rec: Record
            do { rec = try r.record(at: i) } catch { throw ReplayError.recording(error.description) }
            guard let m = rec.message, let dir = rec.direction else { continue }
            switch (dir, m.body) {
            case (.qemu, .greeting(let g)):
                if greetBytes == nil { greetBytes = ReplayScript.crlf(m.bytes); caps = g.capabilities }
            case (.client, .command(let cmd)):
                cmds.append(Command(
                    record: i, line: rec.line, time: rec.time, name: cmd.name, arguments: cmd.arguments,
                    json: m.json ?? .null))
                pending.sent(IDKey(value: cmd.id), cmds.count - 1)
            case (.client, _):
                // Garbage and other bad input are answered too (with an error), in order.
                pending.sent(.none, nil)
            case (.qemu, .return), (.qemu, .error):
                if let p = pending.reply(IDKey(value: m.id)) {
                    if let ci = p, cmds[ci].reply == nil {
                        cmds[ci].reply = m.json?.objectValue
                        cmds[ci].replyTime = rec.time
                        if cmds[ci].isNegotiation {
                            if negotiationReply == nil { negotiationReply = rec.time }
                        } else {
                            lastAnswered = ci
                        }
                    }
                }
            case (.qemu, .event(let e)):
                let gate = pending.outstanding.first.flatMap { $0 }
                evs.append(Event(
                    record: i, line: rec.line, time: rec.time, name: e.name, bytes: ReplayScript.crlf(m.bytes),
                    timestampMicros: e.timestamp?.totalMicroseconds, gate: gate, barrier: lastAnswered))
            default:
                break
            }
        }

        if let g = greetBytes {
            greetingBytes = g
            capabilities = caps
            greetingSynthesized = false
        } else {
            // No greeting recorded (imports of libvirt's .replies have none): offer what QEMU
            // of the recorded version would, so that clients can negotiate at all.
            let v = r.header?.qemuVersion ?? "7.2.0"
            let parts = v.split(separator: ".").map { Int($0) ?? 0 } + [0, 0, 0]
            let text = #"{"QMP": {"version": {"qemu": {"micro": \#(parts[2]), "minor": \#(parts[1]), "major": \#(parts[0])}, "package": ""}, "capabilities": ["oob"]}}"#
            greetingBytes = Array(text.utf8) + [0x0D, 0x0A]
            capabilities = ["oob"]
            greetingSynthesized = true
        }

        // The span: by default from the recorded negotiation, so that a client hears the first
        // event as long after negotiating as the recorded client did.
        let firstTime = (0..<r.count).first { r.connection($0) == c }.map { r.time($0) } ?? 0
        let defaultStart = negotiationReply ?? cmds.first?.time ?? firstTime
        spanStart = options.from.map { $0.resolveTime(in: r) } ?? defaultStart
        if let to = options.to {
            if case .record(let n) = to { spanEnd = n < r.count ? r.time(n) : Int64.max } else { spanEnd = to.resolveTime(in: r) }
        } else {
            spanEnd = Int64.max
        }
        if spanEnd < spanStart {
            throw ReplayError.usage("--to is before --from (\(DurationFormat.short(spanEnd)) < \(DurationFormat.short(spanStart)))")
        }

        release = options.effectiveRelease
        var clock: [Int] = []
        for (k, e) in evs.enumerated() {
            let inSpan = e.time >= spanStart && e.time <= spanEnd
            guard inSpan else { evs[k].gate = nil; continue }
            // A barrier whose reply lies before the span was never the client's to get.
            if let b = e.barrier, (cmds[b].replyTime ?? 0) < spanStart { evs[k].barrier = nil }
            switch release {
            case .clock:
                evs[k].gate = nil
                evs[k].barrier = nil
                clock.append(k)
            case .commands:
                if let g = e.gate { cmds[g].gatedEvents.append(k) } else { clock.append(k) }
            case .auto:
                // Gated events are on the clock too, held while the client follows the
                // recorded commands and sent with the reply when it sends their command.
                if let g = e.gate { cmds[g].gatedEvents.append(k); evs[k].barrier = nil }
                clock.append(k)
            }
        }
        commands = cmds
        events = evs
        eventBytes = evs.map(\.bytes)
        clockEvents = clock
        clockTimes = clock.map { evs[$0].time }
        clockBarriers = clock.map { k in
            evs[k].barrier.map { Scheduler.Barrier(command: $0, replyTime: cmds[$0].replyTime ?? 0) }
        }
        clockGates = clock.map { k in evs[k].gate.map { Scheduler.Barrier(command: $0, replyTime: cmds[$0].time) } }
        clockVirtualTimes = Scheduler.virtualTimes(clockTimes, spanStart: spanStart, maxGap: options.maxGap)
        clockMaxGap = options.maxGap
        clockHasHolds = Scheduler.anyHold(barriers: clockBarriers, gates: clockGates)
        // docs/REPLAY.md, "What a client sees": unknown commands are judged by the recorded
        // QEMU's own schema when the recording implies one (RecordingSchema: another
        // connection's reply, or the schema shipped for the greeting's version).
        commandTable = CommandTable.build(from: cmds) {
            let choice = RecordingSchema.choose(for: r)
            if case .seed = choice.source { return nil }
            return choice.schema
        }

        var bk: [Key: [Int]] = [:]
        var bn: [String: [Int]] = [:]
        for (k, cmd) in cmds.enumerated() {
            bk[Key(name: cmd.name, arguments: ReplayScript.normalized(cmd.arguments)), default: []].append(k)
            bn[cmd.name, default: []].append(k)
        }
        byKey = bk
        byName = bn
    }

    /// `{}` arguments and no arguments are the same call to QEMU.
    static func normalized(_ a: JSONObject?) -> JSONObject? {
        guard let a, !a.isEmpty else { return nil }
        return a
    }

    /// QEMU ends every message with CR LF (docs/QEMU-FACTS.md, "Framing"); imported or hand-made
    /// recordings may not, so the terminator is made right without touching the JSON text.
    static func crlf(_ b: [UInt8]) -> [UInt8] {
        var out = b
        if out.last == 0x0A {
            if out.count < 2 || out[out.count - 2] != 0x0D { out.insert(0x0D, at: out.count - 1) }
        } else {
            while let l = out.last, l == 0x20 || l == 0x09 || l == 0x0D { out.removeLast() }
            out.append(contentsOf: [0x0D, 0x0A])
        }
        return out
    }

    /// The clock item (index into `clockEvents`) of event `k`, if it is on the clock.
    public func clockItem(ofEvent k: Int) -> Int? {
        var lo = 0, hi = clockEvents.count
        while lo < hi { let mid = (lo + hi) / 2; if clockEvents[mid] < k { lo = mid + 1 } else { hi = mid } }
        return lo < clockEvents.count && clockEvents[lo] == k ? lo : nil
    }

    /// Recorded commands with this key, in recorded order.
    func candidates(name: String, arguments: JSONObject?, mode: MatchMode) -> [Int] {
        switch mode {
        case .exact: return byKey[Key(name: name, arguments: ReplayScript.normalized(arguments))] ?? []
        case .name: return byName[name] ?? []
        }
    }

    /// The recorded command most like the given one: same name with fewest differing
    /// arguments, else the nearest name by edit distance.
    public func closestCommand(name: String, arguments: JSONObject?) -> Int? {
        guard !commands.isEmpty else { return nil }
        var best: (score: Int, index: Int)?
        let args = JSONValue.object(arguments ?? JSONObject())
        for (k, c) in commands.enumerated() where !c.isNegotiation || name == "qmp_capabilities" {
            let score: Int
            if c.name == name {
                score = JSONDiff.diff(expected: .object(c.arguments ?? JSONObject()), actual: args).count
            } else {
                score = 1000 + JSONDiff.editDistance(c.name, name) * 10
            }
            if best == nil || score < best!.score { best = (score, k) }
        }
        return best?.index
    }
}
