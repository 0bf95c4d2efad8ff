/// Arithmetic on times that come from outside (a user's `--from`, a QEMU timestamp in a
/// damaged or hostile file): clamped to Int64's range instead of trapping on overflow.
extension Int64 {
    public func addingSaturating(_ other: Int64) -> Int64 {
        let (r, o) = addingReportingOverflow(other)
        return o ? (other < 0 ? .min : .max) : r
    }

    public func subtractingSaturating(_ other: Int64) -> Int64 {
        let (r, o) = subtractingReportingOverflow(other)
        return o ? (other > 0 ? .min : .max) : r
    }

    public func multipliedSaturating(by other: Int64) -> Int64 {
        let (r, o) = multipliedReportingOverflow(by: other)
        return o ? ((self < 0) != (other < 0) ? .min : .max) : r
    }

    /// `Int64(d)` clamped to Int64's range (NaN gives 0), where `Int64(d)` traps: for values
    /// computed in Double from outside input (a mean of sizes near 9.2e18 bytes).
    public init(saturating d: Double) {
        if d.isNaN {
            self = 0
        } else if d >= 9_223_372_036_854_775_807.0 {
            self = .max
        } else if d <= -9_223_372_036_854_775_808.0 {
            self = .min
        } else {
            self = Int64(d)
        }
    }

    /// |self - other|, exact for any two values (`abs(a - b)` traps when the difference
    /// does not fit in Int64, e.g. a balloon size of -9.2e18 against a target of 1 GiB).
    public func absoluteDifference(_ other: Int64) -> UInt64 {
        self >= other ? UInt64(bitPattern: self &- other) : UInt64(bitPattern: other &- self)
    }
}
