import ArgumentParser
import Logging
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

    @Option(name: .customLong("to"), parsing: .unconditionalSingleValue,
            help: ArgumentHelp("End of the span, inclusive (default: the end of the recording).", valueName: "time"))
    var toValue: [String] = []

    /// The former spelling of `--to TIME`, from when `--to` was also the address.
    @Option(parsing: .unconditional, help: .hidden, transform: parseTimeArgument)
    var until: TimeArgument?

    private static func isAddress(_ v: String) -> Bool { v.hasPrefix("unix:") || v.hasPrefix("tcp:") }

    /// `--to unix:PATH` (deprecated): the address, as it was spelled before --connect-to.
    private var deprecatedTarget: String? { toValue.first(where: ReplayCommand.isAddress) }
    private var target: String? { connectTo ?? deprecatedTarget }
    private var spanEnd: TimeSpec? {
        if let u = until { return u.spec }
        return toValue.first { !ReplayCommand.isAddress($0) }.flatMap { try? parseTimeArgument($0).spec }
    }

    @Option(help: "With --connect-to: how long the consumer may stay quiet after the end before the replay closes (e.g. 1s).")
    var linger: String = "1s"

    @OptionGroup var replay: ReplayTimingOptions

    func validate() throws {
        if connectTo != nil && deprecatedTarget != nil {
            throw ValidationError("give the address once, with --connect-to (--to is the end of the span)")
        }
        if stdout == (target != nil) { throw ValidationError("give exactly one of --stdout and --connect-to ADDRESS") }
        let times = toValue.filter { !ReplayCommand.isAddress($0) }
        for v in times {
            do { _ = try parseTimeArgument(v) } catch { throw ValidationError("--to '\(v)': \(error)") }
        }
        if times.count + (until == nil ? 0 : 1) > 1 { throw ValidationError("give the end of the span once (--to TIME)") }
    }

    func run() throws {
        let o = try replay.makeOptions(to: spanEnd)
        if let t = deprecatedTarget { warn("--to \(t) is the former spelling of --connect-to \(t); --to now means the end of the span, as in every other command") }
        CLILogHandler.install(quiet: replay.quiet)
        let log = Logger(label: "qmpreplay.replay")
        let r = try openRecording(file, strict: false)
        if stdout {
            let player: StreamPlayer
            do { player = try StreamPlayer(recording: r, options: o) } catch { throw fail("\(error)") }
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
            try ReportFile(path: replay.report, file: file, target: "stdout", options: o, script: player.script).write([report])
            return
        }
        let ep = try parseEndpoint(target!, option: "--connect-to")
        let lingerNs: Int64
        do {
            lingerNs = try TimeSpec.duration(linger)
        } catch {
            throw fail("--linger: \(error)", code: Exit.usage)
        }
        let server: ReplayServer
        do { server = try ReplayServer(recording: r, options: o) } catch { throw fail("\(error)") }
        let reportFile = ReportFile(path: replay.report, file: file, target: ep.description, options: o, script: server.script)
        Signals.onStop { name in
            log.info("stopping on \(name)")
            server.stop()
        }
        do { try server.start(connectingTo: ep, linger: lingerNs) } catch { throw fail("\(error)") }
        let sessions = try followReports(server, file: reportFile, log: log)
        if o.strict && sessions.contains(where: { !$0.divergences.isEmpty }) { throw ExitCode(1) }
    }
}
