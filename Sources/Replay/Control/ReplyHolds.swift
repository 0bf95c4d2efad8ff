import QMP

/// One client's "hold before the reply to command X" (docs/REPLAY.md, "Control API"): the
/// next request naming a held command is not answered, and neither is anything the client
/// sends after it (QEMU answers a monitor's commands one at a time, in order: FACTS
/// "Ordering without oob"), until the hold is released. Events keep flowing meanwhile, as
/// they do while a real QEMU runs a slow command.
///
/// Example: with a hold on `query-status` (id 2), `{"execute":"query-status"}` then
/// `{"execute":"stop"}` are both kept; `release(2)` hands them back to be answered in order.
public struct ReplyHolds: Sendable {
    /// Holds not yet triggered: (control hold id, command name).
    public private(set) var waiting: [(id: Int, command: String)] = []
    /// The hold that caught a request, and the input kept since (the held request first).
    public private(set) var active: (id: Int, command: String)?
    private(set) var kept: [QMPInputParser.Item] = []

    public init() {}

    public mutating func add(id: Int, command: String) { waiting.append((id, command)) }

    /// True when `item` must wait: a hold is active, or `item` is a command a hold waits for
    /// (it then becomes active). Nothing is held before negotiation.
    mutating func holds(_ item: QMPInputParser.Item, negotiated: Bool) -> Bool {
        if active != nil {
            kept.append(item)
            return true
        }
        guard negotiated, !waiting.isEmpty, case .value(.object(let o)) = item,
              let name = (o["execute"] ?? o["exec-oob"])?.stringValue,
              let k = waiting.firstIndex(where: { $0.command == name }) else { return false }
        active = waiting.remove(at: k)
        kept.append(item)
        return true
    }

    /// Ends hold `id` (nil: every hold); returns the input it kept, to be answered now.
    mutating func release(_ id: Int?) -> [QMPInputParser.Item] {
        waiting.removeAll { id == nil || $0.id == id }
        guard let a = active, id == nil || a.id == id else { return [] }
        active = nil
        defer { kept = [] }
        return kept
    }
}

extension ServerSession {
    /// Releases reply hold `id` (nil: all): the kept requests are answered in order; one that
    /// another waiting hold names is held again, with what follows it.
    public func releaseReplies(_ id: Int?) {
        for item in replyHolds.release(id) {
            if replyHolds.holds(item, negotiated: negotiated) { continue }
            handle(item)
        }
    }

    /// Adds a reply hold for this client's next `command`.
    public func holdReply(id: Int, command: String) { replyHolds.add(id: id, command: command) }
}
