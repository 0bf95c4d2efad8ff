import QMP

/// A `RecordingWriter` whose messages pass through the `Redactor` first: the write path of
/// every command that writes records it did not capture itself (`slice`, the shell's
/// `export`, `recover`, `merge`), so that a secret an unredacted source holds is not copied
/// into a new file unless the user said so. The header says `redacted` when either the
/// source already was or this writer redacts.
public final class RedactingWriter {
    public let writer: RecordingWriter
    private var redactor: Redactor
    /// Secrets replaced so far.
    public var redactions: Int { redactor.redactions }
    public var records: Int { writer.records }

    public init(path: String, header: RecordingHeader, redact: Bool) throws(RecordingWriteError) {
        var h = header
        h.redacted = header.redacted || redact
        writer = try RecordingWriter(path: path, header: h)
        redactor = Redactor(enabled: redact)
    }

    public func append(time: Int64, connection: UInt32, _ body: RecordBody) throws(RecordingWriteError) {
        switch body {
        case .message(let dir, let m):
            let out = redactor.process(m, from: dir, connection: connection)
            try writer.append(time: time, connection: connection, .message(from: dir, out))
        case .close:
            redactor.closed(connection: connection)
            try writer.append(time: time, connection: connection, body)
        default:
            try writer.append(time: time, connection: connection, body)
        }
    }

    public func finish(reason: String) throws(RecordingWriteError) {
        try writer.finish(reason: reason)
    }

    /// Stops without a trailer (the file is removed by the caller).
    public func abandon() { writer.abandon() }

    /// One line for what stopped a copy of records (`export`, `merge`): the write error
    /// naming the output, or the record that could not be decoded naming its line.
    public static func describe(_ error: any Error, doing what: String) -> String {
        switch error {
        case let e as RecordingWriteError: return e.description
        case let e as RecordDecodeError: return "cannot \(what): \(e.description)"
        default: return "\(error)"
        }
    }
}
