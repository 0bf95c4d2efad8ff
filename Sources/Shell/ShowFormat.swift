import QMP

/// How much of a message `show` prints: a large reply (a `query-qmp-schema` reply is some
/// 21,000 lines of indented JSON) is cut to fit a screen or two, and says what was left out
/// and how to see it (`show --full`, `set show-items N|all`, ...). `nil` means no limit.
public struct ShowLimits: Sendable, Equatable {
    /// Containers nested deeper than this are shown as `{… 5 members}` / `[… 12 items]`.
    public var depth: Int? = 6
    /// At most this many items of an array, or members of an object, per container.
    public var items: Int? = 20
    /// At most this many characters of a string.
    public var string: Int? = 400
    /// About this many lines in all: once they are written, what is left of every open
    /// array and object is summarised in one line each (from its first nested value on:
    /// plain values before it, such as a reply's id, are still shown).
    public var lines: Int? = 100

    public init() {}

    /// Everything (`show --full`).
    public static let none: ShowLimits = {
        var l = ShowLimits()
        l.depth = nil; l.items = nil; l.string = nil; l.lines = nil
        return l
    }()
}

/// Pretty JSON (two-space indent, as `JSONLayout.pretty`) within `ShowLimits`. What is cut is
/// replaced by a marker in the place it would have been, and counted.
struct LimitedJSON {
    let limits: ShowLimits
    private(set) var lines: [String] = []
    /// What was left out, for the note under the message.
    private(set) var cutItems = 0
    private(set) var cutDepth = 0
    private(set) var cutStrings = 0
    /// Items left out because the line budget ran out.
    private(set) var cutBudget = 0

    init(_ value: JSONValue, limits: ShowLimits) {
        self.limits = limits
        var current = ""
        write(value, level: 0, line: &current)
        lines.append(current)
    }

    var truncated: Bool { cutItems + cutDepth + cutStrings + cutBudget > 0 }

    /// The line budget is spent.
    private var full: Bool { limits.lines.map { lines.count >= $0 } ?? false }

    /// `(cut: 1,474 more items, 3 long strings; 'show --full' shows all of it, 'set show-items N|all' ...)`
    var note: String? {
        guard truncated else { return nil }
        var what: [String] = []
        var knobs: [String] = []
        let more = cutItems + cutBudget
        if more > 0 { what.append("\(LimitedJSON.count(more)) more item\(more == 1 ? "" : "s")") }
        if cutBudget > 0 { knobs.append("show-lines") }
        if cutItems > 0 { knobs.append("show-items") }
        if cutDepth > 0 { what.append("\(LimitedJSON.count(cutDepth)) nested value\(cutDepth == 1 ? "" : "s") deeper than \(limits.depth ?? 0) levels"); knobs.append("show-depth") }
        if cutStrings > 0 { what.append("\(LimitedJSON.count(cutStrings)) long string\(cutStrings == 1 ? "" : "s")"); knobs.append("show-string") }
        return "(not shown: \(what.joined(separator: ", ")); 'show --full' shows everything, 'set \(knobs[0]) N|all' changes the limit)"
    }

    static func count(_ n: Int) -> String {
        var s = String(n)
        var i = s.count - 3
        while i > 0 { s.insert(",", at: s.index(s.startIndex, offsetBy: i)); i -= 3 }
        return s
    }

    /// A non-empty array or object: what the line budget stops at (a number or a short
    /// string, such as a reply's id, still gets its line).
    static func isNested(_ v: JSONValue) -> Bool {
        switch v {
        case .array(let a): return !a.isEmpty
        case .object(let o): return !o.isEmpty
        default: return false
        }
    }

    private func indent(_ level: Int) -> String { String(repeating: "  ", count: level) }

    private mutating func newline(_ level: Int, _ line: inout String) {
        lines.append(line)
        line = indent(level)
    }

    private mutating func write(_ v: JSONValue, level: Int, line: inout String) {
        switch v {
        case .string(let s):
            if let max = limits.string, s.count > max {
                cutStrings += 1
                line += String(JSONWriter.quoted(String(s.prefix(max))).dropLast()) + "…\" (\(LimitedJSON.count(s.count)) characters)"
            } else {
                line += JSONWriter.quoted(s)
            }
        case .array(let items):
            container(items.map { (key: nil, value: $0) }, brackets: ("[", "]"), noun: "item", level: level, line: &line)
        case .object(let o):
            container(o.members.map { (key: $0.key, value: $0.value) }, brackets: ("{", "}"), noun: "member", level: level, line: &line)
        default:
            line += v.serialized(.compact)
        }
    }

    /// An array (`key` nil) or object, cut to the depth and item limits with a note of what
    /// was left out.
    private mutating func container(_ entries: [(key: String?, value: JSONValue)], brackets: (String, String), noun: String,
                                    level: Int, line: inout String) {
        let (open, close) = brackets
        if entries.isEmpty { line += open + close; return }
        if let d = limits.depth, level >= d {
            cutDepth += 1
            line += "\(open)… \(LimitedJSON.count(entries.count)) \(noun)\(entries.count == 1 ? "" : "s")\(close)"
            return
        }
        line += open
        let allowed = limits.items.map { min($0, entries.count) } ?? entries.count
        var shown = 0
        for e in entries.prefix(allowed) {
            if shown > 0 && full && LimitedJSON.isNested(e.value) { break }
            if shown > 0 { line += "," }
            newline(level + 1, &line)
            if let key = e.key { line += JSONWriter.quoted(key) + ": " }
            write(e.value, level: level + 1, line: &line)
            shown += 1
        }
        if shown < entries.count {
            let more = entries.count - shown
            cutItems += entries.count - allowed
            cutBudget += allowed - shown
            line += ","
            newline(level + 1, &line)
            line += "… \(LimitedJSON.count(more)) more \(noun)\(more == 1 ? "" : "s") (\(LimitedJSON.count(entries.count)) in all)"
        }
        newline(level, &line)
        line += close
    }
}
