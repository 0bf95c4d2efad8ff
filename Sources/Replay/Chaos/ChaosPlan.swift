import QMP
import Recording
/// What a recording offers an adversarial replay: the events it can move (those of the
/// replayed span, in recorded order), the point of the conversation where each was recorded
/// (its *natural* slot), and how many requests the recorded client made, from
/// `qmp_capabilities` on. Schedules (`ChaosSchedule`) are made from it by seed
/// (`generate`) or systematically (`ScheduleExplorer`), and explained with its names.
///
/// Example: in Recordings/lifecycle-qemu.qmprec the STOP raised by `stop` (request 2) has the
/// natural slot `b2` (written before the reply to `stop`); a seed may move it to `b0`.
public struct ChaosPlan: Sendable {
    /// Indices into `script.events`, in recorded order.
    public let events: [Int]
    /// Where each event was recorded, relative to the recorded client's requests.
    public let natural: [ChaosSchedule.Slot]
    /// Requests the recorded client made from `qmp_capabilities` on (at least 1).
    public let requests: Int
    /// The recorded commands, from `qmp_capabilities` on (for descriptions).
    let commandNames: [String]
    let eventNames: [String]
    let eventLines: [Int]
    /// About how many bytes the server writes in the recorded conversation (where cuts fall).
    public let expectedBytes: Int

    public init(script: ReplayScript) {
        let first = script.commands.firstIndex(where: \.isNegotiation) ?? 0
        let cmds = Array(script.commands[first...])
        requests = max(1, cmds.count)
        commandNames = cmds.map(\.name)
        var evs: [Int] = []
        var nat: [ChaosSchedule.Slot] = []
        for (k, e) in script.events.enumerated() where e.time >= script.spanStart && e.time <= script.spanEnd {
            evs.append(k)
            // The last request sent before the event: before its reply when the reply came
            // later (the event was raised while it ran), else after it.
            if let r = cmds.lastIndex(where: { $0.time < e.time }) {
                // Same time: the recorded order decides (the gate says it came before the reply).
                let answered = cmds[r].replyTime.map { $0 < e.time || ($0 == e.time && e.gate != first + r) } ?? false
                nat.append(.init(request: r, afterReply: answered))
            } else {
                nat.append(.init(request: 0, afterReply: true))
            }
        }
        events = evs
        natural = nat
        eventNames = evs.map { script.events[$0].name }
        eventLines = evs.map { script.events[$0].line }
        var bytes = script.greetingBytes.count
        for c in cmds { bytes += (c.reply.map { JSONValue.object($0).serialized(.compact).utf8.count } ?? 16) + 2 }
        for k in evs { bytes += script.eventBytes[k].count }
        expectedBytes = bytes
    }

    /// The last slot a schedule may use: after the reply to the recorded client's last request.
    public var lastSlot: ChaosSchedule.Slot { .init(request: requests - 1, afterReply: true) }

    /// The recording's own order: every event where it was recorded, no cuts.
    public var naturalSchedule: ChaosSchedule { ChaosSchedule(slots: natural) }

    /// A schedule made from `seed` alone: each event at a random legal slot (events keep their
    /// recorded order, so bursts form where several share one), `splits` cuts of 1 ms at random
    /// bytes, and with `stall` one cut of that length. The same seed gives the same schedule.
    /// `firstSlot` spares the points before it (`explore --spare-negotiation` starts at `a0`).
    public func generate(seed: UInt64, splits: Int, stall: Int64?, firstSlot: ChaosSchedule.Slot = .init(rank: 0)) -> ChaosSchedule {
        var r = SplitMix64(seed: seed)
        let ranks = events.map { _ in r.int(firstSlot.rank...max(firstSlot.rank, lastSlot.rank)) }.sorted()
        var cuts: [ChaosSchedule.Cut] = []
        let span = max(2, expectedBytes)
        for _ in 0..<max(0, splits) { cuts.append(.init(offset: r.int(1...(span - 1)), pause: ChaosPlan.splitPause)) }
        if let stall { cuts.append(.init(offset: r.int(1...(span - 1)), pause: stall)) }
        return ChaosSchedule(slots: ranks.map { ChaosSchedule.Slot(rank: $0) }, cuts: cuts, seed: seed)
    }

    /// How long a split waits: long enough that the client reads the two pieces apart.
    public static let splitPause: Int64 = 1_000_000

    /// Checks that `s` fits this recording (one slot per event, slots in order).
    public func check(_ s: ChaosSchedule) throws(ReplayError) {
        guard s.slots.count == events.count else {
            throw .usage("--chaos-schedule has \(s.slots.count) event slot(s); the replayed span has \(events.count) event(s)")
        }
        for i in s.slots.indices.dropFirst() where s.slots[i] < s.slots[i - 1] {
            throw .usage("--chaos-schedule: event \(i + 1) (\(s.slots[i])) comes before event \(i) (\(s.slots[i - 1])); events keep their recorded order")
        }
    }

    /// One line per event that is not at its natural slot, and one per cut:
    /// `RESUME (FILE line 17) before the reply to request 0 (qmp_capabilities), recorded after the reply to request 4 (cont)`.
    public func explain(_ s: ChaosSchedule) -> [String] {
        var lines: [String] = []
        for (i, slot) in s.slots.enumerated() where i < natural.count && slot != natural[i] {
            lines.append("\(eventNames[i]) (line \(eventLines[i])) \(describe(slot)), recorded \(describe(natural[i]))")
        }
        for c in s.cuts {
            lines.append(c.pause > ChaosPlan.splitPause ? "a \(ChaosSchedule.durationText(c.pause)) stall after output byte \(c.offset)"
                                                        : "output split after byte \(c.offset)")
        }
        return lines
    }

    /// `before the reply to request 2 (stop)`.
    public func describe(_ slot: ChaosSchedule.Slot) -> String {
        let name = slot.request < commandNames.count ? " (\(commandNames[slot.request]))" : ""
        return "\(slot.afterReply ? "after" : "before") the reply to request \(slot.request)\(name)"
    }
}
