import QMP
import Recording

import Transport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a client's command is matched to a recorded one.
public enum MatchMode: String, Sendable, CaseIterable {
    /// Same `execute` and equal `arguments` (member order and 1 vs 1.0 do not matter).
    case exact
    /// Same `execute` only.
    case name
}

/// What a command with no recorded match is answered with.
public enum UnmatchedPolicy: String, Sendable, CaseIterable {
    /// A GenericError naming the closest recorded command.
    case error
    /// `{"return": {}}`.
    case empty
}

/// When the recorded events reach a client (docs/REPLAY.md, "Causality").
public enum EventRelease: String, Sendable, CaseIterable {
    /// The default: events recorded while a command ran come with its reply, and events
    /// after a reply wait for it, as long as the client follows the recorded commands; a
    /// client that does not send the command an event waits for within `holdPatience` of the
    /// event's time (it only listens, or does something else) gets every event on the clock.
    case auto
    /// Events wait for their commands however long it takes (strict conformance runs).
    case commands
    /// Every event on the clock; commands never hold or bring events (`--clock-only`).
    case clock
}

/// Every knob of a replay, shared by `qmpreplay serve`, `qmpreplay replay` and the shell's
/// `replay start`. Example: `var o = ReplayOptions(); o.speed = 10; o.loop = true`.
public struct ReplayOptions: Sendable {
    /// Playback speed factor, 0.1 ... 1000; `nil` means as fast as the client reads.
    public var speed: Double? = 1
    /// Start of the replayed span (default: the recorded negotiation).
    public var from: TimeSpec?
    /// End of the replayed span, inclusive (default: the end of the recording).
    public var to: TimeSpec?
    /// Start again at `from` after `to`.
    public var loop = false
    /// Idle gaps between releases longer than this (recording time, ns) are shortened to it.
    public var maxGap: Int64?
    /// Rewrite event timestamps to the replay's wall clock (default: recorded bytes unchanged).
    public var retime = false
    public var match: MatchMode = .exact
    public var unmatched: UnmatchedPolicy = .error
    /// Release every event on the clock, even those recorded while a command ran.
    public var clockOnly = false
    /// How events wait for commands; `clockOnly`, `shared` and `strict` choose a mode of their
    /// own unless this is set otherwise (see `effectiveRelease`).
    public var release: EventRelease = .auto
    /// With `.auto`: how long (wall ns) an event may wait past its time for a command the
    /// client has not sent before the session concludes the client is not following the
    /// recorded commands and puts every event on the clock.
    public var holdPatience: Int64 = 1_000_000_000
    /// The client must send the recorded commands in the recorded order.
    public var strict = false
    /// With `strict`: stop at the first divergence.
    public var failFast = false
    /// One timeline for all clients (late joiners get events from now on).
    public var shared = false
    /// The recorded connection to replay; default: the first one with a greeting.
    public var connection: UInt32?
    /// Mode of a unix listening socket.
    public var socketMode: mode_t = 0o600
    /// Bytes queued for a client that does not read before it is dropped.
    public var clientBufferLimit = 8 << 20
    /// A client whose queued output has not moved for this long (ns) is dropped.
    public var stallTimeout: Int64 = 10_000_000_000
    /// The longest client message; longer input is answered with an error and skipped.
    public var inputLimit = QMPFramer.defaultLimit
    /// Most clients served at once; more are refused with a logged reason.
    public var maxClients = 1024
    /// Ask for a higher scheduling priority (nice -10) for the serving thread, when permitted:
    /// on a busy machine punctual releases need the CPU the moment they are due.
    public var raisePriority = true
    /// Run the serving thread under SCHED_FIFO (when permitted): releases then preempt other
    /// work at once instead of waiting for the next scheduler tick on a loaded machine. Off by
    /// default: at max speed the thread can keep a core busy.
    public var realtime = false

    public init() {}

    /// The mode in force: `clockOnly` and `shared` timelines are clock-only (one client's
    /// command cannot move everyone's events); `strict` holds events for their commands
    /// (the client is expected to send them); otherwise `release`.
    public var effectiveRelease: EventRelease {
        if clockOnly || shared { return .clock }
        if strict && release == .auto { return .commands }
        return release
    }

    /// Speeds the scheduler accepts (QMP clients behave oddly outside this range anyway).
    public static let speedRange: ClosedRange<Double> = 0.1...1000

    /// Checks the values that types cannot express; the message names the option.
    public func validate() throws(ReplayError) {
        if let s = speed, !ReplayOptions.speedRange.contains(s) {
            throw ReplayError.usage("--speed must be between 0.1 and 1000, or max (got \(s))")
        }
        if let g = maxGap, g <= 0 { throw ReplayError.usage("--max-gap must be positive") }
        if failFast && !strict { throw ReplayError.usage("--fail-fast needs --strict") }
        if clientBufferLimit < 4096 { throw ReplayError.usage("--client-buffer must be at least 4 KiB") }
        if stallTimeout <= 0 { throw ReplayError.usage("--stall-timeout must be positive") }
    }

    /// Parses `--speed`'s value: a number or `max`.
    public static func parseSpeed(_ s: String) throws(ReplayError) -> Double? {
        if s == "max" { return nil }
        var t = s
        if t.hasSuffix("x") { t.removeLast() }
        guard let v = Double(t), v.isFinite else { throw ReplayError.usage("invalid speed '\(s)': use a number from 0.1 to 1000, or max") }
        guard speedRange.contains(v) else { throw ReplayError.usage("--speed must be between 0.1 and 1000, or max (got \(s))") }
        return v
    }

    /// Parses `--match`'s value.
    public static func parseMatch(_ s: String) throws(ReplayError) -> MatchMode {
        guard let m = MatchMode(rawValue: s) else { throw ReplayError.usage("--match must be exact or name (got '\(s)')") }
        return m
    }

    /// Parses `--unmatched`'s value.
    public static func parseUnmatched(_ s: String) throws(ReplayError) -> UnmatchedPolicy {
        guard let u = UnmatchedPolicy(rawValue: s) else { throw ReplayError.usage("--unmatched must be error or empty (got '\(s)')") }
        return u
    }

    /// Parses a duration option (`--max-gap 2s`, `--stall-timeout 10s`) to nanoseconds.
    public static func parseDuration(_ s: String, option: String) throws(ReplayError) -> Int64 {
        do { return try TimeSpec.duration(s) } catch { throw ReplayError.usage("\(option): \(error)") }
    }

    /// Parses a byte size: `65536`, `64k`, `8M`, `1G`.
    public static func parseSize(_ s: String) throws(ReplayError) -> Int {
        var t = s.lowercased()
        var scale = 1
        if t.hasSuffix("ib") { t.removeLast(2) } else if t.hasSuffix("b") { t.removeLast() }
        switch t.last {
        case "k": scale = 1 << 10; t.removeLast()
        case "m": scale = 1 << 20; t.removeLast()
        case "g": scale = 1 << 30; t.removeLast()
        default: break
        }
        guard let v = Int(t), v >= 0 else { throw ReplayError.usage("invalid size '\(s)': use bytes or 64k, 8M, 1G") }
        return v * scale
    }

    /// Parses an octal file mode such as `0600` or `660`.
    public static func parseMode(_ s: String) throws(ReplayError) -> mode_t {
        guard let v = UInt32(s, radix: 8), v <= 0o777 else { throw ReplayError.usage("invalid socket mode '\(s)': use octal, e.g. 0600") }
        return mode_t(v)
    }
}

/// Errors of the replay module, each with a message a person can act on.
public enum ReplayError: Error, CustomStringConvertible, Sendable {
    /// Bad options (exit 64).
    case usage(String)
    /// The recording cannot be replayed as asked (exit 2).
    case recording(String)
    /// A socket could not be set up (exit 2).
    case socket(String)

    public var description: String {
        switch self {
        case .usage(let s), .recording(let s), .socket(let s): return s
        }
    }
}

/// The option words of the shell's `replay start` (and anything else that has a command
/// line as one string): `--listen unix:/tmp/s --speed 10 --loop`.
public enum ReplayArguments {
    /// One line per option, for help texts.
    public static let help = """
        --listen unix:PATH|tcp:HOST:PORT   where to serve (required)
        --speed X|max                      0.1 ... 1000, or max (default 1)
        --from T, --to T                   span to replay (12.5s, #42, +5s, 10:00:05, ...)
        --loop                             start again at --from after --to
        --max-gap D                        shorten idle gaps to D (e.g. 2s)
        --retime                           rewrite event timestamps to the replay's clock
        --match exact|name                 how commands are matched (default exact)
        --unmatched error|empty            answer to unmatched commands (default error)
        --clock-only                       release all events on the clock
        --strict [--fail-fast]             client must send the recorded commands in order
        --shared                           one timeline for all clients
        --connection N                     recorded connection to replay
        --socket-mode MODE                 unix socket mode (default 0600)
        --client-buffer SIZE               drop a client with more queued output (default 8M)
        --stall-timeout D                  drop a client whose queued output does not move for D (default 10s)
        --realtime                         serve from a SCHED_FIFO thread when permitted
        """

    public static func parse(_ words: [String]) throws(ReplayError) -> (ReplayOptions, Endpoint) {
        var o = ReplayOptions()
        var listen: Endpoint?
        var i = 0
        func value(_ name: String) throws(ReplayError) -> String {
            i += 1
            guard i < words.count else { throw ReplayError.usage("\(name) needs a value") }
            return words[i]
        }
        func time(_ name: String, _ s: String) throws(ReplayError) -> TimeSpec {
            do { return try TimeSpec.parse(s) } catch { throw ReplayError.usage("\(name): \(error)") }
        }
        while i < words.count {
            var w = words[i]
            var inline: String?
            if w.hasPrefix("--"), let eq = w.firstIndex(of: "=") {
                inline = String(w[w.index(after: eq)...])
                w = String(w[..<eq])
            }
            func v() throws(ReplayError) -> String { if let x = inline { return x }; return try value(w) }
            switch w {
            case "--listen":
                let s = try v()
                do { listen = try Endpoint(parsing: s) } catch { throw ReplayError.usage("--listen: \(error)") }
            case "--speed": o.speed = try ReplayOptions.parseSpeed(try v())
            case "--from": o.from = try time(w, try v())
            case "--to": o.to = try time(w, try v())
            case "--loop": o.loop = true
            case "--max-gap": o.maxGap = try ReplayOptions.parseDuration(try v(), option: w)
            case "--retime": o.retime = true
            case "--match": o.match = try ReplayOptions.parseMatch(try v())
            case "--unmatched": o.unmatched = try ReplayOptions.parseUnmatched(try v())
            case "--clock-only": o.clockOnly = true
            case "--strict": o.strict = true
            case "--fail-fast": o.failFast = true
            case "--shared": o.shared = true
            case "--realtime": o.realtime = true
            case "--connection":
                let s = try v()
                guard let c = UInt32(s), c > 0 else { throw ReplayError.usage("--connection must be a connection number (1, 2, ...), got '\(s)'") }
                o.connection = c
            case "--socket-mode": o.socketMode = try ReplayOptions.parseMode(try v())
            case "--client-buffer": o.clientBufferLimit = try ReplayOptions.parseSize(try v())
            case "--stall-timeout": o.stallTimeout = try ReplayOptions.parseDuration(try v(), option: w)
            default:
                throw ReplayError.usage("unknown option '\(words[i])'; options are:\n\(help)")
            }
            i += 1
        }
        try o.validate()
        guard let ep = listen else { throw ReplayError.usage("--listen unix:PATH or tcp:HOST:PORT is required") }
        return (o, ep)
    }
}
