/// Writes some records of a recording as a new recording: the shell's `export` and the
/// command line's `slice`. One place decides the header (the source's, with an
/// `exported-from` label naming the records and the filter), the refusals (an existing
/// file without `--force`, the recording being read) and redaction (`RedactingWriter`).
public enum RecordingExport {
    /// What was written.
    public struct Result: Sendable, Hashable {
        public var records: Int
        public var redactions: Int
    }

    /// Why an export wrote nothing, in one line.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Writes records `range` of `r` that `include` accepts to `path`. `what` describes the
    /// selection in the header label (`#3..#9 filter event == 'STOP'`).
    public static func write(
        _ r: Recording, range: ClosedRange<Int>, to path: String, force: Bool, redact: Bool = true,
        what: String? = nil, include: (Int) -> Bool = { _ in true }
    ) throws(Failure) -> Result {
        guard path != r.path else { throw Failure(description: "refusing to overwrite the recording being read (\(path))") }
        do { try OutputGuard.check(path, force: force) } catch { throw Failure(description: error.description) }
        var header = r.header ?? RecordingHeader(startMicros: 0, source: r.path, mode: .import)
        header.labels.append((key: "exported-from", value: "\(r.path) " + (what ?? "#\(range.lowerBound)..#\(range.upperBound)")))
        do {
            let w = try RedactingWriter(path: path, header: header, redact: redact)
            for i in range where include(i) {
                let rec = try r.record(at: i)
                try w.append(time: rec.time, connection: rec.connection, rec.body)
            }
            try w.finish(reason: "complete")
            return Result(records: w.records, redactions: w.redactions)
        } catch {
            throw Failure(description: RedactingWriter.describe(error, doing: "export"))
        }
    }
}
