/// Pairs replies with the requests they answer, per connection, by the one rule in
/// `ReplyQueue` (docs/QEMU-FACTS.md, "Wire protocol"): ids compared as JSON values (`IDKey`).
/// Used by validation, the redactor, `cat --command` and the shell.
public struct ReplyMatcher: Sendable {
    public struct Pending: Sendable, Hashable {
        public var record: Int
        public var time: Int64
        /// `nil` for input that was not a command (QEMU answers it with an error, no id).
        public var name: String?
        public var id: JSONValue?
        public var arguments: JSONObject?

        public init(record: Int, time: Int64, name: String?, id: JSONValue?, arguments: JSONObject?) {
            self.record = record; self.time = time; self.name = name; self.id = id; self.arguments = arguments
        }
    }

    private var pending: [UInt32: ReplyQueue<Pending>] = [:]

    public init() {}

    public mutating func sent(_ p: Pending, connection: UInt32) {
        pending[connection, default: ReplyQueue()].sent(IDKey(value: p.id), p)
    }

    /// The request a reply answers, removed from the outstanding list; `nil` when none matches.
    public mutating func reply(id: JSONValue?, connection: UInt32) -> Pending? {
        pending[connection]?.reply(IDKey(value: id))
    }

    /// Drops and returns what was still outstanding on a connection (QEMU drops queued
    /// requests on disconnect).
    public mutating func close(connection: UInt32) -> [Pending] {
        pending.removeValue(forKey: connection)?.outstanding ?? []
    }

    public var outstanding: [(connection: UInt32, pending: Pending)] {
        pending.keys.sorted().flatMap { c in pending[c]!.outstanding.map { (c, $0) } }
    }
}
