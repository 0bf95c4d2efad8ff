import ArgumentParser
import Capture
import Options
import QMP
import Recording
import Replay

import Transport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What `serve` and `replay` report, and where (the replay's own options are `ReplayOptionGroup`).
struct ReportOptions: ParsableArguments {
    @Option(help: "Write the fidelity report of every session as JSON to this file.")
    var report: String?

    @Flag(help: "No per-session summary on standard error.")
    var quiet = false
}

/// Collects what the server thread reports, for the main thread to print (Output is not
/// thread-safe) and to write to --report.
final class ReplayReportSink: @unchecked Sendable {
    private let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var lines: [String] = []
    private var sessions: [SessionReport] = []
    private var fresh: [SessionReport] = []
    let path: String?
    let header: JSONObject

    init(path: String?, header: JSONObject) {
        pthread_mutex_init(m, nil)
        self.path = path
        self.header = header
    }

    deinit { pthread_mutex_destroy(m); m.deallocate() }

    func log(_ s: String) { pthread_mutex_lock(m); lines.append(s); pthread_mutex_unlock(m) }
    func session(_ r: SessionReport) { pthread_mutex_lock(m); sessions.append(r); fresh.append(r); pthread_mutex_unlock(m) }

    var all: [SessionReport] { pthread_mutex_lock(m); defer { pthread_mutex_unlock(m) }; return sessions }

    /// Prints pending log lines and summaries; rewrites the report file when sessions ended.
    func drain(quiet: Bool) throws {
        pthread_mutex_lock(m)
        let l = lines, f = fresh
        lines.removeAll(); fresh.removeAll()
        pthread_mutex_unlock(m)
        if !quiet {
            for s in l { Output.stderr.line("qmpreplay: \(s)") }
            for r in f {
                Output.stderr.line("qmpreplay: \(r)")
                for d in r.divergences { Output.stderr.line("  divergence: \(d.message)") }
            }
            Output.stderr.flush()
        }
        if !f.isEmpty { try writeReport() }
    }

    func writeReport() throws {
        guard let path else { return }
        var o = header
        o["sessions"] = .array(all.map(\.json))
        let text = JSONValue.object(o).serialized(.pretty(indent: 2)) + "\n"
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw fail("cannot write report \(path): \(String(cString: strerror(errno)))") }
        var ok = true
        Array(text.utf8).withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 { if errno == EINTR { continue }; ok = false; break }
                off += n
            }
        }
        close(fd)
        guard ok, rename(tmp, path) == 0 else { throw fail("cannot write report \(path): \(String(cString: strerror(errno)))") }
    }
}

func reportHeader(file: String, target: String, options: ReplayOptions, script: ReplayScript) -> JSONObject {
    var o = JSONObject()
    o["file"] = .string(file)
    o["target"] = .string(target)
    o["connection"] = .int(Int(script.connection))
    o["speed"] = options.speed.map { .number(JSONNumber(text: "\($0)")) } ?? .string("max")
    o["strict"] = .bool(options.strict)
    return o
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

    @OptionGroup var serve: ServeOptions

    @OptionGroup var output: ReportOptions

    @Flag(help: "Stop after the first client session.")
    var once = false

    func run() throws {
        let o = serve.options
        let ep = try parseEndpoint(serve.listen, option: "--listen")
        let r = try openRecording(file, strict: false)
        let server: ReplayServer
        do { server = try ReplayServer(recording: r, options: o) } catch let e as ReplayError {
            if case .usage = e { throw fail(e.description, code: Exit.usage) }
            throw fail(e.description)
        }
        let sink = ReplayReportSink(path: output.report, header: reportHeader(file: file, target: ep.description, options: o, script: server.script))
        server.onLog = { sink.log($0) }
        server.onSessionEnd = { sink.session($0) }
        if server.script.greetingSynthesized { warn("\(file): no greeting recorded on connection \(server.script.connection); sending a QEMU \(r.header?.qemuVersion ?? "7.2.0")-like one") }
        let stopFD = StopSignal.install()
        do { try server.start(listen: ep, socketMode: o.socketMode) } catch { throw fail("\(error)") }
        var p = pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)
        while !server.isFinished {
            if poll(&p, 1, 50) > 0 {
                sink.log("stopping on \(StopSignal.name)")
                break
            }
            try sink.drain(quiet: output.quiet)
            if once && !sink.all.isEmpty { break }
        }
        server.stop()
        try sink.drain(quiet: output.quiet)
        try sink.writeReport()
        if o.strict && sink.all.contains(where: { !$0.divergences.isEmpty }) { throw ExitCode(1) }
    }
}
