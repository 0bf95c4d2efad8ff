import QMP
import Recording
import Transport

/// One client's conversation with the fake QEMU, without any I/O: bytes in, bytes out.
///
/// It answers exactly as QEMU 7.2 does (docs/QEMU-FACTS.md, "Wire protocol"; the texts were checked
/// against a real QEMU 7.2): the recorded greeting, capabilities negotiation, QEMU's errors
/// for bad input, the recorded replies with the client's own `id`, and the recorded events,
/// either from its own timeline or pushed by a shared one (`deliver`).
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

    private var framer: QMPFramer
    private var inOversize = false
    private var used: [ReplayScript.Key: Int] = [:]
    private var usedByName: [String: Int] = [:]
    private var consumed = Set<Int>()
    private var strictNext = 0
    private var firstLateness: Int64?
    private let startedAt: Int64
    private let wallOffsetMicros: Int64

    /// Bytes waiting to be written to the client (`output[outputStart...]`).
    public private(set) var output: [UInt8] = []
    private var outputStart = 0

    public init(script: ReplayScript, options: ReplayOptions, clock: ReplayClock, client: Int = 1, peer: String = "test",
                ownTimeline: Bool = true) {
        self.script = script
        self.options = options
        self.clock = clock
        framer = QMPFramer(limit: options.inputLimit)
        startedAt = clock.now()
        wallOffsetMicros = MonotonicClock.wallOffsetMicros(clock)
        report = SessionReport(client: client, peer: peer, connectedAtMicros: WallClock.nowMicros())
        report.strict = options.strict
        if ownTimeline && !options.shared {
            let evs = script.clockEvents
            scheduler = Scheduler(
                times: evs.map { script.events[$0].time },
                barriers: evs.map { k in
                    script.events[k].barrier.map { Scheduler.Barrier(command: $0, replyTime: script.commands[$0].replyTime ?? 0) }
                },
                spanStart: script.spanStart, spanEnd: script.spanEnd, speed: options.speed, maxGap: options.maxGap,
                loop: options.loop, clock: clock)
        } else {
            scheduler = nil
        }
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
        var rest = chunk[...]
        if inOversize {
            // Inside an over-long message that was already answered: skip to its end without
            // the framer's byte-by-byte scan (a 100 MB line must not cost the others much).
            guard let nl = rest.firstIndex(of: 0x0A) else { return }
            rest = rest[nl...]
        }
        for f in framer.push(rest) { handle(f) }
        // QEMU's streaming parser acts on a message as soon as its closing brace arrives;
        // clients such as qemu.qmp may send the newline later or never.
        for f in framer.drain() { handle(f) }
    }

    /// The client closed its side: an unfinished message is answered like QEMU would not (it
    /// is dropped), so nothing is queued; the report is finished.
    public func finish(reason: String) {
        _ = framer.finish()
        report.closeReason = reason
        report.durationNanos = clock.now() - startedAt
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

    private func handle(_ f: Frame) {
        switch f.kind {
        case .json:
            inOversize = false
            handleJSON(f)
        case .garbage:
            inOversize = false
            for desc in ServerSession.lexErrors(f.bytes[f.payload]) { sendError(nil, "GenericError", desc) }
        case .truncated:
            inOversize = false
            sendError(nil, "GenericError", "JSON parse error, expecting value")
        case .oversize:
            // One answer per over-long message, however many pieces it arrives in.
            if !inOversize {
                sendError(nil, "GenericError", "JSON parse error, message longer than \(options.inputLimit) bytes")
            }
            inOversize = f.bytes.last != 0x0A
        }
    }

    /// QEMU's lexer answers each bad token on its own: `garbage here` gets two errors.
    static func lexErrors(_ bytes: ArraySlice<UInt8>) -> [String] {
        var out: [String] = []
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let c = bytes[i]
            if isJSONSpace(c) { i += 1; continue }
            if (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) {
                var j = i
                while j < bytes.endIndex, (bytes[j] >= 0x41 && bytes[j] <= 0x5A) || (bytes[j] >= 0x61 && bytes[j] <= 0x7A) { j += 1 }
                let word = String(decoding: bytes[i..<j], as: UTF8.self)
                out.append(["true", "false", "null"].contains(word) ? "QMP input must be a JSON object" : "JSON parse error, invalid keyword '\(word)'")
                i = j
            } else if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") || c == UInt8(ascii: ":") || c == UInt8(ascii: ",") {
                out.append("JSON parse error, expecting value")
                i += 1
            } else if c >= 0x80 || c < 0x20 {
                out.append("JSON parse error, stray '\u{FFFD}'")
                i += 1
            } else {
                // Scalars at top level (numbers, strings) are not messages; QEMU waits on them silently.
                if c == UInt8(ascii: "\"") {
                    var j = i + 1
                    while j < bytes.endIndex, bytes[j] != UInt8(ascii: "\"") { j += bytes[j] == 0x5C ? 2 : 1 }
                    i = min(j + 1, bytes.endIndex)
                } else if (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") {
                    i += 1
                    while i < bytes.endIndex, !isJSONSpace(bytes[i]) { i += 1 }
                } else {
                    out.append("JSON parse error, stray '\(String(UnicodeScalar(c)))'")
                    i += 1
                }
            }
        }
        return out
    }

    private func handleJSON(_ f: Frame) {
        let value: JSONValue
        do {
            value = try f.bytes.withUnsafeBufferPointer { buf throws(JSONParseError) in
                try JSONParser.parse(UnsafeBufferPointer(rebasing: buf[f.payload]))
            }
        } catch {
            sendError(nil, "GenericError", "JSON parse error, \(ServerSession.parseErrorText(error))")
            return
        }
        if ServerSession.hasDuplicateKey(value) {
            sendError(nil, "GenericError", "JSON parse error, duplicate key")
            return
        }
        guard case .object(let o) = value else {
            sendError(nil, "GenericError", "QMP input must be a JSON object")
            return
        }
        let id = o["id"]
        // qapi/qmp-dispatch.c, qmp_dispatch_check_obj: members in order, with QEMU's wording.
        var name: String?
        var oob = false
        for m in o.members {
            switch m.key {
            case "execute", "exec-oob":
                // exec-oob is a member like any unknown one until oob is enabled.
                if m.key == "exec-oob" && !oobEnabled {
                    sendError(id, "GenericError", "QMP input member 'exec-oob' is unexpected"); return
                }
                guard let s = m.value.stringValue else {
                    sendError(id, "GenericError", "QMP input member '\(m.key)' must be a string"); return
                }
                if name != nil {
                    sendError(id, "GenericError", "QMP input member '\(m.key)' clashes with '\(oob ? "exec-oob" : "execute")'"); return
                }
                name = s
                oob = m.key == "exec-oob"
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
        if cmd == "qmp_capabilities" {
            negotiate(args, id: id)
            return
        }
        guard negotiated else {
            // monitor/qmp.c: before negotiation only qmp_capabilities exists, and the
            // CommandNotFound is reworded.
            sendError(id, "CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'")
            return
        }
        answer(cmd, args, id: id)
    }

    static func parseErrorText(_ e: JSONParseError) -> String {
        let r = e.reason.lowercased()
        if r.contains("nesting") { return "nesting too deep" }
        return "expecting value"
    }

    static func hasDuplicateKey(_ v: JSONValue) -> Bool {
        switch v {
        case .object(let o):
            if o.count > 1 {
                var seen = Set<String>()
                for m in o.members { if !seen.insert(m.key).inserted { return true } }
            }
            return o.members.contains { hasDuplicateKey($0.value) }
        case .array(let a): return a.contains { hasDuplicateKey($0) }
        default: return false
        }
    }

    private func negotiate(_ args: JSONObject?, id: JSONValue?) {
        if negotiated {
            sendError(id, "CommandNotFound", "Capabilities negotiation is already complete, command ignored")
            return
        }
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

    private func answer(_ name: String, _ args: JSONObject?, id: JSONValue?) {
        let cands = script.candidates(name: name, arguments: args, mode: options.match)
        guard !cands.isEmpty else {
            report.commandsUnmatched += 1
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
            return
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
        if consumed.insert(k).inserted {
            // docs/QEMU-FACTS.md, "Ordering without oob": events raised while a command runs are
            // written before its reply.
            let now = clock.now()
            for e in cmd.gatedEvents {
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
        scheduler?.answered(command: k)
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
        }
        report.divergences.append(d)
        if options.failFast { failedFast = true }
    }

    // MARK: events

    /// Releases the events of this session's own timeline that are due now. At max speed only
    /// while less than `watermark` bytes are queued, so a fast replay follows the reader.
    public func releaseDue(watermark: Int = 256 << 10) {
        guard let s = scheduler, negotiated else { return }
        while s.speed != nil || pendingOutputCount < watermark, let r = s.next() {
            let e = script.clockEvents[r.item]
            appendEvent(e, due: r.due)
            noteRelease(r)
        }
    }

    /// When this session's timeline next wants to run; nil when it waits for nothing timed.
    public var nextDeadline: Int64? {
        guard negotiated else { return nil }
        return scheduler?.nextDeadline()
    }

    /// A shared timeline's release, already formatted (`bytes`); ignored before negotiation
    /// (docs/QEMU-FACTS.md: events are not queued for an unnegotiated client).
    public func deliver(_ bytes: [UInt8], release r: Scheduler.Release) {
        guard negotiated else { return }
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

    private func appendEvent(_ k: Int, due: Int64) {
        if options.retime {
            output.append(contentsOf: ServerSession.retimed(script, k, due: due, speed: options.speed, wallOffsetMicros: wallOffsetMicros))
        } else {
            output.append(contentsOf: script.events[k].bytes)
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
        return JSONValue.object(o).serializedBytes(.qemu) + [0x0D, 0x0A]
    }

    // MARK: replies

    /// `{"return": VALUE, "id": ID}`: QEMU writes the id last in replies.
    private func sendReturn(_ value: JSONValue, id: JSONValue?) {
        var o = JSONObject()
        o["return"] = value
        if let id { o["id"] = id }
        emit(o)
    }

    /// `{"id": ID, "error": {...}}`: QEMU 7.2 writes the id first in errors.
    private func sendError(_ id: JSONValue?, _ cls: String, _ desc: String, protocolError: Bool = true) {
        var o = JSONObject()
        if let id { o["id"] = id }
        o["error"] = .object(JSONObject(["class": .string(cls), "desc": .string(desc)]))
        if protocolError { report.protocolErrors += 1 }
        emit(o)
    }

    /// The recorded reply with the client's id in place of the recorded one (or none).
    private func sendRecordedReply(_ reply: JSONObject, id: JSONValue?) {
        var o = reply
        if o["id"] != nil {
            if let id { o["id"] = id } else { o["id"] = nil }
        } else if let id {
            if o["error"] != nil { o.members.insert(JSONObject.Member(key: "id", value: id), at: 0) } else { o["id"] = id }
        }
        emit(o)
    }

    private func emit(_ o: JSONObject) {
        JSONWriter.write(.object(o), layout: .qemu, level: 0, into: &output)
        output.append(contentsOf: [0x0D, 0x0A])
    }
}
