import Transport
/// When each item of a timeline is released: the recorded times, scaled by the speed, with
/// idle gaps capped, anchored to one start instant.
///
/// Every due time is computed from the anchor (`anchorWall`, `anchorVirtual`), never by adding
/// up sleeps, so lateness does not accumulate. Pause, resume, seek, speed change, loop and a
/// late barrier each move the anchor. Not thread-safe: owned by one session or by the server
/// loop under its lock.
///
/// Items may be held back (docs/REPLAY.md, "Causality"): a *barrier* holds an item until a
/// command has been answered, a *gate* until its command has been received (the session then
/// sends the item with that command's reply and marks it `releasedElsewhere`). With a
/// `holdLimit`, an item held that long past its due time makes the scheduler stop holding for
/// good (`stoppedHolding`): the client is not following the recorded commands, and from then
/// on every item goes on the clock, the held one at once and the rest at their recorded
/// distances from it.
///
/// Example: items at 1 s, 1.5 s and 30 s with `speed: 2, maxGap: 2s` started at wall W are due
/// at W+0.5 s, W+0.75 s and W+1.75 s.
public final class Scheduler {
    /// One release: which item, when it was due, when it went.
    public struct Release: Sendable, Hashable {
        public var item: Int
        public var due: Int64
        public var at: Int64
        /// Nanoseconds late (0 at max speed, where there is no schedule).
        public var lateness: Int64
        /// Which pass of a `--loop` replay (0 is the first).
        public var pass: Int
    }

    /// A barrier: the item waits until `command` has been answered, unless its reply was
    /// recorded before the time the replay last jumped to.
    public struct Barrier: Sendable, Hashable {
        public var command: Int
        public var replyTime: Int64
        public init(command: Int, replyTime: Int64) { self.command = command; self.replyTime = replyTime }
    }

    /// Why the scheduler stopped holding items: the item it had held longest and for how long.
    public struct GiveUp: Sendable, Hashable {
        public var item: Int
        public var waited: Int64
        /// The barrier or gate it waited for.
        public var waitingFor: Barrier
        public var isGate: Bool
    }

    public let times: [Int64]
    public let barriers: [Barrier?]
    /// Per item: the command during which it was recorded (`replyTime` is that command's
    /// time); held until the session releases it with the reply.
    public let gates: [Barrier?]
    /// How long (wall ns) an item may be held past its due time before holding stops; nil:
    /// forever.
    public let holdLimit: Int64?
    /// What happens when an item has been held `holdLimit`: holding stops (true), or the
    /// scheduler only records it in `longHold` and goes on holding (false).
    public let stopHoldingAfterLimit: Bool
    public let spanStart: Int64
    public let spanEnd: Int64
    public let loop: Bool
    public let maxGap: Int64?
    let clock: ReplayClock
    /// Capped ("virtual") time of each item, ns since `spanStart`.
    private let virtualTimes: [Int64]
    /// False when no item has a barrier or a gate: nothing can be held (the clock-only and
    /// max-speed paths then skip every hold check).
    private let hasHolds: Bool
    private let virtualEnd: Int64

    public private(set) var speed: Double?
    public private(set) var position = 0
    public private(set) var started = false
    public private(set) var paused = false
    public private(set) var pass = 0
    public private(set) var released = 0
    private var anchorWall: Int64 = 0
    private var anchorVirtual: Int64 = 0
    private var pausedVirtual: Int64 = 0
    /// Where `start()` begins (moved by a seek before the start).
    private var startVirtual: Int64 = 0
    private var answered = Set<Int>()
    /// Barriers whose reply lies before this recording time are satisfied (after seek/loop).
    private var barrierFloor: Int64
    /// Items already sent by the session (gated items sent with their command's reply).
    private var releasedOutside = Set<Int>()
    /// When the item at `position` was first found due but held.
    public private(set) var heldSince: Int64?
    /// False once the scheduler has given up holding (or was told to).
    public private(set) var holding = true
    /// Set when holding stopped because an item waited longer than `holdLimit`.
    public private(set) var stoppedHolding: GiveUp?
    /// With `stopHoldingAfterLimit` false: the first item held longer than `holdLimit`.
    public private(set) var longHold: GiveUp?
    /// Items the timeline stops before until released (the control API's "hold before
    /// event K"); `heldAt` is set while it waits at one of them.
    private var stopsBefore = Set<Int>()
    public private(set) var heldAt: Int?
    /// Items that go now whatever their due time, holds or pause (`step`, `burst`).
    private var forced = 0

    /// `virtualTimes`: `Scheduler.virtualTimes(times, spanStart:, maxGap:)` computed once and
    /// shared by many schedulers over the same times (one per client); computed here if nil.
    /// `hasHolds`: `Scheduler.anyHold(barriers:gates:)`, likewise.
    public init(times: [Int64], barriers: [Barrier?]? = nil, gates: [Barrier?]? = nil, holdLimit: Int64? = nil,
                stopHoldingAfterLimit: Bool = true, spanStart: Int64, spanEnd: Int64 = .max,
                speed: Double?, maxGap: Int64? = nil, loop: Bool = false, clock: ReplayClock,
                virtualTimes shared: [Int64]? = nil, hasHolds knownHolds: Bool? = nil) {
        self.times = times
        self.barriers = barriers ?? Array(repeating: nil, count: times.count)
        self.gates = gates ?? Array(repeating: nil, count: times.count)
        hasHolds = knownHolds ?? Scheduler.anyHold(barriers: barriers, gates: gates)
        self.holdLimit = holdLimit
        self.stopHoldingAfterLimit = stopHoldingAfterLimit
        self.spanStart = spanStart
        self.spanEnd = spanEnd
        self.speed = speed
        self.maxGap = maxGap
        self.loop = loop
        self.clock = clock
        barrierFloor = spanStart
        let v = shared.flatMap { $0.count == times.count ? $0 : nil } ?? Scheduler.virtualTimes(times, spanStart: spanStart, maxGap: maxGap)
        virtualTimes = v
        let prevT = max(spanStart, times.max() ?? spanStart)
        let prevV = v.last ?? 0
        if spanEnd != .max, spanEnd >= prevT {
            let gap = spanEnd - prevT
            virtualEnd = prevV + (maxGap.map { min(gap, $0) } ?? gap)
        } else {
            virtualEnd = prevV
        }
    }

    /// Recording times as the scheduler counts them: from `spanStart`, never going back, each
    /// gap capped at `maxGap`.
    public static func virtualTimes(_ times: [Int64], spanStart: Int64, maxGap: Int64?) -> [Int64] {
        var v: [Int64] = []
        v.reserveCapacity(times.count)
        var prevT = spanStart, prevV: Int64 = 0
        for t in times {
            let gap = max(0, t - prevT)
            let nv = prevV + (maxGap.map { min(gap, $0) } ?? gap)
            v.append(nv)
            prevT = max(prevT, t); prevV = nv
        }
        return v
    }

    /// True when some item has a barrier or a gate (what `hasHolds` says; a script computes
    /// it once for all its clients' schedulers).
    public static func anyHold(barriers: [Barrier?]?, gates: [Barrier?]?) -> Bool {
        (barriers?.contains { $0 != nil } ?? false) || (gates?.contains { $0 != nil } ?? false)
    }

    public var count: Int { times.count }
    public var finished: Bool { position >= times.count && !loop }

    /// Capped time of an arbitrary recording time.
    public func virtualTime(of t: Int64) -> Int64 {
        // Last item at or before t.
        var lo = 0, hi = times.count
        while lo < hi { let mid = (lo + hi) / 2; if times[mid] <= t { lo = mid + 1 } else { hi = mid } }
        let baseT = lo == 0 ? spanStart : times[lo - 1]
        let baseV: Int64 = lo == 0 ? 0 : virtualTimes[lo - 1]
        let gap = max(0, t - baseT)
        return baseV + (maxGap.map { min(gap, $0) } ?? gap)
    }

    private func wall(ofVirtual v: Int64) -> Int64 {
        guard let s = speed else { return anchorWall }
        return anchorWall + Int64((Double(v - anchorVirtual) / s).rounded())
    }

    /// Due time of item `i` under the current anchor.
    public func due(_ i: Int) -> Int64 { wall(ofVirtual: virtualTimes[i]) }

    /// The virtual time the replay has reached now.
    private func currentVirtual(_ now: Int64) -> Int64 {
        if paused { return pausedVirtual }
        guard let s = speed else { return position < count ? virtualTimes[position] : virtualEnd }
        return anchorVirtual + Int64((Double(now - anchorWall) * s).rounded())
    }

    /// The recording time the replay has reached (for status and retiming).
    public func recordingTime(at now: Int64) -> Int64 {
        guard started else { return spanStart }
        let v = min(currentVirtual(now), position < count ? virtualTimes[position] : virtualEnd)
        if position < count, virtualTimes[position] == v { return times[position] }
        // Between items: the previous item plus the elapsed (uncapped within the cap) gap.
        let prev = position > 0 ? position - 1 : -1
        let baseT = prev >= 0 ? times[prev] : spanStart
        let baseV: Int64 = prev >= 0 ? virtualTimes[prev] : 0
        return baseT + max(0, v - baseV)
    }

    /// Starts the timeline now, at the span's start.
    public func start() {
        let now = clock.now()
        started = true
        anchorWall = now
        anchorVirtual = startVirtual
        pausedVirtual = startVirtual
    }

    @inline(__always)
    private func isBlocked(_ i: Int) -> Bool {
        // Per release at max speed: the common case (nothing sent outside the clock, no gate,
        // no barrier) answers without hashing.
        guard hasHolds, holding else { return false }
        if !releasedOutside.isEmpty && releasedOutside.contains(i) { return false }
        if let g = gates[i] { return g.replyTime >= barrierFloor }
        guard let b = barriers[i] else { return false }
        return b.replyTime >= barrierFloor && !answered.contains(b.command)
    }

    /// Moves past items the session has already sent.
    @inline(__always)
    private func skipReleasedOutside() {
        guard !releasedOutside.isEmpty else { return }
        while position < count, releasedOutside.contains(position) {
            position += 1
            heldSince = nil
        }
    }

    /// A held item that is due: starts or checks its hold; true when it must stay held.
    private func stillHeld(now: Int64) -> Bool {
        guard isBlocked(position) else { return false }
        guard now >= due(position) else { return true }
        if heldSince == nil { heldSince = now }
        let since = heldSince!
        guard let limit = holdLimit, now - since >= limit else { return true }
        let isGate = gates[position] != nil
        let g = GiveUp(item: position, waited: now - since, waitingFor: (gates[position] ?? barriers[position])!, isGate: isGate)
        guard stopHoldingAfterLimit else {
            if longHold == nil { longHold = g }
            return true
        }
        stoppedHolding = g
        holding = false
        heldSince = nil
        // The held item goes now and the rest follow at their recorded distances from it.
        if speed != nil {
            anchorVirtual = virtualTimes[position]
            anchorWall = now
        }
        return false
    }

    /// True when item `i` has gone out, on the clock or with a reply.
    public func isReleased(_ i: Int) -> Bool { i < position || releasedOutside.contains(i) }

    /// Stops holding items for barriers and gates (the client does not follow the recording).
    public func stopHolding() {
        holding = false
        heldSince = nil
    }

    /// The session sent these items itself (with a command's reply): the clock skips them.
    public func releasedElsewhere(_ items: [Int]) {
        for i in items where i >= position { releasedOutside.insert(i) }
        skipReleasedOutside()
    }

    /// Releases the next item if it is due now; nil when nothing is due (yet).
    public func next() -> Release? { next(at: clock.now()) }

    /// `next()` at a time the caller has just read: at max speed a batch of releases reads
    /// the clock once (nothing is ever early there, and lateness is not measured).
    public func next(at now: Int64) -> Release? {
        guard started, !paused || forced > 0 else { return nil }
        if forced > 0 { return nextForced(at: now) }
        if position >= count {
            guard loop, count > 0 else { return nil }
            // The pass ends at the span's end (or the last item); the next pass is anchored
            // there, not at "now", so a late release does not shift the following passes.
            let end = wall(ofVirtual: virtualEnd)
            guard now >= end else { return nil }
            position = 0
            pass += 1
            anchorWall = end
            anchorVirtual = 0
            barrierFloor = .max
            releasedOutside.removeAll()
        }
        if hasHolds {
            skipReleasedOutside()
            guard position < count else { return nil }
            if stillHeld(now: now) { return nil }
        }
        if !stopsBefore.isEmpty, stopsBefore.contains(position) {
            heldAt = position
            return nil
        }
        let d = due(position)
        guard now >= d else { return nil }
        let r = Release(item: position, due: d, at: now, lateness: speed == nil ? 0 : now - d, pass: pass)
        position += 1
        released += 1
        if heldSince != nil { heldSince = nil }
        return r
    }

    /// When the next release is due (or a held item's hold runs out); nil when finished,
    /// paused, not started or held without limit.
    public func nextDeadline() -> Int64? {
        guard started else { return nil }
        func now() -> Int64 { clock.now() }
        skipReleasedOutside()
        if forced > 0 && position < count { return now() }
        guard !paused else { return nil }
        if position >= count {
            guard loop, count > 0 else { return nil }
            return wall(ofVirtual: virtualEnd)
        }
        if stopsBefore.contains(position) { return nil }
        if isBlocked(position) {
            guard let limit = holdLimit else { return nil }
            if let since = heldSince { return !stopHoldingAfterLimit && now() - since >= limit ? nil : since + limit }
        }
        return due(position)
    }

    /// True when the next item waits for a command's reply.
    public var waitingForBarrier: Bool { started && position < count && isBlocked(position) }

    /// Records that the client has had the reply to `command` (recorded at `replyTime`), and
    /// that the session sent the items in `releasing` with it. A waiting item that is now late
    /// is re-anchored to follow that reply at its recorded distance.
    public func answered(command: Int, replyTime: Int64? = nil, releasing: [Int] = []) {
        let wasBlocked = waitingForBarrier
        answered.insert(command)
        releasedElsewhere(releasing)
        guard started, !paused, wasBlocked, position < count, !isBlocked(position), speed != nil else { return }
        heldSince = nil
        let now = clock.now()
        if due(position) < now, let t = replyTime ?? barriers[position]?.replyTime {
            anchorVirtual = virtualTime(of: t)
            anchorWall = now
        }
    }

    // MARK: the control API's moves (docs/REPLAY.md, "Control API")

    /// The next `n` items go at once, before their time and past any hold (a test asked for
    /// them); returns how many are left to go (fewer items than `n` remain). While paused
    /// the timeline stays paused after them; while playing it goes on from the last of them
    /// at the recorded distances (the anchor moves there).
    public func force(_ n: Int) {
        guard n > 0 else { return }
        forced += n
    }

    /// How many forced items have not gone yet.
    public var forcedPending: Int { forced }

    private func nextForced(at now: Int64) -> Release? {
        skipReleasedOutside()
        guard position < count else { forced = 0; return nil }
        let i = position
        let r = Release(item: i, due: now, at: now, lateness: 0, pass: pass)
        position += 1
        released += 1
        forced -= 1
        heldSince = nil
        if heldAt == i { heldAt = nil }
        stopsBefore.remove(i)
        // The replay's time is now this item's: a pause stays there, a playing timeline
        // continues from it.
        pausedVirtual = virtualTimes[i]
        anchorVirtual = virtualTimes[i]
        anchorWall = now
        return r
    }

    /// The timeline stops before item `i` (when it gets there) until `releaseStop(i)`.
    public func stopBefore(_ i: Int) {
        guard i >= 0, i < count else { return }
        stopsBefore.insert(i)
    }

    /// Lets the timeline go past item `i` again (nil: every stop); an item it waited at goes
    /// now if it is late, and the rest follow at their recorded distances from it.
    public func releaseStop(_ i: Int? = nil) {
        if let i { stopsBefore.remove(i) } else { stopsBefore.removeAll() }
        guard let h = heldAt, !stopsBefore.contains(h) else { return }
        heldAt = nil
        heldSince = nil
        let now = clock.now()
        if started, !paused, speed != nil, h == position, due(h) < now {
            anchorVirtual = virtualTimes[h]
            anchorWall = now
        }
    }

    /// The items the timeline will stop before.
    public var stops: [Int] { stopsBefore.sorted() }

    public func pause() {
        guard !paused else { return }
        pausedVirtual = started ? currentVirtual(clock.now()) : startVirtual
        paused = true
    }

    public func resume() {
        guard paused else { return }
        paused = false
        heldSince = nil  // a hold counts from when the timeline runs again
        anchorWall = clock.now()
        anchorVirtual = pausedVirtual
    }

    public func setSpeed(_ s: Double?) {
        let now = clock.now()
        if started && !paused {
            anchorVirtual = min(currentVirtual(now), position < count ? virtualTimes[position] : virtualEnd)
            anchorWall = now
        }
        speed = s
    }

    /// Jumps to recording time `t`: the next item is the first at or after it; barriers of
    /// replies before it no longer hold.
    public func seek(to t: Int64) {
        var lo = 0, hi = count
        while lo < hi { let mid = (lo + hi) / 2; if times[mid] < t { lo = mid + 1 } else { hi = mid } }
        position = lo
        let v = virtualTime(of: max(t, spanStart))
        anchorVirtual = v
        anchorWall = clock.now()
        pausedVirtual = v
        if !started { startVirtual = v }
        barrierFloor = max(t, spanStart)
        heldSince = nil
        heldAt = nil
    }
}
