import ArgumentParser
import Capture
import Logging
import Options
import QMP
import Recording
import Replay
import Transport

/// What `serve` and `replay` report, and where (the replay's own options are `ReplayOptionGroup`).
struct ReportOptions: ParsableArguments {
    @Option(help: "Write the fidelity report of every session as JSON to this file.")
    var report: String?

    @Flag(help: "No per-session summary on standard error.")
    var quiet = false
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
              qmpreplay serve rec.qmprec --listen /tmp/q.sock --chaos 42 --chaos-stall 300ms
              qmpreplay serve rec.qmprec --listen /tmp/q.sock --fault 'migrate close' --strict
              qmpreplay serve rec.qmprec --listen /tmp/q.sock --paused --control /tmp/ctl.sock
                (then: echo '{"cmd":"step","n":1}' | socat - UNIX-CONNECT:/tmp/ctl.sock)

            With --chaos SEED every client gets the events at adversarial points chosen from
            the seed (between a command and its reply, between qmp_capabilities and its reply,
            in bursts, split across reads, after a stall); the schedule is printed and written
            to the report, and --chaos-schedule replays one exactly. --fault and --faults add
            errors, delays, closes, events and state changes to the recording; with --strict a
            rule that never fired is a divergence. See docs/TESTING-CLIENTS.md.

            Exit status: 0 served until a signal (SIGINT/SIGTERM) or --once; 1 --strict found
            divergences; 2 unreadable recording or cannot listen; 64 bad command line (a time or
            address that does not parse, a speed out of range). A control request that fails is
            answered with an error line, never an exit; {"cmd":"stop"} ends serve with 0. See
            docs/REPLAY.md for the manual.
            """))

    @Argument(help: "The recording (.qmprec or .qmprec.gz).", completion: .file(extensions: ["qmprec", "gz"]))
    var file: String

    @OptionGroup var serve: ServeOptions

    @OptionGroup var output: ReportOptions

    @Flag(help: "Stop after the first client session.")
    var once = false

    @Option(help: ArgumentHelp("Take control requests (pause, resume, step, burst, seek, speed, hold, release, status, stop; one JSON line each, docs/REPLAY.md \"Control API\") on this unix socket, or '-' for stdin (replies on stdout).", valueName: "path|-"))
    var control: String?

    @Option(name: .customLong("record-missing"), help: ArgumentHelp("Pass commands the recording cannot answer to a real QEMU (--qemu) and write the recording with its answers added to this file when serve ends.", valueName: "file"),
            completion: .file(extensions: ["qmprec"]))
    var recordMissing: String?

    @Option(help: ArgumentHelp("With --record-missing: the QEMU to start, as a shell would split it (-qmp is added). Default: qemu-system-x86_64 with a machine the recording suggests (see diff-qemu --print-command).", valueName: "cmdline"))
    var qemu: String?

    @Flag(help: "With --record-missing: replace an existing file.")
    var force = false

    func run() throws {
        let o = serve.options
        let ep = try parseEndpoint(serve.listen, option: "--listen")
        CLILogHandler.install(quiet: output.quiet)
        let log = Logger(label: "qmpreplay.serve")
        let r = try openRecording(file, strict: false)
        let server: ReplayServer
        do { server = try ReplayServer(recording: r, options: o) } catch let e as ReplayError {
            if case .usage = e { throw fail(e.description, code: Exit.usage) }
            throw fail(e.description)
        }
        let reportFile = ReportFile(path: output.report, file: file, target: ep.description, options: o, script: server.script)
        if let n = server.script.connectionNotice(chosen: o.connection) { warn(n) }
        if let c = o.chaos { announceChaos(c, script: server.script) }
        if server.script.greetingSynthesized { warn("\(file): no greeting recorded on connection \(server.script.connection); sending a QEMU \(r.header?.qemuVersion ?? "7.2.0")-like one") }
        Signals.onStop { name in
            log.info("stopping on \(name)")
            server.stopBySignal()
        }
        // The real QEMU of --record-missing is ready before the first client can connect.
        let missing = try startRecordMissing(server)
        defer { missing?.stop() }
        do { try server.start(listen: ep, socketMode: o.socketMode) } catch { throw fail("\(error)") }
        let controlServer = try startControl(server, recording: r, socketMode: o.socketMode)
        defer { controlServer?.close() }
        let sessions = try followReports(server, file: reportFile, log: log, once: once)
        if let m = missing, let out = recordMissing {
            var redactor = Redactor()
            let c = server.script.connection
            let n: Int
            do { n = try m.write(original: r, connection: c, to: out) { redactor.process($0, from: $1, connection: c) } } catch {
                throw fail("--record-missing: \(error)")
            }
            log.notice("record-missing: \(n) command(s) answered by QEMU \(m.qemuVersion) added; wrote \(out)")
        }
        if o.strict && sessions.contains(where: { !$0.divergences.isEmpty }) { throw ExitCode(1) }
    }

    /// `--record-missing`: the real QEMU that answers what the recording cannot.
    private func startRecordMissing(_ server: ReplayServer) throws -> MissingRecorder? {
        guard let out = recordMissing else {
            if qemu != nil { server.stop(); throw fail("--qemu needs --record-missing (diff-qemu compares with a real QEMU)", code: Exit.usage) }
            return nil
        }
        do {
            try OutputGuard.check(out, force: force)
            let cmd = try qemu.map { try QEMUCommandLine.parse($0) } ?? QEMUCommandLine.suggested(for: server.script)
            let m = try MissingRecorder(argv: cmd.argv)
            server.recordMissing(with: m)
            return m
        } catch {
            server.stop()
            throw fail("--record-missing: \(error)", code: error is OutputExistsError ? Exit.usage : Exit.unreadable)
        }
    }

    /// The control API on `--control`'s socket or on stdin and stdout.
    private func startControl(_ server: ReplayServer, recording: Recording, socketMode: UInt32) throws -> ControlServer? {
        guard let control else { return nil }
        let ctl = ReplayControl(server: server, recording: recording)
        do {
            if control == "-" { return try ControlServer.standardIO(control: ctl) }
            let ep = try parseEndpoint(control, option: "--control")
            return try ControlServer.listen(ep, control: ctl, mode: socketMode)
        } catch let e as ExitCode {
            server.stop()
            throw e
        } catch {
            server.stop()
            throw fail("--control \(control): \(error)")
        }
    }
}

/// Prints the chaos schedule every client will get (the same for all: it follows from the
/// seed and the recording), with what it changes, so a failing run can be replayed exactly.
func announceChaos(_ c: ChaosSettings, script: ReplayScript) {
    let plan = ChaosPlan(script: script)
    let s = c.schedule(for: plan)
    let from = s.seed.map { "seed \($0)" } ?? "given schedule"
    Output.stderr.line("qmpreplay: chaos (\(from)): --chaos-schedule '\(s)'")
    for l in plan.explain(s) { Output.stderr.line("  \(l)") }
    Output.stderr.flush()
}
