import ArgumentParser
import Logging
import Options
import QMP
import Recording
import Replay
import Transport

#if canImport(Glibc)
import Glibc
#endif

struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Push a recording's QEMU-side stream to a consumer or stdout.",
        usage: HelpText.usage("qmpreplay replay FILE (--stdout | --connect-to ADDRESS) [--speed X|max] [--from T] [--to T] [options]"),
        discussion: HelpText.format("""
            --stdout writes the recorded connection's QEMU-side messages (the greeting, then
            every reply and event of the span) with the recorded timing, scaled like 'serve', for
            piping into a consumer. --connect-to connects out to a listening consumer and
            behaves like 'serve' for it: greeting, negotiation, the recorded events, and recorded
            replies to its commands. The replay ends at the end of the span (--connect-to: once
            the consumer has also been quiet for --linger), on SIGINT/SIGTERM, or when the
            consumer goes away.

            --from and --to are times, as in every other command (-2s, 12.5s, @160, ...). The
            address option was called --to before; '--to unix:PATH' and '--to tcp:HOST:PORT'
            still work, with a warning, and --until is still taken for --to TIME.

            Examples:
              qmpreplay replay guest-balloon.qmprec --stdout --speed 10
              qmpreplay replay rec.qmprec --stdout --speed max --to 20s | consumer
              qmpreplay replay rec.qmprec --connect-to /run/agent/qmp.sock --retime

            Exit status: 0 done; 1 --strict found divergences (--connect-to); 2 unreadable
            recording or cannot connect; 64 bad command line (neither or both of --stdout and
            --connect-to, a time or address that does not parse).
            """))

    @Argument(help: "The recording (.qmprec or .qmprec.gz).", completion: .file(extensions: ["qmprec", "gz"]))
    var file: String

    @Flag(help: "Write the stream to standard output.")
    var stdout = false

    @Option(name: .customLong("connect-to"),
            help: ArgumentHelp("Connect to a consumer listening at this address: unix:PATH or a socket path, tcp:HOST:PORT or HOST:PORT.", valueName: "address"))
    var connectTo: String?

    @OptionGroup var replay: ReplayOptionGroup

    @OptionGroup var span: SpanOptions<ReplayEnd>

    /// The former spelling of `--to TIME`, from when `--to` was also the address.
    @Option(parsing: .unconditional, help: .hidden, transform: TimeArgument.parse)
    var until: TimeArgument?

    static let defaultLinger = DurationValue(nanoseconds: 1_000_000_000)
    @Option(help: ArgumentHelp("With --connect-to: how long the consumer may stay quiet after the end before the replay closes.", valueName: "duration", default: defaultLinger),
            transform: DurationValue.parse)
    var linger = defaultLinger

    @OptionGroup var output: ReportOptions

    /// `--to unix:PATH` (deprecated): the address, as it was spelled before --connect-to.
    private var deprecatedTarget: String? { span.to.flatMap { $0.isAddress ? $0.text : nil } }
    private var target: String? { connectTo ?? deprecatedTarget }
    private var timeSpan: TimeSpan { TimeSpan(from: span.from, to: until ?? span.to?.time) }

    func validate() throws {
        if connectTo != nil && deprecatedTarget != nil {
            throw ValidationError("give the address once, with --connect-to (--to is the end of the span)")
        }
        if stdout == (target != nil) { throw ValidationError("give exactly one of --stdout and --connect-to ADDRESS") }
        if let end = span.to, !end.isAddress {
            do { _ = try TimeArgument.parse(end.text) } catch { throw ValidationError("--to '\(end.text)': \(error)") }
            if until != nil { throw ValidationError("give the end of the span once (--to TIME)") }
        }
    }

    func run() throws {
        let o = replay.options(span: timeSpan)
        if let t = deprecatedTarget { warn("--to \(t) is the former spelling of --connect-to \(t); --to now means the end of the span, as in every other command") }
        CLILogHandler.install(quiet: output.quiet)
        let log = Logger(label: "qmpreplay.replay")
        let r = try openRecording(file, strict: false)
        if stdout {
            let player: StreamPlayer
            do { player = try StreamPlayer(recording: r, options: o) } catch { throw fail("\(error)") }
            if let n = player.script.connectionNotice(chosen: o.connection) { warn(n) }
            let stop = StopFlag()
            Signals.onStop { name in
                log.info("stopping on \(name)")
                stop.set()
            }
            let report = player.run(
                write: { bytes in
                    bytes.withUnsafeBytes { raw in
                        var off = 0
                        while off < raw.count {
                            let n = write(1, raw.baseAddress! + off, raw.count - off)
                            if n < 0 { if errno == EINTR { continue }; return false }
                            off += n
                        }
                        return true
                    }
                },
                shouldStop: { stop.isSet })
            logSummary(report, log)
            try ReportFile(path: output.report, file: file, target: "stdout", options: o, script: player.script).write([report])
            return
        }
        let ep = try parseEndpoint(target!, option: "--connect-to")
        let server: ReplayServer
        do { server = try ReplayServer(recording: r, options: o) } catch { throw fail("\(error)") }
        if let n = server.script.connectionNotice(chosen: o.connection) { warn(n) }
        let reportFile = ReportFile(path: output.report, file: file, target: ep.description, options: o, script: server.script)
        Signals.onStop { name in
            log.info("stopping on \(name)")
            server.stopBySignal()
        }
        do { try server.start(connectingTo: ep, linger: linger.nanoseconds) } catch { throw fail("\(error)") }
        let sessions = try followReports(server, file: reportFile, log: log)
        if o.strict && sessions.contains(where: { !$0.divergences.isEmpty }) { throw ExitCode(1) }
    }
}

/// `replay`'s `--to`: a time, or the address it named before `--connect-to` existed
/// (`--to unix:PATH`, `--to tcp:HOST:PORT`; still taken, with a warning). A time is checked in
/// `ReplayCommand.validate()`, once it is known which of the two it is.
struct ReplayEnd: SpanEnd {
    let text: String

    static func spanEnd(_ text: String) -> ReplayEnd { ReplayEnd(text: text) }

    var isAddress: Bool { text.hasPrefix("unix:") || text.hasPrefix("tcp:") }
    var time: TimeArgument? { isAddress ? nil : try? TimeArgument.parse(text) }
}
