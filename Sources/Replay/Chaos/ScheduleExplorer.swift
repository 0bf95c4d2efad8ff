/// The systematic side of chaos testing: every event moved to every legal slot of a small
/// recording (one at a time, events keeping their recorded order), the schedules with the
/// fewest changes first; and the shrinking of a failing schedule to the smallest one that
/// still fails. Pure: the caller runs the client (`fails`).
///
/// Example: for 3 events and 4 requests (8 slots) `candidates()` gives at most 3 x 7
/// schedules; `shrink(s, fails:)` of a seed's schedule with 3 moved events and 4 cuts that
/// fails only because of one event returns the schedule with just that event moved.
public struct ScheduleExplorer: Sendable {
    public let plan: ChaosPlan

    public init(plan: ChaosPlan) { self.plan = plan }

    /// How far `s` is from the recording's order: events away from their natural slot, plus cuts.
    public func changes(_ s: ChaosSchedule) -> Int {
        zip(s.slots, plan.natural).filter { $0 != $1 }.count + s.cuts.count
    }

    /// Every schedule that moves one event to another slot, pushing its neighbours along where
    /// the order demands it; fewest changes first, then by event and slot.
    /// `firstSlot` spares the points before it (`explore --spare-negotiation` starts at `a0`).
    public func candidates(firstSlot: ChaosSchedule.Slot = .init(rank: 0)) -> [ChaosSchedule] {
        var seen = Set<[ChaosSchedule.Slot]>()
        var out: [ChaosSchedule] = []
        let natural = plan.natural.map(\.rank)
        for e in natural.indices {
            for rank in firstSlot.rank...max(firstSlot.rank, plan.lastSlot.rank) where rank != natural[e] {
                var ranks = natural
                ranks[e] = rank
                for j in 0..<e { ranks[j] = min(ranks[j], rank) }
                for j in (e + 1)..<ranks.count { ranks[j] = max(ranks[j], rank) }
                let slots = ranks.map { ChaosSchedule.Slot(rank: $0) }
                if seen.insert(slots).inserted { out.append(ChaosSchedule(slots: slots)) }
            }
        }
        // A stable sort keeps the event-then-slot order within each number of changes.
        return out.enumerated().sorted { (changes($0.element), $0.offset) < (changes($1.element), $1.offset) }.map(\.element)
    }

    /// The smallest schedule found that still fails: cuts are dropped and events moved back
    /// toward their natural slots, one change at a time, for as long as `fails` holds.
    /// `fails(s)` must be true to begin with.
    public func shrink(_ s: ChaosSchedule, fails: (ChaosSchedule) -> Bool) -> ChaosSchedule {
        var best = s
        var progress = true
        while progress {
            progress = false
            for step in steps(from: best) where fails(step) {
                best = step
                progress = true
                break
            }
        }
        return best
    }

    /// The schedules one change smaller than `s`: one cut fewer, or one event back at (or as
    /// near as the order allows to) its natural slot.
    func steps(from s: ChaosSchedule) -> [ChaosSchedule] {
        var out: [ChaosSchedule] = []
        for i in s.cuts.indices {
            var t = s
            t.cuts.remove(at: i)
            t.seed = nil
            out.append(t)
        }
        for i in s.slots.indices where s.slots[i] != plan.natural[i] {
            let lo = i > 0 ? s.slots[i - 1].rank : 0
            let hi = i + 1 < s.slots.count ? s.slots[i + 1].rank : plan.lastSlot.rank
            let target = min(max(plan.natural[i].rank, lo), hi)
            guard target != s.slots[i].rank else { continue }
            var t = s
            t.slots[i] = ChaosSchedule.Slot(rank: target)
            t.seed = nil
            if changes(t) < changes(s) || distance(t) < distance(s) { out.append(t) }
        }
        return out
    }

    /// Total slot distance from the natural schedule (a tie-breaker: moving nearer is progress).
    private func distance(_ s: ChaosSchedule) -> Int {
        zip(s.slots, plan.natural).reduce(0) { $0 + abs($1.0.rank - $1.1.rank) }
    }
}
