import Analysis
import QMP

/// One finding as `validate` and `doctor` print it: `FILE:LINE: SEVERITY: MESSAGE [code]`,
/// with `(@N)` (the record, as --from/--to take it unquoted) when `records` is set.
func findingLine(_ f: Finding, file: String, style st: Style, records: Bool = true) -> String {
    let loc = f.line.map { "\(file):\($0)" } ?? file
    let sev: String
    switch f.severity {
    case .error: sev = st.red("error")
    case .warning: sev = st.yellow("warning")
    case .info: sev = st.dim("note")
    }
    let rec = records ? f.record.map { " (@\($0))" } ?? "" : ""
    return "\(loc): \(sev): \(f.message)\(rec) [\(f.code)]"
}

/// How many findings of each severity, as the summaries say it: `2 errors, 0 warnings, 1 note`
/// (validate's last line, and one line per recording of validate and analyze in a fleet).
struct SeverityTally {
    var errors = 0, warnings = 0, notes = 0

    init(_ findings: [Finding]) { self.init(severities: findings.lazy.map(\.severity.rawValue)) }

    init(_ findings: [AnalysisFinding]) { self.init(severities: findings.lazy.map(\.severity.rawValue)) }

    /// Both severity types spell their levels `error`, `warning`, `info`.
    private init(severities: some Sequence<String>) {
        for s in severities {
            switch s {
            case "error": errors += 1
            case "warning": warnings += 1
            default: notes += 1
            }
        }
    }

    var text: String { "\(plural(errors, "error")), \(plural(warnings, "warning")), \(plural(notes, "note"))" }
}
