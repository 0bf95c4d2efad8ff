import QMP

/// Runs `SessionValidator` over a whole recording and adds the reader's own problems, so
/// `qmpreplay validate` reports both kinds of finding with file lines.
public enum RecordingValidation {
    public static func run(_ r: Recording, progress: ((Int) -> Void)? = nil) -> [Finding] {
        var v = SessionValidator()
        var out: [Finding] = []
        for p in r.problems {
            out.append(Finding(p.badLine ? .warning : .info, p.badLine ? "bad-line" : "file", p.message, line: p.line > 0 ? p.line : nil))
        }
        for i in 0..<r.count {
            if i & 0xFFFF == 0 { progress?(i) }
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

    public static func json(_ findings: [Finding], path: String) -> JSONValue {
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
        return .object(o)
    }
}
