import ArgumentParser
import Fleet
import QMP
import Recording

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Summarise a recording: header, duration, counts, connections, QEMU clock skew, warnings.",
        usage: HelpText.usage("""
            qmpreplay info FILE [--schema FILE] [--json] [--strict]
            qmpreplay info FILE|DIR|PATTERN... [--format jsonl|table] [--jobs N]
            """),
        discussion: HelpText.format("""
            Counts records by direction and kind, events by name, commands by name and errors by
            class; lists connections; compares QEMU's event timestamps with the receive times
            (skew = QEMU timestamp - receive wall clock); and reports damage (bad lines, torn last
            line, missing trailer) as warnings; and says which QEMU schema validation checks against,
            and why: the recording's own query-qmp-schema reply, else the one shipped for the QEMU
            version in its greeting, else only the seed catalog (--schema FILE names another: a
            reply or a recording holding one; docs/CATALOG.md). --json output is described in
            docs/JSON.md.

            Several recordings (files, directories searched for *.qmprec and *.qmprec.gz, quoted
            patterns) give one line each, read on every core: JSON Lines by default (file, host,
            VM, time span, and the --json document as "result"; docs/FLEET.md), or a table line
            with --format table. A damaged file is one error line; the run goes on.

            Exit status: 0 read (even with warnings); 2 unreadable (or any bad line with --strict;
            with several recordings: any of them, after all were read);
            64 bad command line.
            """))

    @Argument(help: "The recording (.qmprec or .qmprec.gz); several, directories or patterns for one line each.",
              completion: .file(extensions: ["qmprec", "gz"]))
    var files: [String]

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json, jsonl }

    @Option(help: "Output format: table or json (as --json); jsonl (one line per recording, the default for several).")
    var format: Format?

    @OptionGroup var fleet: FleetOptions

    @OptionGroup var cacheOptions: CacheOptions

    @Flag(help: "Treat any bad line as an error.")
    var strict = false

    @Option(help: ArgumentHelp("Report this schema: a query-qmp-schema reply (JSON, may be gzipped) or a recording that holds one.", valueName: "FILE"),
            completion: .file())
    var schema: String?

    func run() throws {
        if FleetRun.isFleet(files, jsonl: format == .jsonl) {
            return try runFleet()
        }
        let file = files[0]
        let json = self.json || format == .json
        let r = try openRecording(file, strict: strict, cache: cacheOptions.cache)
        var s = RecordingSummary.of(r)
        s.schema = try schemaChoice(for: r, file: schema)
        let out = Output.stdout
        if json {
            out.line(s.json.serialized(.pretty(indent: 2)))
            out.flush()
            return
        }
        InfoCommand.printTable(s, to: out)
        out.flush()
    }

    /// `info` over many recordings (docs/FLEET.md): one JSON or table line each.
    private func runFleet() throws {
        let lineFormat: FleetRun.Format
        switch format ?? (json ? .json : .jsonl) {
        case .jsonl: lineFormat = .jsonl
        case .table: lineFormat = .table
        case .json: throw fail("info: several recordings give one line each: use --format jsonl (or table)", code: Exit.usage)
        }
        let override = try schema.map { file in
            do { return try RecordingSchema.load(file: file) } catch { throw fail("--schema: \(error)") }
        }
        try FleetRun(command: "info", format: lineFormat, strict: strict, jobs: fleet.jobs, cache: cacheOptions.cache).run(files) { _, r in
            var s = RecordingSummary.of(r)
            s.schema = RecordingSchema.choose(for: r, override: override)
            let damage = s.problems.isEmpty ? "" : ", " + plural(s.problems.count, "problem")
            return FleetAnswer(result: s.json, summary: "\(plural(s.records, "record")), \(plural(s.connections.count, "connection"))\(damage)")
        }
    }

    static func printTable(_ s: RecordingSummary, to out: Output) {
        let st = Style(out)
        func row(_ label: String, _ value: String) {
            out.line(st.bold(label.padding(14)) + value)
        }
        row("Recording", "\(s.path) (\(formatBytes(s.fileBytes)))")
        if let h = s.header {
            row("Format", "qmprec \(h.version), mode \(h.mode.rawValue), \(h.recorder), host \(h.host)")
            row("Source", h.source)
            row("Started", WallClock.iso8601(micros: h.startMicros))
            row("QEMU", h.qemuVersion ?? "unknown")
            row("Redacted", h.redacted ? "yes" : "no")
            if !h.labels.isEmpty { row("Labels", h.labels.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")) }
            if let t = h.extra["trigger"]?.objectValue {
                // A dashcam incident file (record --ring): why it was written (docs/FORMAT.md).
                let when = t["t"]?.int64Value.map { " at \(DurationFormat.short($0))" } ?? ""
                row("Trigger", "\(t["source"]?.stringValue ?? "?") \(t["name"]?.stringValue ?? "?")\(when): \(t["detail"]?.stringValue ?? "")")
            }
        } else {
            row("Format", st.yellow("no header"))
        }
        row("Duration", "\(DurationFormat.clock(s.duration)) (\(DurationFormat.short(s.duration)))")
        let dirs = s.byDirection.map { "\($0.0) \($0.1)" }.joined(separator: ", ")
        row("Records", "\(s.records) (\(dirs))")
        row("  by kind", s.byKind.map { st.kind(RecordKind(rawValue: $0.0) ?? .note, $0.0) + " \($0.1)" }.joined(separator: ", "))
        table("Events", s.events, out: out, style: st)
        table("Commands", s.commands, out: out, style: st)
        table("Errors", s.errors, out: out, style: st)
        out.line(st.bold("Connections".padding(14)) + "\(s.connections.count)")
        for c in s.connections.prefix(20) {
            var line = "  c\(c.number)".padding(8) + (c.peer ?? "-").padding(28)
            line += "\(DurationFormat.clock(c.firstTime)) .. \(DurationFormat.clock(c.lastTime))  \(plural(c.records, "record"))"
            if let by = c.closedBy { line += ", closed by \(by)" + (c.closeReason.map { " (\($0))" } ?? "") }
            out.line(line)
        }
        if s.connections.count > 20 { out.line("  ... \(s.connections.count - 20) more (see --json)") }
        if let k = s.skew {
            row("QEMU clock", "\(k.events) event timestamps over \(DurationFormat.short(k.lastQEMUMicros.subtractingSaturating(k.firstQEMUMicros).multipliedSaturating(by: 1000))); receive span \(DurationFormat.short(k.lastReceive.subtractingSaturating(k.firstReceive)))")
            row("  skew", "min \(DurationFormat.short(k.minMicros.multipliedSaturating(by: 1000))), median \(DurationFormat.short(k.medianMicros.multipliedSaturating(by: 1000))), max \(DurationFormat.short(k.maxMicros.multipliedSaturating(by: 1000))) (QEMU timestamp - receive time)")
        } else {
            row("QEMU clock", "no event timestamps")
        }
        if let t = s.trailer {
            row("Trailer", "\(t.reason), \(t.records) records" + (t.dropped > 0 ? st.yellow(", \(t.dropped) dropped") : ""))
        } else {
            row("Trailer", st.yellow("missing"))
        }
        if let c = s.schema {
            row("Schema", c.summary)
            for l in wrapWords(c.reason, width: 64) { out.line("".padding(14) + st.dim(l)) }
        }
        if s.problems.isEmpty {
            row("Warnings", "none")
        } else {
            row("Warnings", st.yellow("\(s.problems.count)"))
            for p in s.problems.prefix(20) { out.line("  " + st.yellow(p.description)) }
            if s.problems.count > 20 { out.line("  ... \(s.problems.count - 20) more (see --json)") }
        }
    }

    private static func table(_ label: String, _ items: [(String, Int)], out: Output, style st: Style) {
        if items.isEmpty {
            out.line(st.bold(label.padding(14)) + "none")
            return
        }
        let total = items.reduce(0) { $0 + $1.1 }
        out.line(st.bold(label.padding(14)) + "\(total) (\(items.count) distinct)")
        let width = min(40, items.map(\.0.count).max() ?? 0)
        for (name, n) in items {
            out.line("  " + name.padding(width + 2) + String(n).leftPadding(8))
        }
    }
}

/// Words in lines of at most `width` characters (a long word stands alone).
func wrapWords(_ text: String, width: Int) -> [String] {
    var lines: [String] = [], line = ""
    for w in text.split(separator: " ") {
        if !line.isEmpty && line.count + 1 + w.count > width { lines.append(line); line = "" }
        line += (line.isEmpty ? "" : " ") + w
    }
    if !line.isEmpty { lines.append(line) }
    return lines
}

extension String {
    func padding(_ n: Int) -> String { count >= n ? self + " " : self + String(repeating: " ", count: n - count) }
    func leftPadding(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
