import Logging
import Transport

/// What a library logged, kept for assertions, one line per message in `LogText`'s form:
/// `client 1 connected [peer=unix]`, or with `leveled`, `warning: client 1 dropped: ...`.
public final class LogLines: Sendable {
    private let stored = Guarded<[String]>([])
    private let leveled: Bool

    public init(leveled: Bool = false) { self.leveled = leveled }

    public var lines: [String] { stored.withLock { $0 } }
    public func contains(_ s: String) -> Bool { lines.contains { $0.contains(s) } }

    public var logger: Logger { Logger(label: "test") { _ in Handler(box: self) } }

    struct Handler: LogHandler {
        let box: LogLines
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let text = LogText.line(event.message, handler: metadata, event: event.metadata)
            let line = box.leveled ? "\(event.level): \(text)" : text
            box.stored.withLock { $0.append(line) }
        }
    }
}
