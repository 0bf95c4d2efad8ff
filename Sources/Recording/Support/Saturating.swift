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
}
