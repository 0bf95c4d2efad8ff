import Analysis
import QMP
import Recording

/// What tab completion offers, from the command line so far. With a schema (the one
/// `describe` uses), filters also complete `arguments.`/`data.`/`return.` paths of the
/// commands and events named on the line (or of the recording's) and enum values after
/// `==`/`!=`; `describe` completes every command and event of the schema.
public struct Completer {
    public enum Result: Sendable { case words([String]), files }

    let eventNames: [String]
    let commandNames: [String]
    let fieldPaths: [String]
    var markNames: () -> [String]
    let schema: QAPISchema?
    /// `describe`'s words: the schema's commands and events and the seed catalog's events.
    let describeNames: [String]
    /// The live session's schema for `send` (QEMU's own query-qmp-schema reply, once
    /// recorded), asked at each Tab: it may arrive after the completer was made.
    public var sendSchema: (() -> QAPISchema?)?

    public static let analysisNames = Analyses.names
    static let filterWords = ["event", "command", "kind", "from", "conn", "time", "has", "and", "or", "not", "off",
                              "qemu", "client", "greeting", "return", "error", "other", "open", "close", "note"]

    public init(recording: Recording, schema: QAPISchema? = nil, marks: @escaping () -> [String]) {
        var events = Set<String>(), commands = Set<String>()
        for id in 1..<max(1, recording.names.count) {
            // Classify names by the kind of one record carrying them is costly; use the
            // QMP naming conventions: events are UPPER_CASE, commands lower-case.
            let n = recording.names[id]
            if n.uppercased() == n && n.contains(where: \.isLetter) { events.insert(n) } else { commands.insert(n) }
        }
        eventNames = events.sorted()
        commandNames = commands.sorted()
        var paths = Set(["data", "arguments", "return", "error.class", "error.desc", "id", "event", "execute", "timestamp.seconds", "timestamp.microseconds"])
        for e in EventCatalogPaths.paths { paths.insert(e) }
        fieldPaths = paths.sorted()
        markNames = marks
        self.schema = schema
        describeNames = Set((schema?.commandNames ?? []) + (schema?.eventNames ?? []) + EventCatalog.names).sorted()
    }

    public func candidates(before: String, word: String) -> Result {
        let words = before.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard let first = words.first else {
            return .words(ShellSession.commands.flatMap { [$0.name] + $0.aliases })
        }
        let cmd = ShellSession.spec(first)?.name ?? first
        switch cmd {
        case "help": return .words(ShellSession.commands.map(\.name))
        case "next", "prev", "filter", "find":
            return .words(filterCandidates(words, before: before))
        case "describe": return .words(describeNames)
        case "seek": return .words(markNames() + eventNames + commandNames + ["@", "#"])
        case "show": return .words(markNames() + ["--full", "@", "#"])
        case "mark", "unmark": return .words(markNames())
        case "analyze": return words.count == 1 ? .words(Completer.analysisNames) : .words([])
        case "plot":
            if words.count == 1 { return .words(Completer.analysisNames) }
            return words.last == "--svg" ? .files : .words(["--from", "--to", "--here", "--svg"] + markNames())
        case "export": return words.last == "-o" ? .files : .words(["-o", "--filtered", "--force"] + markNames())
        case "set":
            if words.count == 1 { return .words(ShellSession.settings) }
            return words[1].hasPrefix("show-") ? .words(["all"]) : .words(["on", "off"])
        case "replay": return .words(["start", "pause", "resume", "speed", "seek", "stop", "status"])
        case "send": return .words(sendCandidates(words))
        default: return .words([])
        }
    }

    // MARK: From the schema

    /// `send`: command names, then the command's argument names as `name=` (nested ones
    /// dotted, as qmp-shell takes them).
    func sendCandidates(_ words: [String]) -> [String] {
        let schema = sendSchema?() ?? self.schema
        guard words.count >= 2 else { return schema?.commandNames ?? commandNames }
        guard let schema, let info = schema.command(words[1]) else { return [] }
        let given = Set(words.dropFirst(2).compactMap { $0.split(separator: "=", maxSplits: 1).first.map(String.init) })
        return schema.memberPaths(of: info.argType, prefix: "").map { String($0.dropFirst()) }.filter { !given.contains($0) }.map { $0 + "=" }
    }

    /// Names, paths and words for a filter; enum values right after `==`/`!=`.
    func filterCandidates(_ words: [String], before: String) -> [String] {
        guard let schema else { return eventNames + commandNames + fieldPaths + Completer.filterWords }
        let named = Self.namedEntries(words)
        if let values = enumValues(before: before, named: named, schema: schema) { return values }
        switch words.last {
        case "event": return Array(Set(eventNames + schema.eventNames))
        case "command": return Array(Set(commandNames + schema.commandNames))
        default: break
        }
        var paths = Set(fieldPaths)
        for e in named.events.isEmpty ? eventNames : named.events {
            if let info = schema.event(e) { paths.formUnion(schema.memberPaths(of: info.dataType, prefix: "data")) }
        }
        for c in named.commands.isEmpty ? commandNames : named.commands {
            guard let info = schema.command(c) else { continue }
            paths.formUnion(schema.memberPaths(of: info.argType, prefix: "arguments"))
            paths.formUnion(schema.memberPaths(of: info.returnType, prefix: "return"))
        }
        return eventNames + commandNames + paths.sorted() + Completer.filterWords
    }

    /// Events and commands the line names: `event STOP`, `command=query-*` (patterns skipped).
    static func namedEntries(_ words: [String]) -> (events: [String], commands: [String]) {
        var events: [String] = [], commands: [String] = []
        for (i, w) in words.enumerated() {
            let parts = w.split(separator: "=", maxSplits: 1).map(String.init)
            let (key, value): (String, String?) = parts.count == 2 ? (parts[0], parts[1]) : (w, i + 1 < words.count ? words[i + 1] : nil)
            guard let value, !value.contains("*"), !value.contains("?") else { continue }
            if key == "event" { events.append(value) }
            if key == "command" { commands.append(value) }
        }
        return (events, commands)
    }

    /// `data.status == ` -> the enum's values (of every event or command the path can belong to).
    func enumValues(before: String, named: (events: [String], commands: [String]), schema: QAPISchema) -> [String]? {
        var t = Substring(before)
        while let l = t.last, l == " " || l == "\"" || l == "'" { t = t.dropLast() }
        guard t.hasSuffix("==") || t.hasSuffix("!=") else { return nil }
        t = t.dropLast(2)
        while t.last == " " { t = t.dropLast() }
        let token = t.split(whereSeparator: { $0 == " " || $0 == "(" }).last.map(String.init) ?? ""
        let parts = token.split(separator: ".").map(String.init)
        guard let root = parts.first else { return [] }
        let rest = Array(parts.dropFirst())
        var types: [QAPISchema.TypeRef] = []
        switch root {
        case "data":
            types = (named.events.isEmpty ? eventNames : named.events).compactMap { schema.event($0)?.dataType }
        case "arguments":
            types = (named.commands.isEmpty ? commandNames : named.commands).compactMap { schema.command($0)?.argType }
        case "return":
            types = (named.commands.isEmpty ? commandNames : named.commands).compactMap { schema.command($0)?.returnType }
        default:
            return []
        }
        let values = types.compactMap { schema.type(at: rest, below: $0) }.flatMap { schema.enumValues($0) }
        return Array(Set(values)).sorted()
    }
}
