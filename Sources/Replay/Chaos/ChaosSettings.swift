/// How `serve --chaos` picks each client's schedule: from a seed (with the number of splits
/// and the stall length asked for) or given outright (`--chaos-schedule`, e.g. the smallest
/// failing schedule `explore` printed), and how long an idle client waits before the events
/// of a slot it never reaches are sent anyway.
///
/// Example: `ChaosSettings(seed: 42, stall: 200_000_000)` serves every client the schedule of
/// seed 42, with one 200 ms stall.
public struct ChaosSettings: Sendable {
    public var seed: UInt64
    /// Given outright; wins over the seed.
    public var schedule: ChaosSchedule?
    /// Cuts of `ChaosPlan.splitPause` at seed-chosen bytes.
    public var splits: Int
    /// One stall of this length at a seed-chosen byte.
    public var stall: Int64?
    /// A client quiet this long while events remain gets the next slot's events.
    public var idle: Int64

    public static let defaultSplits = 4
    public static let defaultIdle: Int64 = 200_000_000

    public init(seed: UInt64 = 0, schedule: ChaosSchedule? = nil, splits: Int = defaultSplits, stall: Int64? = nil,
                idle: Int64 = defaultIdle) {
        self.seed = seed
        self.schedule = schedule
        self.splits = splits
        self.stall = stall
        self.idle = idle
    }

    /// The schedule for a recording.
    public func schedule(for plan: ChaosPlan) -> ChaosSchedule {
        schedule ?? plan.generate(seed: seed, splits: splits, stall: stall)
    }
}
