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
/// `replay start` (their options are declared once, in the Options module, and produce one of
/// these). Example: `var o = ReplayOptions(); o.speed = 10; o.loop = true`.
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
    /// Start paused: timelines wait for the control API's `resume` or `step` (`--paused`).
    public var startPaused = false
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
    /// Adversarial delivery (docs/TESTING-CLIENTS.md): events at the points a schedule
    /// chooses instead of on the recorded clock; nil: the recorded order.
    public var chaos: ChaosSettings?
    /// Fault rules combined with the recording (docs/TESTING-CLIENTS.md, "Fault rules").
    public var faults: [FaultRule] = []

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
        if let c = chaos {
            if shared { throw ReplayError.usage("--chaos gives each client its own schedule; it cannot be combined with --shared") }
            if let st = c.stall, st <= 0 || st >= stallTimeout {
                throw ReplayError.usage("--chaos-stall must be positive and shorter than --stall-timeout (\(DurationFormat.short(stallTimeout)))")
            }
            if c.splits < 0 || c.splits > 10_000 { throw ReplayError.usage("--chaos-splits must be between 0 and 10000") }
            if c.idle <= 0 { throw ReplayError.usage("--chaos-idle must be positive") }
        }
        for r in faults {
            if case .delay(let d) = r.action, d >= stallTimeout {
                throw ReplayError.usage("\(r.source): a delay of \(DurationFormat.short(d)) is not shorter than --stall-timeout (\(DurationFormat.short(stallTimeout))), which would drop the client")
            }
        }
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
