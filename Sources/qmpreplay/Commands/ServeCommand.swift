import ArgumentParser
import Logging
import QMP
import Recording
import Replay
import Transport

/// The replay options shared by `serve` and `replay` (and spelled the same as the shell's
/// `replay start`, see ReplayArguments).
struct ReplayTimingOptions: ParsableArguments {
    @Option(help: "Playback speed, 0.1 to 1000, or max (as fast as the client reads).")
    var speed: String = "1"

    @Option(parsing: .unconditional, help: ArgumentHelp("Start of the span (default: the recorded negotiation): -2s, 12.5s, @160, ... (see 'qmpreplay --help').", valueName: "time"),
            transform: parseTimeArgument)
    var from: TimeArgument?

    @Flag(help: "Start again at --from after --to.")
    var loop = false

    @Option(name: .customLong("max-gap"), help: "Shorten idle gaps longer than this (e.g. 2s).")
    var maxGap: String?

    @Flag(help: "Rewrite event timestamps to the replay's wall clock, consistently with the speed (default: recorded bytes unchanged).")
    var retime = false

    @Option(help: "How client commands match recorded ones: exact (name and arguments) or name.")
    var match: String = "exact"

    @Option(help: "Answer to a command with no recorded match: error (a GenericError naming the closest recorded command) or empty ({\"return\": {}}).")
    var unmatched: String = "error"

    @Flag(name: .customLong("clock-only"), help: "Release every event on the clock, also those recorded while a command ran.")
    var clockOnly = false

    @Flag(help: "The client must send the recorded commands in the recorded order; divergences are reported and the exit status is 1.")
    var strict = false

    @Flag(name: .customLong("fail-fast"), help: "With --strict: stop at the first divergence.")
    var failFast = false

    @Option(help: "The recorded connection to replay (default: the first with a greeting).")
    var connection: UInt32?

    @Option(help: "Write the fidelity report of every session as JSON to this file.")
    var report: String?

    @Flag(help: "No per-session summary on standard error.")
    var quiet = false

    /// `to` is the span's end; it is not part of the group because `replay --to` also takes an address.
    func makeOptions(to: TimeSpec?) throws -> ReplayOptions {
        var o = ReplayOptions()
        do {
            o.speed = try ReplayOptions.parseSpeed(speed)
            if let g = maxGap { o.maxGap = try ReplayOptions.parseDuration(g, option: "--max-gap") }
            o.match = try ReplayOptions.parseMatch(match)
            o.unmatched = try ReplayOptions.parseUnmatched(unmatched)
            o.from = from?.spec
            o.to = to
            o.loop = loop
            o.retime = retime
            o.clockOnly = clockOnly
            o.strict = strict
            o.failFast = failFast
            o.connection = connection
            try o.validate()
        } catch {
            throw fail("\(error)", code: Exit.usage)
        }
        return o
    }
}

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a recording to QMP clients as a fake QEMU.",
        usage: HelpText.usage("qmpreplay serve FILE --listen ADDRESS [--speed X|max] [--from T] [--to T] [--loop] [--strict] [options]"),
        discussion: HelpText.format("""
            Each client that connects gets what the recorded client got: the recorded greeting,
            negotiation exactly as QEMU does it (CommandNotFound before qmp_capabilities, no
            events before it, oob only if the greeting offered it), then the recorded events on
            the recorded schedule (scaled by --speed, from --from to --to, --loop, --max-gap)
            and, for each command, the recorded reply of the matching recorded command with the
            client's own id. Events recorded while a command ran (RESUME after cont) are sent
            when the client sends that command, and no event goes before a reply that preceded
            it in the recording (--clock-only turns both off). Bad input gets QEMU's own error
            answers; the connection stays up.

            Clients each get their own timeline, or with --shared one timeline for all (started
            by the first client to negotiate; late joiners get events from then on). A client
            that does not read is dropped once --client-buffer bytes are queued for it. After
            each session a fidelity summary goes to standard error, and with --report FILE all
            of them as JSON.

            Examples:
              qmpreplay serve lifecycle.qmprec --listen unix:/tmp/fake-qemu.sock
              qmpreplay serve rec.qmprec --listen tcp::4444 --speed 10 --max-gap 2s --loop
              qmpreplay serve rec.qmprec --listen /tmp/q.sock --strict --once --report report.json
              qmpreplay serve rec.qmprec --listen unix:/tmp/q.sock --shared --speed max --from -30s

            Exit status: 0 served until a signal (SIGINT/SIGTERM) or --once; 1 --strict found
            divergences; 2 unreadable recording or cannot listen; 64 bad command line (a time or
            address that does not parse, a speed out of range). See docs/REPLAY.md for the manual.
            """))

    @Argument(help: "The recording (.qmprec or .qmprec.gz).", completion: .file(extensions: ["qmprec", "gz"]))
    var file: String

    @Option(help: ArgumentHelp("Where clients connect: unix:PATH or a socket path, tcp:HOST:PORT or HOST:PORT (HOST defaults to 127.0.0.1).", valueName: "address"))
    var listen: String

    @OptionGroup var replay: ReplayTimingOptions

    @Option(parsing: .unconditional, help: ArgumentHelp("End of the span, inclusive (default: the end of the recording).", valueName: "time"),
            transform: parseTimeArgument)
    var to: TimeArgument?

    @Flag(help: "One timeline for all clients (late joiners get events from now on).")
    var shared = false

    @Option(name: .customLong("socket-mode"), help: "Mode of the unix socket (octal).")
    var socketMode: String = "0600"

    @Option(name: .customLong("client-buffer"), help: "Drop a client that does not read once this much output is queued for it (e.g. 8M).")
    var clientBuffer: String = "8M"

    @Option(name: .customLong("stall-timeout"), help: "Drop a client whose queued output has not moved for this long (e.g. 10s).")
    var stallTimeout: String = "10s"

    @Option(name: .customLong("max-clients"), help: "Most clients at once.")
    var maxClients: Int = 1024

    @Flag(help: "Serve from a SCHED_FIFO thread when permitted, for punctual releases on a busy machine.")
    var realtime = false

    @Flag(help: "Stop after the first client session.")
    var once = false

    func run() throws {
        var o = try replay.makeOptions(to: to?.spec)
        let ep = try parseEndpoint(listen, option: "--listen")
        do {
            o.socketMode = try ReplayOptions.parseMode(socketMode)
            o.clientBufferLimit = try ReplayOptions.parseSize(clientBuffer)
            o.stallTimeout = try ReplayOptions.parseDuration(stallTimeout, option: "--stall-timeout")
            o.shared = shared
            o.realtime = realtime
            o.maxClients = max(1, maxClients)
            try o.validate()
        } catch {
            throw fail("\(error)", code: Exit.usage)
        }
        CLILogHandler.install(quiet: replay.quiet)
        let log = Logger(label: "qmpreplay.serve")
        let r = try openRecording(file, strict: false)
        let server: ReplayServer
        do { server = try ReplayServer(recording: r, options: o) } catch let e as ReplayError {
            if case .usage = e { throw fail(e.description, code: Exit.usage) }
            throw fail(e.description)
        }
        let reportFile = ReportFile(path: replay.report, file: file, target: ep.description, options: o, script: server.script)
        if server.script.greetingSynthesized { warn("\(file): no greeting recorded on connection \(server.script.connection); sending a QEMU \(r.header?.qemuVersion ?? "7.2.0")-like one") }
        Signals.onStop { name in
            log.info("stopping on \(name)")
            server.stop()
        }
        do { try server.start(listen: ep, socketMode: o.socketMode) } catch { throw fail("\(error)") }
        let sessions = try followReports(server, file: reportFile, log: log, once: once)
        if o.strict && sessions.contains(where: { !$0.divergences.isEmpty }) { throw ExitCode(1) }
    }
}
