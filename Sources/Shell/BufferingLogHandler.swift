import Logging
import Synchronization
import Transport

/// A swift-log handler that keeps the last lines in memory instead of printing them: the
/// shell's background replay logs here, and the prompt shows the lines when asked
/// (`replay status`), so nothing is printed over what the user is typing.
///
/// Example: `let b = BufferingLogHandler.Buffer(); let log = Logger(label: "replay") { _ in BufferingLogHandler(b) }`;
/// `log.info("client 1 connected", metadata: ["peer": "unix"])` keeps `client 1 connected [peer=unix]`.
public struct BufferingLogHandler: LogHandler {
    /// The lines, shared by every copy of the handler; safe from any thread.
    public final class Buffer: Sendable {
        private struct State {
            var lines: [String] = []
            var unseen = 0
            var announced = 0
        }
        private let state = Mutex(State())
        let capacity: Int

        public init(capacity: Int = 200) { self.capacity = capacity }

        public func append(_ line: String) {
            state.withLock { s in
                s.lines.append(line)
                if s.lines.count > capacity { s.lines.removeFirst(s.lines.count - capacity) }
                s.unseen += 1
            }
        }

        /// The last `n` lines, and how many arrived since the last call.
        public func recent(_ n: Int) -> (lines: [String], new: Int) {
            state.withLock { s in
                let new = s.unseen
                s.unseen = 0
                s.announced = 0
                return (Array(s.lines.suffix(n)), new)
            }
        }

        /// How many lines are unseen, when more arrived since the last call (to mention once).
        public func newlyPending() -> Int? {
            state.withLock { s in
                guard s.unseen > s.announced else { return nil }
                s.announced = s.unseen
                return s.unseen
            }
        }
    }

    public let buffer: Buffer
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]

    public init(_ buffer: Buffer) { self.buffer = buffer }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = event.level >= .warning ? "\(event.level): " : ""
        line += LogText.line(event.message, handler: metadata, event: event.metadata)
        buffer.append(line)
    }
}
