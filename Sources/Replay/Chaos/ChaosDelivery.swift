/// One client's progress through a chaos schedule: which events are still to go and when.
/// The session asks for the events of a slot as the conversation reaches it (before and
/// after each reply); a client that stops sending requests while events remain gets them a
/// slot at a time after `idle` (it may be waiting for one).
///
/// Example: with slots `[a0, b2]` the first event goes right after the `qmp_capabilities`
/// reply, the second just before the reply to the client's request 2, or `idle` after the
/// client's last input if it sends no request 2.
struct ChaosDelivery {
    let plan: ChaosPlan
    let schedule: ChaosSchedule
    let idle: Int64
    /// Index of the next event (in `plan.events` order) not sent yet.
    private(set) var next = 0
    /// The client's requests answered since negotiation began (the next request's number).
    private(set) var requests = 0
    var lastInput: Int64
    /// Events sent outside the schedule (the SHUTDOWN written after `quit`), skipped by it.
    private var sentElsewhere = Set<Int>()

    init(plan: ChaosPlan, schedule: ChaosSchedule, idle: Int64, now: Int64) {
        self.plan = plan
        self.schedule = schedule
        self.idle = idle
        lastInput = now
    }

    var remaining: Int { plan.events.count - next }

    /// The events (indices into `script.events`) at or before `slot` not sent yet; marks them sent.
    mutating func take(upTo slot: ChaosSchedule.Slot) -> [Int] {
        var out: [Int] = []
        while next < schedule.slots.count, schedule.slots[next] <= slot {
            if !sentElsewhere.contains(plan.events[next]) { out.append(plan.events[next]) }
            next += 1
        }
        return out
    }

    /// The events of the next slot that has any (the client was idle).
    mutating func takeNextSlot() -> [Int] {
        guard next < schedule.slots.count else { return [] }
        return take(upTo: schedule.slots[next])
    }

    /// The slot of the request being answered now, and counts it.
    mutating func beginRequest() -> Int {
        defer { requests += 1 }
        return requests
    }

    /// True when event `k` (an index into `script.events`) has gone out, by the schedule or not.
    func sent(_ k: Int) -> Bool {
        if sentElsewhere.contains(k) { return true }
        guard let i = plan.events.firstIndex(of: k) else { return false }
        return i < next
    }

    /// Event `k` went out outside the schedule: the schedule will not send it again.
    mutating func markSent(_ k: Int) { sentElsewhere.insert(k) }

    func idleDeadline() -> Int64? { remaining > 0 ? lastInput + idle : nil }
}
