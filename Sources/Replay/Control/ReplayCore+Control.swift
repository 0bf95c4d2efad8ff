import NIOCore

/// The control API's moves on the server's loop (docs/REPLAY.md, "Control API"): step,
/// burst, holds and the detailed status. Pause, resume, speed and seek are the core's own
/// controls (ReplayCore.swift); all of them re-anchor the timelines (`Scheduler`).
extension ReplayCore {
    /// Pauses (when playing) and releases the next `n` events of every timeline now; returns
    /// how many went (on the timeline that moved most: each client has its own).
    func step(_ n: Int) -> Int {
        if !paused { pause() }
        return force(n)
    }

    /// Releases the next `n` events of every timeline at once, in one write per client;
    /// a playing replay goes on from the last of them at the recorded distances.
    func burst(_ n: Int) -> Int { force(n) }

    private func force(_ n: Int) -> Int {
        var before: [ObjectIdentifier: Int] = [:]
        var timelines: [Scheduler] = []
        eachTimeline { s in
            guard s.started else { return }
            before[ObjectIdentifier(s)] = s.released
            timelines.append(s)
            s.force(n)
        }
        pumpAll()
        return timelines.map { $0.released - before[ObjectIdentifier($0)]! }.max() ?? 0
    }

    /// A new hold, applied to every timeline or session, current and future.
    func addHold(_ target: ControlHold.Target) throws(ControlError) -> ControlHold {
        var h = ControlHold(id: nextHold, target: target)
        if case .event(let record) = target {
            guard let k = script.events.firstIndex(where: { $0.record == record }) else {
                throw ControlError(.notFound, "record #\(record) is not an event of the replayed connection \(script.connection)")
            }
            guard let item = script.clockItem(ofEvent: k) else {
                throw ControlError(.notFound, "event #\(record) (\(script.events[k].name)) is outside the replayed span, or comes only with its command's reply")
            }
            h.item = item
        }
        nextHold += 1
        holds.append(h)
        if let s = shared { applyHolds(to: s, [h]) }
        for c in clients { applyHolds(to: c.session, [h]) }
        return h
    }

    func applyHolds(to session: ServerSession, _ which: [ControlHold]? = nil) {
        for h in which ?? holds {
            switch h.target {
            case .event: if let s = session.scheduler, let i = h.item { s.stopBefore(i) }
            case .reply(let name): session.holdReply(id: h.id, command: name)
            }
        }
    }

    func applyHolds(to s: Scheduler, _ which: [ControlHold]? = nil) {
        for h in which ?? holds { if let i = h.item { s.stopBefore(i) } }
    }

    /// Ends hold `id` (nil: every hold): a stopped timeline goes on, kept requests are
    /// answered. Returns the ids released.
    func release(_ id: Int?) throws(ControlError) -> [Int] {
        let gone = holds.filter { id == nil || $0.id == id }
        if let id, gone.isEmpty { throw ControlError(.notFound, "no hold \(id)\(holds.isEmpty ? " (there are none)" : "; holds: " + holds.map { String($0.id) }.joined(separator: ", "))") }
        holds.removeAll { id == nil || $0.id == id }
        for h in gone {
            switch h.target {
            case .event:
                guard let i = h.item else { continue }
                eachTimeline { $0.releaseStop(i) }
            case .reply:
                for c in clients {
                    c.session.releaseReplies(h.id)
                }
            }
        }
        pumpAll()
        return gone.map(\.id)
    }

    func controlStatus() -> ControlStatus {
        let cs = clients.map { c -> ControlStatus.Client in
            let s = c.session.scheduler
            var next: Int?
            if let s, s.position < s.count { next = script.events[script.clockEvents[s.position]].record }
            var heldBy = c.session.replyHolds.active?.id
            if heldBy == nil, let at = (s ?? shared)?.heldAt { heldBy = holds.first { $0.item == at }?.id }
            return ControlStatus.Client(
                number: c.number, peer: c.peer, negotiated: c.session.negotiated, nextRecord: next,
                eventsSent: c.session.report.eventsSent, commandsReceived: c.session.report.commandsReceived,
                pendingBytes: c.session.pendingOutputCount, heldBy: heldBy)
        }
        let hs = holds.map { h in
            ControlStatus.Hold(id: h.id, target: h.target, holding: cs.contains { $0.heldBy == h.id })
        }
        return ControlStatus(replay: status(), clients: cs, holds: hs)
    }

    /// Calls `done(true)` once `condition` holds (at once if it does), or `done(false)` after
    /// `timeout` ns.
    func wait(until condition: ControlRequest.WaitCondition, timeout: Int64, _ done: @escaping (Bool) -> Void) {
        if holds(condition) { return done(true) }
        let id = nextWaiter
        nextWaiter += 1
        let task = loop.assumeIsolated().scheduleTask(in: .nanoseconds(timeout)) {
            guard let k = self.waiters.firstIndex(where: { $0.id == id }) else { return }
            let w = self.waiters.remove(at: k)
            w.done(false)
        }
        waiters.append(ControlWaiter(id: id, condition: condition, done: done, timeout: task))
    }

    private func holds(_ c: ControlRequest.WaitCondition) -> Bool {
        switch c {
        case .held: return controlStatus().held
        case .negotiated: return clients.contains { $0.session.negotiated }
        }
    }

    /// After anything that can make a condition true (input, a turn): answers the waiters
    /// whose condition holds. Nothing to do, and nothing computed, when none waits.
    func checkWaiters() {
        guard !waiters.isEmpty else { return }
        let ready = waiters.filter { holds($0.condition) }
        guard !ready.isEmpty else { return }
        waiters.removeAll { w in ready.contains { $0.id == w.id } }
        for w in ready {
            w.timeout.cancel()
            w.done(true)
        }
    }
}

/// A control API `wait` not yet answered.
struct ControlWaiter {
    var id: Int
    var condition: ControlRequest.WaitCondition
    var done: (Bool) -> Void
    var timeout: Scheduled<Void>
}
