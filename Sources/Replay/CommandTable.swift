import QMP

/// What the replayed QEMU knows about commands, for the answers QEMU gives before a command
/// runs: CommandNotFound, "does not support OOB", and the arguments check ("Parameter 'x' is
/// missing", "Parameter 'x' is unexpected"). Built from the best source the recording has:
///
/// - `schema`: the recorded reply to `query-qmp-schema` (every command, its argument members
///   with the optional ones marked, and `allow-oob`);
/// - `commandList`: the recorded reply to `query-commands` (names only);
/// - `recordedCalls`: neither was recorded: the commands the recording shows, with the
///   argument names its calls used. A command never seen is unknown, and an argument name
///   never used with that command is unexpected.
///
/// Example: from a recording whose client sent only `query-status`, `lookup("nope")` is nil
/// and `unexpectedArgument("query-status", ["x": 1])` is "x".
public struct CommandTable: Sendable {
    public enum Source: String, Sendable {
        case schema = "query-qmp-schema"
        case commandList = "query-commands"
        case recordedCalls = "recorded calls"
        /// A schema the recording implies without this connection having asked for it: another
        /// connection's `query-qmp-schema` reply, or the one shipped for the greeting's QEMU.
        case impliedSchema = "query-qmp-schema of the same QEMU"
    }

    /// What is known about one command.
    public struct Command: Sendable {
        /// Argument names, in schema order; nil when they are unknown.
        public var arguments: [String]?
        /// Mandatory arguments (schema only).
        public var mandatory: [String] = []
        public var allowOOB: Bool
    }

    public let source: Source
    let commands: [String: Command]

    /// QEMU 7.2's commands with `allow-oob` (its query-qmp-schema), for recordings without a schema.
    static let oobCommands: Set<String> = ["migrate-recover", "migrate-pause", "yank", "query-yank"]

    /// Commands every QEMU has, whatever the recording shows: negotiation, and `quit`, which
    /// the replay answers itself (docs/REPLAY.md, "What a client sees").
    static let alwaysKnown = ["qmp_capabilities", "quit"]

    public func lookup(_ name: String) -> Command? { commands[name] }

    /// The first mandatory argument missing from `args` (schema only).
    public func missingArgument(_ name: String, _ args: JSONObject?) -> String? {
        guard let c = commands[name] else { return nil }
        return c.mandatory.first { args?[$0] == nil }
    }

    /// The first argument of `args` the command does not take, when its arguments are known.
    /// (With several, QEMU names one in its own hash order; this names the first sent.)
    public func unexpectedArgument(_ name: String, _ args: JSONObject?) -> String? {
        guard let known = commands[name]?.arguments, let args else { return nil }
        return args.keys.first { !known.contains($0) }
    }

    init(source: Source, commands: [String: Command]) {
        self.source = source
        var c = commands
        for name in CommandTable.alwaysKnown where c[name] == nil {
            c[name] = Command(arguments: name == "qmp_capabilities" ? ["enable"] : [], allowOOB: false)
        }
        self.commands = c
    }

    /// The table for a recorded connection's commands (with their replies). `implied` is the
    /// schema of the recorded QEMU known otherwise (another connection's reply, or shipped for
    /// its version): used when this connection recorded neither schema nor command list, so
    /// the fake QEMU answers an unknown command as the real one would.
    /// It is asked for only when needed (choosing it may read the recording and a shipped schema).
    static func build(from cmds: [ReplayScript.Command], implied: () -> QAPISchema? = { nil }) -> CommandTable {
        if let schema = cmds.lazy.compactMap({ $0.name == "query-qmp-schema" ? $0.reply?["return"]?.arrayValue : nil }).first,
           let t = fromSchema(schema) {
            return t
        }
        if let list = cmds.lazy.compactMap({ $0.name == "query-commands" ? $0.reply?["return"]?.arrayValue : nil }).first {
            var table: [String: Command] = [:]
            for item in list {
                if let n = item["name"]?.stringValue {
                    table[n] = Command(arguments: nil, allowOOB: oobCommands.contains(n))
                }
            }
            if !table.isEmpty { return CommandTable(source: .commandList, commands: table) }
        }
        if let schema = implied(), let t = fromModel(schema) { return t }
        var table: [String: Command] = [:]
        for c in cmds {
            // A command QEMU refused as unknown stays unknown.
            if c.reply?["error"]?["class"]?.stringValue == "CommandNotFound" { continue }
            var entry = table[c.name] ?? Command(arguments: [], allowOOB: oobCommands.contains(c.name))
            for k in c.arguments?.keys ?? [] where !(entry.arguments ?? []).contains(k) { entry.arguments?.append(k) }
            table[c.name] = entry
        }
        return CommandTable(source: .recordedCalls, commands: table)
    }

    /// Reads `query-qmp-schema`'s return value: command entries name their argument type; an
    /// object type lists `members` (optional ones carry `default`) and, for a union, `variants`
    /// whose types add members.
    static func fromSchema(_ entries: [JSONValue]) -> CommandTable? {
        var types: [String: JSONObject] = [:]
        for e in entries {
            if let o = e.objectValue, let n = o["name"]?.stringValue { types[n] = o }
        }
        func members(_ typeName: String, depth: Int = 0) -> [(name: String, optional: Bool)] {
            guard depth < 4, let t = types[typeName] else { return [] }
            var out: [(String, Bool)] = []
            for m in t["members"]?.arrayValue ?? [] {
                if let n = m["name"]?.stringValue { out.append((n, m["default"] != nil)) }
            }
            for v in t["variants"]?.arrayValue ?? [] {
                // Members of a variant exist only for its tag value: never mandatory here.
                for m in members(v["type"]?.stringValue ?? "", depth: depth + 1) where !out.contains(where: { $0.0 == m.name }) {
                    out.append((m.name, true))
                }
            }
            return out
        }
        var table: [String: Command] = [:]
        for e in entries {
            guard let o = e.objectValue, o["meta-type"]?.stringValue == "command", let n = o["name"]?.stringValue else { continue }
            let argType = o["arg-type"]?.stringValue ?? ""
            let ms = members(argType)
            // A boxed or otherwise unreadable argument type: do not judge its arguments.
            let readable = types[argType]?["meta-type"]?.stringValue == "object"
            table[n] = Command(arguments: readable ? ms.map(\.name) : nil,
                               mandatory: readable ? ms.filter { !$0.optional }.map(\.name) : [],
                               allowOOB: o["allow-oob"]?.boolValue ?? false)
        }
        return table.isEmpty ? nil : CommandTable(source: .schema, commands: table)
    }

    /// The same table from a parsed schema model (a shipped schema, or one read elsewhere).
    static func fromModel(_ schema: QAPISchema) -> CommandTable? {
        var table: [String: Command] = [:]
        for (name, c) in schema.commands {
            // A boxed or otherwise unreadable argument type: do not judge its arguments.
            let readable = schema.object(c.argType) != nil
            let ms = schema.members(of: c.argType)
            table[name] = Command(arguments: readable ? ms.map(\.name) : nil,
                                  mandatory: readable ? schema.arguments(of: name).filter { !$0.optional }.map(\.name) : [],
                                  allowOOB: c.allowOOB)
        }
        return table.isEmpty ? nil : CommandTable(source: .impliedSchema, commands: table)
    }
}
