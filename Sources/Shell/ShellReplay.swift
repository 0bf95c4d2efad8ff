import Foundation
import Logging
import Options
import QMP
import Recording
import Replay
import Synchronization
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// A replay server running in the background of the shell (`replay start`), so the user can
/// keep investigating while a client under test talks to the fake QEMU. The server's event
/// loop serves; this keeps the handle and what the server said (its log lines, through a
/// `BufferingLogHandler`, and the summaries of finished sessions), shown by `replay status`
/// instead of being printed over the prompt.
final class ShellReplay: Sendable {
    let server: ReplayServer
    /// The controls, the same layer as `serve --control` (docs/REPLAY.md, "Control API").
    let control: ReplayControl
    let endpoint: Endpoint
    let log: BufferingLogHandler.Buffer
    /// Sessions whose summary is already in `log`.
    private let reported = Mutex(0)

    init(server: ReplayServer, control: ReplayControl, endpoint: Endpoint, log: BufferingLogHandler.Buffer) {
        self.server = server
        self.control = control
        self.endpoint = endpoint
        self.log = log
    }

    /// Adds the summaries of sessions that ended since the last look to the log.
    private func collectReports() {
        let all = server.reports
        let new = reported.withLock { n -> ArraySlice<SessionReport> in
            defer { n = max(n, all.count) }
            return all.dropFirst(n)
        }
        for r in new { log.append("session ended: \(r)") }
    }

    /// The last `n` lines, and how many arrived since the last call.
    func recent(_ n: Int) -> (lines: [String], new: Int) {
        collectReports()
        return log.recent(n)
    }

    /// Messages not yet shown, when more arrived since the last call (to mention once).
    func newlyPending() -> Int? {
        collectReports()
        return log.newlyPending()
    }
}

extension ShellSession {
    static let replayUsage = """
        replay start [--listen ADDR] [--here] [options]   serve this recording in the background
        replay pause | resume                             hold or continue the timeline
        replay step [N] | burst [N]                       pause and send the next N events | send them at once
        replay speed X|max                                change the speed (0.1 ... 1000)
        replay seek POSITION                              jump the timeline (#N, 12.5s, a mark, or 'here')
        replay hold event POSITION | hold reply COMMAND   stop before that event | keep that command's reply back
        replay release [ID]                               end a hold (all without ID)
        replay status                                     position, clients, events sent, recent log
        replay stop                                       disconnect clients and stop serving
        """

    /// `replay SUBCOMMAND ...`: controls the background server.
    func replayCommand(_ arg: String) throws(ShellError) {
        let (sub, rest) = arg.splitFirstWord()
        switch sub {
        case "start": try replayStart(rest)
        case "pause": try perform(.pause); emit("replay paused at " + replayPosition())
        case "resume": try perform(.resume); emit("replay resumed at " + replayPosition())
        case "step", "burst": try replayStep(sub, rest)
        case "speed": try replaySpeed(rest)
        case "seek": try replaySeek(rest)
        case "hold": try replayHold(rest)
        case "release": try replayRelease(rest)
        case "status": replayStatus()
        case "stop": try replayStop()
        case "": throw ShellError("replay needs a subcommand:\n" + ShellSession.replayUsage)
        default:
            let subs = ["start", "pause", "resume", "step", "burst", "speed", "seek", "hold", "release", "status", "stop"]
            throw ShellError("unknown replay subcommand '\(sub)'\(Suggestions.didYouMean(sub, among: subs))\n" + ShellSession.replayUsage)
        }
    }

    private func runningReplay() throws(ShellError) -> ShellReplay {
        guard let r = backgroundReplay, r.server.status().running else {
            throw ShellError("no replay is running; 'replay start' starts one")
        }
        return r
    }

    private func replayPosition() -> String {
        guard let s = backgroundReplay?.server.status() else { return "-" }
        if s.negotiatedClients == 0 { return "(no client connected yet: timelines start when a client negotiates)" }
        return DurationFormat.clock(s.positionMicros.multipliedSaturating(by: 1000)) + (s.nextRecord.map { " (next event #\($0))" } ?? " (no event left)")
    }

    private func replayStart(_ rest: String) throws(ShellError) {
        if let r = backgroundReplay, r.server.status().running {
            throw ShellError("a replay is already serving on \(r.endpoint); 'replay stop' first")
        }
        try requireRecords()
        var words = rest.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        // `--here`: start the timeline at the cursor (a shell convenience over --from #N).
        if let h = words.firstIndex(of: "--here") {
            words.remove(at: h)
            words += ["--from", "#\(cursor)"]
        }
        if !words.contains(where: { $0 == "--listen" || $0.hasPrefix("--listen=") }) {
            words += ["--listen", "unix:" + ShellSession.defaultReplaySocket()]
        }
        // The options of `qmpreplay serve`, declared once (Options): the same values, the
        // same messages. `--listen` takes a bare socket path or HOST:PORT there too.
        let parsed: ServeOptions
        let endpoint: Endpoint
        do {
            parsed = try ServeOptions.parse(words)
            endpoint = try parsed.endpoint()
        } catch {
            if ServeOptions.exitCode(for: error) == .success {
                emit(ShellSession.replayStartHelp(width: out.width))
                return
            }
            throw ShellError("replay start: \(OptionErrors.message(for: error, parsing: ServeOptions.self))\n'replay start --help' lists the options")
        }
        let options = parsed.options
        let log = BufferingLogHandler.Buffer()
        let server: ReplayServer
        do {
            server = try ReplayServer(recording: recording, options: options,
                                      logger: Logger(label: "qmpreplay.replay") { _ in BufferingLogHandler(log) })
        } catch {
            throw ShellError("replay start: \(error)")
        }
        let handle = ShellReplay(server: server, control: ReplayControl(server: server, recording: recording), endpoint: endpoint, log: log)
        do {
            try server.start(listen: endpoint, socketMode: options.socketMode)
        } catch {
            throw ShellError("replay start: \(error)")
        }
        backgroundReplay = handle
        let speed = options.speed.map { DurationFormat.fixed($0, $0 < 1 ? 2 : 1) + "x" } ?? "max"
        emit("serving \(recording.path) on \(endpoint) at speed \(speed), in the background")
        if case .unix(let path) = endpoint {
            emit("  connect a client, e.g.: qmp-shell \(path)   or   socat - UNIX-CONNECT:\(path)")
        }
        emit("  'replay status' shows clients and progress; 'replay stop' ends it (quitting the shell does too)")
    }

    private func replaySpeed(_ rest: String) throws(ShellError) {
        let r = try runningReplay()
        // The same values as `serve --speed`: 0.1 ... 1000, "10x" as well as "10", or max.
        let word = rest.trimmed().lowercased()
        let speed: Double?
        do { speed = try Speed.parse(word).factor } catch {
            throw ShellError("replay speed '\(word)': \(error)")
        }
        try perform(.speed(speed), on: r)
        emit("replay speed \(speed == nil || word.hasSuffix("x") ? word : word + "x") at " + replayPosition())
    }

    private func replaySeek(_ rest: String) throws(ShellError) {
        let r = try runningReplay()
        let a = rest.trimmed()
        guard !a.isEmpty else { throw ShellError("replay seek needs a position: #N, a time, a mark, or 'here' (the cursor)") }
        let i = (a == "here" || a == ".") ? cursor : try resolve(a)
        guard r.server.status().negotiatedClients > 0 else {
            throw ShellError("no client is connected, so there is no timeline to move: each client's timeline starts at --from when it negotiates ('replay stop', then 'replay start --here' starts them at the cursor)")
        }
        try perform(.seek(.record(i)), on: r)
        emit("replay moved to #\(i) " + replayPosition())
    }

    /// One request through the control layer (the same as `serve --control`).
    @discardableResult
    private func perform(_ req: ControlRequest, on r: ShellReplay? = nil) throws(ShellError) -> ReplayControl.Result {
        let handle: ShellReplay
        if let r { handle = r } else { handle = try runningReplay() }
        do { return try handle.control.perform(req) } catch { throw ShellError("replay: \(error)") }
    }

    /// `replay step [N]` (pause, then the next N events) and `replay burst [N]` (the next N at once).
    private func replayStep(_ sub: String, _ rest: String) throws(ShellError) {
        let word = rest.trimmed()
        let n = word.isEmpty ? 1 : Int(word) ?? 0
        guard n >= 1 else { throw ShellError("replay \(sub) takes a count of events (1 or more), not '\(word)'") }
        let r = try runningReplay()
        guard r.server.status().negotiatedClients > 0 else {
            throw ShellError("no client has negotiated yet: a client's timeline starts when it sends qmp_capabilities")
        }
        let res = try perform(sub == "step" ? .step(n) : .burst(n), on: r)
        let sent = res.released ?? 0
        emit("replay \(sub): \(sent) event\(sent == 1 ? "" : "s") sent, now at " + replayPosition())
    }

    /// `replay hold event POSITION` or `replay hold reply COMMAND`.
    private func replayHold(_ rest: String) throws(ShellError) {
        let (kind, what) = rest.splitFirstWord()
        let target: ControlHold.Target
        switch kind {
        case "event":
            guard !what.trimmed().isEmpty else { throw ShellError("replay hold event needs a position: #N, a time, a mark, or 'here'") }
            let w = what.trimmed()
            target = .event(record: (w == "here" || w == ".") ? cursor : try resolve(w))
        case "reply":
            let name = what.trimmed()
            guard !name.isEmpty, !name.contains(" ") else { throw ShellError("replay hold reply needs one command name, e.g. query-status") }
            target = .reply(command: name)
        default:
            throw ShellError("usage: replay hold event POSITION | replay hold reply COMMAND")
        }
        guard let h = try perform(.hold(target)).hold else { return }
        emit("hold \(h.id): \(h.target) ('replay release \(h.id)' ends it)")
    }

    private func replayRelease(_ rest: String) throws(ShellError) {
        let w = rest.trimmed()
        let id: Int? = w.isEmpty ? nil : Int(w)
        if !w.isEmpty && id == nil { throw ShellError("replay release takes a hold number (or nothing: every hold), not '\(w)'") }
        let ids = try perform(.release(id)).releasedHolds ?? []
        emit(ids.isEmpty ? "no hold to release" : "released hold\(ids.count == 1 ? "" : "s") \(ids.map(String.init).joined(separator: ", ")) at " + replayPosition())
    }

    private func replayStatus() {
        guard let r = backgroundReplay else {
            emit("no replay has been started; 'replay start' serves this recording to clients")
            return
        }
        let st = r.server.controlStatus()
        emit(st.replay.description)
        for h in st.holds { emit("  hold \(h.id): \(h.target)\(h.holding ? " (holding now)" : "")") }
        let (lines, _) = r.recent(10)
        for l in lines { emit("  " + l) }
    }

    private func replayStop() throws(ShellError) {
        guard let r = backgroundReplay else { throw ShellError("no replay is running") }
        r.server.stop()
        let s = r.server.status()
        backgroundReplay = nil
        emit("replay stopped: \(s.eventsSent) event\(s.eventsSent == 1 ? "" : "s") sent, \(s.sessionsFinished) session\(s.sessionsFinished == 1 ? "" : "s") finished")
        for report in r.server.reports { emit("  " + report.description) }
    }

    /// Called when the shell ends: a background server must not outlive it.
    public func stopBackgroundWork() {
        backgroundReplay?.server.stop()
        backgroundReplay = nil
        if let live, !live.finished {
            live.stop()
            refresh()
        }
    }

    /// A line for the prompt loop: news from the background replay since the last command.
    public var backgroundNotice: String? {
        guard let n = backgroundReplay?.newlyPending() else { return nil }
        return "(replay: \(n) new message\(n == 1 ? "" : "s") from the server; 'replay status' shows \(n == 1 ? "it" : "them"))"
    }

    /// `replay start --help`: the options, from their one declaration (those of `qmpreplay serve`).
    static func replayStartHelp(width: Int?) -> String {
        let text = ServeOptions.helpMessage(columns: width)
        // ArgumentParser's usage line names the type, not the shell's command: say the shell's.
        let options = text.range(of: "OPTIONS:").map { String(text[$0.lowerBound...]) } ?? text
        return "usage: replay start [--listen ADDR] [--here] [options]\n"
            + "Without --listen it serves on a unix socket in $XDG_RUNTIME_DIR or /tmp; --here starts\n"
            + "the timeline at the cursor.\n\n" + options.trimmingCharacters(in: .newlines)
    }

    static func defaultReplaySocket() -> String {
        let dir = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"] ?? ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        return "\(dir)/qmpreplay-\(getpid()).sock"
    }
}
