import QMP
import Recording

/// Reads fault rules from their one-line text (`--fault RULE`) or from a file of them (one
/// per line, `#` comments, blank lines ignored), with errors naming the source, the line and
/// the problem. The grammar, in docs/TESTING-CLIENTS.md ("Fault rules"):
///
///     [after COMMAND[#N] [ARGS]:] COMMAND[#N] [ARGS] ACTION
///     ACTION = error CLASS [TEXT] | return JSON | delay DURATION | close | event NAME [DATA]
///
/// Example: `FaultRule.parse("query-status#2 delay 2s", source: "--fault 1")`.
extension FaultRule {
    public static func parse(_ text: String, source: String) throws(ReplayError) -> FaultRule {
        var s = RuleScanner(text)
        func fail(_ why: String) -> ReplayError { .usage("\(source): \(why) in '\(text)'") }
        var after: Match?
        if s.peekWord() == "after" {
            _ = s.word()
            after = try s.match(fail)
            s.skipSpaces()
            guard s.take(":") else { throw fail("'after COMMAND' must end with ':'") }
        }
        let match = try s.match(fail)
        let verb = s.word()
        let action: Action
        switch verb {
        case "error":
            let cls = s.word()
            guard errorClasses.contains(cls) else {
                throw fail(cls.isEmpty ? "'error' needs a class" : "unknown error class '\(cls)' (QEMU's classes: \(errorClasses.joined(separator: ", ")))")
            }
            var msg = s.rest()
            if msg.hasPrefix("\"") {
                guard case .string(let str)? = try? JSONParser.parse(msg) else { throw fail("the error text is not a JSON string") }
                msg = str
            }
            action = .error(errorClass: cls, text: msg.isEmpty ? "qmpreplay: injected \(cls) for '\(match.command)'" : msg)
        case "return":
            let rest = s.rest()
            guard !rest.isEmpty else { throw fail("'return' needs a JSON value, e.g. {} or {\"status\": \"failed\"}") }
            do { action = .reply(try JSONParser.parse(rest)) } catch { throw fail("the return value is not JSON (\(error.reason))") }
        case "delay":
            let d = s.word()
            do { action = .delay(try TimeSpec.duration(d)) } catch { throw fail("'delay' needs a duration such as 500ms or 2s (\(error.reason))") }
        case "close":
            action = .close
        case "event":
            let name = s.word()
            guard !name.isEmpty else { throw fail("'event' needs an event name") }
            let rest = s.rest()
            var data: JSONObject?
            if !rest.isEmpty {
                guard case .object(let o)? = try? JSONParser.parse(rest) else { throw fail("the event data is not a JSON object") }
                data = o
            }
            action = .event(name: name, data: data)
        case "":
            throw fail("no action (error, return, delay, close or event)")
        default:
            throw fail("unknown action '\(verb)' (error, return, delay, close or event)")
        }
        guard s.atEnd else { throw fail("unexpected '\(s.rest())' after the action") }
        return FaultRule(after: after, match: match, action: action, text: text.trimmingCharacters(in: " "), source: source)
    }

    /// Every rule of a rules file; `path` names the file in errors (`faults.txt:3: ...`).
    public static func parseFile(_ contents: String, path: String) throws(ReplayError) -> [FaultRule] {
        var rules: [FaultRule] = []
        for (i, line) in contents.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let t = line.trimmingCharacters(in: " ").replacingTabs()
            if t.isEmpty || t.hasPrefix("#") { continue }
            rules.append(try parse(t, source: "\(path):\(i + 1)"))
        }
        return rules
    }
}

/// The characters of one rule, read left to right.
private struct RuleScanner {
    let chars: [Character]
    var i = 0

    init(_ text: String) { chars = Array(text) }

    var atEnd: Bool {
        var j = i
        while j < chars.count, chars[j].isWhitespace { j += 1 }
        return j == chars.count
    }

    mutating func skipSpaces() { while i < chars.count, chars[i].isWhitespace { i += 1 } }

    mutating func take(_ c: Character) -> Bool {
        guard i < chars.count, chars[i] == c else { return false }
        i += 1
        return true
    }

    /// Letters, digits, `-`, `_`, `.` (command, event, class names, durations).
    mutating func word() -> String {
        skipSpaces()
        let start = i
        while i < chars.count, chars[i].isLetter || chars[i].isNumber || "-_.".contains(chars[i]) { i += 1 }
        return String(chars[start..<i])
    }

    func peekWord() -> String {
        var copy = self
        return copy.word()
    }

    mutating func rest() -> String {
        skipSpaces()
        defer { i = chars.count }
        return String(chars[i...]).trimmingCharacters(in: " ")
    }

    /// `COMMAND[#N] [{ARGS}]`.
    mutating func match(_ fail: (String) -> ReplayError) throws(ReplayError) -> FaultRule.Match {
        let name = word()
        guard !name.isEmpty else { throw fail("a rule starts with a command name") }
        var m = FaultRule.Match(command: name)
        if take("#") {
            guard let n = Int(word()), n >= 1 else { throw fail("'#' after '\(name)' needs a call number (1, 2, ...)") }
            m.nth = n
        }
        skipSpaces()
        if i < chars.count, chars[i] == "{" {
            let text = balancedObject()
            guard case .object(let o)? = try? JSONParser.parse(text) else { throw fail("the arguments of '\(name)' are not a JSON object") }
            m.arguments = o
        }
        return m
    }

    /// From `{` to its matching `}`, strings skipped.
    private mutating func balancedObject() -> String {
        let start = i
        var depth = 0
        var inString = false
        while i < chars.count {
            let c = chars[i]
            i += 1
            if inString {
                if c == "\\" { i += 1 } else if c == "\"" { inString = false }
            } else if c == "\"" {
                inString = true
            } else if c == "{" || c == "[" {
                depth += 1
            } else if c == "}" || c == "]" {
                depth -= 1
                if depth == 0 { break }
            }
        }
        return String(chars[start..<min(i, chars.count)])
    }
}

extension String {
    func trimmingCharacters(in c: Character) -> String { Substring(self).trimmingCharacters(in: c) }
    fileprivate func replacingTabs() -> String { String(map { $0 == "\t" ? " " : $0 }) }
}
