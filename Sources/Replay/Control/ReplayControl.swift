import QMP
import Recording
import Transport

/// The one implementation of the replay's controls: `serve --control` (a socket or stdin,
/// one JSON line per request and per reply) and the shell's `replay` commands both go
/// through `perform`. It moves the server's timelines with `ReplayServer`'s controls (which
/// run on the server's loop and re-anchor the schedulers) and answers with the status
/// after the move.
///
/// Example: `try control.perform(.step(1))` after `{"cmd":"pause"}` releases one event to
/// every negotiated client and returns `released == 1` and the new position.
public struct ReplayControl: Sendable {
    public let server: ReplayServer
    /// What positions (`seek`) are resolved against.
    public let recording: Recording

    public init(server: ReplayServer, recording: Recording) {
        self.server = server
        self.recording = recording
    }

    /// What a request did, and the status after it.
    public struct Result: Sendable {
        public var request: ControlRequest
        public var status: ControlStatus
        /// Events released (`step`, `burst`), on the timeline that moved most.
        public var released: Int?
        /// The new hold (`hold`).
        public var hold: ControlHold?
        /// Holds ended (`release`).
        public var releasedHolds: [Int]?
        /// Where `seek` went, µs of recording time.
        public var seekMicros: Int64?
    }

    public func perform(_ r: ControlRequest) throws(ControlError) -> Result {
        guard !server.isFinished else { throw ControlError(.stopped, "the replay server has stopped") }
        var out = Result(request: r, status: server.controlStatus())
        switch r {
        case .status: break
        case .pause: server.pause()
        case .resume: server.resume()
        case .step(let n): out.released = server.step(n)
        case .burst(let n): out.released = server.burst(n)
        case .speed(let s): server.setSpeed(s)
        case .seek(let spec):
            let us = spec.resolveTime(in: recording) / 1000
            server.seek(toMicros: us)
            out.seekMicros = us
        case .hold(let target): out.hold = try server.hold(target)
        case .release(let id): out.releasedHolds = try server.release(id)
        case .stop: server.stopBySignal()
        case .wait(let c, let t):
            guard server.wait(until: c, timeout: t) else { throw ControlError(.timeout, ControlReply.timeoutMessage(c, t)) }
        }
        out.status = server.controlStatus()
        return out
    }

    /// One request line, answered through `reply` (without its newline): at once, or for
    /// `wait` when its condition holds or its time is up. On the server's loop (the control
    /// socket's handler) nothing blocks.
    public func handle(line: String, reply: @escaping @Sendable (String) -> Void) {
        guard case .success(let (.wait(c, t), tag)) = Swift.Result(catching: { try ControlRequest.parse(line: line) }) else {
            return reply(handle(line: line))
        }
        let server = self.server
        server.whenHolds(c, timeout: t) { ok in
            if ok {
                reply(ControlReply.json(Result(request: .wait(c, timeout: t), status: server.controlStatus()), tag: tag))
            } else {
                var e = ControlError(.timeout, ControlReply.timeoutMessage(c, t))
                e.tag = tag
                reply(ControlReply.json(e))
            }
        }
    }

    /// One request line in, one reply line out (without its newline). A `wait` blocks the
    /// calling thread (never call it on the server's loop: `handle(line:reply:)` does not block).
    public func handle(line: String) -> String {
        var tag: JSONValue?
        do {
            let (req, t) = try ControlRequest.parse(line: line)
            tag = t
            return ControlReply.json(try perform(req), tag: tag)
        } catch {
            var e = error
            if e.tag == nil { e.tag = tag }
            return ControlReply.json(e)
        }
    }
}

/// The JSON replies of the control API (docs/REPLAY.md, "Control API"): `{"ok": true, ...}`
/// with the status, or `{"ok": false, "error": CODE, "message": TEXT}`; the request's `id`
/// comes back as `id`.
public enum ControlReply {
    public static func json(_ r: ReplayControl.Result, tag: JSONValue?) -> String {
        var o = JSONObject()
        o["ok"] = .bool(true)
        if let tag { o["id"] = tag }
        if let n = r.released { o["released"] = .int(n) }
        if let h = r.hold { o["hold"] = .int(h.id) }
        if let hs = r.releasedHolds { o["released_holds"] = .array(hs.map { .int($0) }) }
        if let us = r.seekMicros { o["seek_us"] = .int(us) }
        for m in status(r.status).members { o[m.key] = m.value }
        return JSONValue.object(o).serialized(.compact)
    }

    static func timeoutMessage(_ c: ControlRequest.WaitCondition, _ ns: Int64) -> String {
        "not \(c.rawValue) within \(DurationFormat.short(ns))"
    }

    public static func json(_ e: ControlError) -> String {
        var o = JSONObject()
        o["ok"] = .bool(false)
        if let t = e.tag { o["id"] = t }
        o["error"] = .string(e.code.rawValue)
        o["message"] = .string(e.message)
        return JSONValue.object(o).serialized(.compact)
    }

    static func status(_ s: ControlStatus) -> JSONObject {
        let r = s.replay
        var o = JSONObject()
        o["running"] = .bool(r.running)
        o["paused"] = .bool(r.paused)
        o["held"] = .bool(s.held)
        o["speed"] = r.speed.map { .number(JSONNumber(text: DurationFormat.fixed($0, 3))) } ?? .string("max")
        o["position_us"] = .int(r.positionMicros)
        o["next_record"] = r.nextRecord.map { .int($0) } ?? .null
        o["events_sent"] = .int(r.eventsSent)
        o["sessions_finished"] = .int(r.sessionsFinished)
        o["clients"] = .array(s.clients.map { c in
            var co = JSONObject()
            co["client"] = .int(c.number)
            co["peer"] = .string(c.peer)
            co["negotiated"] = .bool(c.negotiated)
            co["next_record"] = c.nextRecord.map { .int($0) } ?? .null
            co["events_sent"] = .int(c.eventsSent)
            co["commands_received"] = .int(c.commandsReceived)
            co["pending_bytes"] = .int(c.pendingBytes)
            co["held_by"] = c.heldBy.map { .int($0) } ?? .null
            return .object(co)
        })
        o["holds"] = .array(s.holds.map { h in
            var ho = JSONObject()
            ho["hold"] = .int(h.id)
            switch h.target {
            case .event(let rec): ho["before_event"] = .int(rec)
            case .reply(let c): ho["before_reply"] = .string(c)
            }
            ho["holding"] = .bool(h.holding)
            return .object(ho)
        })
        return o
    }
}

extension ReplayServer {
    /// Pauses and releases the next `n` events of every timeline; returns how many went.
    public func step(_ n: Int) -> Int { onLoop(0) { $0.step(n) } }

    /// Releases the next `n` events of every timeline at once; returns how many went.
    public func burst(_ n: Int) -> Int { onLoop(0) { $0.burst(n) } }

    /// Adds a hold; throws `.notFound` for a record that is not an event on the clock.
    public func hold(_ target: ControlHold.Target) throws(ControlError) -> ControlHold {
        let r: Swift.Result<ControlHold, ControlError> = onLoop(.failure(ControlError(.stopped, "the replay server has stopped"))) { core in
            do throws(ControlError) { return .success(try core.addHold(target)) } catch { return .failure(error) }
        }
        return try r.get()
    }

    /// Ends hold `id` (nil: all); returns the ids ended.
    public func release(_ id: Int?) throws(ControlError) -> [Int] {
        let r: Swift.Result<[Int], ControlError> = onLoop(.failure(ControlError(.stopped, "the replay server has stopped"))) { core in
            do throws(ControlError) { return .success(try core.release(id)) } catch { return .failure(error) }
        }
        return try r.get()
    }

    /// Blocks until `condition` holds (true) or `timeout` ns passed (false). Not on the loop.
    public func wait(until condition: ControlRequest.WaitCondition, timeout: Int64) -> Bool {
        guard !loop.inEventLoop else { return false }
        let p = loop.makePromise(of: Bool.self)
        whenHolds(condition, timeout: timeout) { p.succeed($0) }
        return (try? p.futureResult.wait()) ?? false
    }

    /// Calls `done` on the loop once `condition` holds (true) or after `timeout` ns (false).
    func whenHolds(_ condition: ControlRequest.WaitCondition, timeout: Int64, _ done: @escaping @Sendable (Bool) -> Void) {
        let ok: Bool = onLoop(false) { core in
            core.wait(until: condition, timeout: timeout, done)
            return true
        }
        if !ok { done(false) }
    }

    /// The status with every client and hold.
    public func controlStatus() -> ControlStatus {
        onLoop(ControlStatus(replay: status(), clients: [], holds: [])) { $0.controlStatus() }
    }
}
