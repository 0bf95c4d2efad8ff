#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Latency percentiles in bounded memory: exact (nearest rank) for the first
/// `exactLimit` samples, then a log-linear histogram with 64 sub-buckets per power of two
/// (under 1.6% error), so a million polls of one command cost a few KiB.
///
/// Example: 1, 2, ..., 100 ms gives p50 50 ms, p99 99 ms, max 100 ms.
struct LatencyStats: Sendable {
    static let exactLimit = 8192
    static let sub = 64

    private(set) var count = 0
    private(set) var max: Int64 = 0
    private(set) var sum: Double = 0
    private var exact: [Int64] = []
    private var buckets: [Int: Int] = [:]
    var isExact: Bool { buckets.isEmpty }

    mutating func add(_ v0: Int64) {
        let v = Swift.max(v0, 0)
        count += 1
        sum += Double(v)
        if v > max { max = v }
        if buckets.isEmpty && exact.count < Self.exactLimit {
            exact.append(v)
            return
        }
        if !exact.isEmpty {
            for x in exact { buckets[Self.bucket(x), default: 0] += 1 }
            exact = []
        }
        buckets[Self.bucket(v), default: 0] += 1
    }

    static func bucket(_ v: Int64) -> Int {
        if v < Int64(sub) { return Int(v) }
        let e = 63 - v.leadingZeroBitCount          // highest bit
        let shift = e - 6                             // keep 6 bits below the top one
        let mant = Int((v >> Int64(shift)) & Int64(sub - 1))
        return (shift + 1) * sub + mant
    }

    /// The middle of a bucket's range.
    static func value(ofBucket b: Int) -> Int64 {
        if b < sub { return Int64(b) }
        let shift = b / sub - 1
        let mant = Int64(b % sub)
        let lo = (Int64(sub) + mant) << Int64(shift)
        let hi = (Int64(sub) + mant + 1) << Int64(shift)
        return (lo + hi) / 2
    }

    /// Nearest-rank percentile (`p` in 0...100); `nil` when empty.
    func percentile(_ p: Double) -> Int64? {
        guard count > 0 else { return nil }
        let rank = Swift.max(1, Int(ceil(p / 100 * Double(count))))
        if isExact {
            return exact.sorted()[rank - 1]
        }
        var seen = 0
        for b in buckets.keys.sorted() {
            seen += buckets[b]!
            if seen >= rank { return Swift.min(Self.value(ofBucket: b), max) }
        }
        return max
    }

    var mean: Double? { count > 0 ? sum / Double(count) : nil }
}
