import ArgumentParser
import Recording

/// What a `--to` option holds: a time (every command), or for `replay` also the address its
/// `--to` used to name (see ReplayCommand). `time` is nil when the value is not a time.
public protocol SpanEnd: Sendable {
    static func spanEnd(_ text: String) throws(OptionValueError) -> Self
    var time: TimeArgument? { get }
}

extension TimeArgument: SpanEnd {
    public static func spanEnd(_ text: String) throws(OptionValueError) -> TimeArgument { try parse(text) }
    public var time: TimeArgument? { self }
}

/// `--from T --to T`: the span of a recording a command works on (cat, analyze, serve,
/// replay, the shell's `replay start`). `--to` is inclusive: `--to @14` includes record 14,
/// `--to 5s` every record at 5 s. `TimeSpanOptions` is the usual form.
public struct SpanOptions<End: SpanEnd>: ParsableArguments {
    public init() {}

    @Option(parsing: .unconditional,
            help: ArgumentHelp("Start of the span: a time or record (-2s, 12.5s, @160; see 'qmpreplay --help'). Default: the start (serve and replay: the recorded negotiation).", valueName: "time"),
            transform: TimeArgument.parse)
    public var from: TimeArgument?

    @Option(parsing: .unconditional,
            help: ArgumentHelp("End of the span, inclusive: a time or record (default: the end of the recording).", valueName: "time"),
            transform: End.spanEnd)
    public var to: End?

    /// The span as given, to resolve against a recording.
    public var span: TimeSpan { TimeSpan(from: from, to: to?.time) }
}

/// `--from T --to T` of every command but `replay`.
public typealias TimeSpanOptions = SpanOptions<TimeArgument>

/// A span as given (either end may be open), before it meets a recording.
public struct TimeSpan: Sendable, Hashable {
    public var from: TimeArgument?
    public var to: TimeArgument?

    public init(from: TimeArgument? = nil, to: TimeArgument? = nil) {
        self.from = from
        self.to = to
    }

    /// The span in `recording`: the records from the first at or after `from` (`#N`: N) to
    /// the last at or before `to` (`#N`: N) inclusive, and the two ends as times. `current` is
    /// the shell's cursor, for relative times (`+5s`). Throws when `to` is before `from` (by
    /// record number when both are records, else by time).
    public func resolve(in recording: Recording, current: Int? = nil) throws(SpanError) -> ResolvedSpan {
        if let from, let to, TimeSpan.isReversed(from.spec, to.spec, in: recording, current: current) {
            throw SpanError(from: from, to: to)
        }
        let lo = from?.spec.resolveIndex(in: recording, current: current) ?? 0
        var hi = recording.count
        if let to = to?.spec {
            if case .record(let n) = to {
                hi = min(recording.count, n &+ 1)
            } else {
                hi = recording.firstIndex(atOrAfter: to.resolveTime(in: recording, current: current) &+ 1)
            }
        }
        return ResolvedSpan(records: lo..<max(lo, hi),
                            start: from?.spec.resolveTime(in: recording, current: current),
                            end: to?.spec.resolveTime(in: recording, current: current))
    }

    static func isReversed(_ from: TimeSpec, _ to: TimeSpec, in r: Recording, current: Int?) -> Bool {
        if case .record(let a) = from, case .record(let b) = to { return b < a }
        return to.resolveTime(in: r, current: current) < from.resolveTime(in: r, current: current)
    }
}

/// A span resolved against a recording.
public struct ResolvedSpan: Sendable, Hashable {
    /// The records in the span, `--to` included; empty when none is (its lower bound is then
    /// where the span starts, `recording.count` when that is past the end).
    public var records: Range<Int>
    /// The ends as times (ns since the start), nil where the span is open.
    public var start: Int64?
    public var end: Int64?
}

/// `--to` before `--from`.
public struct SpanError: Error, CustomStringConvertible, Sendable {
    public let from: TimeArgument
    public let to: TimeArgument
    public var description: String { "--to \(to) is before --from \(from): the span is empty (swap them)" }
}
