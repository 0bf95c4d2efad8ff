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
