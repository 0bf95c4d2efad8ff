import Analysis
import ArgumentParser
import Fleet
import Options
import QMP
import Recording
import Shell

struct CatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cat",
        abstract: "Print records, optionally a time span and only some events or commands.",
        usage: HelpText.usage("""
            qmpreplay cat FILE [--from T] [--to T] [--event NAME]... [--command NAME]... [--kind KIND]... \
            [--connection N] [--direction qemu|client] [--format pretty|jsonl|raw] [--strict]
            qmpreplay cat FILE|DIR|PATTERN... [same options; --format pretty|jsonl]
            """),
        discussion: HelpText.format("""
            Formats:
              pretty  one heading line per record (number, time since start, connection, direction,
                      kind, name) followed by the message as indented JSON;
              jsonl   the record lines exactly as stored (envelope + message), for jq;
              raw     the exact bytes of each message as they crossed the socket, nothing else.

            --event and --command take names or patterns (BALLOON*, query-*) and may be repeated;
            records matching any of them are printed. --command also prints the replies to the
            selected commands. Without --event/--command/--kind every record in the span is printed.

            Times: 12.5s, 1m30s, +5s, -2s (2 s before the end), @123 (record number), 10:00:05
            (see 'qmpreplay --help'). On a command line write @123 rather than #123, which sh takes
            as a comment unless it is quoted.

            Examples:
              qmpreplay cat rec.qmprec --from -2s
              qmpreplay cat rec.qmprec --from @160 --to @170 --format jsonl
              qmpreplay cat rec.qmprec --event 'BLOCK_JOB_*' --command query-block-jobs

            When nothing is printed, a warning on standard error says why (the span is past the
            end, or no record has that event or command name, with the closest names).

            Several recordings (files, folders searched for *.qmprec and *.qmprec.gz, patterns) are
            printed one after the other, the selection applied to each: pretty under a line
            "==> FILE <==", jsonl with "file" as the first member of each line (docs/FLEET.md). An
            unreadable one is reported on standard error and skipped (exit 2 at the end).

            Exit status: 0 success, also when nothing matched; 2 unreadable recording (any of
            several); 64 bad command line (a time that does not parse, --to before --from, an
            unknown kind, --format raw with several recordings).
            """))

    enum Format: String, ExpressibleByArgument, CaseIterable { case pretty, jsonl, raw }

    @Argument(help: "The recording (.qmprec or .qmprec.gz); several, folders or patterns are printed one after the other.",
              completion: .file(extensions: ["qmprec", "gz"]))
    var files: [String]

    @OptionGroup var span: TimeSpanOptions

    @OptionGroup var cacheOptions: CacheOptions

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
            let kinds = RecordKind.allCases.map(\.rawValue)
            throw ValidationError("unknown kind '\(k)'\(Suggestions.didYouMean(k, among: kinds)) (kinds: \(kinds.joined(separator: ", ")))")
        }
    }

    func run() throws {
        guard FleetRun.isFleet(files, jsonl: false) else {
            let r = try openRecording(files[0], strict: strict, cache: cacheOptions.cache)
            try printSelection(r, file: files[0], prefix: nil)
            return
        }
        guard format != .raw else {
            throw fail("cat: --format raw takes one recording (it prints bytes without records to tell files apart)", code: Exit.usage)
        }
        let inputs = FleetInputs.expand(files)
        var unreadable = !inputs.problems.isEmpty
        for p in inputs.problems { warn("\(p.path): \(p.message)") }
        let out = Output.stdout
        for file in inputs.files {
            let r: Recording
            do {
                r = try Recording(path: file, options: RecordingOptions(strict: strict, requireRecording: true, indexCache: cacheOptions.cache))
            } catch {
                warn(error.description)
                unreadable = true
                continue
            }
            if format == .pretty { out.line(Style(out).bold("==> \(file) <==")) }
            do {
                try printSelection(r, file: file, quiet: true, prefix: format == .jsonl ? Array("{\"file\":\(JSONValue.string(file).serialized()),".utf8) : nil)
            } catch let e as ExitCode {
                // A span that does not fit this recording: said, and the next one is printed.
                unreadable = unreadable || e.rawValue == Exit.unreadable
            }
        }
        out.flush()
        if unreadable { throw ExitCode(Exit.unreadable) }
    }

    /// Prints one recording's selection; `prefix` replaces each jsonl line's opening brace
    /// (several recordings: the line says which file it came from). `quiet`: no warning that
    /// a name or the span matched nothing here (in a fleet, most files lack most names).
    private func printSelection(_ r: Recording, file: String, quiet: Bool = false, prefix: [UInt8]?) throws {
        let records = try resolveSpan(span, in: r).records
        let lo = records.lowerBound, hi = records.upperBound
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
        // A name or pattern no record carries: said once, with the closest names.
        var explained = quiet
        for p in events where !quiet && !r.names.enumerated().contains(where: { $0.offset > 0 && Glob(p).matches($0.element) }) {
            warn("--event \(p): no event of that name in \(file)" + nameHint(p, known: Suggestions.eventNames(in: r), here: eventNamesHere(r)))
            explained = true
        }
        for p in commands where !quiet && !r.names.enumerated().contains(where: { $0.offset > 0 && Glob(p).matches($0.element) }) {
            warn("--command \(p): no command of that name in \(file)" + nameHint(p, known: Suggestions.commandNames(in: r), here: Suggestions.commandNames(in: r)))
            explained = true
        }
        var printed = 0
        var matcher = ReplyMatcher()
        var wantedReplies = Set<Int>()
        let out = Output.stdout
        let style = Style(out)
        var decodeErrors = 0
        // Only events by name: walk those names' record lists (docs/INDEX.md), not the span.
        let byName = commandGlobs.isEmpty && kindSet.isEmpty && !eventIDs.isEmpty
        let candidates = byName ? CatCommand.records(r, named: eventIDs, in: lo..<hi) : nil
        var k = 0
        var i = candidates?.first ?? lo
        var pages = PassedPages(r.bytes)
        while candidates.map({ k < $0.count }) ?? (i < hi) {
            defer {
                k += 1
                i = candidates.map { k < $0.count ? $0[k] : hi } ?? i + 1
            }
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
            pages.passed(r.offset(i))
            do {
                try emit(r, i, out: out, style: style, prefix: prefix)
                printed += 1
            } catch {
                decodeErrors += 1
                warn(error.description)
            }
        }
        out.flush()
        if decodeErrors > 0 { warn("\(plural(decodeErrors, "record")) could not be decoded and \(decodeErrors == 1 ? "was" : "were") skipped") }
        if printed == 0 && decodeErrors == 0 && !explained { explainNothing(r, file: file, lo: lo, hi: hi) }
        for p in r.problems where p.badLine { warn("\(file): \(p.description)") }
    }

    private func eventNamesHere(_ r: Recording) -> [String] {
        r.names.enumerated().compactMap { $0.offset > 0 && Suggestions.isEventName($0.element) ? $0.element : nil }
    }

    /// `; did you mean X?` for a plain name, and the names the recording has.
    private func nameHint(_ p: String, known: [String], here: [String]) -> String {
        var s = Glob(p).isLiteral ? Suggestions.didYouMean(p, among: known, quote: false) : ""
        let names = Array(Set(here)).sorted()
        if !names.isEmpty {
            s += " (\(names.count <= 8 ? "here" : "here, among others"): \(names.prefix(8).joined(separator: ", ")))"
        }
        return s
    }

    /// Nothing was printed: say why on standard error (the exit status stays 0).
    private func explainNothing(_ r: Recording, file: String, lo: Int, hi: Int) {
        if r.isEmpty { warn("\(file) has no records"); return }
        let last = "@\(r.count - 1) at \(DurationFormat.clock(r.time(r.count - 1)))"
        if lo >= r.count {
            warn("--from \(span.from.map { "\($0)" } ?? "") is after the last record (\(last)): nothing to print")
        } else if hi <= lo {
            warn("the span --from \(span.from.map { "\($0)" } ?? "start") --to \(span.to.map { "\($0)" } ?? "end") holds no record: nothing to print")
        } else if !events.isEmpty || !commands.isEmpty || !kinds.isEmpty || connection != nil || direction != nil {
            warn("no record in @\(lo)..@\(hi - 1) matches the selection: nothing to print")
        }
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

    private func emit(_ r: Recording, _ i: Int, out: Output, style: Style, prefix: [UInt8]?) throws(RecordDecodeError) {
        switch format {
        case .jsonl:
            let line = r.lineBytes(i)
            if let prefix, line.first == UInt8(ascii: "{") {
                out.write(bytes: prefix)
                out.line(bytes: UnsafeBufferPointer(rebasing: line.dropFirst()))
            } else {
                out.line(bytes: line)
            }
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

    /// The records in `span` named by one of `ids`, in order: each name's list from the
    /// index, cut to the span by binary search, merged.
    static func records(_ r: Recording, named ids: Set<UInt16>, in span: Range<Int>) -> [Int] {
        var out: [Int] = []
        for id in ids {
            let list = r.records(nameID: id)
            let from = list.firstPosition(atOrAfter: span.lowerBound), to = list.firstPosition(atOrAfter: span.upperBound)
            out += list[from..<to]
        }
        if ids.count > 1 { out.sort() }
        return out
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
