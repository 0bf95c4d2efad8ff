import QMP

/// One session's use of the fault rules: how often each rule's command and trigger have been
/// seen, which rules are armed (their `after` command came), and how often each fired (for
/// the report and `--strict`).
///
/// Example: with `after migrate: query-migrate return {"status": "failed"}`, `consult` of
/// `query-migrate` finds nothing until `migrate` has been consulted, then answers every time.
struct FaultBook {
    /// What the rules say about one call.
    struct Outcome {
        /// The first firing rule that replaces the reply.
        var answer: FaultRule.Action?
        var answeredBy: Int?
        /// The sum of the firing delays (ns), nil when none fired.
        var delay: Int64?
        /// Events to write after the reply, in rule order.
        var events: [(name: String, data: JSONObject?)] = []
    }

    let rules: [FaultRule]
    private var seen: [Int]
    private var triggers: [Int]
    private var armed: [Bool]
    private(set) var fired: [Int]

    init(rules: [FaultRule]) {
        self.rules = rules
        seen = Array(repeating: 0, count: rules.count)
        triggers = seen
        fired = seen
        armed = rules.map { $0.after == nil }
    }

    var isEmpty: Bool { rules.isEmpty }

    /// The rules that fire for this call; then arms the rules this call triggers (a call never
    /// triggers a rule for itself).
    mutating func consult(_ name: String, _ args: JSONObject?) -> Outcome {
        var out = Outcome()
        for (i, r) in rules.enumerated() where armed[i] && r.match.matches(name, args) {
            seen[i] += 1
            if let n = r.match.nth, n != seen[i] { continue }
            switch r.action {
            case .delay(let d): out.delay = (out.delay ?? 0) + d
            case .event(let e, let data): out.events.append((e, data))
            default:
                // One answer per call: a later answering rule is shadowed and does not fire.
                guard out.answer == nil else { continue }
                out.answer = r.action
                out.answeredBy = i
            }
            fired[i] += 1
        }
        for (i, r) in rules.enumerated() where !armed[i] {
            guard let t = r.after, t.matches(name, args) else { continue }
            triggers[i] += 1
            if t.nth == nil || t.nth == triggers[i] { armed[i] = true }
        }
        return out
    }
}
