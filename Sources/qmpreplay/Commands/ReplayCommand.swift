import ArgumentParser
import Capture
import QMP
import Recording
import Replay

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Push a recording's QEMU-side stream to a consumer or stdout.",
        usage: "qmpreplay replay FILE (--stdout | --to unix:PATH|tcp:HOST:PORT) [options]",
        discussion: """
            --stdout writes the recorded connection's QEMU-side messages (the greeting,
            then every reply and event of the span) with the recorded timing, scaled
            like 'serve', for piping into a consumer. --to connects out to a listening
            consumer and behaves like 'serve' for it: greeting, negotiation, the
            recorded events, and recorded replies to its commands. The replay ends at
            the end of the span (--to: once the consumer has also been quiet for
            --linger), on SIGINT/SIGTERM, or when the consumer goes away.

            Examples:
              qmpreplay replay guest-balloon.qmprec --stdout --speed 10
              qmpreplay replay rec.qmprec --stdout --speed max --until 20s | consumer
              qmpreplay replay rec.qmprec --to unix:/run/agent/qmp.sock --retime

            Exit status: 0 done; 1 --strict found divergences (--to); 2 unreadable
            recording or cannot connect; 64 bad command line.
            """)

    @Argument(help: "The recording (.qmprec or .qmprec.gz).", completion: .file(extensions: ["qmprec", "gz"]))
    var file: String

    @Flag(help: "Write the stream to standard output.")
    var stdout = false

    @Option(name: .customLong("to"), help: "unix:PATH or tcp:HOST:PORT: connect to a consumer listening there; any other value is the end of the span (as 'serve --to').")
    var toValue: [String] = []

    @Option(help: "End of the span, inclusive (the unambiguous spelling of a time given to --to).")
    var until: TimeSpec?

    /// `--to` is both the consumer's address and, as in `serve`, the span's end: an address
    /// starts with unix: or tcp:, anything else is a time.
    private var target: String? { toValue.first { $0.hasPrefix("unix:") || $0.hasPrefix("tcp:") } }
    private var spanEnd: TimeSpec? {
        if let u = until { return u }
        return toValue.first { !($0.hasPrefix("unix:") || $0.hasPrefix("tcp:")) }.flatMap { TimeSpec(argument: $0) }
    }

    @Option(help: "With --to: how long the consumer may stay quiet after the end before the replay closes (e.g. 1s).")
    var linger: String = "1s"

    @OptionGroup var replay: ReplayTimingOptions

    func validate() throws {
        if stdout == (target != nil) { throw ValidationError("give exactly one of --stdout and --to unix:PATH|tcp:HOST:PORT") }
        for v in toValue where !(v.hasPrefix("unix:") || v.hasPrefix("tcp:")) && TimeSpec(argument: v) == nil {
            throw ValidationError("--to '\(v)' is neither an address (unix:PATH, tcp:HOST:PORT) nor a time (12.5s, #42, ...)")
        }
        if toValue.count > 2 { throw ValidationError("--to may be given twice at most (an address and a time)") }
    }

    func run() throws {
        let o = try replay.makeOptions(to: spanEnd)
        let r = try openRecording(file, strict: false)
        let stopFD = StopSignal.install()
        if stdout {
            let player: StreamPlayer
            do { player = try StreamPlayer(recording: r, options: o) } catch { throw fail("\(error)") }
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
                shouldStop: { StopSignal.received != 0 })
            let sink = ReplayReportSink(path: replay.report, header: reportHeader(file: file, target: "stdout", options: o, script: player.script))
            sink.session(report)
            try sink.drain(quiet: replay.quiet)
            _ = stopFD
            return
        }
        let ep: Endpoint
        let lingerNs: Int64
        do {
            ep = try Endpoint(parsing: target!)
            lingerNs = try TimeSpec.duration(linger)
        } catch {
            throw fail("\(error)", code: Exit.usage)
        }
        let server: ReplayServer
        do { server = try ReplayServer(recording: r, options: o) } catch { throw fail("\(error)") }
        let sink = ReplayReportSink(path: replay.report, header: reportHeader(file: file, target: ep.description, options: o, script: server.script))
        server.onLog = { sink.log($0) }
        server.onSessionEnd = { sink.session($0) }
        do { try server.start(connectingTo: ep, linger: lingerNs) } catch { throw fail("\(error)") }
        var p = pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)
        while !server.isFinished {
            if poll(&p, 1, 50) > 0 { break }
            try sink.drain(quiet: replay.quiet)
        }
        server.stop()
        try sink.drain(quiet: replay.quiet)
        try sink.writeReport()
        if o.strict && sink.all.contains(where: { !$0.divergences.isEmpty }) { throw ExitCode(1) }
    }
}
