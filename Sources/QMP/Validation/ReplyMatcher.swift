/// Pairs replies with the commands they answer, per connection.
///
/// QMP-NOTES.md, "Reply": the `id` is echoed exactly as sent (any JSON value) and is left
/// out when the command had none; without oob replies come in request order. So a reply
/// answers the oldest outstanding request with an equal id, or, without an id, the oldest
/// outstanding request that had none (which may be garbage that QEMU answered with a
/// JSON parse error).
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

    private var pending: [UInt32: [Pending]] = [:]

    public init() {}

    public mutating func sent(_ p: Pending, connection: UInt32) {
        pending[connection, default: []].append(p)
    }

    /// The request a reply answers, removed from the outstanding list; `nil` when none matches.
    public mutating func reply(id: JSONValue?, connection: UInt32) -> Pending? {
        guard let i = pending[connection]?.firstIndex(where: { $0.id == id }) else { return nil }
        return pending[connection]!.remove(at: i)
    }

    /// Drops and returns what was still outstanding on a connection (QEMU drops queued
    /// requests on disconnect).
    public mutating func close(connection: UInt32) -> [Pending] {
        pending.removeValue(forKey: connection) ?? []
    }

    public var outstanding: [(connection: UInt32, pending: Pending)] {
        pending.keys.sorted().flatMap { c in pending[c]!.map { (c, $0) } }
    }
}
