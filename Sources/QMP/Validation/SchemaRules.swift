/// The checks `SessionValidator` makes against a QEMU's schema (docs/CATALOG.md, "Layers"):
/// events and their data, commands and their arguments, successful replies against the
/// command's return type, use of `deprecated`/`unstable` features, and `exec-oob` of a
/// command that does not allow it. The seed catalog still supplies what introspection
/// cannot say (follow-ups, throttling), and checks events the schema lacks.
///
/// A command's problems are settled when its reply comes, because the reply says how much
/// they matter: QEMU refusing the command (an error reply) is the expected outcome, so the
/// finding is a note; QEMU accepting it means the schema does not describe this QEMU (or the
/// message was altered), an error; no reply at all leaves it a warning.
///
/// Example: `block-job-cancel {"device": "job0", "forse": true}` answered `{"return": {}}`
/// gives an `unknown-argument` error at the command's record.
public struct SchemaRules: Sendable {
    public let schema: QAPISchema
    /// Names the schema in messages: "QEMU 7.2.22's schema (recorded)".
    public let label: String

    /// Problems of commands waiting for their reply, by the command's record.
    private var pending: [Int: [(code: String, message: String)]] = [:]

    public init(schema: QAPISchema, label: String) {
        self.schema = schema
        self.label = label
    }

    // MARK: Events

    /// An event: data against the schema, or the catalog when the schema lacks the event.
    public func event(_ e: Event, record: Int) -> [Finding] {
        guard let info = schema.event(e.name) else {
            if EventCatalog.entry(for: e.name) != nil {
                var out = EventValidator.validate(e, record: record)
                out.append(Finding(.info, "unknown-event", "event \(e.name) is not in \(label); checked against the seed catalog", record: record))
                return out
            }
            return [Finding(.info, "unknown-event", "event \(e.name) is in neither \(label) nor the seed catalog", record: record)]
        }
        var out = EventValidator.timestampFindings(e, record: record)
        for f in info.features.flagged {
            out.append(Finding(.info, f, "event \(e.name) has the feature '\(f)' in \(label)", record: record))
        }
        for issue in schema.check(.object(e.data ?? JSONObject()), against: info.dataType, root: "data") {
            out.append(output(issue, what: "event \(e.name)", record: record))
        }
        return out
    }

    // MARK: Commands and replies

    /// A command was sent: notes on deprecated or unstable use at once; other problems
    /// wait for the reply (`answered`).
    public mutating func sent(_ c: Command, record: Int) -> [Finding] {
        var notes: [Finding] = []
        var problems: [(code: String, message: String)] = []
        guard let info = schema.command(c.name) else {
            problems.append(("unknown-command", "command \(c.name) is not in \(label)"))
            pending[record] = problems
            return notes
        }
        for f in info.features.flagged {
            notes.append(Finding(.info, f, "command \(c.name) has the feature '\(f)' in \(label)", record: record))
        }
        if c.outOfBand && !info.allowOOB {
            problems.append(("oob-not-allowed", "\(c.name) was sent with exec-oob, but \(label) does not allow it out of band (no allow-oob)"))
        }
        // Fast path: nothing to check when nothing is given and nothing is required.
        if c.arguments?.isEmpty ?? true, let o = schema.object(info.argType), o.members.allSatisfy(\.optional) {
            if !problems.isEmpty { pending[record] = problems }
            return notes
        }
        let open = QAPISchema.takesOpenArguments(c.name, schema: schema)
        for issue in schema.checkArguments(command: c.name, arguments: c.arguments) {
            switch issue.kind {
            case .deprecated, .unstable:
                notes.append(Finding(.info, issue.kind.rawValue, "\(c.name) \(issue.path): \(issue.detail) in \(label)", record: record))
            case .unknownMember:
                // device_add's own properties are not in the schema (docs/QEMU-FACTS.md, "QAPI introspection").
                if open && !issue.path.dropFirst("arguments.".count).contains(".") { continue }
                problems.append(("unknown-argument", "\(c.name) \(issue.path) \(issue.detail), in \(label)"))
            case .missingMember:
                problems.append(("missing-argument", "\(c.name) \(issue.path) \(issue.detail), in \(label)"))
            case .wrongType, .badValue:
                problems.append((issue.kind.rawValue, "\(c.name) \(issue.path) \(issue.detail), in \(label)"))
            }
        }
        if !problems.isEmpty { pending[record] = problems }
        return notes
    }

    public enum Outcome: Sendable {
        case returned(JSONValue)
        case failed(ErrorReply)
    }

    /// The reply to the command in record `command` came: its problems get their severity,
    /// and a successful reply is checked against the return type.
    public mutating func answered(command: Int, name: String, outcome: Outcome, reply: Int) -> [Finding] {
        var out: [Finding] = []
        if let problems = pending.removeValue(forKey: command) {
            for p in problems {
                switch outcome {
                case .returned:
                    out.append(Finding(.error, p.code, "\(p.message); yet QEMU accepted it (so the schema does not describe this QEMU, or the message was altered)", record: command))
                case .failed(let e):
                    out.append(Finding(.info, p.code, "\(p.message); QEMU refused it (\(e.errorClass): \(e.desc))", record: command))
                }
            }
        }
        if case .returned(let value) = outcome, let c = schema.command(name) {
            for issue in schema.check(value, against: c.returnType, root: "return") {
                out.append(output(issue, what: "reply to \(name)", record: reply))
            }
        }
        return out
    }

    /// The command in record `command` got no reply (the connection or recording ended).
    public mutating func unanswered(command: Int) -> [Finding] {
        guard let problems = pending.removeValue(forKey: command) else { return [] }
        return problems.map { Finding(.warning, $0.code, "\($0.message) (no reply came)", record: command) }
    }

    /// Problems still waiting for a reply, oldest first.
    public var waiting: [Int] { pending.keys.sorted() }

    /// A problem in what QEMU sent (event data, a reply): QEMU never sends a member its own
    /// schema lacks, but a newer QEMU than the schema's may, so an unknown member is a note.
    private func output(_ issue: SchemaIssue, what: String, record: Int) -> Finding {
        switch issue.kind {
        case .unknownMember:
            return Finding(.info, "unknown-member", "\(what) \(issue.path) is not in \(label) (a newer QEMU?)", record: record)
        case .missingMember, .wrongType, .badValue:
            return Finding(.error, issue.kind.rawValue, "\(what) \(issue.path) \(issue.detail), in \(label)", record: record)
        case .deprecated, .unstable:
            return Finding(.info, issue.kind.rawValue, "\(what) \(issue.path): \(issue.detail)", record: record)
        }
    }
}
