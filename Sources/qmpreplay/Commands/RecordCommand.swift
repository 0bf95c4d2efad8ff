import ArgumentParser
import Capture
import Dispatch
import Options
import QMP
import Recording
import Shell

import Transport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct RecordCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract: "Record QMP traffic from QEMU (client mode) or between a client and QEMU (proxy mode).",
        usage: HelpText.usage("""
            qmpreplay record --connect ADDRESS -o FILE [options]
            qmpreplay record --listen ADDRESS --upstream ADDRESS -o FILE [options]
            qmpreplay record (--connect ... | --listen ... --upstream ...) --ring 10m -o DIR [--after 30s] [--trigger EXPR]...
            """),
        discussion: HelpText.format("""
            Client mode (--connect): qmpreplay connects to QEMU's QMP socket, reads the greeting,
            negotiates (--oob enables out-of-band when offered), runs --init commands (default:
            query-version, query-status, query-qmp-schema; --no-init for none), issues --poll
            commands periodically, and records everything both ways until QEMU closes, a signal
            (SIGINT/SIGTERM), or --duration.

            Proxy mode (--listen + --upstream): a management client (libvirt, a test harness,
            qmp-shell) connects to --listen; for each client qmpreplay opens its own connection to
            QEMU and passes bytes both ways unchanged, recording both directions. One client at a
            time by default, as QEMU's own socket behaves (--max-clients N for more).

            Records reach the file within about a millisecond; --fsync syncs every
            --flush-interval (default 100ms). SIGINT/SIGTERM flush and write the trailer. Secrets (passwords, secret objects, credentials in URIs)
            are replaced by "<redacted>" unless --no-redact; the header says which.

            The recorder never holds up the traffic: a client that stops reading is disconnected
            once --peer-buffer bytes wait for it (proxy mode); a disk that cannot keep up loses
            whole records, noted as spans (from, to, messages, bytes); a write error (ENOSPC, EIO)
            cuts the file back to its last complete record, forwarding goes on (proxy mode; client
            mode stops), and the loss is noted in the file as soon as it takes writes again. A stop
            (SIGINT, SIGTERM) writes what it can within 1.5 s and notes the rest.

            Exit status:
              0  complete: recorded until a clean end (QEMU closed after SHUTDOWN, a signal,
                 --duration, --once), nothing lost
              2  nothing recorded: could not connect/listen, the output or its part files exist
                 (without --force), or the output could not be created (a file that could not
                 be started is removed)
              3  complete, but QEMU went away without SHUTDOWN (killed, crashed): trailer reason
                 "upstream lost" (client mode), close records "upstream lost" (proxy mode)
              4  incomplete: records were lost (the disk could not keep up, a write error, or the
                 stop ran out of time); the file says what is missing where it could, and ends at
                 its last complete record
              64 bad command line
            See docs/RECORDER.md for the guarantees behind each status.

            Dashcam mode (--ring DURATION|SIZE): nothing is written until something goes wrong.
            The last DURATION (10m, 90s) or SIZE (64M; a lower-case m is minutes) of traffic is
            kept in memory, redacted as it arrives; a time ring is also capped at --ring-max
            bytes. A trigger writes an incident file into the directory -o: the window before
            the trigger (with each open connection's greeting and negotiation, however old),
            then --after more (default 10s), then the dashcam goes back to ring mode; the next
            trigger gives the next file (--incident-name, default incident-{time}-{seq}.qmprec).
            The file's header names the trigger. Triggers: events matching --trigger (the shell's
            filter language; default: GUEST_PANICKED, BLOCK_IO_ERROR, WATCHDOG, SHUTDOWN with a
            guest-* reason, and unexplained-stop: a STOP no command caused, as the VM model
            sees it), SIGUSR1, and {"trigger": "REASON"} on the --ring-control socket (JSON
            lines; {"status": null} reports the ring's figures).
            """))

    @Option(help: ArgumentHelp("Client mode: QEMU's QMP socket (unix:PATH or a socket path, tcp:HOST:PORT or HOST:PORT, as qmp-shell takes them).", valueName: "address"))
    var connect: String?

    @Option(help: ArgumentHelp("Proxy mode: where management clients connect (unix:PATH or a socket path, tcp:HOST:PORT or HOST:PORT).", valueName: "address"))
    var listen: String?

    @Option(help: ArgumentHelp("Proxy mode: QEMU's QMP socket.", valueName: "address"))
    var upstream: String?

    @Option(name: .shortAndLong, help: "The .qmprec file to write (with --ring: the directory for incident files).")
    var output: String

    @Option(help: ArgumentHelp("Dashcam mode: keep only the last DURATION (e.g. 10m) or SIZE (e.g. 64M) in memory and write an incident file on each trigger.", valueName: "duration|size"),
            transform: RingWindow.parse)
    var ring: RingWindow?

    static let defaultRingMax = ByteSize(bytes: 64 << 20)
    @Option(help: ArgumentHelp("Dashcam mode: the most memory a time ring may hold (the oldest records scroll out first).", valueName: "size", default: defaultRingMax),
            transform: ByteSize.parse)
    var ringMax = defaultRingMax

    static let defaultAfter = DurationValue(nanoseconds: 10_000_000_000)
    @Option(help: ArgumentHelp("Dashcam mode: how long to go on recording into the incident file after a trigger.", valueName: "duration", default: defaultAfter),
            transform: DurationValue.parse)
    var after = defaultAfter

    @Option(name: .customLong("trigger"), help: ArgumentHelp("Dashcam mode: records that write an incident: 'default', 'unexplained-stop', or a filter (e.g. 'BLOCK_JOB_ERROR or error GenericError'); repeatable, replaces the defaults.", valueName: "expr"))
    var triggers: [String] = []

    @Flag(name: .customLong("no-event-triggers"), help: "Dashcam mode: only SIGUSR1 and the control socket trigger.")
    var noEventTriggers = false

    @Option(help: ArgumentHelp("Dashcam mode: a unix socket taking JSON lines: {\"trigger\": \"REASON\"}, {\"status\": null}.", valueName: "path"))
    var ringControl: String?

    @Option(help: ArgumentHelp("Dashcam mode: incident file names; {time} (UTC), {seq} and {trigger} are replaced.", valueName: "pattern"))
    var incidentName = "incident-{time}-{seq}.qmprec"

    @Option(help: ArgumentHelp("Stop after this long (e.g. 30s, 5m).", valueName: "duration"), transform: DurationValue.parse)
    var duration: DurationValue?

    @Option(name: .customLong("init"), help: "Command to run after negotiation, e.g. 'query-status' or 'balloon {\"value\": 536870912}' (repeatable; replaces the defaults).")
    var initCommands: [String] = []

    @Flag(name: .customLong("no-init"), help: "Run no commands after negotiation.")
    var noInit = false

    @Option(name: .customLong("poll"), help: "Issue a command periodically: CMD@INTERVAL, e.g. query-balloon@5s (repeatable).")
    var polls: [String] = []

    @Flag(name: .customLong("allow-rx-filter-poll"), help: "Allow polling query-rx-filter (it re-arms NIC_RX_FILTER_CHANGED and so changes what QEMU emits).")
    var allowRxFilterPoll = false

    @Flag(help: "Enable out-of-band execution when QEMU offers it.")
    var oob = false

    @Flag(help: "Client mode: when QEMU goes away, wait for it and go on recording as a new connection.")
    var reconnect = false

    @Option(help: "Proxy mode: clients served at once, each with its own QEMU connection.")
    var maxClients: Int = 1

    @Flag(help: "Proxy mode: stop after the first client session.")
    var once = false

    static let defaultSocketMode = SocketMode(mode: 0o600)
    @Option(help: ArgumentHelp("Proxy mode: permissions of a unix listen socket (octal).", valueName: "mode", default: defaultSocketMode),
            transform: SocketMode.parse)
    var socketMode = defaultSocketMode

    static let defaultFlushInterval = DurationValue(nanoseconds: 100_000_000)
    @Option(help: ArgumentHelp("How often to fsync (with --fsync); records reach the file within about a millisecond regardless.", valueName: "duration", default: defaultFlushInterval),
            transform: DurationValue.parse)
    var flushInterval = defaultFlushInterval

    @Flag(help: "fsync the file every --flush-interval.")
    var fsync = false

    @Option(help: ArgumentHelp("Start a new numbered file (FILE.1.qmprec, ...) before one would grow past SIZE (e.g. 100M, 1G); existing part files are never overwritten.", valueName: "size"),
            transform: ByteSize.parse)
    var rotate: ByteSize?

    static let defaultQueueLimit = ByteSize(bytes: 64 << 20)
    @Option(help: ArgumentHelp("Memory for records waiting for the disk; beyond it whole records are dropped and the span is noted.", valueName: "size", default: defaultQueueLimit),
            transform: ByteSize.parse)
    var queueLimit = defaultQueueLimit

    static let defaultPeerBuffer = ByteSize(bytes: 16 << 20)
    @Option(help: ArgumentHelp("Proxy mode: bytes that may wait for a client that does not read (or a QEMU that does not take input) before that client is disconnected.", valueName: "size", default: defaultPeerBuffer),
            transform: ByteSize.parse)
    var peerBuffer = defaultPeerBuffer

    @Flag(help: "Replace the output file if it exists (by default an existing file is never overwritten).")
    var force = false

    /// The flag's former name, still accepted.
    @Flag(name: .customLong("overwrite"), help: .hidden)
    var overwrite = false

    @Flag(name: .customLong("no-redact"), help: "Keep secrets in the recording.")
    var noRedact = false

    @Option(name: .customLong("label"), help: "A KEY=VALUE label for the header (repeatable).")
    var labels: [String] = []

    @Flag(name: .shortAndLong, help: "No status line, no messages.")
    var quiet = false

    @Flag(name: .shortAndLong, help: "Print the traffic as it is recorded (like qmp-shell -v).")
    var verbose = false

    func validate() throws {
        switch (connect, listen, upstream) {
        case (_?, nil, nil), (nil, _?, _?): break
        default: throw ValidationError("use either --connect ADDR, or --listen ADDR with --upstream ADDR")
        }
        let intervals = try pollIntervals()
        let pollsRxFilter = intervals.contains { (try? RecorderCommand(parsing: $0.command))?.name == "query-rx-filter" }
        if !allowRxFilterPoll && pollsRxFilter {
            throw ValidationError("polling query-rx-filter re-arms NIC_RX_FILTER_CHANGED and changes what QEMU emits; add --allow-rx-filter-poll to do it anyway")
        }
        if maxClients < 1 { throw ValidationError("--max-clients must be at least 1") }
        for (p, poll) in zip(polls, intervals) where poll.interval.nanoseconds < ClientRecorder.minimumPollInterval {
            throw ValidationError("--poll \(p): the interval must be at least \(ClientRecorder.minimumPollInterval / 1_000_000)ms (QEMU answers one command at a time and the recorder keeps one in flight)")
        }
        let amounts: [(String, Int64?)] = [
            ("--duration", duration?.nanoseconds), ("--flush-interval", flushInterval.nanoseconds),
            ("--rotate", rotate.map { Int64($0.bytes) }), ("--queue-limit", Int64(queueLimit.bytes)), ("--peer-buffer", Int64(peerBuffer.bytes)),
        ]
        for (option, amount) in amounts where amount.map({ $0 <= 0 }) == true { throw ValidationError("\(option) must be positive") }
        if quiet && verbose { throw ValidationError("--quiet and --verbose exclude each other") }
        if ring == nil {
            let dashcamOnly = [("--trigger", !triggers.isEmpty), ("--no-event-triggers", noEventTriggers), ("--ring-control", ringControl != nil)]
            if let (option, _) = dashcamOnly.first(where: { $0.1 }) { throw ValidationError("\(option) needs --ring") }
        } else {
            if rotate != nil { throw ValidationError("--rotate and --ring exclude each other (each incident is its own file)") }
            if output == "-" { throw ValidationError("--ring writes incident files into a directory, not standard output") }
            if after.nanoseconds < 0 { throw ValidationError("--after must not be negative") }
            if ringMax.bytes <= 0 { throw ValidationError("--ring-max must be positive") }
            if noEventTriggers && !triggers.isEmpty { throw ValidationError("--trigger and --no-event-triggers exclude each other") }
            for t in triggers {
                do { _ = try IncidentTriggers.rules([t]) } catch { throw ValidationError("--trigger '\(t)': \(error)") }
            }
        }
    }

    /// Dashcam options from the command line (nil without --ring).
    private func dashcamOptions() throws -> DashcamOptions? {
        guard let ring else { return nil }
        var d = DashcamOptions(bound: RingBound(nanoseconds: ring.nanoseconds, bytes: ring.bytes ?? ringMax.bytes), directory: output)
        d.after = after.nanoseconds
        d.namePattern = incidentName
        if !noEventTriggers { d.detector = IncidentTriggers(rules: try IncidentTriggers.rules(triggers)) }
        return d
    }

    func run() throws {
        if ring == nil { try refuseOverwrite(output, force: force || overwrite) }
        var options = CaptureOptions(output: output)
        options.ring = try dashcamOptions()
        options.redact = !noRedact
        options.fsync = fsync
        options.flushInterval = flushInterval.nanoseconds
        options.replaceExisting = force || overwrite
        if let rotate {
            options.rotateBytes = Int64(rotate.bytes)
            if output == "-" { throw fail("--rotate needs a file, not standard output", code: Exit.usage) }
        }
        options.queueLimitBytes = queueLimit.bytes
        if verbose { options.observer = TrafficEcho() }
        var kv: [(key: String, value: String)] = []
        for l in labels {
            guard let eq = l.firstIndex(of: "=") else { throw fail("--label takes KEY=VALUE (got '\(l)')", code: Exit.usage) }
            kv.append((String(l[..<eq]), String(l[l.index(after: eq)...])))
        }
        let dur = duration?.nanoseconds
        let status = StatusLine(enabled: !quiet && !verbose && Output.stderr.isTerminal)
        CLILogHandler.install(quiet: quiet, before: { status.clear() })

        let outcome: CaptureOutcome
        do {
            if let connect {
                var cfg = ClientModeConfig(endpoint: try parseEndpoint(connect, option: "--connect"))
                cfg.enableOOB = oob
                cfg.reconnect = reconnect
                cfg.duration = dur
                cfg.labels = kv
                if noInit {
                    cfg.initCommands = []
                } else if !initCommands.isEmpty {
                    cfg.initCommands = try initCommands.map { try command($0) }
                }
                cfg.polls = try pollIntervals().map { PollSpec(command: try command($0.command), interval: $0.interval.nanoseconds) }
                outcome = try record(ClientRecorder(config: cfg, options: options), status: status)
            } else {
                var cfg = ProxyModeConfig(listen: try parseEndpoint(listen!, option: "--listen"), upstream: try parseEndpoint(upstream!, option: "--upstream"))
                cfg.maxClients = maxClients
                cfg.once = once
                cfg.duration = dur
                cfg.labels = kv
                cfg.socketMode = socketMode.mode
                cfg.peerBufferLimit = peerBuffer.bytes
                outcome = try record(ProxyRecorder(config: cfg, options: options), status: status)
            }
        } catch let e as SocketError {
            throw fail(e.description)
        } catch let e as CaptureOutputError {
            throw fail(e.description)
        }
        let s = outcome.stats
        // The summary: every file written, how it ended, and what is missing.
        var line = "\(s.records) records (\(s.events) events, \(formatBytes(Int(s.bytes)))) in "
        if s.parts.count > 1 {
            line += "\(s.parts.count) files: " + s.parts.map { "\($0.path) (\(formatBytes(Int($0.bytes))))" }.joined(separator: ", ")
        } else {
            line += output
        }
        if ring != nil {
            line = "dashcam: \(s.incidents) incident\(s.incidents == 1 ? "" : "s") written"
                + (s.parts.isEmpty ? "" : ": " + s.parts.map { "\($0.path) (\(formatBytes(Int($0.bytes))))" }.joined(separator: ", "))
                + "; the ring held at most \(formatBytes(s.ringPeakBytes))"
        }
        line += "; ended: \(outcome.reason)"
        if s.redactions > 0 { line += "; \(s.redactions) secrets redacted" }
        if !quiet || outcome.incomplete || outcome.qemuLost { Output.stderr.line("qmpreplay: " + line) }
        if outcome.qemuLost {
            warn("QEMU went away without SHUTDOWN (killed or crashed)" + (s.qemuLost > 1 ? " \(s.qemuLost) times" : "") + ": the recording is complete, QEMU's session is not (exit status 3)")
        }
        if s.lostRecords > 0 {
            warn("\(s.lostMessages) messages (\(s.lostBytes) bytes) were forwarded but not recorded, in \(s.gaps) spans noted in the file"
                 + (s.unnotedGaps > 0 ? " (and \(s.unnotedGaps) the file could not take)" : ""))
        }
        if let e = s.outputError { warn("the output failed \(s.outputFailures == 1 ? "once" : "\(s.outputFailures) times"): \(e)") }
        if let e = outcome.error { warn(e) }
        Output.stderr.flush()
        if outcome.incomplete { throw ExitCode(4) }
        if outcome.qemuLost { throw ExitCode(3) }
    }

    /// Runs a recorder until it ends: signals stop it, the status line follows it.
    private func record(_ recorder: CaptureRecorder, status: StatusLine) throws -> CaptureOutcome {
        Signals.onStop { name in recorder.stop(by: name) }
        var control: DashcamControl?
        if ring != nil {
            Signals.onTrigger { name in recorder.trigger(IncidentTrigger(source: "signal", name: name, detail: "\(name) received")) }
            if let path = ringControl {
                do { control = try DashcamControl(path: path, recorder: recorder) } catch { throw fail(error.description) }
            }
        }
        let ticker = status.follow(recorder)
        defer {
            control?.close()
            ticker?.stop()
            CLILogHandler.serialized { status.clear() }
        }
        return try recorder.run()
    }

    private func command(_ s: String) throws -> RecorderCommand {
        do { return try RecorderCommand(parsing: s) } catch { throw fail("invalid command '\(s)': \(error)", code: Exit.usage) }
    }

    /// `--poll CMD@INTERVAL`, each split and its interval parsed (a positive duration).
    private func pollIntervals() throws -> [(command: String, interval: DurationValue)] {
        try polls.map { p in
            let parts = p.split(separator: "@", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--poll takes CMD@INTERVAL, e.g. query-balloon@5s (got '\(p)')") }
            let interval: DurationValue
            do { interval = try DurationValue.parse(parts[1]) } catch { throw ValidationError("--poll \(p): \(error)") }
            guard interval.nanoseconds > 0 else { throw ValidationError("--poll \(p): the interval must be positive") }
            return (parts[0], interval)
        }
    }
}

/// The one-line status shown on a terminal while recording, redrawn every half second from
/// the recorder's `progress`; log lines clear it first (`CLILogHandler`'s `before`).
final class StatusLine: Sendable {
    let enabled: Bool
    init(enabled: Bool) { self.enabled = enabled }

    /// Redraws the line every 0.5 s until the ticker is stopped (nil when disabled).
    func follow(_ recorder: CaptureRecorder) -> Ticker? {
        guard enabled else { return nil }
        return Ticker { if let p = recorder.progress { self.show(p.elapsed, p.stats) } }
    }

    /// A timer on a queue of its own; `stop` returns once no redraw is under way.
    final class Ticker {
        private let queue = DispatchQueue(label: "qmpreplay.status")
        private let timer: DispatchSourceTimer

        init(_ tick: @escaping @Sendable () -> Void) {
            timer = DispatchSource.makeTimerSource(queue: queue)
            timer.schedule(deadline: .now() + .milliseconds(500), repeating: .milliseconds(500))
            timer.setEventHandler(handler: tick)
            timer.resume()
        }

        func stop() {
            timer.cancel()
            queue.sync {}
        }
    }

    func show(_ t: Int64, _ s: CaptureStats) {
        guard enabled else { return }
        CLILogHandler.serialized {
            Output.stderr.write("\r\u{1B}[Krecording \(DurationFormat.clock(t).dropFirst().prefix(8))  \(s.records) records  \(s.events) events  \(formatBytes(Int(s.bytes)))"
                + (s.lostMessages > 0 ? "  \(s.lostMessages) not recorded" : "")
                + (s.ringPeakBytes > 0 ? "  ring \(s.ringRecords) records \(formatBytes(s.ringBytes)), \(s.incidents) incidents" : "")
                + (s.outputFailing ? "  OUTPUT FAILING" : ""))
            Output.stderr.flush()
        }
    }

    /// Clears the line; the caller holds the standard error lock (`CLILogHandler.serialized`).
    func clear() {
        guard enabled else { return }
        Output.stderr.write("\r\u{1B}[K")
        Output.stderr.flush()
    }
}

/// `record --verbose`: every recorded message on standard output, `<<<` from QEMU, `>>>`
/// from the client, as qmp-shell -v shows them.
struct TrafficEcho: CaptureObserver {
    func recorded(_ message: QMPMessage, from direction: Direction, connection: UInt32) {
        let arrow = direction == .qemu ? "<<<" : ">>>"
        let text = message.json?.serialized(.compact) ?? escapedBytes(message.bytes)
        Output.stdout.line("\(arrow) [c\(connection)] \(text)")
        Output.stdout.flush()
    }
}
