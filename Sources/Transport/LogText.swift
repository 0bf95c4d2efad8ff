import Logging

/// One log message as the project's handlers write it: the message, then its metadata sorted
/// by key, `client 2 connected [conn=2 peer=unix]`. Used by the CLI's stderr handler, the
/// shell's buffering handler and the tests' collectors, so the lines read the same everywhere.
public enum LogText {
    /// `message` followed by ` [k=v ...]` for `handler` metadata overlaid with `event` metadata.
    public static func line(_ message: Logger.Message, handler: Logger.Metadata, event: Logger.Metadata?) -> String {
        let all = handler.merging(event ?? [:]) { $1 }
        guard !all.isEmpty else { return message.description }
        return message.description + " [" + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + "]"
    }
}
