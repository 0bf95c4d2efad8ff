import Transport
/// When each item of a timeline is released: the recorded times, scaled by the speed, with
/// idle gaps capped, anchored to one start instant.
///
/// Every due time is computed from the anchor (`anchorWall`, `anchorVirtual`), never by adding
/// up sleeps, so lateness does not accumulate. Pause, resume, seek, speed change, loop and a
/// late barrier each move the anchor. Not thread-safe: owned by one session or by the server
/// loop under its lock.
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

    public let times: [Int64]
    public let barriers: [Barrier?]
    public let spanStart: Int64
    public let spanEnd: Int64
    public let loop: Bool
    public let maxGap: Int64?
    let clock: ReplayClock
    /// Capped ("virtual") time of each item, ns since `spanStart`.
    private let virtualTimes: [Int64]
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

    public init(times: [Int64], barriers: [Barrier?]? = nil, spanStart: Int64, spanEnd: Int64 = .max,
                speed: Double?, maxGap: Int64? = nil, loop: Bool = false, clock: ReplayClock) {
        self.times = times
        self.barriers = barriers ?? Array(repeating: nil, count: times.count)
        self.spanStart = spanStart
        self.spanEnd = spanEnd
        self.speed = speed
        self.maxGap = maxGap
        self.loop = loop
        self.clock = clock
        barrierFloor = spanStart
        var v: [Int64] = []
        v.reserveCapacity(times.count)
        var prevT = spanStart, prevV: Int64 = 0
        for t in times {
            let gap = max(0, t - prevT)
            let nv = prevV + (maxGap.map { min(gap, $0) } ?? gap)
            v.append(nv)
            prevT = max(prevT, t); prevV = nv
        }
        virtualTimes = v
        if spanEnd != .max, spanEnd >= prevT {
            let gap = spanEnd - prevT
            virtualEnd = prevV + (maxGap.map { min(gap, $0) } ?? gap)
        } else {
            virtualEnd = prevV
        }
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

    private func isBlocked(_ i: Int) -> Bool {
        guard let b = barriers[i] else { return false }
        return b.replyTime >= barrierFloor && !answered.contains(b.command)
    }

    /// Releases the next item if it is due now; nil when nothing is due (yet).
    public func next() -> Release? {
        guard started, !paused else { return nil }
        let now = clock.now()
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
        }
        if isBlocked(position) { return nil }
        let d = due(position)
        guard now >= d else { return nil }
        let r = Release(item: position, due: d, at: now, lateness: speed == nil ? 0 : now - d, pass: pass)
        position += 1
        released += 1
        return r
    }

    /// When the next release is due; nil when finished, paused, not started or waiting for a barrier.
    public func nextDeadline() -> Int64? {
        guard started, !paused else { return nil }
        if position >= count {
            guard loop, count > 0 else { return nil }
            return wall(ofVirtual: virtualEnd)
        }
        if isBlocked(position) { return nil }
        return due(position)
    }

    /// True when the next item waits for a command's reply.
    public var waitingForBarrier: Bool { started && position < count && isBlocked(position) }

    /// Records that the client has had the reply to `command`. A waiting item that is now
    /// late is re-anchored to follow that reply at its recorded distance.
    public func answered(command: Int) {
        let wasBlocked = waitingForBarrier
        answered.insert(command)
        guard started, !paused, wasBlocked, position < count, !isBlocked(position), speed != nil else { return }
        let now = clock.now()
        if due(position) < now, let b = barriers[position] {
            anchorVirtual = virtualTime(of: b.replyTime)
            anchorWall = now
        }
    }

    public func pause() {
        guard !paused else { return }
        pausedVirtual = started ? currentVirtual(clock.now()) : startVirtual
        paused = true
    }

    public func resume() {
        guard paused else { return }
        paused = false
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
    }
}
