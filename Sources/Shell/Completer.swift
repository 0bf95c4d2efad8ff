import Analysis
import QMP
import Recording

/// What tab completion offers, from the command line so far.
public struct Completer {
    public enum Result: Sendable { case words([String]), files }

    let eventNames: [String]
    let commandNames: [String]
    let fieldPaths: [String]
    var markNames: () -> [String]

    public static let analysisNames = Analyses.names
    static let filterWords = ["event", "command", "kind", "from", "conn", "time", "has", "and", "or", "not", "off",
                              "qemu", "client", "greeting", "return", "error", "other", "open", "close", "note"]

    public init(recording: Recording, marks: @escaping () -> [String]) {
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
            return .words(eventNames + commandNames + fieldPaths + Completer.filterWords)
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
        default: return .words([])
        }
    }
}
