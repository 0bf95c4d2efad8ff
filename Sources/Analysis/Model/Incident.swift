/// Something the VM model saw go wrong (or worth an on-call engineer's look), at the input
/// that revealed it: a guest panic, an I/O error the guest saw, QEMU gone without SHUTDOWN,
/// an unplug never completed. The `incidents` analysis turns them into findings; triage
/// ranks them with every other analysis's.
public struct Incident: Sendable, Hashable {
    public var severity: FindingSeverity
    /// Stable code, e.g. `guest-panic`, `qemu-gone`, `io-error-reported`.
    public var code: String
    /// What it is about, without per-occurrence detail (findings are grouped by it).
    public var subject: String
    public var message: String
    /// Records to `goto`, in time order.
    public var records: [Int]
    /// When it happened (ns since the start, receive clock), and until when for a span.
    public var time: Int64
    public var end: Int64?
    /// Ranking weight within its severity (seconds affected, or a fixed weight for events).
    public var weight: Double

    public init(_ severity: FindingSeverity, _ code: String, subject: String, _ message: String, records: [Int], time: Int64,
                end: Int64? = nil, weight: Double = 1) {
        self.severity = severity; self.code = code; self.subject = subject; self.message = message
        self.records = records; self.time = time; self.end = end; self.weight = weight
    }

    /// As a finding of `analysis`.
    public func finding(_ analysis: String) -> AnalysisFinding {
        var f = AnalysisFinding(severity, analysis, code, message, subject: subject, records: records, time: time, weight: weight)
        if let end { f.end = end }
        return f
    }
}
