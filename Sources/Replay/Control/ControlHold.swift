/// A "hold until released" of the control API (docs/REPLAY.md, "Control API"): the replay
/// stops before a recorded event, or keeps a command's reply back, until `release`.
///
/// Example: `ControlHold(id: 1, target: .event(record: 9))` stops every timeline before the
/// STOP event of record #9; `.reply(command: "stop")` keeps back each client's next reply
/// to `stop` (and what the client sends after it).
public struct ControlHold: Sendable, Hashable {
    public enum Target: Sendable, Hashable, CustomStringConvertible {
        /// Before the event recorded as record number `record`.
        case event(record: Int)
        /// Before the reply to the next command of this name.
        case reply(command: String)

        public var description: String {
            switch self {
            case .event(let r): return "before event #\(r)"
            case .reply(let c): return "before the reply to \(c)"
            }
        }
    }

    public var id: Int
    public var target: Target
    /// For an event hold: the event's item on the clock (index into `clockEvents`).
    var item: Int?
}

/// Where a running replay is, for the control API's `status` and every control reply.
/// Example (one line of JSON): `{"running": true, "paused": true, "held": false, "speed": 1,
/// "position_us": 14896, "next_record": 9, "events_sent": 0, "clients": [...], "holds": []}`.
public struct ControlStatus: Sendable {
    /// One connected client.
    public struct Client: Sendable {
        public var number: Int
        public var peer: String
        public var negotiated: Bool
        /// Record number of the next event of its timeline (nil: none left, or a shared timeline).
        public var nextRecord: Int?
        public var eventsSent: Int
        public var commandsReceived: Int
        /// Bytes queued for it and not yet taken by its socket.
        public var pendingBytes: Int
        /// The hold it is stopped at, if any.
        public var heldBy: Int?
    }

    /// One hold and whether it is holding something now.
    public struct Hold: Sendable {
        public var id: Int
        public var target: ControlHold.Target
        public var holding: Bool
    }

    public var replay: ReplayStatus
    public var clients: [Client]
    public var holds: [Hold]
    /// True when some hold is holding a timeline or a reply.
    public var held: Bool { holds.contains { $0.holding } }
}
