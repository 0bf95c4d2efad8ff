/// Seeded random numbers: SplitMix64 (Steele, Lea and Flood, 2014), for the synthesizer and
/// for replay's chaos schedules.
///
/// Our own generator rather than the system one, so that a seed gives the same recording
/// (or the same chaos schedule) on every machine and every Swift version. Only integer arithmetic and exactly rounded
/// double operations are used (no `log`/`exp`, whose last bits differ between C libraries).
///
/// Example: `var r = SplitMix64(seed: 42); r.int64(10...20)`.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `0..<n` (multiply-shift; the bias is below 2^-32 for the ranges used here).
    public mutating func below(_ n: UInt64) -> UInt64 {
        n == 0 ? 0 : next().multipliedFullWidth(by: n).high
    }

    public mutating func int64(_ r: ClosedRange<Int64>) -> Int64 {
        let span = UInt64(bitPattern: r.upperBound &- r.lowerBound) &+ 1
        if span == 0 { return Int64(bitPattern: next()) }
        return r.lowerBound &+ Int64(bitPattern: below(span))
    }

    public mutating func int(_ r: ClosedRange<Int>) -> Int { Int(int64(Int64(r.lowerBound)...Int64(r.upperBound))) }

    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }

    public mutating func chance(_ p: Double) -> Bool { unit() < p }

    public mutating func pick<T>(_ items: [T]) -> T { items[Int(below(UInt64(items.count)))] }

    /// An index chosen with the given (non-negative) weights; the last index when all are zero.
    public mutating func weighted(_ weights: [Double]) -> Int {
        var total = 0.0
        for w in weights { total += w }
        guard total > 0 else { return weights.count - 1 }
        var x = unit() * total
        for (i, w) in weights.enumerated() where w > 0 {
            if x < w { return i }
            x -= w
        }
        return weights.count - 1
    }
}
