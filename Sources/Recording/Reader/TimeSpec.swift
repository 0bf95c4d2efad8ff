/// The one time syntax every command accepts (`--from`, `--to`, the shell's `seek`, ...).
///
/// - `12.5s`, `1m30s`, `500ms`, `2h`, `750us`, `10ns`, `90` (seconds): time since the start;
/// - `+5s`, `-2s`: relative to the current position where there is one; otherwise `+5s`
///   is from the start and `-2s` is before the end;
/// - `@123` or `#123`: record number 123 (0-based, as `cat` and `info` show them); `@` needs
///   no quoting on a command line, where an unquoted `#` starts a comment in sh;
/// - `2026-11-20T10:00:05.25Z` (any ISO 8601 with zone, or none meaning UTC) and
///   `10:00:05[.25]`: wall clock; a time of day is taken on the recording's first day
///   (UTC), or the next day if that is before the recording started.
public enum TimeSpec: Sendable, Hashable, CustomStringConvertible {
    case sinceStart(Int64)
    case relative(Int64)
    case record(Int)
    case wallClock(micros: Int64)
    case timeOfDay(micros: Int64)

    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public let input: String
        public let reason: String
        public var description: String {
            "invalid time '\(input)': \(reason) (use \(TimeSpec.examples))"
        }
    }

    /// The forms, for error messages.
    public static let examples = "12.5s, 1m30s, 500ms, +5s, -2s, @123, 10:00:05 or 2026-11-20T10:00:05Z"

    public var description: String {
        switch self {
        case .sinceStart(let ns): return DurationFormat.short(ns)
        case .relative(let ns): return (ns >= 0 ? "+" : "") + DurationFormat.short(ns)
        case .record(let n): return "#\(n)"
        case .wallClock(let us): return WallClock.iso8601(micros: us)
        case .timeOfDay(let us): return WallClock.timeOfDay(micros: us)
        }
    }

    public static func parse(_ input: String) throws(ParseError) -> TimeSpec {
        let s = input.trimmingSpaces()
        guard !s.isEmpty else { throw ParseError(input: input, reason: "empty") }
        if let sign = s.first, sign == "#" || sign == "@" {
            let digits = s.dropFirst()
            guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(digits) else {
                throw ParseError(input: input, reason: "a record number is \(sign) followed by digits, e.g. \(sign)123")
            }
            return .record(n)
        }
        if s.first == "+" || s.first == "-" {
            let ns = try duration(String(s.dropFirst()), input: input)
            return .relative(s.first == "-" ? -ns : ns)
        }
        if s.count >= 10, s.utf8.count > 4, Array(s.utf8)[4] == UInt8(ascii: "-") {
            guard let us = WallClock.parseISO8601(s) else { throw ParseError(input: input, reason: "not a valid date and time") }
            return .wallClock(micros: us)
        }
        if s.contains(":") {
            guard let us = WallClock.parseTimeOfDay(s) else { throw ParseError(input: input, reason: "a time of day is HH:MM:SS[.fff]") }
            return .timeOfDay(micros: us)
        }
        return .sinceStart(try duration(s, input: input))
    }

    /// Parses a duration such as `1m30s`, `12.5s`, `500ms`, `90` (seconds) into nanoseconds.
    public static func duration(_ s: String, input: String? = nil) throws(ParseError) -> Int64 {
        let bytes = Array(s.utf8)
        let source = input ?? s
        guard !bytes.isEmpty else { throw ParseError(input: source, reason: "empty duration") }
        var i = 0
        var total: Double = 0
        var sawUnitless = false
        while i < bytes.count {
            let start = i
            while i < bytes.count, isDigitOrDot(bytes[i]) { i += 1 }
            guard i > start, let value = Double(String(decoding: bytes[start..<i], as: UTF8.self)) else {
                throw ParseError(input: source, reason: "expected a number at '\(String(decoding: bytes[start...], as: UTF8.self))'")
            }
            let us = i
            while i < bytes.count, !isDigitOrDot(bytes[i]) { i += 1 }
            let unit = String(decoding: bytes[us..<i], as: UTF8.self)
            let scale: Double
            switch unit {
            case "": scale = 1e9; sawUnitless = true
            case "h": scale = 3600e9
            case "m", "min": scale = 60e9
            case "s": scale = 1e9
            case "ms": scale = 1e6
            case "us", "µs": scale = 1e3
            case "ns": scale = 1
            default: throw ParseError(input: source, reason: "unknown unit '\(unit)' (h, m, s, ms, us, ns)")
            }
            if sawUnitless && i < bytes.count {
                throw ParseError(input: source, reason: "a number without unit must be last")
            }
            total += value * scale
        }
        guard total.isFinite, total < 9.2e18 else { throw ParseError(input: source, reason: "too large") }
        return Int64(total.rounded())
    }

    private static func isDigitOrDot(_ c: UInt8) -> Bool { (c >= 0x30 && c <= 0x39) || c == 0x2E }

    /// Resolves to a time in ns since the start of `recording`.
    /// `current` is the cursor's record, when there is one (the shell).
    public func resolveTime(in recording: Recording, current: Int? = nil) -> Int64 {
        switch self {
        case .sinceStart(let ns): return ns
        case .relative(let ns):
            if let c = current, c < recording.count { return recording.time(c).addingSaturating(ns) }
            return ns >= 0 ? ns : recording.duration.addingSaturating(ns)
        case .record(let n):
            if recording.isEmpty { return 0 }
            return recording.time(min(n, recording.count - 1))
        case .wallClock(let us):
            return QMPLinesImporter.nanos(fromMicros: us, since: recording.header?.startMicros ?? 0)
        case .timeOfDay(let tod):
            let start = recording.header?.startMicros ?? 0
            let (day, _) = WallClock.floorDivMod(start, 86_400_000_000)
            var us = day * 86_400_000_000 + tod
            if us < start - 1_000_000 { us += 86_400_000_000 }
            return QMPLinesImporter.nanos(fromMicros: us, since: start)
        }
    }

    /// Resolves to a record index: the first record at or after the time (for `#N`, N itself).
    /// Returns `recording.count` when the time is past the end.
    public func resolveIndex(in recording: Recording, current: Int? = nil) -> Int {
        if case .record(let n) = self { return min(n, recording.count) }
        return recording.firstIndex(atOrAfter: resolveTime(in: recording, current: current))
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}

