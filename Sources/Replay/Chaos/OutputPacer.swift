/// Where the server's output to one client must pause: at given byte offsets of the stream, for
/// given times. Chaos schedules use it to split messages across reads and to stall the
/// client's reads; fault rules use it to delay a reply. Pure: the caller says how far the
/// stream has been handed to the socket and what time it is.
///
/// Example: with a cut `17:1ms`, `allowance(handed: 0, now: t)` is 17; once 17 bytes are
/// handed, `allowance(handed: 17, now: t)` is 0 until t + 1 ms, then unlimited.
public struct OutputPacer: Sendable {
    private var cuts: [ChaosSchedule.Cut]
    /// No byte goes before this time (ns on the session's clock).
    public private(set) var pausedUntil: Int64 = .min

    public init(cuts: [ChaosSchedule.Cut] = []) {
        self.cuts = cuts.sorted { $0.offset < $1.offset }
    }

    public var isEmpty: Bool { cuts.isEmpty && pausedUntil == .min }

    /// Adds a pause at `offset` (a delayed reply: the bytes from there on wait `pause`).
    public mutating func pause(at offset: Int, for pause: Int64) {
        let i = cuts.firstIndex { $0.offset > offset } ?? cuts.count
        cuts.insert(.init(offset: offset, pause: pause), at: i)
    }

    /// How many bytes may be handed to the socket now, `handed` bytes into the stream; 0 while
    /// paused. Reaching a cut starts its pause.
    public mutating func allowance(handed: Int, now: Int64) -> Int {
        if now < pausedUntil { return 0 }
        pausedUntil = .min
        while let c = cuts.first, c.offset <= handed {
            cuts.removeFirst()
            if c.pause > 0 { pausedUntil = max(pausedUntil, now + c.pause) }
        }
        if now < pausedUntil { return 0 }
        return cuts.first.map { $0.offset - handed } ?? .max
    }

    /// When a pause in force ends (for the session's next deadline).
    public func deadline(now: Int64) -> Int64? { now < pausedUntil ? pausedUntil : nil }
}
