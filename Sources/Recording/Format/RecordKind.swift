import QMP

/// What a record holds: one of the message kinds, or a connection/recorder event.
/// Raw values are the `"k"` member of a record line.
public enum RecordKind: String, Sendable, CaseIterable, Codable {
    case greeting, command, `return`, error, event, other
    /// A connection was opened (client mode: to QEMU; proxy mode: a client connected).
    case open
    /// A connection ended; `reason` says why and `by` who closed it.
    case close
    /// A remark by the recorder or importer (dropped records, clock jump, rotation, ...).
    case note

    public init(_ m: MessageKind) {
        switch m {
        case .greeting: self = .greeting
        case .command: self = .command
        case .return: self = .return
        case .error: self = .error
        case .event: self = .event
        case .other: self = .other
        }
    }

    public var isMessage: Bool {
        switch self {
        case .open, .close, .note: return false
        default: return true
        }
    }

    /// Compact code stored in the index.
    public var code: UInt8 {
        switch self {
        case .greeting: return 0
        case .command: return 1
        case .return: return 2
        case .error: return 3
        case .event: return 4
        case .other: return 5
        case .open: return 6
        case .close: return 7
        case .note: return 8
        }
    }

    static let byCode: [RecordKind] = [.greeting, .command, .return, .error, .event, .other, .open, .close, .note]
}
