import Capture
import QMP

/// The argument syntax of QEMU's qmp-shell, for the live shell's `send`:
/// `COMMAND key=value ...`, e.g. `balloon value=536870912`, `blockdev-add driver=null-co
/// node-name=n0 size=1024`, `set_password protocol=vnc password=x`, `object-add
/// qom-type=iothread id=t0`, nested `a.b=1`, JSON values `keys=["a","b"]`; or a whole JSON
/// object `{"execute": "stop"}` (its `id`, if any, is replaced by the recorder's). The rules
/// are qmp-shell's (docs/QEMU-FACTS.md, "qmp-shell's argument syntax").
public enum QMPShellSyntax {
    /// Why a `send` line does not parse, as qmp-shell words it where it has a message.
    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public static func parse(_ line: String) throws(ParseError) -> RecorderCommand {
        let t = line.trimmed()
        if t.hasPrefix("{") {
            let v: JSONValue
            do { v = try JSONParser.parse(t) } catch { throw ParseError(description: "not a JSON object: \(error)") }
            guard let o = v.objectValue else { throw ParseError(description: "not a JSON object") }
            guard let name = o["execute"]?.stringValue else { throw ParseError(description: "a command object needs \"execute\"") }
            guard o["arguments"] == nil || o["arguments"]?.objectValue != nil else { throw ParseError(description: "\"arguments\" must be an object") }
            return RecorderCommand(name: name, arguments: o["arguments"]?.objectValue)
        }
        let tokens = try tokenize(t)
        guard let name = tokens.first else { throw ParseError(description: "send needs a command, e.g. send query-status, send balloon value=1073741824") }
        var args = JSONObject()
        for token in tokens.dropFirst() { try add(token, to: &args) }
        return RecorderCommand(name: name, arguments: args.isEmpty ? nil : args)
    }

    /// Words separated by blanks; a quoted part (`"..."` or `'...'`, backslash escapes
    /// inside) may hold blanks and stays in the word as typed, quotes included, as in
    /// qmp-shell.
    static func tokenize(_ s: String) throws(ParseError) -> [String] {
        var out: [String] = []
        var cur = ""
        var quote: Character?
        var escaped = false
        for ch in s {
            if let q = quote {
                cur.append(ch)
                if escaped { escaped = false } else if ch == "\\" { escaped = true } else if ch == q { quote = nil }
                continue
            }
            if ch == " " || ch == "\t" {
                if !cur.isEmpty { out.append(cur); cur = "" }
                continue
            }
            if ch == "\"" || ch == "'" { quote = ch }
            cur.append(ch)
        }
        if quote != nil { throw ParseError(description: "unterminated quote in '\(cur)'") }
        if !cur.isEmpty { out.append(cur) }
        return out
    }

    /// `key=value`, `a.b.c=value` (objects made on the way).
    static func add(_ token: String, to args: inout JSONObject) throws(ParseError) {
        guard let eq = token.firstIndex(of: "=") else { throw ParseError(description: "Expected a key=value pair, got '\(token)'") }
        let key = String(token[..<eq])
        let value = parseValue(String(token[token.index(after: eq)...]))
        let path = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        try set(path[...], value, in: &args, key: key, done: [])
    }

    private static func set(_ path: ArraySlice<String>, _ value: JSONValue, in obj: inout JSONObject, key: String, done: [String]) throws(ParseError) {
        let head = path.first!
        let here = done + [head]
        if path.count == 1 {
            if let old = obj[head] {
                if old.objectValue != nil { throw ParseError(description: "Cannot use \"\(here.joined(separator: "."))\" as both leaf and non-leaf key") }
                throw ParseError(description: "Cannot set \"\(key)\" multiple times")
            }
            obj[head] = value
            return
        }
        var inner: JSONObject
        if let old = obj[head] {
            guard let o = old.objectValue else { throw ParseError(description: "Cannot use \"\(here.joined(separator: "."))\" as both leaf and non-leaf key") }
            inner = o
        } else {
            inner = JSONObject()
        }
        try set(path.dropFirst(), value, in: &inner, key: key, done: here)
        obj[head] = .object(inner)
    }

    /// An integer, `true`/`false` (any case), JSON when it starts with `{` or `[` and parses,
    /// else the text as a string.
    static func parseValue(_ v: String) -> JSONValue {
        let digits = v.hasPrefix("+") ? String(v.dropFirst()) : v
        if let n = Int64(digits) { return .number(JSONNumber(text: String(n))) }
        switch v.lowercased() {
        case "true": return .bool(true)
        case "false": return .bool(false)
        default: break
        }
        if v.hasPrefix("{") || v.hasPrefix("["), let j = try? JSONParser.parse(v) { return j }
        return .string(v)
    }
}
