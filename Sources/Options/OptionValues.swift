import ArgumentParser
import Transport
import Recording
import Replay

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The values options take, each parsed in one place. Every type keeps the text as typed
// (for messages and for the default shown in --help) next to the value.
//
// An option of one of these types is declared with `transform: T.parse`, so that a bad value
// is reported by ArgumentParser as "The value 'X' is invalid for '--opt <v>': REASON", the
// REASON being the `OptionValueError` thrown here (the command line and the shell show the
// same line, see `OptionErrors`).

/// Why an option's value does not parse: the part after "is invalid for '--opt <v>': ".
public struct OptionValueError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// An option's value type: parsed in one place, with the text kept as typed.
public protocol OptionValue: ExpressibleByArgument, CustomStringConvertible, Sendable {
    /// The value, or why `text` is not one.
    static func parse(_ text: String) throws(OptionValueError) -> Self
    /// The text as typed.
    var text: String { get }
}

extension OptionValue {
    public init?(argument: String) {
        guard let v = try? Self.parse(argument) else { return nil }
        self = v
    }

    public var description: String { text }
    public var defaultValueDescription: String { text }
}

/// A byte size: a whole number of bytes, optionally with a binary unit k, M or G (also
/// written KiB, MB, ...; case does not matter). Examples: `65536`, `64k`, `64KiB`, `16M`, `1G`.
public struct ByteSize: OptionValue, Hashable {
    public let bytes: Int
    public let text: String

    /// `text` defaults to the largest unit that divides `bytes` (`8M`).
    public init(bytes: Int, text: String? = nil) {
        self.bytes = bytes
        let unit = [(1 << 30, "G"), (1 << 20, "M"), (1 << 10, "k")].first { bytes != 0 && bytes % $0.0 == 0 }
        self.text = text ?? unit.map { "\(bytes / $0.0)\($0.1)" } ?? "\(bytes)"
    }

    public static func parse(_ text: String) throws(OptionValueError) -> ByteSize {
        var t = Substring(text.lowercased())
        if t.hasSuffix("ib") { t = t.dropLast(2) } else if t.hasSuffix("b") { t = t.dropLast() }
        var scale = 1
        switch t.last {
        case "k": scale = 1 << 10
        case "m": scale = 1 << 20
        case "g": scale = 1 << 30
        default: break
        }
        if scale > 1 { t = t.dropLast() }
        guard !t.isEmpty, t.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(t) else {
            throw OptionValueError("a size is a number of bytes, optionally with k, M or G: e.g. 65536, 64k, 16M, 1G")
        }
        let (bytes, overflow) = n.multipliedReportingOverflow(by: scale)
        guard !overflow else { throw OptionValueError("too large") }
        return ByteSize(bytes: bytes, text: text)
    }
}

/// A length of time, in the units of the time syntax (h, m, s, ms, us, ns; a bare number is
/// seconds), to nanoseconds. Examples: `500ms`, `2s`, `1m30s`.
public struct DurationValue: OptionValue, Hashable {
    public let nanoseconds: Int64
    public let text: String

    /// `text` defaults to the largest unit that divides `nanoseconds` (`10s`, `100ms`).
    public init(nanoseconds: Int64, text: String? = nil) {
        self.nanoseconds = nanoseconds
        let units: [(Int64, String)] = [(3_600_000_000_000, "h"), (60_000_000_000, "m"), (1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")]
        let unit = units.first { nanoseconds != 0 && nanoseconds % $0.0 == 0 }
        self.text = text ?? unit.map { "\(nanoseconds / $0.0)\($0.1)" } ?? (nanoseconds == 0 ? "0s" : "\(nanoseconds)ns")
    }

    public static func parse(_ text: String) throws(OptionValueError) -> DurationValue {
        do {
            return DurationValue(nanoseconds: try TimeSpec.duration(text), text: text)
        } catch {
            throw OptionValueError("\(error.reason); durations are e.g. 500ms, 2s, 1m30s")
        }
    }
}

/// How much the dashcam keeps (`record --ring`): a length of time (`10m`, `90s`, `1h`) or a
/// size (`64M`, `512k`, `1G`, `64MiB`). A lower-case `m` is minutes; a size takes `M`
/// (or `MB`, `MiB`).
public struct RingWindow: OptionValue, Hashable {
    public let nanoseconds: Int64?
    public let bytes: Int?
    public let text: String

    public static func parse(_ text: String) throws(OptionValueError) -> RingWindow {
        let isSize = text.last.map { "KkMGB".contains($0) } ?? false
        if !isSize, let d = try? DurationValue.parse(text), d.nanoseconds > 0 {
            return RingWindow(nanoseconds: d.nanoseconds, bytes: nil, text: text)
        }
        if let b = try? ByteSize.parse(text), b.bytes > 0 {
            return RingWindow(nanoseconds: nil, bytes: b.bytes, text: text)
        }
        throw OptionValueError("the ring is a positive length of time (e.g. 90s, 10m, 1h) or a size (e.g. 512k, 64M, 1G)")
    }
}

/// Permissions of a unix socket, in octal, up to 0777. Examples: `0600`, `660`.
public struct SocketMode: OptionValue, Hashable {
    public let mode: mode_t
    public let text: String

    /// `text` defaults to four octal digits (`0600`).
    public init(mode: mode_t, text: String? = nil) {
        self.mode = mode
        let octal = String(mode, radix: 8)
        self.text = text ?? String(repeating: "0", count: max(0, 4 - octal.count)) + octal
    }

    public static func parse(_ text: String) throws(OptionValueError) -> SocketMode {
        guard let v = UInt32(text, radix: 8), v <= 0o777 else {
            throw OptionValueError("a socket mode is octal permissions up to 0777, e.g. 0600 or 660")
        }
        return SocketMode(mode: mode_t(v), text: text)
    }
}

/// A replay speed: a factor from 0.1 to 1000 (`10` or `10x`), or `max`, as fast as the
/// client reads. Examples: `10`, `0.5x`, `max`.
public struct Speed: OptionValue, Hashable {
    /// The factor; nil for `max`.
    public let factor: Double?
    public let text: String

    /// `text` defaults to the factor (`1`, `0.5`) or `max`.
    public init(factor: Double?, text: String? = nil) {
        self.factor = factor
        self.text = text ?? factor.map { $0 == $0.rounded() && abs($0) < 1e15 ? "\(Int($0))" : "\($0)" } ?? "max"
    }

    public static func parse(_ text: String) throws(OptionValueError) -> Speed {
        if text.lowercased() == "max" { return Speed(factor: nil, text: text) }
        var t = Substring(text)
        if t.hasSuffix("x") { t = t.dropLast() }
        guard let v = Double(t), v.isFinite else {
            throw OptionValueError("a speed is a number from 0.1 to 1000 (10 or 10x), or max")
        }
        guard ReplayOptions.speedRange.contains(v) else {
            throw OptionValueError("the speed must be from 0.1 to 1000, or max")
        }
        return Speed(factor: v, text: text)
    }
}

/// A time or record in the one time syntax (`TimeSpec`), with the text as typed so that
/// messages say `--from 99s`, not `--from 1m39s`. Examples: `12.5s`, `-2s`, `@160`, `10:00:05`.
///
/// The options that take one are declared with `parsing: .unconditional`, so that `--from -2s`
/// takes `-2s` as the value rather than as an option; a value that is really the next option
/// (`--from --to 5s`) is reported as such.
public struct TimeArgument: OptionValue, Hashable {
    public let spec: TimeSpec
    public let text: String

    public init(spec: TimeSpec, text: String) {
        self.spec = spec
        self.text = text
    }

    /// A record number as a time argument (`#N`); the shell's marks and `--here` become these.
    public init(record: Int, text: String? = nil) {
        self.init(spec: .record(record), text: text ?? "#\(record)")
    }

    public static func parse(_ text: String) throws(OptionValueError) -> TimeArgument {
        if text.hasPrefix("--") || (text.hasPrefix("-") && text.dropFirst().first?.isLetter == true) {
            throw OptionValueError("that is an option, not a time: the time is missing (\(TimeSpec.examples))")
        }
        do {
            return TimeArgument(spec: try TimeSpec.parse(text), text: text)
        } catch {
            throw OptionValueError("\(error.reason); times are \(TimeSpec.examples)")
        }
    }
}

/// Socket addresses as options take them: `unix:PATH`, `tcp:HOST:PORT`, and, as qmp-shell
/// takes them, a bare path (`/run/vm1.qmp`, `./qmp.sock`) or `HOST:PORT` (`localhost:4444`).
public enum Address {
    /// The address as an `Endpoint`; the error names the option, e.g. `--listen: 'x:y' is not
    /// an address: ...`.
    public static func endpoint(_ text: String, option: String) throws(OptionValueError) -> Endpoint {
        do {
            return try Endpoint(parsing: withScheme(text))
        } catch {
            throw OptionValueError("\(option): '\(text)' is not an address: use unix:PATH, tcp:HOST:PORT, a socket path or HOST:PORT")
        }
    }

    /// `/tmp/q.sock` -> `unix:/tmp/q.sock`, `localhost:4444` -> `tcp:localhost:4444`;
    /// `unix:...` and `tcp:...` (and the empty text) as they are.
    public static func withScheme(_ s: String) -> String {
        if s.hasPrefix("unix:") || s.hasPrefix("tcp:") || s.isEmpty { return s }
        if let colon = s.lastIndex(of: ":"), !s.contains("/"), UInt16(s[s.index(after: colon)...]) != nil { return "tcp:" + s }
        return "unix:" + s
    }
}

/// `--match exact|name`: ArgumentParser lists the values in --help and in its error.
extension MatchMode: ExpressibleByArgument {}
/// `--unmatched error|empty`.
extension UnmatchedPolicy: ExpressibleByArgument {}

extension ArgumentHelp {
    /// Help for an option declared with `transform: T.parse`, whose default ArgumentParser does
    /// not show: `text (default: 8M)`, as it shows the default of other options.
    public init(_ text: String, valueName: String, default value: some OptionValue) {
        self.init("\(text) (default: \(value.text))", valueName: valueName)
    }
}
