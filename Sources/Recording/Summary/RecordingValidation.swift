import QMP

/// Runs `SessionValidator` over a whole recording and adds the reader's own problems, so
/// `qmpreplay validate` reports both kinds of finding with file lines. The schema is the
/// one `RecordingSchema.choose` picks (docs/CATALOG.md, "Layers") unless one is given.
public enum RecordingValidation {
    public static func run(_ r: Recording, progress: ((Int) -> Void)? = nil) -> [Finding] {
        run(r, schema: RecordingSchema.choose(for: r), progress: progress)
    }

    /// `readProblems: false` leaves the reader's problems out (`RecordingDoctor` reports
    /// them itself, with their own codes).
    public static func run(
        _ r: Recording, schema choice: SchemaChoice, readProblems: Bool = true, progress: ((Int) -> Void)? = nil
    ) -> [Finding] {
        var v = SessionValidator(schema: choice.schema, label: label(choice))
        var out: [Finding] = []
        for p in r.problems where readProblems {
            out.append(Finding(p.badLine ? .warning : .info, p.badLine ? "bad-line" : "file", p.message, line: p.line > 0 ? p.line : nil))
        }
        var pages = PassedPages(r.bytes)
        for i in 0..<r.count {
            if i & 0xFFFF == 0 {
                progress?(i)
                pages.passed(r.offset(i))
            }
            let rec: Record
            do {
                rec = try r.record(at: i)
            } catch {
                out.append(Finding(.warning, "bad-record", error.reason, record: i, line: error.line))
                continue
            }
            switch rec.body {
            // Imported logs may begin mid-session: no greeting need come first.
            case .open: v.opened(connection: rec.connection, midSession: r.header?.mode == .import)
            case .close: v.closed(connection: rec.connection, time: rec.time)
            case .note: break
            case .message(let dir, let m):
                v.observe(m, from: dir, connection: rec.connection, record: i, time: rec.time)
            }
        }
        for var f in v.finish() {
            if let i = f.record, i < r.count { f.line = r.line(i) }
            out.append(f)
        }
        return out
    }

    /// How messages name the schema: "QEMU 7.2.22's schema (recorded)".
    public static func label(_ c: SchemaChoice) -> String {
        guard c.schema != nil else { return "the seed catalog alone" }
        let whose = c.qemu.map { "QEMU \($0)'s schema" } ?? "the schema"
        switch c.source {
        case .file(let p): return "\(whose) (\(p))"
        default: return "\(whose) (\(c.sourceName))"
        }
    }

    public static func json(_ findings: [Finding], path: String, schema: SchemaChoice? = nil) -> JSONValue {
        var o = JSONObject()
        o["file"] = .string(path)
        var counts = JSONObject()
        for s in [Finding.Severity.error, .warning, .info] {
            counts[s.rawValue] = .int(findings.filter { $0.severity == s }.count)
        }
        o["counts"] = .object(counts)
        o["findings"] = .array(findings.map { f in
            var x = JSONObject()
            x["severity"] = .string(f.severity.rawValue)
            x["code"] = .string(f.code)
            x["message"] = .string(f.message)
            x["record"] = f.record.map { .int($0) } ?? .null
            x["line"] = f.line.map { .int($0) } ?? .null
            return .object(x)
        })
        if let schema { o["schema"] = schema.json }
        return .object(o)
    }
}
