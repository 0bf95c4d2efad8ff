import QMP
import Recording

/// One fault to inject into a replay: for a command (optionally only its n-th call, or only
/// calls whose arguments contain given members; optionally only once another command has
/// been sent), answer with an error, answer with a value, delay the reply, close the
/// connection, or send an event after the reply. Rules combine with the recording: commands
/// no rule matches get their recorded replies (docs/TESTING-CLIENTS.md, "Fault rules").
///
/// Examples (the text `FaultRule.parse` reads):
/// `device_add {"driver": "virtio-net-pci"} error GenericError "Duplicate ID 'net0'"`,
/// `query-status#2 delay 2s`, `migrate close`, `cont event RESUME`,
/// `after migrate: query-migrate return {"status": "failed"}`.
public struct FaultRule: Sendable, CustomStringConvertible {
    /// Which calls a rule (or its `after` trigger) applies to.
    public struct Match: Sendable, Hashable, CustomStringConvertible {
        public var command: String
        /// Only the n-th matching call (1-based); nil: every one.
        public var nth: Int?
        /// Members the call's arguments must have, with equal values.
        public var arguments: JSONObject?

        public init(command: String, nth: Int? = nil, arguments: JSONObject? = nil) {
            self.command = command
            self.nth = nth
            self.arguments = arguments
        }

        /// Name and arguments match (the count is the caller's).
        public func matches(_ name: String, _ args: JSONObject?) -> Bool {
            guard name == command else { return false }
            guard let want = arguments else { return true }
            let have = args ?? JSONObject()
            return want.allSatisfy { have[$0.key] == $0.value }
        }

        public var description: String {
            var s = command
            if let n = nth { s += "#\(n)" }
            if let a = arguments { s += " " + JSONValue.object(a).serialized(.compact) }
            return s
        }
    }

    /// What the rule does when it fires.
    public enum Action: Sendable, Hashable {
        /// `{"error": {"class": C, "desc": TEXT}}` instead of the recorded reply.
        case error(errorClass: String, text: String)
        /// `{"return": VALUE}` instead of the recorded reply (a state the recording never had).
        case reply(JSONValue)
        /// The reply, and everything after it, waits this long (ns).
        case delay(Int64)
        /// No reply: the connection closes (QEMU crashed or was killed).
        case close
        /// An event written right after the reply, stamped with the current time.
        case event(name: String, data: JSONObject?)

        /// True for the actions that replace the reply.
        public var answers: Bool {
            switch self {
            case .error, .reply, .close: return true
            case .delay, .event: return false
            }
        }
    }

    /// The rule applies only after a call matching this has been received.
    public var after: Match?
    public var match: Match
    public var action: Action
    /// The rule as written, and where (`--fault 1`, `faults.txt:3`).
    public var text: String
    public var source: String

    public init(after: Match? = nil, match: Match, action: Action, text: String, source: String) {
        self.after = after
        self.match = match
        self.action = action
        self.text = text
        self.source = source
    }

    public var description: String { "\(source): \(text)" }

    /// QEMU's error classes (`QapiErrorClass`, qapi/error.json; docs/QEMU-FACTS.md, "Reply").
    public static let errorClasses = ["GenericError", "CommandNotFound", "DeviceNotActive", "DeviceNotFound", "KVMMissingCap"]
}
