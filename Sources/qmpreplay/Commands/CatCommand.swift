import ArgumentParser
import QMP
import Recording

struct CatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cat",
        abstract: "Print records, optionally a time span and only some events or commands.",
        discussion: """
            Formats:
              pretty  one heading line per record (number, time since start, connection, direction,
                      kind, name) followed by the message as indented JSON;
              jsonl   the record lines exactly as stored (envelope + message), for jq;
              raw     the exact bytes of each message as they crossed the socket, nothing else.

            --event and --command take names or patterns (BALLOON*, query-*) and may be repeated;
            records matching any of them are printed. --command also prints the replies to the
            selected commands. Without --event/--command/--kind every record in the span is printed.

            Exit status: 0 success, 2 unreadable recording or bad time.
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable { case pretty, jsonl, raw }

    @Argument(help: "The recording (.qmprec or .qmprec.gz).", completion: .file(extensions: ["qmprec", "gz"]))
    var file: String

    @Option(help: "Start at this time (see 'qmpreplay --help' for the time syntax).")
    var from: TimeSpec?

    @Option(help: "Stop after this time (inclusive).")
    var to: TimeSpec?

    @Option(name: .customLong("event"), help: "Only events with this name or pattern (repeatable).")
    var events: [String] = []

    @Option(name: .customLong("command"), help: "Only commands with this name or pattern, with their replies (repeatable).")
    var commands: [String] = []

    @Option(name: .customLong("kind"), help: "Only records of this kind: greeting, command, return, error, event, other, open, close, note (repeatable).")
    var kinds: [String] = []

    @Option(help: "Only this connection number.")
    var connection: UInt32?

    @Option(help: "Only messages from qemu or from client (with --format raw and --connection: that direction's exact byte stream).")
    var direction: Direction?

    @Option(help: "Output format: pretty, jsonl or raw.")
    var format: Format = .pretty

    @Flag(help: "Treat any bad line as an error.")
    var strict = false

    func validate() throws {
        for k in kinds where RecordKind(rawValue: k) == nil {
            throw ValidationError("unknown kind '\(k)'; use one of: \(RecordKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        let r = try openRecording(file, strict: strict)
        let lo = from?.resolveIndex(in: r) ?? 0
        var hi = r.count
        if let to {
            if case .record(let n) = to { hi = min(r.count, n + 1) } else { hi = r.firstIndex(atOrAfter: to.resolveTime(in: r) &+ 1) }
        }
        let eventGlobs = events.map(Glob.init)
        let commandGlobs = commands.map(Glob.init)
        let kindSet = Set(kinds.compactMap(RecordKind.init(rawValue:)))
        let filtering = !eventGlobs.isEmpty || !commandGlobs.isEmpty || !kindSet.isEmpty

        // Name filters are decided once per distinct name, not once per record.
        var eventIDs = Set<UInt16>(), commandIDs = Set<UInt16>()
        for (id, name) in r.names.enumerated() where id > 0 {
            if eventGlobs.contains(where: { $0.matches(name) }) { eventIDs.insert(UInt16(id)) }
            if commandGlobs.contains(where: { $0.matches(name) }) { commandIDs.insert(UInt16(id)) }
        }
        var matcher = ReplyMatcher()
        var wantedReplies = Set<Int>()
        let out = Output.stdout
        let style = Style(out)
        var decodeErrors = 0
        var i = lo
        while i < hi {
            defer { i += 1 }
            if let c = connection, r.connection(i) != c { continue }
            if let d = direction, r.direction(i) != d { continue }
            let kind = r.kind(i)
            var selected = !filtering
            if !selected {
                if kindSet.contains(kind) { selected = true }
                if kind == .event && eventIDs.contains(r.nameID(i)) { selected = true }
                if !commandGlobs.isEmpty && (kind == .command || kind == .return || kind == .error || kind == .other) {
                    // Always feed the matcher, so replies stay paired even when already selected.
                    let isWanted = trackCommand(r, i, kind, commandIDs, &matcher, &wantedReplies)
                    selected = selected || isWanted
                }
            }
            guard selected else { continue }
            do {
                try emit(r, i, out: out, style: style)
            } catch {
                decodeErrors += 1
                warn(error.description)
            }
        }
        out.flush()
        if decodeErrors > 0 { warn("\(decodeErrors) records could not be decoded and were skipped") }
        for p in r.problems where p.badLine { warn("\(file): \(p.description)") }
    }

    /// Feeds the reply matcher; returns whether record `i` is a selected command or a reply to one.
    private func trackCommand(
        _ r: Recording, _ i: Int, _ kind: RecordKind, _ ids: Set<UInt16>, _ matcher: inout ReplyMatcher,
        _ wanted: inout Set<Int>
    ) -> Bool {
        guard let rec = try? r.record(at: i), let m = rec.message else { return false }
        switch (rec.direction, m.body) {
        case (.client?, .command(let c)):
            matcher.sent(.init(record: i, time: rec.time, name: c.name, id: c.id, arguments: c.arguments), connection: rec.connection)
            if ids.contains(r.nameID(i)) { wanted.insert(i); return true }
        case (.client?, .other):
            matcher.sent(.init(record: i, time: rec.time, name: nil, id: nil, arguments: nil), connection: rec.connection)
        case (.qemu?, .return(let x)):
            if let p = matcher.reply(id: x.id, connection: rec.connection), wanted.contains(p.record) { return true }
        case (.qemu?, .error(let x)):
            if let p = matcher.reply(id: x.id, connection: rec.connection), wanted.contains(p.record) { return true }
        default: break
        }
        return false
    }

    private func emit(_ r: Recording, _ i: Int, out: Output, style: Style) throws(RecordDecodeError) {
        switch format {
        case .jsonl:
            out.write(bytes: r.lineBytes(i))
            out.write("\n")
        case .raw:
            if let bytes = try r.rawBytes(i) { out.write(bytes: bytes) }
        case .pretty:
            let rec = try r.record(at: i)
            out.line(CatCommand.heading(rec, style: style))
            switch rec.body {
            case .message(_, let m):
                if let json = m.json {
                    out.line(json.serialized(.pretty(indent: 2)))
                } else {
                    out.line(style.red("(not JSON: \(m.reasonOrKind))") + " " + escapedBytes(m.bytes))
                }
            case .open(_, let info) where !info.isEmpty:
                out.line(JSONValue.object(info).serialized(.compact))
            case .note(_, let data) where !data.isEmpty:
                out.line(JSONValue.object(data).serialized(.compact))
            default: break
            }
        }
    }

    static func heading(_ rec: Record, style: Style) -> String {
        var s = style.dim("#\(rec.index)") + " " + DurationFormat.clock(rec.time) + " " + style.dim("c\(rec.connection)") + " "
        switch rec.body {
        case .message(let dir, let m):
            let arrow = dir == .qemu ? style.cyan("qemu  ->") : style.yellow("client->")
            s += arrow + " " + style.kind(rec.kind, rec.kind.rawValue)
            if let n = m.name { s += " " + style.bold(n) }
            if let id = m.id { s += style.dim(" id=" + id.serialized()) }
            if case .event(let e) = m.body, let ts = e.timestamp {
                s += style.dim(" qemu-time=" + WallClock.iso8601(micros: ts.totalMicroseconds))
            }
        case .open(let peer, _): s += style.dim("open  " + peer)
        case .close(let by, let reason): s += style.dim("close by \(by): \(reason)")
        case .note(let text, _): s += style.dim("note  " + text)
        }
        return s
    }
}

extension Direction: ExpressibleByArgument {}
