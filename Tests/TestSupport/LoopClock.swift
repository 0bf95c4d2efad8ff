import NIOEmbedded
import Transport

/// The time of an `EmbeddedEventLoop` as the clock of a recorder or a replay server: receive
/// times, due times and the loop's timers are one timeline, which a test moves with
/// `advanceTime` (or by `sleep(until:)`, which advances the loop), never by sleeping.
public final class LoopClock: ReplayClock, @unchecked Sendable {
    public let loop: EmbeddedEventLoop

    public init(_ loop: EmbeddedEventLoop) { self.loop = loop }

    public func now() -> Int64 { Int64(loop.now.uptimeNanoseconds) }
    public func sleep(until deadline: Int64) { loop.advanceTime(to: .uptimeNanoseconds(UInt64(max(deadline, 0)))) }
}
