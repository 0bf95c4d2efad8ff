import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The time source of a replay: a monotonic "now" in nanoseconds and a way to wait for a
/// deadline. The server and the stream player use `MonotonicClock`; tests use `ManualClock`
/// and move time by hand, so timing logic is tested without sleeping (STYLE.md, NIOEmbedded).
public protocol ReplayClock: AnyObject, Sendable {
    /// Monotonic nanoseconds (only differences mean anything).
    func now() -> Int64
    /// Returns at or after `deadline` (immediately when it has passed).
    func sleep(until deadline: Int64)
}

/// The system's monotonic clock (CLOCK_MONOTONIC), immune to wall-clock jumps.
public final class MonotonicClock: ReplayClock, @unchecked Sendable {
    public init() {}

    public func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    public func sleep(until deadline: Int64) {
        while true {
            let left = deadline - now()
            if left <= 0 { return }
            var ts = timespec(tv_sec: Int(left / 1_000_000_000), tv_nsec: Int(left % 1_000_000_000))
            var rem = timespec()
            _ = nanosleep(&ts, &rem)
        }
    }

    /// The offset that turns this clock's readings into wall-clock microseconds since the epoch
    /// (taken once, so retimed timestamps stay consistent with the monotonic schedule).
    public static func wallOffsetMicros(_ clock: ReplayClock) -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let wall = Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
        return wall - clock.now() / 1000
    }
}

/// A clock that only moves when told to: `advance(by:)` or `set(_:)`. `sleep(until:)` jumps
/// to the deadline, so code that sleeps runs instantly and deterministically in tests.
public final class ManualClock: ReplayClock, Sendable {
    private let current: Mutex<Int64>

    public init(start: Int64 = 1_000_000_000) { current = Mutex(start) }

    public func now() -> Int64 { current.withLock { $0 } }

    public func sleep(until deadline: Int64) {
        current.withLock { if deadline > $0 { $0 = deadline } }
    }

    public func advance(by ns: Int64) { current.withLock { $0 += max(0, ns) } }

    public func set(_ t: Int64) { current.withLock { $0 = max($0, t) } }
}
