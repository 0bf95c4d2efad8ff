import Options
import QMP
import Recording

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the shell writes. The CLI gives standard output; tests give a buffer.
public protocol ShellOutput: AnyObject {
    func write(_ s: String)
    /// Colours (ANSI) wanted: on a terminal and without NO_COLOR.
    var colors: Bool { get }
    /// Columns available for one-line summaries.
    var width: Int { get }
}

/// Ctrl-C while a command runs: the handler sets the flag, long commands poll it and stop.
public enum Interrupt {
    nonisolated(unsafe) public static var requested: Int32 = 0
    public static var pending: Bool { requested != 0 }
    public static func clear() { requested = 0 }
}

/// The investigation shell's state and commands, independent of how lines arrive
/// (readline on a terminal, a pipe, `-c`). One cursor over the recording, an optional
/// view filter, bookmarks, and a cached state tracker.
public final class ShellSession {
    /// The recording; a live session replaces it with the grown file (`refresh`, ShellLive.swift).
    public internal(set) var recording: Recording
    public let out: ShellOutput
    /// The current record (0..<count); 0 for an empty recording.
    public internal(set) var cursor = 0
    public private(set) var filter: FilterExpression?
    public private(set) var marks: MarkStore
    /// Long answers go through a pager when they are taller than the terminal (interactive
    /// use on a terminal only; the runner decides). `set pager off` turns it off.
    public var pager = true
    public var colorOverride: Bool?
    /// How much of a large message `show` prints (`set show-depth|show-items|show-string`).
    public var showLimits = ShowLimits()
    public private(set) var quitRequested = false
    /// The last `next`/`prev` as typed: Enter on an empty line repeats it (`executeOrRepeat`).
    /// Absolute moves (seek, goto, first, last) clear it.
    public private(set) var lastMove: String?
    /// The findings of the last `triage`, numbered from 1 as it printed them: `goto N` jumps
    /// to finding N's first record.
    var triageFindings: [(summary: String, records: [Int])]?
    /// Field paths seen in the recording (sampled) and documented by the catalog, for
    /// "did you mean" on filter paths.
    private lazy var knownPaths: Set<String> = FilterHints.knownPaths(in: recording)
    lazy var tracker = StateTracker(recording: recording)
    /// The schema `describe` and completion use (docs/CATALOG.md, "Layers"), found on first use.
    public internal(set) lazy var schema: SchemaChoice = RecordingSchema.choose(for: recording)
    /// The server started by `replay start` (ShellReplay.swift), while it runs.
    var backgroundReplay: ShellReplay?
    /// A live session (ShellLive.swift): the recorder talking to QEMU (`--connect`), nil
    /// when following a file another process writes (`--follow`) or reading a finished one.
    public internal(set) var live: LiveRecorder?
    /// The recording may still grow: `refresh` looks for new records.
    public internal(set) var growing = false
    /// The cursor moves with the live end, printing new records through the filter.
    public internal(set) var following = false
    /// `watch FILTER`: records matching it are printed as they arrive, followed or not.
    public internal(set) var watchFilter: FilterExpression?
    /// The session was live once (the prompt keeps saying `ended` after the end).
    var wasLive = false
    /// A query-qmp-schema was sent and its reply may not be in yet (ShellLive.swift).
    var schemaAwaited = false

    public init(recording: Recording, out: ShellOutput) throws(ShellError) {
        self.recording = recording
        self.out = out
        self.marks = try MarkStore(recordingPath: recording.path)
    }

    // MARK: Prompt

    /// `[#1234 +00:12:05.250 STOP] qmp> `
    /// Live: `[#1234 +00:12:05.250 STOP] live> ` while following, `[#1200 ...] +34 qmp> `
    /// (records past the cursor) while staying, `ended` once the recording is finished.
    public var prompt: String {
        let marker = liveMarker
        guard !recording.isEmpty else { return "[empty] \(marker.isEmpty ? "" : marker + " ")qmp> " }
        let what = recording.name(cursor) ?? recording.kind(cursor).rawValue
        var p = "[#\(cursor) \(DurationFormat.clock(recording.time(cursor))) \(what)]"
        if filter != nil { p += "*" }
        return p + (marker.isEmpty ? "" : " " + marker) + " qmp> "
    }

    // MARK: Dispatch

    public struct CommandSpec: Sendable {
        public let name: String
        public let aliases: [String]
        public let usage: String
        public let summary: String
        public let details: String
    }

    public static let commands: [CommandSpec] = [
        .init(name: "info", aliases: ["i"], usage: "info", summary: "summary of the recording (as qmpreplay info)", details: ""),
        .init(name: "show", aliases: ["s", "p"], usage: "show [--full] [N|T]", summary: "the current (or given) record in full",
              details: "Shows direction, times (since start, wall clock, QEMU timestamp for events), the message as JSON, and for a command its reply and latency, for a reply the command it answers. N is a record number (@N, #N or N), T any time. A large message is cut (about 100 lines; at most 20 items per array or object, 6 levels deep, 400 characters per string) with a note saying what was left out: --full shows all of it, and 'set show-lines N|all', 'set show-items N|all', 'set show-depth N|all', 'set show-string N|all' change the limits. Output taller than the terminal goes through the pager ('set pager off' stops that)."),
        .init(name: "next", aliases: ["n"], usage: "next [N | EVENT | COMMAND | FILTER]", summary: "move forward N records, or to the next match",
              details: "With a number: N records through the active filter. With an event name (STOP), command name (query-status) or filter expression: the next record that matches it (and the active filter). Prints the record it lands on; Enter on an empty line repeats the last next or prev."),
        .init(name: "prev", aliases: ["b", "previous"], usage: "prev [N | EVENT | COMMAND | FILTER]", summary: "move back N records, or to the previous match", details: "Like next, backwards. Enter on an empty line repeats it."),
        .init(name: "seek", aliases: ["goto", "g"], usage: "seek T | goto T|MARK|N|NAME", summary: "move to a time, record, mark, finding or name",
              details: "T: 12.5s, 1m30s, 500ms (since start), +5s/-2s (from the cursor), @123 or #123 (a record), 10:00:05 or 2026-11-20T10:00:05Z. A mark name moves to the mark; an event or command name (goto STOP) to its first record ('next STOP' to the next one). After 'triage', 'goto N' (a bare number) jumps to finding N's first record; before it, N is a record number. Moves to the first record at or after a time and prints the record it lands on."),
        .init(name: "first", aliases: [], usage: "first", summary: "move to the first record (through the filter)", details: ""),
        .init(name: "last", aliases: [], usage: "last", summary: "move to the last record (through the filter)", details: ""),
        .init(name: "list", aliases: ["l", "ls"], usage: "list [N] [around | from T]", summary: "one line per record around the cursor",
              details: "N records (default 20) around the cursor, or from time T. Respects the filter. Ctrl-C stops a long list."),
        .init(name: "filter", aliases: [], usage: "filter [EXPR | off]", summary: "set, show or clear the view filter",
              details: "EXPR: event NAME, event=BALLOON*, command NAME, kind error, from client, conn 2, data.actual < 1G, data.device == \"ide0-hd0\", arguments.name ~ /^vnet/, has data.reason, time 10s..20s, with and/or/not and parentheses. next, prev, list, first and last respect it."),
        .init(name: "find", aliases: ["f"], usage: "find EXPR", summary: "list every record that matches EXPR", details: "Prints record numbers and times; Ctrl-C stops it."),
        .init(name: "state", aliases: ["st"], usage: "state", summary: "the VM as known at the cursor",
              details: "Run state (since when, why), balloon level and target, RTC offsets, NIC rx-filter latches, block jobs, VNC/SPICE clients, last error: computed by replaying the recording up to the cursor (cached)."),
        .init(name: "mark", aliases: ["m"], usage: "mark NAME [note]", summary: "bookmark the cursor (saved next to the recording)", details: "The recording is never modified: marks go to FILE.marks.json. Marking with a name that exists moves that mark to the cursor (and says so)."),
        .init(name: "marks", aliases: [], usage: "marks", summary: "list bookmarks", details: ""),
        .init(name: "unmark", aliases: [], usage: "unmark NAME", summary: "delete a bookmark", details: ""),
        .init(name: "export", aliases: [], usage: "export FROM TO -o FILE [--filtered] [--force]", summary: "write a span as a new .qmprec",
              details: "Copies the records from FROM to TO (times, @N or marks, inclusive) byte for byte into FILE with the original header and a label saying where it came from. --filtered keeps only records matching the active filter. An existing FILE is never replaced unless --force is given."),
        .init(name: "analyze", aliases: [], usage: "analyze NAME [--from T] [--to T] [--here] [--json]", summary: "run an analysis and show its table",
              details: "NAME: balloon, rtc, nic-rx-filter, runstate, block-jobs, sessions, commands, throttle, triage. Over the whole recording unless --from/--to (times, #N or marks) or --here (from the start to the cursor) limit it. --json prints the JSON of docs/ANALYSIS.md."),
        .init(name: "plot", aliases: [], usage: "plot NAME [--from T] [--to T] [--here] [--svg FILE]", summary: "draw an analysis as a terminal chart (or SVG)",
              details: "NAME: balloon, rtc or runstate (the series), or triage: the incident as one timeline (findings numbered as in 'triage', the run state, every event in lanes, error replies). The chart is as wide as the terminal; the range options are those of analyze. --svg FILE writes the same picture as SVG instead (for triage: docs/ANALYSIS.md, \"The incident as a picture\")."),
        .init(name: "triage", aliases: [], usage: "triage [N] [--from T] [--to T] [--here] [--json]", summary: "ranked findings of every analysis, with records to goto",
              details: "Findings grouped by analysis, kind and subject (a NIC, a job type, a device, a command), most important first, numbered, each with its first records; N shows the first N only. Then 'goto N' jumps to finding N's first record, and 'goto @REC' to any record listed."),
        .init(name: "replay", aliases: [], usage: "replay start|pause|resume|speed|seek|stop|status", summary: "serve the recording to QMP clients in the background",
              details: ShellSession.replayUsage + "\nstart takes the options of 'qmpreplay serve' (--listen, --speed, --from, --to, --loop, --max-gap, --clock-only, --shared, --strict, ...; 'replay start --help' lists them); without --listen it serves on a unix socket in $XDG_RUNTIME_DIR or /tmp, and --here starts the timeline at the cursor. The server runs while you keep investigating; quitting the shell stops it."),
        .init(name: "describe", aliases: ["desc"], usage: "describe [NAME]", summary: "a command's or event's members and types, from QEMU's schema",
              details: "NAME: a command (blockdev-mirror) or event (BLOCK_IO_ERROR) of the schema that applies to this recording (its own query-qmp-schema reply, else the one shipped for its QEMU version, else only the seed catalog; without NAME, which one and why). Prints arguments and return type, or event data, one member a line with its type ('?' marks an optional member, [deprecated] a feature, a union's members under 'when TAG is VALUE'), and what the seed catalog adds (summary, follow-ups, throttling, remarks). Tab completes names, and in filters argument and data paths and enum values from the schema."),
        .init(name: "send", aliases: [], usage: "send COMMAND [key=value ...] | send {JSON}", summary: "live: send a command to QEMU; the reply is shown and recorded",
              details: "Only in a live session (qmpreplay shell --connect ADDR -o FILE). qmp-shell's argument syntax: key=value pairs, a.b=1 for nested objects, integers, true/false, JSON values ({...} or [...]); anything else is a string as typed. Or a whole JSON object {\"execute\": ..., \"arguments\": {...}} (its id is replaced by the recorder's). The command, its reply and whatever QEMU says meanwhile are recorded like any client command. Tab completes command names and argument names from QEMU's query-qmp-schema. Ctrl-C stops waiting for the reply."),
        .init(name: "follow", aliases: [], usage: "follow [on | off]", summary: "live: move with the live end, printing new records (like tail -f)",
              details: "On a recording that grows (shell --connect or --follow): follow (or follow on) moves the cursor to the last record and keeps it there, printing each new record that passes the filter as it arrives; the prompt says 'live'. follow off, or any move (next, prev, seek, first), stays where the cursor is while the end moves on; the prompt then shows how many records are past the cursor ('+34'). 'last' keeps following on."),
        .init(name: "watch", aliases: [], usage: "watch [FILTER | off]", summary: "live: print records matching FILTER as they arrive",
              details: "e.g. watch event BALLOON_CHANGE or event RTC_CHANGE. Matching records are printed as they arrive whether the cursor follows or not (the filter syntax is the one of 'filter'). watch alone shows the watch; watch off ends it."),
        .init(name: "set", aliases: [], usage: "set [OPTION VALUE]", summary: "shell options (set alone lists them)",
              details: "pager on|off: output taller than the terminal goes through $PAGER (default less -FRX; on by default, only on a terminal). color on|off: override terminal detection. show-lines N|all, show-items N|all, show-depth N|all, show-string N|all: how much of a large message 'show' prints (lines in all, items per array or object, nesting levels, characters per string)."),
        .init(name: "help", aliases: ["h", "?"], usage: "help [COMMAND]", summary: "this list, or one command in detail", details: ""),
        .init(name: "quit", aliases: ["q", "exit"], usage: "quit", summary: "leave (Ctrl-D too)", details: ""),
    ]

    public static func spec(_ word: String) -> CommandSpec? {
        commands.first { $0.name == word || $0.aliases.contains(word) }
    }

    /// Every command name and alias.
    static var commandWords: [String] { commands.flatMap { [$0.name] + $0.aliases } }

    /// Runs one command line. Errors are thrown as one-line `ShellError`s; the cursor only
    /// moves when a command succeeds.
    public func execute(_ line: String) throws(ShellError) {
        let trimmed = line.trimmed()
        guard !trimmed.isEmpty, !trimmed.hasPrefix("#!") else { return }
        let (word, rest) = trimmed.splitFirstWord()
        guard let spec = ShellSession.spec(word) else { throw unknownCommand(word) }
        switch spec.name {
        case "info": info()
        case "show": try show(rest)
        case "next", "prev":
            try move(rest, forward: spec.name == "next")
            lastMove = trimmed
            stay()
            landed()
        case "seek":
            try seek(rest, findings: word == "goto" || word == "g")
            lastMove = nil
            stay()
            landed()
        case "first", "last":
            try edge(first: spec.name == "first")
            lastMove = nil
            if spec.name == "first" { stay() }
            landed()
        case "list": try list(rest)
        case "filter": try setFilter(rest)
        case "find": try find(rest)
        case "state": try showState()
        case "mark": try mark(rest)
        case "marks": listMarks()
        case "unmark": try unmark(rest)
        case "export": try export(rest)
        case "analyze": try analyze(rest)
        case "plot": try plot(rest)
        case "triage": try triage(rest)
        case "replay": try replayCommand(rest)
        case "send": try send(rest)
        case "follow": try follow(rest)
        case "watch": try watch(rest)
        case "set": try set(rest)
        case "describe": try describe(rest)
        case "help": try help(rest)
        case "quit":
            stopBackgroundWork()
            quitRequested = true
        default: throw unknownCommand(word)
        }
    }

    /// Interactive input: an empty line repeats the last `next`/`prev` (as gdb repeats its
    /// last command), anything else runs as `execute` does.
    public func executeOrRepeat(_ line: String) throws(ShellError) {
        guard line.trimmed().isEmpty else { try execute(line); return }
        if let m = lastMove { try execute(m) }
    }

    /// `unknown command 'nxet'; did you mean 'next'?`, or for a name of the recording typed
    /// alone, the command that goes there.
    private func unknownCommand(_ word: String) -> ShellError {
        if !word.isEmpty, recording.names.dropFirst().contains(word) {
            return ShellError("unknown command '\(word)'; 'next \(word)' goes to the next \(word), 'find \(word)' lists them all")
        }
        let mean = Suggestions.didYouMean(word, among: ShellSession.commandWords)
        return ShellError("unknown command '\(word)'" + (mean.isEmpty ? "; 'help' lists the commands" : mean + " ('help' lists the commands)"))
    }

    /// After a move: the record the cursor is on, as one line (as `list` shows it).
    private func landed() {
        guard !recording.isEmpty else { return }
        emit(row(cursor))
    }

    // MARK: Styling

    private var colors: Bool { colorOverride ?? out.colors }
    func paint(_ code: String, _ s: String) -> String { colors ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }
    private func kindColor(_ k: RecordKind) -> String {
        switch k {
        case .event: return "35"
        case .command: return "33"
        case .return: return "32"
        case .error, .other: return "31"
        case .greeting: return "34"
        case .open, .close, .note: return "2"
        }
    }

    func emit(_ s: String) { out.write(s + "\n") }

    // MARK: Resolving positions

    func requireRecords() throws(ShellError) {
        if recording.isEmpty { throw ShellError("the recording has no records") }
    }

    /// `@N`, `#N`, `N`, a time, or a mark name -> record index.
    func resolve(_ arg: String) throws(ShellError) -> Int {
        try requireRecords()
        let a = arg.trimmed()
        if let n = Int(a) {
            guard n >= 0 && n < recording.count else { throw ShellError("record \(n) is out of range; the recording has records #0 to #\(recording.count - 1)") }
            return n
        }
        if let m = marks.mark(named: a) {
            guard m.record < recording.count else { throw ShellError("mark '\(a)' points at #\(m.record), past the end of the recording") }
            return m.record
        }
        let t: TimeSpec
        do { t = try TimeSpec.parse(a) } catch {
            var hint = ""
            if let m = Suggestions.closest(to: a, among: marks.marks.map(\.name), limit: 1).first { hint = "; did you mean the mark '\(m)'?" }
            throw ShellError("'\(a)' is neither a record number, a mark nor a time: \(error.reason); e.g. @120, 12.5s, +5s, 10:00:05\(hint)")
        }
        if case .record(let n) = t, n >= recording.count {
            throw ShellError("record #\(n) is out of range; the recording has records #0 to #\(recording.count - 1)")
        }
        let i = t.resolveIndex(in: recording, current: cursor)
        guard i < recording.count else {
            throw ShellError("\(a) is after the last record (\(DurationFormat.clock(recording.duration))); 'last' goes there")
        }
        return i
    }

    func visible(_ i: Int) -> Bool { filter?.matches(recording, i) ?? true }

    // MARK: Commands

    func info() {
        let s = RecordingSummary(recording)
        emit("\(recording.path): \(s.records) record\(s.records == 1 ? "" : "s") over \(DurationFormat.short(s.duration))" +
             (s.header?.qemuVersion.map { ", QEMU \($0)" } ?? "") + (s.header.map { ", mode \($0.mode.rawValue)" } ?? ""))
        if let h = s.header { emit("  started \(WallClock.iso8601(micros: h.startMicros)), source \(h.source), host \(h.host)") }
        emit("  by kind: " + s.byKind.map { "\($0.0) \($0.1)" }.joined(separator: ", "))
        if !s.events.isEmpty { emit("  events: " + s.events.prefix(12).map { "\($0.0) \($0.1)" }.joined(separator: ", ") + (s.events.count > 12 ? ", ..." : "")) }
        if !s.commands.isEmpty { emit("  commands: " + s.commands.prefix(12).map { "\($0.0) \($0.1)" }.joined(separator: ", ") + (s.commands.count > 12 ? ", ..." : "")) }
        if !s.errors.isEmpty { emit("  errors: " + s.errors.map { "\($0.0) \($0.1)" }.joined(separator: ", ")) }
        emit("  connections: \(s.connections.count); trailer: " + (s.trailer.map { "\($0.reason)" } ?? "missing"))
        emit("  schema: \(schema.summary) ('describe' says why)")
        if let k = s.skew {
            emit("  QEMU clock skew: min \(DurationFormat.short(k.minMicros.multipliedSaturating(by: 1000))), median \(DurationFormat.short(k.medianMicros.multipliedSaturating(by: 1000))), max \(DurationFormat.short(k.maxMicros.multipliedSaturating(by: 1000)))")
        }
        for p in s.problems.prefix(5) { emit("  " + paint("33", "warning: \(p.description)")) }
        if let f = filter { emit("  filter: \(f)") }
    }

    func show(_ arg: String) throws(ShellError) {
        try requireRecords()
        var words = arg.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        var limits = showLimits
        if let f = words.firstIndex(where: { $0 == "--full" || $0 == "-f" }) {
            words.remove(at: f)
            limits = .none
        }
        if let o = words.first(where: { $0.hasPrefix("--") }) {
            throw ShellError("show: unknown option '\(o)'\(Suggestions.didYouMean(o, among: ["--full"])) (usage: show [--full] [N|T])")
        }
        let target = words.joined(separator: " ")
        let i = target.isEmpty ? cursor : try resolve(target)
        let rec: Record
        do { rec = try recording.record(at: i) } catch { throw ShellError("record #\(i) cannot be decoded: \(error.description)") }
        var head = paint("1", "#\(i)") + "  line \(rec.line)  c\(rec.connection)  " + paint(kindColor(rec.kind), rec.kind.rawValue)
        if let d = rec.direction { head += " from \(d.rawValue)" }
        if let n = rec.name { head += "  " + paint("1", n) }
        emit(head)
        var times = "  time   \(DurationFormat.clock(rec.time)) since start"
        if let h = recording.header, h.startMicros > 0 {
            times += ", \(WallClock.iso8601(micros: h.startMicros.addingSaturating(rec.time / 1000))) wall clock"
        }
        emit(times)
        switch rec.body {
        case .message(_, let m):
            if case .event(let e) = m.body, let ts = e.timestamp {
                var line = "  qemu   \(WallClock.iso8601(micros: ts.totalMicroseconds)) (event timestamp)"
                if let h = recording.header, h.startMicros > 0 {
                    let recv = h.startMicros.addingSaturating(rec.time / 1000)
                    line += ", \(DurationFormat.short(ts.totalMicroseconds.subtractingSaturating(recv).multipliedSaturating(by: 1000))) from receive time"
                }
                emit(line)
            }
            if let json = m.json {
                let text = LimitedJSON(json, limits: limits)
                for l in text.lines { emit("  " + l) }
                if let note = text.note { emit(paint("2", "  " + note)) }
            } else {
                emit("  " + paint("31", "not JSON: \(m.reasonOrKind)"))
                emit("  " + Self.escaped(m.bytes))
            }
            if m.bytes.count != m.payload.count {
                emit(paint("2", "  bytes  \(m.bytes.count) on the wire (terminator \(Self.escaped(m.bytes[m.payload.upperBound...])))"))
            }
            try relatedMessage(i, rec, m)
        case .open(let peer, let info):
            emit("  connection opened: \(peer)" + (info.isEmpty ? "" : " \(JSONValue.object(info).serialized())"))
        case .close(let by, let reason):
            emit("  connection closed by \(by): \(reason)")
        case .note(let text, let data):
            emit("  note: \(text)" + (data.isEmpty ? "" : " \(JSONValue.object(data).serialized())"))
        }
    }

    /// For a command: its reply and latency; for a reply: the command it answers.
    private func relatedMessage(_ i: Int, _ rec: Record, _ m: QMPMessage) throws(ShellError) {
        let conn = rec.connection
        switch m.body {
        case .command(let c):
            var skip = 0  // earlier commands with the same id still waiting for replies
            var j = i + 1
            let limit = min(recording.count, i + 100_000)
            while j < limit {
                defer { j += 1 }
                guard recording.connection(j) == conn else { continue }
                let k = recording.kind(j)
                if k == .close { break }
                guard k == .return || k == .error || (k == .command && c.id != nil) else { continue }
                guard let r = try? recording.record(at: j), let rm = r.message else { continue }
                if k == .command { if rm.id == c.id { skip += 1 }; continue }
                guard rm.id == c.id else { continue }
                if skip > 0 { skip -= 1; continue }
                emit("  reply  #\(j) \(k.rawValue) after \(DurationFormat.short(r.time - rec.time))" +
                     (k == .error ? ": \(rm.name ?? "") \(Self.desc(rm))" : ""))
                return
            }
            emit("  reply  none recorded")
        case .return, .error:
            let id = m.id
            var j = i - 1
            let limit = max(0, i - 100_000)
            var newer = 0  // later replies with the same id between the command and this reply
            while j >= limit {
                defer { j -= 1 }
                guard recording.connection(j) == conn else { continue }
                let k = recording.kind(j)
                if k == .open { break }
                guard k == .command || k == .return || k == .error || (k == .other && id == nil) else { continue }
                guard let r = try? recording.record(at: j), let rm = r.message else { continue }
                if k == .return || k == .error { if rm.id == id { newer += 1 }; continue }
                guard rm.id == id else { continue }
                if newer > 0 { newer -= 1; continue }
                emit("  answers #\(j) \(rm.name ?? "(not a command)") sent \(DurationFormat.short(rec.time - r.time)) earlier")
                return
            }
            emit("  answers no recorded command")
        default:
            break
        }
    }

    func move(_ arg: String, forward: Bool) throws(ShellError) {
        try requireRecords()
        let a = arg.trimmed()
        if a.isEmpty || Int(a) != nil {
            let n = a.isEmpty ? 1 : Int(a)!
            guard n >= 0 else { throw ShellError("give a positive count (prev N moves back)") }
            var i = cursor, moved = 0
            while moved < n {
                let j = forward ? i + 1 : i - 1
                guard j >= 0 && j < recording.count else { break }
                i = j
                if visible(i) { moved += 1 }
                if moved == 0 && Interrupt.pending { break }
            }
            if moved == 0 && n > 0 {
                throw ShellError(forward ? "already at the last record\(filter != nil ? " matching the filter" : "")" : "already at the first record\(filter != nil ? " matching the filter" : "")")
            }
            cursor = i
            if moved < n { emit("moved \(moved) of \(n): reached the \(forward ? "end" : "start")") }
            return
        }
        let target = try Self.parseFilter(a)
        if let ids = target.requiredNameIDs(in: recording) {
            // Only the records of the names the target requires (docs/INDEX.md).
            let lists = ids.map { recording.records(nameID: $0) }
            var best: Int?
            for list in lists {
                var p = list.firstPosition(atOrAfter: forward ? cursor + 1 : cursor) + (forward ? 0 : -1)
                while p >= 0 && p < list.count {
                    let j = list[p]
                    if let b = best, forward ? j >= b : j <= b { break }
                    if target.matches(recording, j) && visible(j) { best = j; break }
                    p += forward ? 1 : -1
                }
            }
            if let best { cursor = best; return }
        } else {
            var j = forward ? cursor + 1 : cursor - 1
            var steps = 0
            while j >= 0 && j < recording.count {
                if target.matches(recording, j) && visible(j) { cursor = j; return }
                j += forward ? 1 : -1
                steps += 1
                if steps & 0xFFFF == 0 && Interrupt.pending { throw ShellError("interrupted; the cursor did not move") }
            }
        }
        let hints = FilterHints.hints(for: target, in: recording, knownPaths: knownPaths)
        if !hints.isEmpty { throw ShellError(hints.joined(separator: "; ")) }
        throw ShellError("no \(forward ? "later" : "earlier") record matches '\(a)'\(filter != nil ? " (and the filter)" : "")")
    }

    /// `seek T`; `goto T|MARK|NAME`, and after `triage` `goto N` (finding N).
    func seek(_ arg: String, findings: Bool = false) throws(ShellError) {
        let a = arg.trimmed()
        guard !a.isEmpty else { throw ShellError("seek needs a time, record or mark: e.g. seek 12.5s, seek @120, seek 10:00:05, goto mymark, goto STOP") }
        if findings, marks.mark(named: a) == nil, let n = Int(a), let found = triageFindings {
            guard n >= 1 && n <= found.count else {
                throw ShellError("triage listed finding\(found.count == 1 ? " 1" : "s 1 to \(found.count)"); 'goto @\(n)' goes to record \(n)")
            }
            guard let first = found[n - 1].records.first, first < recording.count else {
                throw ShellError("finding \(n) has no record to go to")
            }
            cursor = first
            emit("finding \(n): \(found[n - 1].summary)")
            return
        }
        if marks.mark(named: a) == nil, (try? TimeSpec.parse(a)) == nil, Int(a) == nil, !a.contains(" ") {
            // A name: its first record.
            try requireRecords()
            if let id = recording.nameID(for: a), id > 0, id < UInt16.max {
                // The name's record list (docs/INDEX.md): no walk over the others.
                let named = recording.records(nameID: id)
                let count = named.count
                if let first = named.first {
                    cursor = first
                    emit("first of \(count) \(a) record\(count == 1 ? "" : "s")\(count > 1 ? "; 'next \(a)' goes to the next one" : "")")
                    return
                }
            }
            let looksLikeName = a.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" } && a.contains(where: \.isLetter)
            let nearMark = !Suggestions.closest(to: a, among: marks.marks.map(\.name), limit: 1).isEmpty
            if looksLikeName && !nearMark && (Suggestions.isEventName(a) || a.contains("-") || a.contains("_")) {
                let kind: RecordKind = Suggestions.isEventName(a) ? .event : .command
                let hint = FilterHints.hints(for: try Self.parseFilter("\(kind.rawValue) \"\(a)\""), in: recording, knownPaths: [])
                throw ShellError((hint.first ?? "no record named \(a)") + " ('goto' takes a time, @N, a mark or a name; 'next NAME' finds the next match)")
            }
        }
        cursor = try resolve(a)
    }

    func edge(first: Bool) throws(ShellError) {
        try requireRecords()
        if filter == nil { cursor = first ? 0 : recording.count - 1; return }
        let range: [Int] = first ? Array(0..<recording.count) : Array((0..<recording.count).reversed())
        for i in range where visible(i) { cursor = i; return }
        throw ShellError("no record matches the filter '\(filter!)'; 'filter off' clears it")
    }

    func list(_ arg: String) throws(ShellError) {
        try requireRecords()
        var words = arg.trimmed().split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        var count = 20
        if let f = words.first, let n = Int(f) {
            guard n > 0 else { throw ShellError("list N needs N > 0") }
            count = n
            words.removeFirst()
        }
        if let w = words.first {
            switch w {
            case "around": break
            case "from":
                guard words.count >= 2 else { throw ShellError("list from T needs a time, e.g. list from 10s") }
                try listRows(from: try resolve(words[1...].joined(separator: " ")), count: count)
                return
            default: throw ShellError("list takes [N] [around | from T]; got '\(w)'")
            }
        }
        // Around: about a third before the cursor, the rest after.
        var before = count / 3
        var start = cursor
        var i = cursor - 1
        while i >= 0 && before > 0 {
            if visible(i) { start = i; before -= 1 }
            i -= 1
        }
        try listRows(from: start, count: count)
    }

    private func listRows(from start: Int, count: Int) throws(ShellError) {
        var shown = 0
        var i = start
        while i < recording.count && shown < count {
            if Interrupt.pending { emit("^C (stopped after \(shown) rows)"); Interrupt.clear(); return }
            if visible(i) {
                emit(row(i))
                shown += 1
            }
            i += 1
        }
        if shown == 0 { emit(filter != nil ? "no records match the filter here" : "no records") }
    }

    /// One line: marker, number, time, connection, direction, kind, name, compact message.
    func row(_ i: Int) -> String {
        let k = recording.kind(i)
        let mark = i == cursor ? paint("1", ">") : " "
        let dir = recording.direction(i).map { $0 == .qemu ? "<-" : "->" } ?? "  "
        var s = "\(mark) " + "#\(i)".leftPad(7) + " " + DurationFormat.clock(recording.time(i)) + " c\(recording.connection(i)) \(dir) "
        s += paint(kindColor(k), k.rawValue.padRight(8))
        let name = recording.name(i) ?? ""
        s += " " + name.padRight(22)
        let used = 7 + 1 + 14 + 1 + 4 + 4 + 9 + 23 + 2
        let room = max(10, out.width - used)
        if let r = try? recording.record(at: i) {
            var summary: String
            switch r.body {
            case .message(_, let m):
                if case .event(let e) = m.body {
                    summary = e.data.map { JSONValue.object($0).serialized(.compact) } ?? ""
                } else if case .command(let c) = m.body {
                    summary = c.arguments.map { JSONValue.object($0).serialized(.compact) } ?? ""
                } else if case .return(let x) = m.body {
                    summary = x.value.serialized(.compact)
                } else if case .error(let e) = m.body {
                    summary = e.desc
                } else if case .greeting(let g) = m.body {
                    summary = "QEMU \(g.version?.description ?? "?") capabilities \(g.capabilities)"
                } else {
                    summary = m.reasonOrKind
                }
            case .open(let peer, _): summary = "opened \(peer)"
            case .close(let by, let reason): summary = "closed by \(by): \(reason)"
            case .note(let text, _): summary = text
            }
            if summary.count > room { summary = String(summary.prefix(room - 1)) + "…" }
            s += " " + paint("2", summary)
        }
        return s
    }

    func setFilter(_ arg: String) throws(ShellError) {
        let a = arg.trimmed()
        if a.isEmpty {
            emit(filter.map { "filter: \($0)" } ?? "no filter (filter EXPR sets one)")
            return
        }
        if a == "off" || a == "none" || a == "clear" {
            filter = nil
            emit("filter cleared")
            return
        }
        let f = try Self.parseFilter(a)
        var count = 0
        var i = 0
        while i < recording.count {
            if f.matches(recording, i) { count += 1 }
            i += 1
            if i & 0xFFFF == 0 && Interrupt.pending { Interrupt.clear(); throw ShellError("interrupted; the filter was not changed") }
        }
        filter = f
        emit("filter: \(f) (\(count) of \(recording.count) record\(recording.count == 1 ? "" : "s"))")
        if count == 0 { for h in FilterHints.hints(for: f, in: recording, knownPaths: knownPaths) { emit("note: " + h) } }
    }

    func find(_ arg: String) throws(ShellError) {
        let a = arg.trimmed()
        guard !a.isEmpty else { throw ShellError("find needs an expression, e.g. find event STOP, find data.actual < 1G") }
        let f = try Self.parseFilter(a)
        var n = 0
        var i = 0
        while i < recording.count {
            if i & 0xFFF == 0 && Interrupt.pending { emit("^C (stopped at #\(i) after \(n) matches)"); Interrupt.clear(); return }
            if f.matches(recording, i) {
                n += 1
                if n <= 1000 { emit(row(i)) } else if n == 1001 { emit("... (more matches; counting)") }
            }
            i += 1
        }
        emit("\(n) match\(n == 1 ? "" : "es")")
        if n == 0 { for h in FilterHints.hints(for: f, in: recording, knownPaths: knownPaths) { emit("note: " + h) } }
    }

    func showState() throws(ShellError) {
        try requireRecords()
        let s = tracker.state(at: cursor)
        emit(paint("1", "state at #\(cursor) \(DurationFormat.clock(recording.time(cursor)))"))
        for l in tracker.render(s, at: cursor) { emit("  " + l) }
    }

    func mark(_ arg: String) throws(ShellError) {
        try requireRecords()
        let (name, note) = arg.trimmed().splitFirstWord()
        guard !name.isEmpty else { throw ShellError("mark needs a name: mark NAME [note]") }
        guard Int(name) == nil, !name.hasPrefix("#"), !name.hasPrefix("@"), (try? TimeSpec.parse(name)) == nil else {
            throw ShellError("'\(name)' looks like a time or record number; choose a name with a letter first, e.g. pause1")
        }
        let old = marks.mark(named: name)
        try marks.set(name, record: cursor, time: recording.time(cursor), note: note)
        if let old, old.record == cursor {
            emit("mark \(name) = #\(cursor), as it was\(note.isEmpty ? "" : "; note updated") (saved in \(marks.path))")
        } else if let old {
            emit("mark \(name) moved from #\(old.record) to #\(cursor) (saved in \(marks.path))")
        } else {
            emit("mark \(name) = #\(cursor) (saved in \(marks.path))")
        }
    }

    func listMarks() {
        if marks.marks.isEmpty { emit("no marks (mark NAME [note] adds one)"); return }
        for m in marks.marks.sorted(by: { $0.record < $1.record }) {
            emit("\(m.name.padRight(16)) #\(m.record) \(DurationFormat.clock(m.time))" + (m.note.isEmpty ? "" : "  \(m.note)"))
        }
    }

    func unmark(_ arg: String) throws(ShellError) {
        let name = arg.trimmed()
        guard try marks.remove(name) else { throw ShellError("no mark named '\(name)'; 'marks' lists them") }
        emit("mark \(name) removed")
    }

    func export(_ arg: String) throws(ShellError) {
        try requireRecords()
        var words = arg.trimmed().split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        var filtered = false, force = false
        if let i = words.firstIndex(of: "--filtered") { filtered = true; words.remove(at: i) }
        if let i = words.firstIndex(of: "--force") { force = true; words.remove(at: i) }
        if let o = words.first(where: { $0.hasPrefix("--") }) {
            throw ShellError("export: unknown option '\(o)'\(Suggestions.didYouMean(o, among: ["--filtered", "--force"])) (usage: export FROM TO -o FILE [--filtered] [--force])")
        }
        guard let o = words.firstIndex(of: "-o"), o + 1 < words.count, o == 2 else {
            throw ShellError("usage: export FROM TO -o FILE [--filtered] [--force], e.g. export 10s 20s -o span.qmprec")
        }
        let path = words[o + 1]
        let a = try resolve(words[0])
        let to: TimeArgument
        if let m = marks.mark(named: words[1]) {
            to = TimeArgument(record: m.record, text: words[1])
        } else {
            do { to = try TimeArgument.parse(words[1]) } catch { throw ShellError("TO '\(words[1])': \(error)") }
        }
        // The records FROM..TO, TO included, as `cat --from --to` takes them.
        let span = try? TimeSpan(from: TimeArgument(record: a), to: to).resolve(in: recording, current: cursor)
        guard let records = span?.records, !records.isEmpty else { throw ShellError("TO is before FROM: nothing to export") }
        let b = records.upperBound - 1
        if filtered && filter == nil { throw ShellError("--filtered needs an active filter ('filter EXPR')") }
        let what = "#\(a)..#\(b)" + (filtered ? " filter \(filter!)" : "")
        let result: RecordingExport.Result
        do {
            result = try RecordingExport.write(recording, range: a...b, to: path, force: force, what: what) { i in
                !filtered || filter!.matches(recording, i)
            }
        } catch {
            throw ShellError(error.description)
        }
        let n = result.records
        let secrets = result.redactions > 0 ? "; \(result.redactions) secret\(result.redactions == 1 ? "" : "s") redacted" : ""
        emit("wrote \(n) record\(n == 1 ? "" : "s") (#\(a)..#\(b)) to \(path)\(secrets)")
    }

    public static let settings = ["pager", "color", "show-lines", "show-items", "show-depth", "show-string"]

    func set(_ arg: String) throws(ShellError) {
        let (opt, value) = arg.trimmed().splitFirstWord()
        func limit(_ v: Int?) -> String { v.map(String.init) ?? "all" }
        if opt.isEmpty {
            emit("pager        \(pager ? "on" : "off") (only on a terminal, for output taller than it)")
            emit("color        \(colorOverride.map { $0 ? "on" : "off" } ?? "auto (\(colors ? "on" : "off"))")")
            emit("show-lines   \(limit(showLimits.lines)) (lines of a message, about)")
            emit("show-items   \(limit(showLimits.items)) (items per array or object)")
            emit("show-depth   \(limit(showLimits.depth)) (nesting levels)")
            emit("show-string  \(limit(showLimits.string)) (characters per string)")
            return
        }
        switch opt {
        case "pager", "color", "colour", "colors":
            let on: Bool
            switch value.lowercased() {
            case "on", "yes", "true", "1": on = true
            case "off", "no", "false", "0": on = false
            default: throw ShellError("set \(opt) takes on or off")
            }
            if opt == "pager" { pager = on } else { colorOverride = on }
            emit("\(opt) \(on ? "on" : "off")")
        case "show-lines", "show-items", "show-depth", "show-string":
            let v = value.lowercased()
            let n: Int?
            if v == "all" || v == "unlimited" || v == "off" {
                n = nil
            } else if let k = Int(v), k > 0 {
                n = k
            } else {
                throw ShellError("set \(opt) takes a number above 0, or all")
            }
            switch opt {
            case "show-lines": showLimits.lines = n
            case "show-items": showLimits.items = n
            case "show-depth": showLimits.depth = n
            default: showLimits.string = n
            }
            emit("\(opt) \(limit(n))")
        default:
            throw ShellError("unknown option '\(opt)'\(Suggestions.didYouMean(opt, among: ShellSession.settings)) (options: \(ShellSession.settings.joined(separator: ", ")))")
        }
    }

    func help(_ arg: String) throws(ShellError) {
        let a = arg.trimmed()
        if a.isEmpty {
            // Synopses in one column, descriptions aligned in the next; a synopsis too long for
            // the column puts its description on the next line.
            let column = 34
            let width = max(60, out.width)
            for c in ShellSession.commands {
                let text = Self.wrap(c.summary, width: width - column - 2)
                if c.usage.count <= column {
                    emit("  " + c.usage.padRight(column) + text[0])
                } else {
                    emit("  " + c.usage)
                    emit(String(repeating: " ", count: column + 2) + text[0])
                }
                for l in text.dropFirst() { emit(String(repeating: " ", count: column + 2) + l) }
            }
            let aliases = ShellSession.commands.filter { !$0.aliases.isEmpty }.map { "\($0.name): \($0.aliases.joined(separator: ", "))" }.joined(separator: "; ")
            for l in Self.wrap("Aliases: " + aliases, width: width - 1) { emit(l) }
            for l in Self.wrap("Times: 12.5s 1m30s 500ms +5s -2s @123 (or #123) 10:00:05 2026-11-20T10:00:05Z. Enter repeats the last next/prev; Tab completes; Ctrl-R searches history; Ctrl-C stops a command. 'help COMMAND' explains one.", width: width - 1) { emit(l) }
            return
        }
        guard let c = ShellSession.spec(a) else {
            throw ShellError("no command '\(a)'\(Suggestions.didYouMean(a, among: ShellSession.commandWords)) ('help' lists them)")
        }
        let width = max(60, out.width)
        emit(c.usage)
        for l in Self.wrap(c.summary, width: width - 3) { emit("  " + l) }
        if !c.details.isEmpty {
            for para in c.details.split(separator: "\n") {
                // Lines laid out as a table (columns two or more spaces apart) stay as they are.
                if para.contains("   ") { emit("  " + para); continue }
                for l in Self.wrap(String(para), width: width - 3) { emit("  " + l) }
            }
        }
        if !c.aliases.isEmpty { emit("  aliases: " + c.aliases.joined(separator: ", ")) }
    }

    /// Words in lines of at most `width` characters.
    static func wrap(_ text: String, width: Int) -> [String] {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: true) {
            if !line.isEmpty, line.count + 1 + word.count > max(20, width) {
                lines.append(line)
                line = String(word)
            } else {
                line += (line.isEmpty ? "" : " ") + word
            }
        }
        lines.append(line)
        return lines
    }

    // MARK: Helpers

    static func parseFilter(_ text: String) throws(ShellError) -> FilterExpression {
        do {
            return try FilterExpression(parsing: text)
        } catch {
            throw ShellError("filter: \(error.description)\n\(error.pointing(at: text))")
        }
    }

    static func desc(_ m: QMPMessage) -> String {
        if case .error(let e) = m.body { return e.desc }
        return ""
    }

    static func escaped<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 { escapedBytes(bytes, limit: 300) }
}

extension String {
    public func trimmed() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" || l == "\r" { s = s.dropLast() }
        return String(s)
    }

    func splitFirstWord() -> (String, String) {
        let t = trimmed()
        guard let sp = t.firstIndex(where: { $0 == " " || $0 == "\t" }) else { return (t, "") }
        return (String(t[..<sp]), String(t[t.index(after: sp)...]).trimmed())
    }

    func padRight(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
