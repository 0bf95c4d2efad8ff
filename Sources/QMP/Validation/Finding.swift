/// One thing validation noticed, with where it is (record number, set by the caller) and
/// a message a person can act on.
///
/// Severity decides the exit status of `qmpreplay validate`: errors and warnings are
/// findings (exit 1); notes (`info`) are reported but do not fail a recording. Unknown
/// events and members the documents do not list are notes: QEMU keeps adding them.
public struct Finding: Sendable, Hashable, Codable {
    public enum Severity: String, Sendable, Codable, Comparable {
        case info
        case warning
        case error

        private var rank: Int { self == .info ? 0 : self == .warning ? 1 : 2 }
        public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
    }

    public var severity: Severity
    /// A stable identifier for scripts, e.g. `missing-member`, `reply-without-command`.
    public var code: String
    public var message: String
    /// The record this is about (0-based), when it is about one.
    public var record: Int?
    /// The line of the recording file, filled in by the reader.
    public var line: Int?

    public init(_ severity: Severity, _ code: String, _ message: String, record: Int? = nil, line: Int? = nil) {
        self.severity = severity; self.code = code; self.message = message; self.record = record; self.line = line
    }
}
