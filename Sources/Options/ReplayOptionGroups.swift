import ArgumentParser
import Transport
import Replay

/// The options of a replay, declared once for `qmpreplay serve`, `qmpreplay replay` and the
/// shell's `replay start` (which parses its words with `ServeOptions.parse(words)`): the
/// timeline (speed, gaps, loop), matching and strictness. The span (`--from`/`--to`) and the
/// serving options are groups of their own; `options(span:)` puts them together.
public struct ReplayOptionGroup: ParsableArguments {
    public init() {}

    /// The defaults are `ReplayOptions`'s.
    static let defaults = ReplayOptions()
    static let defaultSpeed = Speed(factor: defaults.speed)

    @Option(help: ArgumentHelp("Playback speed, 0.1 to 1000 (10 or 10x), or max (as fast as the client reads).", valueName: "speed", default: defaultSpeed),
            transform: Speed.parse)
    public var speed = defaultSpeed

    @Flag(help: "Start again at --from after --to.")
    public var loop = false

    @Option(name: .customLong("max-gap"), help: ArgumentHelp("Shorten idle gaps longer than this (e.g. 2s).", valueName: "duration"),
            transform: DurationValue.parse)
    public var maxGap: DurationValue?

    @Flag(help: "Rewrite event timestamps to the replay's wall clock, consistently with the speed (default: recorded bytes unchanged).")
    public var retime = false

    @Option(help: ArgumentHelp("How client commands match recorded ones: exact (name and arguments) or name.", valueName: "mode"))
    public var match = defaults.match

    @Option(help: ArgumentHelp("Answer to a command with no recorded match: error (a GenericError naming the closest recorded command) or empty ({\"return\": {}}).", valueName: "answer"))
    public var unmatched = defaults.unmatched

    @Flag(name: .customLong("clock-only"), help: "Release every event on the clock, also those recorded while a command ran (the same as --event-order clock).")
    public var clockOnly = false

    @Option(name: .customLong("event-order"), help: ArgumentHelp(
        "How events recorded after a command's reply wait for the client: auto (they wait while the client follows the recorded commands; a client that only listens gets them on the clock), commands (they wait however long it takes; --strict's default) or clock.",
        valueName: "mode"))
    public var eventOrder: EventRelease = ReplayOptions().release

    @Flag(help: "The client must send the recorded commands in the recorded order; divergences are reported (serve, replay: the exit status is 1).")
    public var strict = false

    @Flag(name: .customLong("fail-fast"), help: "With --strict: stop at the first divergence.")
    public var failFast = false

    @Option(help: "The recorded connection to replay (default: the first with a greeting).")
    public var connection: UInt32?

    /// These options with the span; the serving options keep their defaults.
    public func options(span: TimeSpan) -> ReplayOptions {
        var o = ReplayOptions()
        o.speed = speed.factor
        o.from = span.from?.spec
        o.to = span.to?.spec
        o.loop = loop
        o.maxGap = maxGap?.nanoseconds
        o.retime = retime
        o.match = match
        o.unmatched = unmatched
        o.clockOnly = clockOnly
        o.release = eventOrder
        o.strict = strict
        o.failFast = failFast
        o.connection = connection
        return o
    }

    public func validate() throws {
        if connection == 0 { throw ValidationError("--connection must be a connection number (1, 2, ...), got '0'") }
        try ReplayOptionGroup.check(options(span: TimeSpan()))
    }

    /// `ReplayOptions.validate()` as ArgumentParser reports it (a usage error, exit 64).
    static func check(_ o: ReplayOptions) throws {
        do { try o.validate() } catch { throw ValidationError(error.description) }
    }
}

/// `qmpreplay serve`'s options and the words of the shell's `replay start`: where to listen,
/// the replay options, the span, and how clients are served.
/// Example: `--listen /tmp/q.sock --speed 10 --from -30s --shared`.
public struct ServeOptions: ParsableArguments {
    public init() {}

    static let defaults = ReplayOptionGroup.defaults
    static let defaultSocketMode = SocketMode(mode: defaults.socketMode)
    static let defaultClientBuffer = ByteSize(bytes: defaults.clientBufferLimit)
    static let defaultStallTimeout = DurationValue(nanoseconds: defaults.stallTimeout)

    @Option(help: ArgumentHelp("Where clients connect: unix:PATH or a socket path, tcp:HOST:PORT or HOST:PORT (HOST defaults to 127.0.0.1).", valueName: "address"))
    public var listen: String

    @OptionGroup public var replay: ReplayOptionGroup

    @OptionGroup public var span: TimeSpanOptions

    @OptionGroup(title: "Adversarial replay (docs/TESTING-CLIENTS.md)") public var adversary: AdversaryOptions

    @Flag(help: "One timeline for all clients (late joiners get events from now on).")
    public var shared = false

    @Option(name: .customLong("socket-mode"), help: ArgumentHelp("Mode of the unix socket (octal).", valueName: "mode", default: defaultSocketMode),
            transform: SocketMode.parse)
    public var socketMode = defaultSocketMode

    @Option(name: .customLong("client-buffer"), help: ArgumentHelp("Drop a client that does not read once this much output is queued for it.", valueName: "size", default: defaultClientBuffer),
            transform: ByteSize.parse)
    public var clientBuffer = defaultClientBuffer

    @Option(name: .customLong("stall-timeout"), help: ArgumentHelp("Drop a client whose queued output has not moved for this long.", valueName: "duration", default: defaultStallTimeout),
            transform: DurationValue.parse)
    public var stallTimeout = defaultStallTimeout

    @Option(name: .customLong("max-clients"), help: ArgumentHelp("Most clients at once.", valueName: "n"))
    public var maxClients = defaults.maxClients

    @Flag(help: "Serve from a SCHED_FIFO thread when permitted, for punctual releases on a busy machine.")
    public var realtime = false

    @Flag(help: "Start paused: no event goes until the control API's resume, step or burst (serve --control, the shell's replay resume|step).")
    public var paused = false

    /// The `--listen` address. Not checked by `validate()`: the command line reports a bad
    /// address without the usage ArgumentParser adds to a validation error, as the shell does.
    public func endpoint() throws(OptionValueError) -> Endpoint {
        try Address.endpoint(listen, option: "--listen")
    }

    /// Every knob of the replay.
    public var options: ReplayOptions {
        var o = replay.options(span: span.span)
        o.shared = shared
        o.socketMode = socketMode.mode
        o.clientBufferLimit = clientBuffer.bytes
        o.stallTimeout = stallTimeout.nanoseconds
        o.maxClients = max(1, maxClients)
        o.realtime = realtime
        o.startPaused = paused
        // Checked by validate(); here only read.
        o.chaos = try? adversary.chaosSettings()
        o.faults = (try? adversary.faultRules()) ?? []
        return o
    }

    public func validate() throws {
        try ReplayOptionGroup.check(options)
    }
}

/// Errors of option parsing in one style, on the command line and in the shell alike:
/// ArgumentParser's message without its "Error: " and starting in lower case, as every other
/// error of the project does. Example: "the value '5x' is invalid for '--from <time>': ...".
public enum OptionErrors {
    /// The message for an error thrown by `type.parse(words)`.
    public static func message(for error: Error, parsing type: ParsableArguments.Type) -> String {
        styled(type.message(for: error))
    }

    /// `Error: Unknown option '--x'` -> `unknown option '--x'`.
    public static func styled(_ text: String) -> String {
        var s = Substring(text)
        if s.hasPrefix("Error: ") { s = s.dropFirst("Error: ".count) }
        // ArgumentParser's messages start with a capital; ours do not.
        if let c = s.first, c.isUppercase, s.dropFirst().first?.isLowercase == true {
            return c.lowercased() + s.dropFirst()
        }
        return String(s)
    }
}

extension EventRelease: ExpressibleByArgument {}
