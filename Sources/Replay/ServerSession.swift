import QMP
import Recording
import Transport

/// One client's conversation with the fake QEMU, without any I/O: bytes in, bytes out.
///
/// It answers exactly as QEMU 7.2 does (docs/QEMU-FACTS.md, "Wire protocol"; checked against
/// qemu-system-x86_64 by Tests/Integration/test_replay_differential.py): the recorded
/// greeting, capabilities negotiation, QEMU's errors for bad input (`QMPInputParser`) and for
/// unknown commands and arguments (`CommandTable`), the recorded replies with the client's
/// `id` as QEMU writes it (`QEMUJSONWriter`), `quit`, and the recorded events, either from its
/// own timeline or pushed by a shared one (`deliver`).
///
/// For the socket server: after `receive`, write the queued output; call `releaseDue()` at
/// `nextDeadline`; print `takeLogLines()`; once `closeAfterFlush` is set, read no more and
/// close after writing what is queued; on SIGINT/SIGTERM call `shutdown()` first.
///
/// Example: `receive("{\"execute\":\"stop\",\"id\":7}\n")` after negotiation queues the STOP
/// event recorded while `stop` ran, then `{"return": {}, "id": 7}\r\n`.
public final class ServerSession {
    public let script: ReplayScript
    public let options: ReplayOptions
    public let clock: ReplayClock
    /// Own timeline (nil when a shared timeline pushes events with `deliver`).
    public let scheduler: Scheduler?
    public private(set) var report: SessionReport
    public private(set) var negotiated = false
    public private(set) var oobEnabled = false
    /// Set in strict mode with `failFast` at the first divergence: the server should stop.
    public private(set) var failedFast = false
    /// The conversation is over (the client sent `quit`, or `shutdown(reason:)` was called):
    /// the server must write what is queued, then close the connection, and read no more
    /// (docs/QEMU-FACTS.md, "quit and termination signals": QEMU exits).
    public private(set) var closeAfterFlush = false

    private var parser: QMPInputParser
    private var used: [ReplayScript.Key: Int] = [:]
    private var usedByName: [String: Int] = [:]
    private var consumed = Set<Int>()
    private var strictNext = 0
    private var firstLateness: Int64?
    private let startedAt: Int64
    private let wallOffsetMicros: Int64
    /// Lines for the server's log (notes on held events), taken with `takeLogLines()`.
    private var logLines: [String] = []
    private var notedHold = false
    /// The adversarial schedule this client gets (docs/TESTING-CLIENTS.md); nil: the recorded order.
    public let chaosSchedule: ChaosSchedule?
    private var chaos: ChaosDelivery?
    /// Pauses in the output: a chaos schedule's cuts and delayed replies.
    private var pacer: OutputPacer
    private var faults: FaultBook
    /// Under a chaos schedule, after a recorded `quit`: the recorded SHUTDOWN, if the
    /// schedule has not sent it by the end of `quit`'s slots.
    private var shutdownOwed: Int?
    /// Commands whose reply waits for the control API's `release` (docs/REPLAY.md, "Control API").
    public internal(set) var replyHolds = ReplyHolds()
    /// `serve --record-missing`: a real QEMU's answer to a command no recorded call matches
    /// (Live/MissingRecorder.swift); nil when it has none.
    public var passThrough: ((JSONObject, JSONValue?) -> (reply: JSONObject, events: [[UInt8]])?)?

    /// Bytes waiting to be written to the client (`output[outputStart...]`).
    public private(set) var output: [UInt8] = []
    private var outputStart = 0

    public init(script: ReplayScript, options: ReplayOptions, clock: ReplayClock, client: Int = 1, peer: String = "test",
                ownTimeline: Bool = true) {
        self.script = script
        self.options = options
        self.clock = clock
        parser = QMPInputParser(retainLimit: options.inputLimit)
        startedAt = clock.now()
        wallOffsetMicros = MonotonicClock.wallOffsetMicros(clock)
        report = SessionReport(client: client, peer: peer, connectedAtMicros: WallClock.nowMicros())
        report.strict = options.strict
        if let c = options.chaos {
            let plan = ChaosPlan(script: script)
            let schedule = c.schedule(for: plan)
            chaos = ChaosDelivery(plan: plan, schedule: schedule, idle: c.idle, now: clock.now())
            chaosSchedule = schedule
            report.chaos = schedule.json
        } else {
            chaos = nil
            chaosSchedule = nil
        }
        pacer = OutputPacer(cuts: chaosSchedule?.cuts ?? [])
        faults = FaultBook(rules: options.faults)
        // A chaos schedule, not the clock, says when events go.
        if ownTimeline && !options.shared && options.chaos == nil {
            scheduler = Scheduler(
                times: script.clockTimes, barriers: script.clockBarriers, gates: script.clockGates,
                holdLimit: script.release == .clock ? nil : options.holdPatience,
                stopHoldingAfterLimit: script.release == .auto,
                spanStart: script.spanStart, spanEnd: script.spanEnd, speed: options.speed, maxGap: options.maxGap,
                loop: options.loop, clock: clock,
                virtualTimes: options.maxGap == script.clockMaxGap ? script.clockVirtualTimes : nil,
                hasHolds: script.clockHasHolds)
        } else {
            scheduler = nil
        }
    }

    /// Log lines produced since the last call (why events are held back, or stopped being
    /// held): the server prints them; each is also in the report's notes.
    public func takeLogLines() -> [String] {
        defer { logLines.removeAll() }
        return logLines
    }

    private func note(_ text: String) {
        report.notes.append(text)
        logLines.append("client \(report.client): \(text)")
    }

    // MARK: output buffer

    public var pendingOutputCount: Int { output.count - outputStart }

    /// Takes everything queued (tests and simple writers).
    public func takeOutput() -> [UInt8] {
        let o = Array(output[outputStart...])
        output.removeAll(keepingCapacity: true)
        outputStart = 0
        return o
    }

    /// Marks `n` queued bytes as written.
    public func consumeOutput(_ n: Int) {
        outputStart += n
        report.bytesSent += n
        if outputStart >= output.count {
            output.removeAll(keepingCapacity: output.capacity <= 1 << 20)
            outputStart = 0
        } else if outputStart > 1 << 16 && outputStart * 2 > output.count {
            output.removeFirst(outputStart)
            outputStart = 0
        }
    }

    /// How many queued bytes may be handed to the socket now, `inFlight` of them being handed
    /// already: the whole queue, except where a chaos cut or a delayed reply pauses the stream.
    public func writeAllowance(inFlight: Int) -> Int {
        guard !pacer.isEmpty else { return .max }
        return pacer.allowance(handed: report.bytesSent + inFlight, now: clock.now())
    }

    /// One write as the server would make it now (what `writeAllowance` lets through), marked
    /// written: how tests see the byte schedule.
    public func takeWritable() -> [UInt8] {
        let n = min(pendingOutputCount, writeAllowance(inFlight: 0))
        let o = Array(output[outputStart..<(outputStart + n)])
        consumeOutput(n)
        return o
    }

    /// Calls `body` with the queued bytes (for `send`); returns what it returns.
    public func withPendingOutput<T>(_ body: (UnsafeRawBufferPointer) -> T) -> T {
        output.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[outputStart...])) }
    }

    // MARK: conversation

    /// The greeting, sent as soon as the client connects (docs/QEMU-FACTS.md, "Wire protocol": QEMU greets a client as soon as it connects).
    public func connect() {
        output.append(contentsOf: script.greetingBytes)
    }

    /// Feeds client bytes in chunks of any size; replies (and events released by them) are queued.
    public func receive<C: Collection>(_ chunk: C) where C.Element == UInt8 {
        guard !closeAfterFlush else { return }
        if chaos != nil { chaos!.lastInput = clock.now() }
        parser.push(chunk) { item in
            guard !closeAfterFlush else { return }
            // The control API's reply holds (Control/ReplyHolds.swift): a held command and
            // everything after it wait, in order, until released.
            if replyHolds.holds(item, negotiated: negotiated) { return }
            handle(item)
        }
    }

    /// One item of client input, answered.
    func handle(_ item: QMPInputParser.Item) {
        guard !closeAfterFlush else { return }
        switch item {
        case .value(let v): request(v)
        case .error(let desc): sendError(nil, "GenericError", desc)
        case .overlong:
            sendError(nil, "GenericError", "qmpreplay: message longer than \(options.inputLimit) bytes, not kept (QEMU takes up to 64 MiB)")
        }
    }

    /// The client closed its side: an unfinished message is dropped, as QEMU drops it, so
    /// nothing is queued; the report is finished.
    public func finish(reason: String) {
        report.closeReason = report.closeReason.isEmpty ? reason : report.closeReason
        report.durationNanos = clock.now() - startedAt
        reportFaults()
        if let s = scheduler { report.passes = s.pass + 1 }
        if options.strict && !failedFast && strictNext < script.commands.count {
            let missing = script.commands[strictNext...]
            let first = missing.first!
            report.divergences.append(Divergence(
                kind: .missing, sequence: 0, received: nil, expected: first.json, expectedLine: first.line, diff: [],
                message: "the client never sent \(missing.count) recorded command(s), the first being \(first.name) at \(script.path):\(first.line)"))
        }
    }

    public func markDropped(_ reason: String) { report.dropped = reason }

    /// The server is stopping on a termination signal: QEMU writes SHUTDOWN (`host-signal`) to
    /// every negotiated monitor before it exits (docs/QEMU-FACTS.md, "quit and termination
    /// signals"). Queues that event (nothing for a client that has not negotiated) and sets
    /// `closeAfterFlush`; the server then writes what is queued and closes.
    public func shutdown(reason: String = "host-signal") {
        guard !closeAfterFlush else { return }
        if negotiated { output.append(contentsOf: ServerSession.shutdownEvent(reason: reason)) }
        report.closeReason = "server stopped (SHUTDOWN \(reason) sent)"
        closeAfterFlush = true
    }

    /// A SHUTDOWN event as QEMU writes it, stamped now: `{"timestamp": {...}, "event":
    /// "SHUTDOWN", "data": {"guest": false, "reason": REASON}}` and CR LF.
    public static func shutdownEvent(reason: String, guest: Bool = false, nowMicros: Int64 = WallClock.nowMicros()) -> [UInt8] {
        var data = JSONObject()
        data["guest"] = .bool(guest)
        data["reason"] = .string(reason)
        return madeEvent("SHUTDOWN", data: data, nowMicros: nowMicros)
    }

    /// An event qmpreplay makes (not recorded), as QEMU writes one, stamped now:
    /// `{"timestamp": {...}, "event": NAME, "data": DATA}` and CR LF (docs/QEMU-FACTS.md, "Event").
    public static func madeEvent(_ name: String, data: JSONObject?, nowMicros: Int64 = WallClock.nowMicros()) -> [UInt8] {
        var ts = JSONObject()
        ts["seconds"] = .int(nowMicros / 1_000_000)
        ts["microseconds"] = .int(nowMicros % 1_000_000)
        var o = JSONObject()
        o["event"] = .string(name)
        o["timestamp"] = .object(ts)
        if let data { o["data"] = .object(data) }
        return QEMUJSONWriter.bytes(.object(o), qdictOrder: true) + [0x0D, 0x0A]
    }

    /// One parsed request; under a chaos schedule, with the events of the slots before and
    /// after its reply (docs/QEMU-FACTS.md, "Where events can fall").
    private func request(_ value: JSONValue) {
        guard chaos != nil else { return handle(value) }
        let received = report.commandsReceived
        let mark = output.count
        handle(value)
        // Only commands answered once negotiation has begun are requests of the schedule.
        guard negotiated, report.commandsReceived > received else { return }
        let n = chaos!.beginRequest()
        let now = clock.now()
        let before = chaos!.take(upTo: .init(request: n, afterReply: false))
        if !before.isEmpty {
            output.insert(contentsOf: before.flatMap { chaosEventBytes($0, now) }, at: mark)
            report.eventsSent += before.count
            report.eventsWithReplies += before.count
        }
        for k in chaos!.take(upTo: .init(request: n, afterReply: true)) { appendEvent(k, due: now) }
        if let e = shutdownOwed {
            shutdownOwed = nil
            if !chaos!.sent(e) { chaos!.markSent(e); appendEvent(e, due: now) }
        }
    }

    /// A client that stopped sending requests while events remain: after the idle time it gets
    /// the next slot's events (it may be waiting for one of them).
    private func releaseIdle() {
        guard negotiated, !closeAfterFlush, let d = chaos?.idleDeadline() else { return }
        let now = clock.now()
        guard now >= d else { return }
        for k in chaos!.takeNextSlot() { appendEvent(k, due: now) }
        chaos!.lastInput = now
    }

    private func chaosEventBytes(_ k: Int, _ now: Int64) -> [UInt8] {
        options.retime ? ServerSession.retimed(script, k, due: now, speed: options.speed, wallOffsetMicros: wallOffsetMicros)
                       : script.eventBytes[k]
    }

    /// One parsed request, checked as QEMU's dispatcher checks it (docs/QEMU-FACTS.md,
    /// "Command"): the members in QEMU's dictionary order, then the command.
    private func handle(_ value: JSONValue) {
        guard case .object(let o) = value else {
            sendError(nil, "GenericError", "QMP input must be a JSON object")
            return
        }
        let id = o["id"]
        var name: String?
        var execKey: String?
        for m in QDictOrder.sorted(o.members) {
            switch m.key {
            case "execute", "exec-oob":
                // exec-oob is a member like any unknown one until oob is enabled.
                if m.key == "exec-oob" && !oobEnabled {
                    sendError(id, "GenericError", "QMP input member 'exec-oob' is unexpected"); return
                }
                guard let s = m.value.stringValue else {
                    sendError(id, "GenericError", "QMP input member '\(m.key)' must be a string"); return
                }
                if let k = execKey {
                    sendError(id, "GenericError", "QMP input member '\(m.key)' clashes with '\(k)'"); return
                }
                name = s
                execKey = m.key
            case "arguments":
                if m.value.objectValue == nil {
                    sendError(id, "GenericError", "QMP input member 'arguments' must be an object"); return
                }
            case "id":
                continue
            default:
                sendError(id, "GenericError", "QMP input member '\(m.key)' is unexpected"); return
            }
        }
        guard let cmd = name else {
            sendError(id, "GenericError", "QMP input lacks member 'execute'")
            return
        }
        let args = o["arguments"]?.objectValue
        report.commandsReceived += 1
        if options.strict { checkStrict(cmd, args, json: value) }
        guard negotiated else {
            if cmd == "qmp_capabilities" {
                negotiate(args, id: id)
            } else {
                // monitor/qmp.c: before negotiation only qmp_capabilities exists, and the
                // CommandNotFound is reworded.
                sendError(id, "CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'")
            }
            return
        }
        guard !faults.isEmpty else { return dispatch(cmd, args, id: id, execKey: execKey) }
        injectFaults(cmd, args, id: id, execKey: execKey)
    }

    /// The fault rules for this call (docs/TESTING-CLIENTS.md, "Fault rules"): a delay pauses
    /// the output from the reply on, an answering rule replaces the recorded reply (or closes
    /// the connection), and events follow the reply.
    private func injectFaults(_ cmd: String, _ args: JSONObject?, id: JSONValue?, execKey: String?) {
        let f = faults.consult(cmd, args)
        if let d = f.delay { pacer.pause(at: report.bytesSent + pendingOutputCount, for: d) }
        switch f.answer {
        case .error(let cls, let text)?:
            report.commandsMatched += 1
            sendError(id, cls, text, protocolError: false)
        case .reply(let value)?:
            report.commandsMatched += 1
            sendReturn(value, id: id)
        case .close?:
            report.closeReason = "fault rule \(options.faults[f.answeredBy!].source) closed the connection"
            closeAfterFlush = true
        default:
            dispatch(cmd, args, id: id, execKey: execKey)
        }
        for e in f.events {
            output.append(contentsOf: ServerSession.madeEvent(e.name, data: e.data))
            report.eventsSent += 1
        }
    }

    /// The fault rules' firings, into the report; under `--strict` a rule that never fired is
    /// a divergence (the test did not exercise what it meant to).
    private func reportFaults() {
        guard !faults.isEmpty else { return }
        report.faults = faults.rules.indices.map { i in
            SessionReport.FaultFiring(rule: faults.rules[i].text, source: faults.rules[i].source, fired: faults.fired[i])
        }
        guard options.strict else { return }
        for f in report.faults where f.fired == 0 && !report.divergences.contains(where: { $0.message.hasPrefix("fault rule \(f.source) ") }) {
            report.divergences.append(Divergence(
                kind: .ruleNeverFired, sequence: 0, received: nil, expected: nil, expectedLine: nil, diff: [],
                message: "fault rule \(f.source) (\(f.rule)) never fired"))
        }
    }

    /// A command past negotiation: QEMU's dispatcher checks, then the recorded answer.
    private func dispatch(_ cmd: String, _ args: JSONObject?, id: JSONValue?, execKey: String?) {
        if passThrough != nil, cmd != "quit", script.candidates(name: cmd, arguments: args, mode: options.match).isEmpty {
            var request = JSONObject()
            request["execute"] = .string(cmd)
            if let a = args { request["arguments"] = .object(a) }
            if let got = passThrough?(request, id) {
                report.commandsUnmatched += 1
                for e in got.events { appendLive(e) }
                sendRecordedReply(got.reply, id: id)
                return
            }
        }
        // qapi/qmp-dispatch.c: the command must exist, then allow out-of-band execution if asked.
        // With `--unmatched empty` and no schema, "never recorded" is only a guess: answer it.
        let guessing = script.commandTable.source == .recordedCalls && options.unmatched == .empty
        guard let known = script.commandTable.lookup(cmd) ?? (guessing ? CommandTable.Command(arguments: nil, allowOOB: true) : nil) else {
            report.commandsUnmatched += 1
            sendError(id, "CommandNotFound", "The command \(cmd) has not been found", protocolError: false)
            return
        }
        if execKey == "exec-oob" && !known.allowOOB {
            sendError(id, "GenericError", "The command \(cmd) does not support OOB", protocolError: false)
            return
        }
        if cmd == "qmp_capabilities" {
            sendError(id, "CommandNotFound", "Capabilities negotiation is already complete, command ignored")
            return
        }
        if cmd == "quit" && script.candidates(name: cmd, arguments: args, mode: options.match).isEmpty {
            quitUnrecorded(args, id: id)
            return
        }
        let matched = answer(cmd, args, id: id)
        if cmd == "quit", let k = matched { quitRecorded(k) }
    }

    private func negotiate(_ args: JSONObject?, id: JSONValue?) {
        // QAPI's input visitor checks the arguments (texts as QEMU 7.2 prints them).
        var wantOOB = false
        for m in args ?? JSONObject() {
            guard m.key == "enable" else { sendError(id, "GenericError", "Parameter '\(m.key)' is unexpected"); return }
            guard let list = m.value.arrayValue else {
                sendError(id, "GenericError", "Invalid parameter type for 'enable', expected: array"); return
            }
            for item in list {
                guard let s = item.stringValue else {
                    sendError(id, "GenericError", "Invalid parameter type for 'null', expected: string"); return
                }
                guard s == "oob" else { sendError(id, "GenericError", "Parameter 'null' does not accept value '\(s)'"); return }
                wantOOB = true
            }
        }
        if wantOOB && !script.offersOOB {
            // monitor/qmp-cmds-control.c, qmp_caps_accept: only capabilities the greeting offered.
            sendError(id, "GenericError", "Capability oob not available")
            return
        }
        oobEnabled = wantOOB
        negotiated = true
        report.negotiated = true
        sendReturn(.object(JSONObject()), id: id)
        // docs/QEMU-FACTS.md: no events before negotiation; the timeline starts now.
        scheduler?.start()
    }

    /// Answers a command of the recording's QEMU; returns the recorded command it matched.
    @discardableResult
    private func answer(_ name: String, _ args: JSONObject?, id: JSONValue?) -> Int? {
        let cands = script.candidates(name: name, arguments: args, mode: options.match)
        guard !cands.isEmpty else {
            report.commandsUnmatched += 1
            // QAPI's argument check, where the schema (or the recorded calls) tell the arguments.
            if let missing = script.commandTable.missingArgument(name, args) {
                sendError(id, "GenericError", "Parameter '\(missing)' is missing", protocolError: false)
                return nil
            }
            if options.unmatched == .error || script.commandTable.source != .recordedCalls,
               let extra = script.commandTable.unexpectedArgument(name, args) {
                sendError(id, "GenericError", "Parameter '\(extra)' is unexpected", protocolError: false)
                return nil
            }
            switch options.unmatched {
            case .empty:
                sendReturn(.object(JSONObject()), id: id)
            case .error:
                var desc = "qmpreplay: no recorded reply matched '\(name)'"
                if let a = args, !a.isEmpty { desc += " with arguments \(JSONValue.object(a).serialized(.compact))" }
                if let k = script.closestCommand(name: name, arguments: args) {
                    let c = script.commands[k]
                    desc += "; closest recorded command: \(c.display) at \(script.path):\(c.line)"
                } else {
                    desc += "; the recording has no commands"
                }
                sendError(id, "GenericError", desc, protocolError: false)
            }
            return nil
        }
        // The n-th request with this key gets the n-th recorded occurrence; beyond them the last again.
        let n: Int
        switch options.match {
        case .exact:
            let key = ReplayScript.Key(name: name, arguments: ReplayScript.normalized(args))
            n = used[key, default: 0]; used[key] = n + 1
        case .name:
            n = usedByName[name, default: 0]; usedByName[name] = n + 1
        }
        let k = cands[min(n, cands.count - 1)]
        report.commandsMatched += 1
        if n >= cands.count { report.commandsRepeated += 1 }
        let cmd = script.commands[k]
        var sentItems: [Int] = []
        if chaos == nil && consumed.insert(k).inserted {
            // docs/QEMU-FACTS.md, "Ordering without oob": events raised while a command runs are
            // written before its reply (unless the clock already sent them to a client that was
            // not following the recorded commands).
            let now = clock.now()
            for e in cmd.gatedEvents {
                if let item = script.clockItem(ofEvent: e) {
                    if scheduler?.isReleased(item) ?? false { continue }
                    sentItems.append(item)
                }
                appendEvent(e, due: now)
                report.eventsWithReplies += 1
            }
        }
        if let reply = cmd.reply {
            sendRecordedReply(reply, id: id)
        } else {
            // The recording ended before QEMU answered (e.g. the recorder stopped): QEMU would
            // still have answered; an empty return is the least surprising stand-in.
            sendReturn(.object(JSONObject()), id: id)
        }
        scheduler?.answered(command: k, replyTime: cmd.replyTime, releasing: sentItems)
        return k
    }

    /// After a recorded `quit` and its reply: QEMU exits, and SHUTDOWN (`host-qmp-quit`) is
    /// always written before the monitor closes (docs/QEMU-FACTS.md, "quit and termination
    /// signals"). When the recording had it after the reply, it is sent now; when the
    /// recording had none, one is made.
    private func quitRecorded(_ k: Int) {
        let quit = script.commands[k]
        if chaos != nil {
            // The schedule places the recorded SHUTDOWN; `request` sends it after the slots
            // of `quit` if the schedule has not (QEMU always writes it before closing).
            shutdownOwed = script.events.firstIndex { $0.name == "SHUTDOWN" && $0.record > quit.record }
            if shutdownOwed == nil { output.append(contentsOf: ServerSession.shutdownEvent(reason: "host-qmp-quit")); report.eventsSent += 1 }
        } else if !quit.gatedEvents.contains(where: { script.events[$0].name == "SHUTDOWN" }) {
            if let e = script.events.firstIndex(where: { $0.name == "SHUTDOWN" && $0.record > quit.record }) {
                appendEvent(e, due: clock.now())
            } else {
                output.append(contentsOf: ServerSession.shutdownEvent(reason: "host-qmp-quit"))
                report.eventsSent += 1
            }
        }
        report.closeReason = "the client sent quit"
        closeAfterFlush = true
    }

    /// `quit` that the recording does not answer: QEMU 7.2 writes SHUTDOWN (`host-qmp-quit`),
    /// then the reply, then closes (checked against qemu-system-x86_64 7.2).
    private func quitUnrecorded(_ args: JSONObject?, id: JSONValue?) {
        if let extra = args?.keys.first {
            sendError(id, "GenericError", "Parameter '\(extra)' is unexpected", protocolError: false)
            return
        }
        report.commandsMatched += 1
        output.append(contentsOf: ServerSession.shutdownEvent(reason: "host-qmp-quit"))
        report.eventsSent += 1
        sendReturn(.object(JSONObject()), id: id)
        report.closeReason = "the client sent quit"
        closeAfterFlush = true
    }

    private func checkStrict(_ name: String, _ args: JSONObject?, json: JSONValue) {
        guard !failedFast else { return }
        let seq = report.commandsReceived
        var received = json.objectValue ?? JSONObject()
        received["id"] = nil
        func same(_ c: ReplayScript.Command) -> Bool {
            c.name == name && (options.match == .name || ReplayScript.normalized(c.arguments) == ReplayScript.normalized(args))
        }
        func stripped(_ c: ReplayScript.Command) -> JSONValue {
            var o = c.json.objectValue ?? JSONObject()
            o["id"] = nil
            return .object(o)
        }
        let cmds = script.commands
        if strictNext < cmds.count && same(cmds[strictNext]) {
            strictNext += 1
            return
        }
        var d: Divergence
        if let later = cmds.indices.dropFirst(strictNext).first(where: { same(cmds[$0]) }) {
            let exp = cmds[strictNext]
            d = Divergence(
                kind: .outOfOrder, sequence: seq, received: .object(received), expected: stripped(exp), expectedLine: exp.line,
                diff: JSONDiff.diff(expected: stripped(exp), actual: .object(received)),
                message: "command \(seq) (\(name)) is recorded later (\(script.path):\(cmds[later].line)); expected \(exp.name) (\(script.path):\(exp.line)), \(later - strictNext) recorded command(s) skipped")
            strictNext = later + 1
        } else {
            let ref: ReplayScript.Command?
            if strictNext < cmds.count, cmds[strictNext].name == name {
                ref = cmds[strictNext]
            } else if strictNext < cmds.count {
                ref = cmds[strictNext]
            } else {
                ref = script.closestCommand(name: name, arguments: args).map { cmds[$0] }
            }
            let diff = ref.map { JSONDiff.diff(expected: stripped($0), actual: .object(received)) } ?? []
            var msg = "command \(seq) (\(name)) matches no recorded command"
            if let r = ref {
                msg += strictNext < cmds.count ? "; expected \(r.name) (\(script.path):\(r.line))" : "; the recorded commands are exhausted (closest: \(r.name), \(script.path):\(r.line))"
                if !diff.isEmpty { msg += ": " + diff.map(\.description).joined(separator: "; ") }
            }
            d = Divergence(kind: .unexpected, sequence: seq, received: .object(received), expected: ref.map(stripped),
                           expectedLine: ref?.line, diff: diff, message: msg)
            // The expected command with other arguments takes its place in the sequence, so
            // that the next command is not reported again as skipping it (out of order).
            if strictNext < cmds.count && cmds[strictNext].name == name { strictNext += 1 }
        }
        report.divergences.append(d)
        if options.failFast { failedFast = true }
    }

    // MARK: events

    /// Releases the events of this session's own timeline that are due now. At max speed only
    /// while less than `watermark` bytes are queued, so a fast replay follows the reader.
    public func releaseDue(watermark: Int = 256 << 10) {
        if chaos != nil { return releaseIdle() }
        guard let s = scheduler, negotiated, !closeAfterFlush else { return }
        let wasHolding = s.holding
        if s.speed == nil {
            // Max speed: as much as the client's queue takes, one clock reading for the batch.
            let now = clock.now()
            while pendingOutputCount < watermark, let r = s.next(at: now) {
                appendEvent(script.clockEvents[r.item], due: r.due)
            }
        } else {
            while let r = s.next() {
                appendEvent(script.clockEvents[r.item], due: r.due)
                noteRelease(r)
            }
        }
        if wasHolding, let g = s.stoppedHolding { noteStoppedHolding(g) }
        noteLongHold(s)
    }

    /// What an event waits for, for notes: "the reply to `balloon` (FILE:LINE)".
    private func waitingFor(_ b: Scheduler.Barrier, gate: Bool) -> String {
        let c = script.commands[b.command]
        return gate ? "`\(c.name)` (\(script.path):\(c.line)), recorded while that command ran"
                    : "the reply to `\(c.name)` (\(script.path):\(c.line))"
    }

    private func noteStoppedHolding(_ g: Scheduler.GiveUp) {
        let e = script.events[script.clockEvents[g.item]]
        let secs = DurationFormat.fixed(Double(g.waited) / 1e9, 1)
        note("events no longer wait for commands: \(e.name) (\(script.path):\(e.line)) waited \(secs)s for "
            + "\(waitingFor(g.waitingFor, gate: g.isGate)), which this client has not sent (it only listens, or "
            + "does not follow the recorded commands); from now on every event follows the recorded clock")
    }

    /// In `.commands` mode events wait without limit: say so once, when one has waited as
    /// long as `.auto` would have waited.
    private func noteLongHold(_ s: Scheduler) {
        guard !notedHold, let g = s.longHold else { return }
        notedHold = true
        let e = script.events[script.clockEvents[g.item]]
        note("events are held back: \(e.name) (\(script.path):\(e.line)) waits for \(waitingFor(g.waitingFor, gate: g.isGate)), "
            + "which this client has not sent; in this mode (--strict) events wait for their commands")
    }

    /// When this session's timeline next wants to run; nil when it waits for nothing timed.
    public var nextDeadline: Int64? {
        let paused = pacer.isEmpty ? nil : pacer.deadline(now: clock.now())
        guard negotiated else { return paused }
        let own = chaos != nil ? chaos!.idleDeadline() : scheduler?.nextDeadline()
        guard let p = paused else { return own }
        return min(p, own ?? p)
    }

    /// A shared timeline's release, already formatted (`bytes`); ignored before negotiation
    /// (docs/QEMU-FACTS.md: events are not queued for an unnegotiated client).
    public func deliver(_ bytes: [UInt8], release r: Scheduler.Release) {
        guard negotiated, !closeAfterFlush else { return }
        output.append(contentsOf: bytes)
        report.eventsSent += 1
        noteRelease(r)
    }

    private func noteRelease(_ r: Scheduler.Release) {
        guard (scheduler?.speed ?? options.speed) != nil else { return }
        report.lateness.append(r.lateness)
        if firstLateness == nil { firstLateness = r.lateness }
        report.driftNanos = r.lateness - firstLateness!
        report.passes = r.pass + 1
    }

    /// An event a real QEMU raised (`passThrough`), as it wrote it.
    private func appendLive(_ bytes: [UInt8]) {
        output.append(contentsOf: bytes)
        report.eventsSent += 1
    }

    private func appendEvent(_ k: Int, due: Int64) {
        if options.retime {
            output.append(contentsOf: ServerSession.retimed(script, k, due: due, speed: options.speed, wallOffsetMicros: wallOffsetMicros))
        } else {
            output.append(contentsOf: script.eventBytes[k])
        }
        report.eventsSent += 1
    }

    /// The event with its timestamp moved to the replay's wall clock: the scheduled release
    /// time, less the recorded gap between creation (QEMU's timestamp) and delivery (the
    /// record time) scaled by the speed (docs/QEMU-FACTS.md: the timestamp is the creation time).
    public static func retimed(_ script: ReplayScript, _ k: Int, due: Int64, speed: Double?, wallOffsetMicros: Int64) -> [UInt8] {
        let e = script.events[k]
        guard let ts = e.timestampMicros, case .object(var o)? = try? JSONParser.parse(e.bytes) else { return e.bytes }
        var lagMicros = (e.time / 1000) - (ts - script.startMicros)
        if lagMicros < 0 || lagMicros > 10_000_000 { lagMicros = 0 }  // a clock jump, not a lag
        let scaled = speed.map { Int64(Double(lagMicros) / $0) } ?? 0
        let newTS = due / 1000 + wallOffsetMicros - scaled
        o["timestamp"] = .object(JSONObject([
            "seconds": .int(newTS / 1_000_000), "microseconds": .int(newTS % 1_000_000),
        ]))
        return QEMUJSONWriter.bytes(.object(o), qdictOrder: false) + [0x0D, 0x0A]
    }

    // MARK: replies

    /// `{"return": VALUE, "id": ID}`, in QEMU's dictionary order (the id comes last).
    private func sendReturn(_ value: JSONValue, id: JSONValue?) {
        var o = JSONObject()
        o["return"] = value
        if let id { o["id"] = id }
        emit(o, built: true)
    }

    /// `{"id": ID, "error": {"class": ..., "desc": ...}}`, in QEMU's dictionary order (the id first).
    private func sendError(_ id: JSONValue?, _ cls: String, _ desc: String, protocolError: Bool = true) {
        var o = JSONObject()
        o["error"] = .object(JSONObject(["class": .string(cls), "desc": .string(desc)]))
        if let id { o["id"] = id }
        if protocolError { report.protocolErrors += 1 }
        emit(o, built: true)
    }

    /// The recorded reply with the client's id in place of the recorded one (or none), where
    /// QEMU's dictionary puts it.
    private func sendRecordedReply(_ reply: JSONObject, id: JSONValue?) {
        var o = reply
        o["id"] = nil
        if let id {
            let idBucket = QDictOrder.bucket("id")
            let at = o.members.firstIndex { QDictOrder.bucket($0.key) > idBucket } ?? o.members.count
            o.members.insert(JSONObject.Member(key: "id", value: id), at: at)
        }
        emit(o, built: false)
    }

    /// Writes a response as QEMU would: `built` responses entirely in dictionary order; a
    /// recorded one keeps its recorded order, except that the client's id (a value QEMU
    /// rebuilt from the request) is written in dictionary order.
    private func emit(_ o: JSONObject, built: Bool) {
        if built {
            QEMUJSONWriter.write(.object(o), qdictOrder: true, into: &output)
        } else {
            output.append(UInt8(ascii: "{"))
            for (i, m) in o.members.enumerated() {
                if i > 0 { output.append(contentsOf: [UInt8(ascii: ","), 0x20]) }
                QEMUJSONWriter.writeString(m.key, into: &output)
                output.append(contentsOf: [UInt8(ascii: ":"), 0x20])
                QEMUJSONWriter.write(m.value, qdictOrder: m.key == "id", into: &output)
            }
            output.append(UInt8(ascii: "}"))
        }
        output.append(contentsOf: [0x0D, 0x0A])
    }
}
