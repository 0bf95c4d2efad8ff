import QMP
import Recording

/// Recursive-descent parser for the filter language; the grammar is in `FilterExpression`.
struct FilterParser {
    private var tokens: [FilterToken]
    private var pos = 0
    /// Open parentheses and `not`s around the current position (bounded, so that a
    /// pathological input cannot exhaust the stack of the parser or the evaluator).
    private var depth = 0
    static let maxDepth = 200

    /// Words that are never taken as a bare name after `event`/`command`/`error`
    /// (write `event "NAME"` for such a name).
    static let reservedWords: Set<String> = [
        "and", "or", "not", "event", "command", "error", "kind", "from", "direction", "conn", "connection",
        "time", "has", "greeting", "return", "other", "open", "close", "note",
    ]

    static let kindList = "event, command, return, error, greeting, other, open, close or note"
    static let timeExamples = "12.5s, 1m30s, 500ms, #123, 10:00:05 or 2026-11-20T10:00:05Z"

    static func parse(_ text: String) throws(FilterParseError) -> FilterNode {
        var p = FilterParser(tokens: try FilterLexer.tokenize(text))
        if p.peek.kind == .end {
            throw FilterParseError(
                column: p.peek.column,
                message: "empty expression: write a condition such as STOP, event=BALLOON*, kind error or data.actual < 1G")
        }
        let node = try p.parseOr(after: nil)
        try p.expectEnd(closing: nil)
        return node
    }

    private init(tokens: [FilterToken]) { self.tokens = tokens }

    private var peek: FilterToken { tokens[pos] }

    @discardableResult
    private mutating func advance() -> FilterToken {
        let t = tokens[pos]
        if pos < tokens.count - 1 { pos += 1 }
        return t
    }

    private func fail(_ t: FilterToken, _ message: String) -> FilterParseError {
        FilterParseError(column: t.column, message: message)
    }

    private func isValueWord(_ t: FilterToken) -> Bool { t.kind == .word && !t.isConnective }

    private func isNameWord(_ t: FilterToken) -> Bool {
        t.kind == .word && !FilterParser.reservedWords.contains(t.text.lowercased())
    }

    // MARK: Boolean structure

    private mutating func expectEnd(closing open: FilterToken?) throws(FilterParseError) {
        let t = peek
        if let open {
            if t.isOp(")") { advance(); return }
            if t.kind == .end { throw fail(open, "'(' is never closed: add ')'") }
            throw fail(t, "expected 'and', 'or' or ')' before \(t.quoted): conditions are joined explicitly, as in STOP or RESUME")
        }
        if t.kind == .end { return }
        if t.isOp(")") { throw fail(t, "')' without a matching '(': remove it or add '(' before the condition it closes") }
        throw fail(t, "expected 'and' or 'or' before \(t.quoted): conditions are joined explicitly, as in STOP or RESUME")
    }

    private mutating func parseOr(after: FilterToken?) throws(FilterParseError) -> FilterNode {
        var items: [FilterNode] = []
        func add(_ n: FilterNode) { if case .or(let xs) = n { items += xs } else { items.append(n) } }
        add(try parseAnd(after: after))
        while peek.isOr {
            let op = advance()
            add(try parseAnd(after: op))
        }
        return items.count == 1 ? items[0] : .or(items)
    }

    private mutating func parseAnd(after: FilterToken?) throws(FilterParseError) -> FilterNode {
        var items: [FilterNode] = []
        func add(_ n: FilterNode) { if case .and(let xs) = n { items += xs } else { items.append(n) } }
        add(try parseUnary(after: after))
        while peek.isAnd {
            let op = advance()
            add(try parseUnary(after: op))
        }
        return items.count == 1 ? items[0] : .and(items)
    }

    private mutating func nest(_ t: FilterToken) throws(FilterParseError) {
        depth += 1
        if depth > FilterParser.maxDepth {
            throw fail(t, "the expression nests deeper than \(FilterParser.maxDepth) parentheses and nots; simplify it")
        }
    }

    private mutating func parseUnary(after: FilterToken?) throws(FilterParseError) -> FilterNode {
        if peek.isNot {
            let op = advance()
            try nest(op)
            defer { depth -= 1 }
            return .not(try parseUnary(after: op))
        }
        return try parsePrimary(after: after)
    }

    private mutating func parsePrimary(after: FilterToken?) throws(FilterParseError) -> FilterNode {
        let t = peek
        let afterText = after.map { " after \($0.quoted)" } ?? ""
        switch t.kind {
        case .end:
            throw fail(t, "expected a condition\(afterText) (such as STOP, kind error or data.actual < 1G)")
        case .op:
            if t.isOp("(") {
                advance()
                try nest(t)
                defer { depth -= 1 }
                if peek.isOp(")") { throw fail(peek, "empty parentheses: expected a condition after '('") }
                let n = try parseOr(after: t)
                try expectEnd(closing: t)
                return n
            }
            if t.isOp(")") && after == nil {
                throw fail(t, "')' without a matching '(' and no condition before it")
            }
            throw fail(t, "expected a condition\(afterText), found \(t.quoted) (such as STOP, kind error or data.actual < 1G)")
        case .string:
            throw fail(t, "a string alone is not a condition: write event \"NAME\", command \"name\" or PATH == \"text\"")
        case .regex:
            throw fail(t, "a regex alone is not a condition: write PATH ~ /regex/ or event ~ /regex/")
        case .word:
            if t.isAnd || t.isOr {
                throw fail(t, after == nil
                    ? "expected a condition before \(t.quoted)"
                    : "expected a condition\(afterText), found \(t.quoted)")
            }
            return try parseTerm()
        }
    }

    // MARK: Terms

    private mutating func parseTerm() throws(FilterParseError) -> FilterNode {
        let w = advance()
        let lower = w.text.lowercased()
        if NumberLiteral(w.text) != nil {
            throw fail(w, "a number alone is not a condition: write conn \(w.text), id == \(w.text) or time >= \(w.text)s")
        }
        if w.text.contains(".") || w.text.contains("[") { return try parsePathTerm(w) }
        switch lower {
        case "event": return try parseNameOrKind(w, .event)
        case "command": return try parseNameOrKind(w, .command)
        case "error": return try parseNameOrKind(w, .error)
        case "kind": return try parseKind(w)
        case "from", "direction": return try parseDirection(w)
        case "conn", "connection": return try parseConnection(w)
        case "time": return try parseTime(w)
        case "has": return try parseHas(w)
        case "true", "false", "null":
            throw fail(w, "'\(w.text)' alone is not a condition: compare a path with it, as in data.boundary == \(lower)")
        default:
            break
        }
        if CompareOp(token: peek) != nil { return try parsePathTerm(w) }
        if let k = RecordKind(rawValue: lower) { return .kinds([k]) }
        return try parseBareName(w)
    }

    /// `event`, `command`, `error` followed by a name, `=PATTERN`, `~ /regex/`, or nothing (the kind).
    private mutating func parseNameOrKind(_ w: FilterToken, _ kind: RecordKind) throws(FilterParseError) -> FilterNode {
        let n = peek
        if n.isOp("=") || n.isOp("==") {
            advance()
            return .name(kind, try nameValue(after: n, kind))
        }
        if n.isOp("~") {
            advance()
            return .name(kind, .regex(try regexValue(after: n)))
        }
        if n.kind == .op, CompareOp(token: n) != nil {
            throw fail(n, "'\(n.text)' does not apply to \(kind.rawValue) names: write \(kind.rawValue) NAME, \(kind.rawValue)=PATTERN or \(kind.rawValue) ~ /regex/ (and not \(kind.rawValue) NAME for the rest)")
        }
        if n.kind == .string {
            advance()
            return .name(kind, .exact(n.text))
        }
        if isNameWord(n) {
            advance()
            return .name(kind, .glob(n.text))
        }
        return .kinds([kind])
    }

    private static func nameHint(_ kind: RecordKind) -> (what: String, example: String) {
        switch kind {
        case .event: return ("an event name or pattern", "like STOP or BLOCK_JOB_*")
        case .command: return ("a command name or pattern", "like query-status or query-*")
        default: return ("an error class or pattern", "like GenericError")
        }
    }

    private mutating func nameValue(after op: FilterToken, _ kind: RecordKind) throws(FilterParseError) -> NamePattern {
        let t = peek
        if t.kind == .string { advance(); return .exact(t.text) }
        if isNameWord(t) { advance(); return .glob(t.text) }
        let hint = FilterParser.nameHint(kind)
        var message = "expected \(hint.what) after '\(op.text)' (\(hint.example))"
        if t.kind != .end { message += ", found \(t.quoted)" }
        if t.kind == .word { message += "; a name that is a keyword is quoted: \"\(t.text)\"" }
        throw fail(t, message)
    }

    private mutating func regexValue(after op: FilterToken) throws(FilterParseError) -> FilterRegex {
        let t = peek
        guard t.kind == .regex || t.kind == .string else {
            throw fail(t, "expected a /regex/ after '\(op.text)' (like /^vnet/)" + (t.kind == .end ? "" : ", found \(t.quoted)"))
        }
        advance()
        do {
            return try FilterRegex(source: t.text, flags: t.flags, fromString: t.kind == .string)
        } catch {
            throw fail(t, "invalid regex \(t.kind == .string ? JSONWriter.quoted(t.text) : "/\(t.text)/"): \(FilterParser.describe(error))")
        }
    }

    /// Regex errors print as one line (the standard library's can be verbose).
    private static func describe(_ error: any Error) -> String {
        let s = String(describing: error)
        return s.split(separator: "\n").first.map(String.init) ?? s
    }

    /// `=` or `==` after a keyword; any other operator is an error.
    private mutating func optionalEquals(_ w: FilterToken, _ what: String) throws(FilterParseError) {
        let n = peek
        if n.isOp("=") || n.isOp("==") { advance(); return }
        if n.kind == .op, CompareOp(token: n) != nil {
            throw fail(n, "'\(n.text)' does not apply to \(w.text.lowercased()): write \(w.text.lowercased()) \(what) (and not \(w.text.lowercased()) \(what) for the rest)")
        }
    }

    private mutating func parseKind(_ w: FilterToken) throws(FilterParseError) -> FilterNode {
        try optionalEquals(w, "KIND")
        let t = peek
        guard isValueWord(t) else {
            throw fail(t, "expected a kind after '\(w.text)' (\(FilterParser.kindList))")
        }
        advance()
        var kinds: [RecordKind] = []
        var offset = 0
        for part in t.text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let k = RecordKind(rawValue: part.lowercased()) else {
                throw FilterParseError(
                    column: t.column + offset,
                    message: part.isEmpty
                        ? "expected a kind after ',' (\(FilterParser.kindList))"
                        : "unknown kind '\(part)' (\(FilterParser.kindList))")
            }
            if !kinds.contains(k) { kinds.append(k) }
            offset += part.count + 1
        }
        return .kinds(kinds)
    }

    private mutating func parseDirection(_ w: FilterToken) throws(FilterParseError) -> FilterNode {
        try optionalEquals(w, "qemu|client")
        let t = peek
        guard isValueWord(t), let d = Direction(rawValue: t.text.lowercased()) else {
            throw fail(t, "expected qemu or client after '\(w.text)'" + (t.kind == .end ? "" : ", found \(t.quoted)"))
        }
        advance()
        return .direction(d)
    }

    private mutating func parseConnection(_ w: FilterToken) throws(FilterParseError) -> FilterNode {
        try optionalEquals(w, "N")
        let t = peek
        guard isValueWord(t), let c = UInt32(t.text) else {
            throw fail(t, "expected a connection number after '\(w.text)' (like 1)" + (t.kind == .end ? "" : ", found \(t.quoted)"))
        }
        advance()
        return .connection(c)
    }

    private mutating func parseTime(_ w: FilterToken) throws(FilterParseError) -> FilterNode {
        let n = peek
        if let op = CompareOp(token: n) {
            if op.isRegex {
                throw fail(n, "'\(n.text)' does not apply to time: write time >= 10s, time < 1m30s or time 10s..20s")
            }
            advance()
            return .time(.compare(op, try timeBound(after: n)))
        }
        if n.isOp("..") {
            advance()
            return .time(.range(nil, try timeBound(after: n)))
        }
        if isValueWord(n) {
            let a = try timeBound(after: w)
            guard peek.isOp("..") else {
                throw fail(peek, "expected '..' after the time '\(a.text)': a range is time 10s..20s, a comparison time >= 10s")
            }
            let dots = advance()
            if isValueWord(peek) { return .time(.range(a, try timeBound(after: dots))) }
            return .time(.range(a, nil))
        }
        throw fail(n, "expected a comparison or a range after '\(w.text)' (time >= 10s, time < 1m30s, time 10s..20s)")
    }

    private mutating func timeBound(after op: FilterToken) throws(FilterParseError) -> TimeBound {
        let t = peek
        guard isValueWord(t) else {
            throw fail(t, "expected a time after \(op.quoted) (\(FilterParser.timeExamples))")
        }
        advance()
        let spec: TimeSpec
        do {
            spec = try TimeSpec.parse(t.text)
        } catch {
            throw fail(t, "invalid time '\(t.text)': \(error.reason) (use \(FilterParser.timeExamples))")
        }
        if case .relative = spec {
            throw fail(t, "relative times need a cursor; use an absolute time (\(FilterParser.timeExamples)) instead of '\(t.text)'")
        }
        return TimeBound(spec: spec, text: t.text)
    }

    private mutating func parseHas(_ w: FilterToken) throws(FilterParseError) -> FilterNode {
        let t = peek
        guard isValueWord(t) else {
            throw fail(t, "expected a path after '\(w.text)' (like data.offset or arguments.name)")
        }
        advance()
        return .has(try path(t))
    }

    /// `PATH OP VALUE`.
    private mutating func parsePathTerm(_ w: FilterToken) throws(FilterParseError) -> FilterNode {
        let p = try path(w)
        let opToken = peek
        guard let op = CompareOp(token: opToken) else {
            throw fail(opToken, "expected a comparison after the path '\(w.text)' (==, !=, <, <=, >, >=, ~ or !~), or write has \(w.text)")
        }
        advance()
        if op.isRegex { return .compare(p, op, .regex(try regexValue(after: opToken))) }
        let t = peek
        let hint = op.isOrdering ? "(a number like 1G or a \"string\")" : "(a number like 1G, a \"string\", true, false or null)"
        switch t.kind {
        case .string:
            advance()
            return .compare(p, op, .string(t.text))
        case .regex:
            throw fail(t, "a /regex/ needs '~' or '!~': write \(p.description) ~ /\(t.text)/")
        case .word where !t.isConnective:
            let lower = t.text.lowercased()
            if lower == "true" || lower == "false" || lower == "null" {
                if op.isOrdering { throw fail(t, "'\(op.rawValue)' compares numbers or strings, not \(lower); use == or !=") }
                advance()
                return .compare(p, op, lower == "null" ? .null : .bool(lower == "true"))
            }
            if let n = NumberLiteral(t.text) {
                advance()
                return .compare(p, op, .number(n))
            }
            // A bare word is text (data.name == net0), when it cannot be a mistyped number.
            if let first = t.text.first, first.isLetter || first == "_" {
                advance()
                return .compare(p, op, .string(t.text))
            }
            throw fail(t, "'\(t.text)' is not a number (sizes: 1K 1M 1G 1T); for text write it in double quotes: \(p.description) \(op.rawValue) \(JSONWriter.quoted(t.text))")
        default:
            throw fail(t, "expected a value after '\(opToken.text)' \(hint)" + (t.kind == .end ? "" : ", found \(t.quoted)"))
        }
    }

    /// `data.list[0].name` (jq's form) or `data.list.0.name`; a leading `.` (jq's `.data`) is
    /// accepted too.
    private func path(_ w: FilterToken) throws(FilterParseError) -> JSONPathSpec {
        var text = Substring(w.text)
        var offset = 0
        if text.hasPrefix("."), text.count > 1 { text = text.dropFirst(); offset = 1 }
        var parts: [String] = []
        for raw in text.split(separator: ".", omittingEmptySubsequences: false) {
            if raw.isEmpty {
                throw FilterParseError(
                    column: w.column + offset, message: "empty path component in '\(w.text)': members are separated by single dots, as in data.actual")
            }
            // member[0][1]: the member, then each position.
            var rest = raw
            if let open = rest.firstIndex(of: "[") {
                let member = rest[..<open]
                if !member.isEmpty { parts.append(String(member)) }
                rest = rest[open...]
                while !rest.isEmpty {
                    let column = w.column + offset + raw.distance(from: raw.startIndex, to: rest.startIndex)
                    guard rest.first == "[", let close = rest.firstIndex(of: "]") else {
                        throw FilterParseError(column: column, message: "expected [N] in '\(w.text)': an array position is written data.list[0] (or data.list.0)")
                    }
                    let index = rest[rest.index(after: rest.startIndex)..<close]
                    guard !index.isEmpty, index.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                        throw FilterParseError(
                            column: column,
                            message: "'[\(index)]' is not an array position: write a number counted from 0, as in data.list[0].name (jq's [] and [\"name\"] are written data.list.name)")
                    }
                    parts.append(String(index))
                    rest = rest[rest.index(after: close)...]
                }
            } else if raw.contains("]") {
                throw FilterParseError(column: w.column + offset, message: "']' without '[' in '\(w.text)': an array position is written data.list[0]")
            } else {
                parts.append(String(raw))
            }
            offset += raw.count + 1
        }
        guard !parts.isEmpty else {
            throw FilterParseError(column: w.column, message: "expected a path such as data.actual, found '\(w.text)'")
        }
        if parts[0] == "msg" { return JSONPathSpec(components: Array(parts.dropFirst())) }
        guard JSONPathSpec.messageMembers.contains(parts[0]) else {
            let known = ["event", "command", "error", "kind", "from", "conn", "time", "has", "not"] + JSONPathSpec.messageMembers.sorted()
            let mean = Suggestions.closest(to: parts[0], among: known, limit: 1).first.map { " (did you mean '\($0)'?)" } ?? ""
            throw fail(w, "unknown keyword or message member '\(parts[0])'\(mean): conditions start with event, command, error, kind, from, conn, time, has or not, and paths with data, arguments, return, error, id, event, execute, exec-oob, timestamp or QMP (msg.NAME for any other member)")
        }
        return JSONPathSpec(components: parts)
    }

    /// A bare word: ALL_CAPS is an event, lower-case-with-hyphens a command.
    private mutating func parseBareName(_ w: FilterToken) throws(FilterParseError) -> FilterNode {
        let s = w.text
        let globs: Set<Character> = ["*", "?"]
        let isUpper = s.contains(where: { $0.isASCII && $0.isUppercase })
            && s.allSatisfy { ($0.isASCII && ($0.isUppercase || $0.isNumber)) || $0 == "_" || globs.contains($0) }
        if isUpper { return .name(.event, .glob(s)) }
        let isLower = s.contains(where: { $0.isASCII && $0.isLowercase })
            && s.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "_" || $0 == "-" || globs.contains($0) }
        if isLower {
            let n = peek
            let plain = s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }
            if plain && (n.kind == .string || n.kind == .regex || isValueWord(n)) {
                throw fail(w, "unknown keyword '\(s)' (keywords: event, command, error, kind, from, direction, conn, connection, time, has, not, and, or); a bare lower-case word names a command, and conditions are joined with 'and' or 'or'")
            }
            return .name(.command, .glob(s))
        }
        throw fail(w, "cannot tell what '\(s)' is: event names are ALL_CAPS (STOP, BLOCK_JOB_*), command names lower-case (query-status); write event \(s) or command \(s)")
    }
}
