import QMP
import Recording
import Transport

/// Sends a recording's client commands, in order, to a freshly started real QEMU and
/// compares what it answers with what was recorded (`qmpreplay diff-qemu`,
/// docs/DIFF-QEMU.md): the greeting, every reply (JSON compared as values: member order and
/// `1` vs `1.0` do not matter) and the events, paired by name and occurrence (the n-th STOP
/// recorded with the n-th STOP seen). Each difference gets a kind from `DiffRules`.
///
/// Pacing: before each command it waits until the real QEMU has sent as many events of each
/// name as the recorded client had seen by then (a client that waited for BLOCK_JOB_READY
/// before `block-job-complete` gets the same order), at most twice the recorded pause (at
/// least `minimumWait`), and never more than `maxWait`; an event name waited for in vain is
/// not waited for again.
///
/// Example: `let r = try QEMUDiff.run(script: s, argv: ["qemu-system-x86_64", "-machine", "q35"])`;
/// `r.unexplained == 0` when every difference has an explanation.
public enum QEMUDiff {
    public struct Options: Sendable {
        /// Longest wait for events before a command, and for the last events after the end.
        public var maxWait: Int64 = 5_000_000_000
        /// Longest wait for a reply that the recording has.
        public var replyTimeout: Int64 = 10_000_000_000
        /// Longest wait for QEMU's monitor to come up.
        public var startTimeout: Int64 = 30_000_000_000
        public init() {}
    }

    /// The shortest wait for events before a command: a real QEMU may raise an event a little
    /// later than the recorded one did, even when the recorded client sent its next command
    /// at once.
    static let minimumWait: Int64 = 250_000_000

    /// An event the real QEMU sent, and the command it came during (before that command's reply).
    struct LiveEvent {
        var json: JSONObject
        var during: Int?
    }

    public static func run(script: ReplayScript, argv: [String], options: Options = Options()) throws(LiveQEMUError) -> QEMUDiffReport {
        let q = try LiveQEMU(argv: argv, startTimeout: options.startTimeout)
        defer { q.stop() }
        let clock = MonotonicClock()
        var rep = QEMUDiffReport(file: script.path, connection: script.connection, argv: q.argv)
        let recordedGreeting = (try? JSONParser.parse(script.greetingBytes))?.objectValue ?? JSONObject()
        rep.recordedVersion = version(recordedGreeting)
        rep.liveVersion = version(q.greeting)
        var pending: [(QEMUDiffReport.Item.What, Int?, String, JSONObject, JSONObject, String?)] = []
        if !script.greetingSynthesized { pending.append((.greeting, nil, "greeting", recordedGreeting, q.greeting, nil)) }
        var live: [LiveEvent] = []
        var closed: String?
        var previous = script.commands.first?.time ?? script.spanStart
        // An event name waited for in vain is not waited for again: the real QEMU does not
        // raise it here (the guest's, or a timer's), and each later one would cost a wait.
        var givenUp = Set<String>()

        /// Reads until `deadline` or until `done` says so; events are kept.
        func read(until deadline: Int64, during: Int?, _ done: (JSONObject) -> Bool = { _ in false }) -> JSONObject? {
            while closed == nil {
                let left = deadline - clock.now()
                if left <= 0 { return nil }
                let m: JSONObject?
                do { m = try q.next(within: left) } catch { closed = error.description; return nil }
                guard let msg = m else { return nil }
                if msg["event"] != nil { live.append(LiveEvent(json: msg, during: during)) } else if done(msg) { return msg }
            }
            return nil
        }

        // A recording that starts after negotiation (a libvirt log import) still needs it.
        if script.commands.first?.isNegotiation != true {
            do { try q.send(#"{"execute":"qmp_capabilities"}"#) } catch { closed = error.description }
            _ = read(until: clock.now() + options.replyTimeout, during: nil) { $0["return"] != nil || $0["error"] != nil }
            rep.notes.append("the recording has no qmp_capabilities before its first command: sent one first")
        }
        for (k, c) in script.commands.enumerated() {
            if let why = closed {
                rep.stoppedEarly = "\(why) before \(c.name) (\(script.path):\(c.line)); \(script.commands.count - k) command(s) not sent"
                break
            }
            let seen = counts(script.events.filter { $0.record < c.record }.map(\.name))
            let pause = max(0, c.time - previous)
            let deadline = clock.now() + min(max(2 * pause, QEMUDiff.minimumWait), options.maxWait)
            while !covers(live, seen, givenUp), clock.now() < deadline, closed == nil {
                _ = read(until: deadline, during: nil) { _ in false }
            }
            giveUp(live, seen, &givenUp)
            do { try q.send(c.json.serialized(.compact)) } catch {
                closed = error.description
                continue
            }
            rep.commandsSent += 1
            let timeout = c.reply == nil ? min(options.replyTimeout, 1_000_000_000) : options.replyTimeout
            let reply = read(until: clock.now() + timeout, during: k) { $0["return"] != nil || $0["error"] != nil }
            previous = c.replyTime ?? c.time
            guard let recorded = c.reply else {
                rep.notes.append("\(script.path):\(c.line) \(c.name): not compared, the recording has no reply (it ended before QEMU answered)")
                if reply == nil && closed == nil {
                    rep.stoppedEarly = "no reply to \(c.name) (\(script.path):\(c.line)) within 1s, as in the recording"
                    break
                }
                continue
            }
            guard let r = reply else {
                let why = closed.map { "QEMU closed the connection: \($0)" } ?? "no reply within \(DurationFormat.short(timeout))"
                rep.items.append(.init(what: .reply, line: c.line, name: c.name, differences: [
                    .init(path: "(reply)", expected: .object(recorded), actual: nil, kind: .unexplained, reason: why)]))
                continue
            }
            rep.repliesCompared += 1
            pending.append((.reply, c.line, c.name, recorded, r, c.name))
        }
        // The events recorded after the last command.
        if closed == nil, rep.stoppedEarly == nil {
            let all = counts(script.events.map(\.name))
            let tail = max(0, (script.events.last?.time ?? previous) - previous)
            let deadline = clock.now() + min(max(2 * tail, QEMUDiff.minimumWait), options.maxWait)
            while !covers(live, all, givenUp), clock.now() < deadline, closed == nil { _ = read(until: deadline, during: nil) }
        }
        let ev = evidence(script, live)
        for p in pending { compare(&rep, p.0, line: p.1, name: p.2, p.3, p.4, command: p.5, event: nil, evidence: ev) }
        pairEvents(&rep, script: script, live: live, evidence: ev)
        rep.items.sort { ($0.line ?? .max) < ($1.line ?? .max) }
        return rep
    }

    private static func version(_ greeting: JSONObject) -> String? {
        guard let v = JSONValue.object(greeting).value(atPath: "QMP.version.qemu")?.objectValue,
              let a = v["major"]?.int64Value, let b = v["minor"]?.int64Value, let c = v["micro"]?.int64Value else { return nil }
        return "\(a).\(b).\(c)"
    }

    private static func counts(_ names: [String]) -> [String: Int] {
        var out: [String: Int] = [:]
        for n in names { out[n, default: 0] += 1 }
        return out
    }

    /// True when the real QEMU has sent `want` of each name not given up on.
    private static func covers(_ live: [LiveEvent], _ want: [String: Int], _ givenUp: Set<String>) -> Bool {
        let have = counts(live.compactMap { $0.json["event"]?.stringValue })
        return want.allSatisfy { givenUp.contains($0.key) || have[$0.key, default: 0] >= $0.value }
    }

    /// After a wait: the names still short are given up on.
    private static func giveUp(_ live: [LiveEvent], _ want: [String: Int], _ givenUp: inout Set<String>) {
        let have = counts(live.compactMap { $0.json["event"]?.stringValue })
        for (name, n) in want where have[name, default: 0] < n { givenUp.insert(name) }
    }

    /// The n-th recorded event of a name with the n-th live one; the rest are missing or extra.
    /// What the real QEMU showed less of (`DiffRules.Evidence`).
    static func evidence(_ script: ReplayScript, _ live: [LiveEvent]) -> DiffRules.Evidence {
        var e = DiffRules.Evidence()
        let have = counts(live.compactMap { $0.json["event"]?.stringValue })
        for (name, n) in counts(script.events.map(\.name)) where have[name, default: 0] < n { e.fewer[name] = n - have[name, default: 0] }
        let recordedStops = script.events.filter { $0.name == "STOP" && $0.gate == nil }.count
        let liveStops = live.filter { $0.json["event"]?.stringValue == "STOP" && $0.during == nil }.count
        e.externalStopMissing = recordedStops > liveStops
        return e
    }

    private static func pairEvents(_ rep: inout QEMUDiffReport, script: ReplayScript, live: [LiveEvent], evidence: DiffRules.Evidence) {
        rep.eventsRecorded = script.events.count
        rep.eventsLive = live.count
        var used = Set<Int>()
        for e in script.events {
            let recorded = (try? JSONParser.parse(e.bytes))?.objectValue ?? JSONObject()
            if let j = live.indices.first(where: { !used.contains($0) && live[$0].json["event"]?.stringValue == e.name }) {
                used.insert(j)
                compare(&rep, .event, line: e.line, name: e.name, recorded, live[j].json, command: nil, event: e.name, evidence: evidence)
                continue
            }
            let d: QEMUDiffReport.Difference
            let during = e.gate.map { script.commands[$0].name }
            if DiffRules.stateSetOutside.contains(where: { $0.event == e.name && $0.kind == .guest }) {
                d = .init(path: "(event)", expected: .object(recorded), actual: nil, kind: .guest,
                          reason: "raised by the guest's driver; this QEMU's guest did less of that")
            } else if during == "cont" && evidence.externalStopMissing {
                d = .init(path: "(event)", expected: .object(recorded), actual: nil, kind: .guest,
                          reason: "recorded while cont resumed a VM its guest or a device had stopped; this VM was not stopped")
            } else if let g = e.gate {
                let c = script.commands[g]
                d = .init(path: "(event)", expected: .object(recorded), actual: nil, kind: .unexplained,
                          reason: "recorded while \(c.name) (\(script.path):\(c.line)) ran; the real QEMU did not raise it")
            } else {
                d = .init(path: "(event)", expected: .object(recorded), actual: nil, kind: .external,
                          reason: "raised while no command of this connection ran (by the guest, firmware, a timer or another client)")
            }
            rep.items.append(.init(what: .event, line: e.line, name: e.name, differences: [d]))
        }
        for (j, l) in live.enumerated() where !used.contains(j) {
            let name = l.json["event"]?.stringValue ?? "?"
            let d: QEMUDiffReport.Difference
            if let k = l.during, script.commands[k].reply == nil {
                let c = script.commands[k]
                d = .init(path: "(event)", expected: nil, actual: .object(l.json), kind: .recordingEnded,
                          reason: "raised while \(c.name) (\(script.path):\(c.line)) ran, which the recording has no reply for: it ended there")
            } else if let k = l.during {
                let c = script.commands[k]
                d = .init(path: "(event)", expected: nil, actual: .object(l.json), kind: .unexplained,
                          reason: "raised by the real QEMU while \(c.name) (\(script.path):\(c.line)) ran; not in the recording")
            } else {
                d = .init(path: "(event)", expected: nil, actual: .object(l.json), kind: .external,
                          reason: "raised by the real QEMU while no command ran (the guest, firmware or a timer)")
            }
            rep.items.append(.init(what: .event, line: nil, name: name, differences: [d]))
        }
    }

    private static func compare(_ rep: inout QEMUDiffReport, _ what: QEMUDiffReport.Item.What, line: Int?, name: String,
                                _ recorded: JSONObject, _ live: JSONObject, command: String?, event: String?, evidence: DiffRules.Evidence) {
        let diffs = collapsed(JSONDiff.diff(expected: .object(recorded), actual: .object(live)), .object(recorded), .object(live)).map { d in
            let (kind, why) = DiffRules.explain(command: command, event: event, path: d.path, expected: d.expected, actual: d.actual, evidence: evidence)
            return QEMUDiffReport.Difference(path: d.path, expected: d.expected, actual: d.actual, kind: kind, reason: why)
        }
        if !diffs.isEmpty { rep.items.append(.init(what: what, line: line, name: name, differences: diffs)) }
    }

    /// More than `arrayLimit` differing elements of one array are one difference: the array.
    static let arrayLimit = 4

    static func collapsed(_ diffs: [JSONDiff.Difference], _ recorded: JSONValue, _ live: JSONValue) -> [JSONDiff.Difference] {
        // Element-level differences only (`tags[7]`), not members inside elements (`return[2].io-status`).
        func arrayPath(_ p: String) -> String? {
            guard p.hasSuffix("]") else { return nil }
            return p.range(of: "[", options: .backwards).map { String(p[..<$0.lowerBound]) }
        }
        var perArray: [String: Int] = [:]
        for d in diffs { if let a = arrayPath(d.path) { perArray[a, default: 0] += 1 } }
        var out: [JSONDiff.Difference] = []
        var done = Set<String>()
        for d in diffs {
            guard let a = arrayPath(d.path), perArray[a, default: 0] > arrayLimit else { out.append(d); continue }
            guard done.insert(a).inserted else { continue }
            out.append(JSONDiff.Difference(path: a, expected: value(recorded, at: a), actual: value(live, at: a)))
        }
        return out
    }

    /// The value at a path as `JSONDiff` writes them (`return[0].vlan-table`).
    static func value(_ v: JSONValue, at path: String) -> JSONValue? {
        var cur: JSONValue? = v
        for part in path.split(separator: ".") {
            var name = Substring(part)
            var indices: [Int] = []
            while let open = name.lastIndex(of: "["), name.last == "]" {
                indices.insert(Int(name[name.index(after: open)..<name.index(before: name.endIndex)]) ?? 0, at: 0)
                name = name[..<open]
            }
            if !name.isEmpty { cur = cur?[String(name)] }
            for i in indices { cur = cur?.arrayValue.flatMap { i < $0.count ? $0[i] : nil } }
        }
        return cur
    }
}
