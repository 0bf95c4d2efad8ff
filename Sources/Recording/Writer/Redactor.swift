import QMP

/// Replaces secrets in QMP traffic by a marker before it is recorded. On by default
/// (`qmpreplay record --no-redact` keeps everything; the header says which).
///
/// The rules live here and only here (docs/RECORDER.md lists them). They apply to what
/// QEMU would execute, not only to strict JSON: QEMU's parser also takes single-quoted
/// strings (docs/QEMU-FACTS.md, "QEMU's JSON parser"), so the values are found with a
/// scanner that reads both quote styles, and the redacted bytes are what the record
/// stores (`msg`, or `text` with a standard `msg` beside it).
///
/// | command | values replaced |
/// |---|---|
/// | `set_password`, `change-vnc-password` | `arguments.password` |
/// | `object-add` of `secret` / `secret_keyring` | `data`, `iv` (flat, or under `props` before QEMU 6.0) |
/// | `object-add`, `blockdev-add`, `blockdev-create`, `blockdev-reopen`, `x-blockdev-amend` | every member named `password`, `passphrase` or `key`, at any depth |
/// | any command | every member named `password` or `passphrase`, at any depth; the password of a URL `scheme://user:PASS@host` in any string |
/// | `migrate`, `migrate-incoming` | the credentials in `arguments.uri` (`tcp:user:PASS@host`) |
/// | `qom-set` of `data`, `iv`, `password`, `passphrase`, `key` | `arguments.value` |
/// | reply to `qom-get` of those properties | `return` (the value QEMU echoes) |
/// | `human-monitor-command` | in `command-line`: `set_password`'s password, `change vnc password`'s password, `object_add`'s `data`/`iv`/`password`/`passphrase`/`key` values (any spelling), `qom-set`'s value of a secret property, `block_passwd`'s password, `password=`/`passphrase=`/`key=` options and URL/migrate credentials in any command |
/// | reply to `human-monitor-command` `qom-get` of a secret property | `return` |
/// | replies to `query-*` | every member named `password` or `passphrase` |
///
/// Only the secret's bytes change: the rest of the message keeps its exact bytes. A whole
/// value becomes the JSON string `"<redacted>"`; inside a string (an HMP command line, a
/// URL) only the secret part becomes `<redacted>`.
public struct Redactor: Sendable {
    public static let marker = "<redacted>"
    /// Members that hold a secret in the commands that create block nodes and objects.
    public static let secretMemberNames: Set<String> = ["password", "passphrase", "key"]
    /// Members that hold a secret in any command's arguments.
    public static let anyCommandSecretMembers: Set<String> = ["password", "passphrase"]
    /// Members of replies to `query-*` commands that echo a secret.
    public static let replyMemberNames: Set<String> = ["password", "passphrase"]
    /// Object types whose `data` and `iv` are the secret (QEMU's crypto/secret*.c).
    public static let secretObjectTypes: Set<String> = ["secret", "secret_keyring"]
    public static let secretObjectMembers: Set<String> = ["data", "iv"]
    /// QOM properties whose value is a secret (`qom-get` echoes them, `qom-set` sets them).
    public static let secretProperties: Set<String> = ["data", "iv", "password", "passphrase", "key"]
    /// Commands whose arguments may hold `key` members that are secrets.
    static let blockAndObjectCommands: Set<String> = ["object-add", "blockdev-add", "blockdev-create", "blockdev-reopen", "x-blockdev-amend"]

    /// What to redact in the reply to a command.
    struct ReplyRule: Sendable, Equatable {
        /// `password`/`passphrase` members anywhere in `return` (replies to `query-*`).
        var secretMembers = false
        /// The whole `return` value (`qom-get` of a secret property).
        var wholeReturn = false
        /// The secrets the command carried: QEMU may echo them (an error message quoting a
        /// URL, HMP output), so they are taken out of any string in the reply.
        var secrets: [String] = []

        static let none = ReplyRule()
    }

    /// Secrets shorter than this are not searched for in replies (they would match
    /// unrelated text; the command itself is still redacted).
    static let minimumEchoedSecret = 4

    /// One replacement: the value at `path` becomes the marker, or the string `string`.
    struct Edit: Sendable, Equatable {
        var path: [String]
        var string: String?
    }

    public var enabled: Bool
    private var pending: [UInt32: ReplyQueue<ReplyRule>] = [:]
    public private(set) var redactions = 0

    public init(enabled: Bool = true) { self.enabled = enabled }

    /// The message to record: `m` itself, or a copy with secret values replaced.
    public mutating func process(_ m: QMPMessage, from direction: Direction, connection: UInt32) -> QMPMessage {
        guard enabled else { return m }
        var edits: [Edit] = []
        switch (direction, m.body) {
        case (.client, .command(let c)):
            let (e, rule) = Redactor.command(c)
            edits = e
            sent(IDKey(value: c.id), rule, connection)
        case (.client, .other):
            // QEMU answers input that is not a command with an error (echoing an id it found).
            sent(IDKey(value: m.json?["id"]), .none, connection)
        case (.qemu, .return(let r)):
            let rule = pending[connection]?.reply(IDKey(value: r.id)) ?? ReplyRule.none
            if rule.wholeReturn {
                edits = [Edit(path: ["return"])]
            } else {
                if rule.secretMembers {
                    var paths: [[String]] = []
                    Redactor.collect(r.value, prefix: ["return"], names: Redactor.replyMemberNames, into: &paths)
                    edits = paths.map { Edit(path: $0) }
                }
                if let json = m.json { edits += Redactor.echoes(rule.secrets, in: json, skipping: edits.map(\.path) + [["id"]]) }
            }
        case (.qemu, .error(let e)):
            let rule = pending[connection]?.reply(IDKey(value: e.id)) ?? ReplyRule.none
            if let json = m.json { edits = Redactor.echoes(rule.secrets, in: json, skipping: [["id"]]) }
        case (.qemu, .greeting):
            // A new session on this connection: nothing is outstanding any more.
            pending[connection] = nil
        default:
            break
        }
        guard !edits.isEmpty else { return m }
        return apply(edits, to: m)
    }

    /// Forgets a connection's outstanding commands (it closed).
    public mutating func closed(connection: UInt32) { pending[connection] = nil }

    private mutating func sent(_ key: IDKey, _ rule: ReplyRule, _ connection: UInt32) {
        pending[connection, default: ReplyQueue()].sent(key, rule)
        // A client whose replies never come must not make memory grow without bound.
        pending[connection]?.keepNewest(4096)
    }

    /// Edits that take every occurrence of `secrets` out of the strings in `json`.
    static func echoes(_ secrets: [String], in json: JSONValue, skipping: [[String]]) -> [Edit] {
        let wanted = secrets.filter { $0.unicodeScalars.count >= minimumEchoedSecret }
        guard !wanted.isEmpty else { return [] }
        var strings: [([String], String)] = []
        collectStrings(json, prefix: [], into: &strings)
        var out: [Edit] = []
        for (p, text) in strings where !skipping.contains(where: { p.starts(with: $0) }) {
            var t = text
            for secret in wanted { t = t.replacing(secret, with: marker) }
            if t != text { out.append(Edit(path: p, string: t)) }
        }
        return out
    }

    static func value(at path: [String], in v: JSONValue) -> JSONValue? {
        var cur = v
        for k in path {
            if let o = cur.objectValue, let x = o[k] {
                cur = x
            } else if let a = cur.arrayValue, let i = Int(k), i >= 0, i < a.count {
                cur = a[i]
            } else {
                return nil
            }
        }
        return cur
    }

    // MARK: The rules

    /// The edits to a command and the rule for its reply.
    static func command(_ c: Command) -> ([Edit], ReplyRule) {
        var rule = ReplyRule(secretMembers: c.name.hasPrefix("query-"))
        guard let args = c.arguments else { return ([], rule) }
        var out: [Edit] = []
        var secrets: [String] = []
        let a = ["arguments"]
        switch c.name {
        case "set_password", "change-vnc-password":
            if args["password"] != nil { out.append(Edit(path: a + ["password"])) }
        case "migrate", "migrate-incoming":
            if let uri = args["uri"]?.stringValue, let r = redactMigrateURI(uri) {
                out.append(Edit(path: a + ["uri"], string: r.text))
                secrets += r.secrets
            }
        case "human-monitor-command":
            if let line = args["command-line"]?.stringValue {
                let h = redactHMP(line)
                if let l = h.line { out.append(Edit(path: a + ["command-line"], string: l)) }
                secrets += h.secrets
                rule.wholeReturn = h.wholeReply
            }
        case "object-add":
            let type = args["qom-type"]?.stringValue
            if let type, secretObjectTypes.contains(type) {
                for k in ["data", "iv"] where args[k] != nil { out.append(Edit(path: a + [k])) }
                if let props = args["props"]?.objectValue {
                    for k in ["data", "iv"] where props[k] != nil { out.append(Edit(path: a + ["props", k])) }
                }
            }
        case "qom-set":
            if let p = args["property"]?.stringValue, secretProperties.contains(p), args["value"] != nil {
                out.append(Edit(path: a + ["value"]))
            }
        case "qom-get":
            if let p = args["property"]?.stringValue, secretProperties.contains(p) { rule.wholeReturn = true }
        default:
            break
        }
        var paths: [[String]] = []
        collect(.object(args), prefix: a, names: blockAndObjectCommands.contains(c.name) ? secretMemberNames : anyCommandSecretMembers, into: &paths)
        out += paths.map { Edit(path: $0) }
        // Credentials in URLs anywhere (blockdev-add's `url`, drive-mirror's target, ...).
        var strings: [([String], String)] = []
        collectStrings(.object(args), prefix: a, into: &strings)
        for (p, s) in strings where !out.contains(where: { p.starts(with: $0.path) }) {
            if let r = redactURLs(s) {
                out.append(Edit(path: p, string: r.text))
                secrets += r.secrets
            }
        }
        // Unique paths, in order; the whole values replaced are secrets QEMU may echo.
        var seen = Set<[String]>()
        out = out.filter { seen.insert($0.path).inserted }
        for e in out where e.string == nil {
            if let v = value(at: Array(e.path.dropFirst()), in: .object(args)), let text = v.stringValue { secrets.append(text) }
        }
        rule.secrets = secrets
        return (out, rule)
    }

    static func collect(_ v: JSONValue, prefix: [String], names: Set<String>, into out: inout [[String]]) {
        if case .array(let items) = v {
            for (i, item) in items.enumerated() { collect(item, prefix: prefix + [String(i)], names: names, into: &out) }
            return
        }
        guard case .object(let o) = v else { return }
        for m in o.members {
            if names.contains(m.key), m.value.objectValue == nil {
                out.append(prefix + [m.key])
            } else {
                collect(m.value, prefix: prefix + [m.key], names: names, into: &out)
            }
        }
    }

    static func collectStrings(_ v: JSONValue, prefix: [String], into out: inout [([String], String)]) {
        switch v {
        case .string(let s): out.append((prefix, s))
        case .array(let items): for (i, item) in items.enumerated() { collectStrings(item, prefix: prefix + [String(i)], into: &out) }
        case .object(let o): for m in o.members { collectStrings(m.value, prefix: prefix + [m.key], into: &out) }
        default: break
        }
    }

    // MARK: Secrets inside strings

    /// `tcp:user:PASS@host:port` -> `tcp:user:<redacted>@host:port` (a token without a colon,
    /// `tcp:TOKEN@host`, is redacted whole); `nil` when there are no credentials.
    static func redactMigrateURI(_ uri: String) -> (text: String, secrets: [String])? {
        let s = Array(uri.unicodeScalars)
        guard let colon = s.firstIndex(of: ":") else { return nil }
        let scheme = String(String.UnicodeScalarView(s[..<colon]))
        if scheme == "exec" || scheme == "fd" || scheme == "file" { return redactURLs(uri) }
        var start = colon + 1
        if s[start...].starts(with: ["/", "/"]) { start += 2 }
        var end = start
        while end < s.count, s[end] != "/" && s[end] != "?" && s[end] != "," { end += 1 }
        guard let at = s[start..<end].lastIndex(of: "@") else { return redactURLs(uri) }
        var out = s
        let secret = (s[start..<at].firstIndex(of: ":").map { $0 + 1 } ?? start)..<at
        guard !secret.isEmpty else { return nil }
        out.replaceSubrange(secret, with: marker.unicodeScalars)
        return (String(String.UnicodeScalarView(out)), [String(String.UnicodeScalarView(s[secret]))])
    }

    /// Every `scheme://user:PASS@host` in `s` becomes `scheme://user:<redacted>@host`;
    /// `nil` when there is none.
    static func redactURLs(_ s: String) -> (text: String, secrets: [String])? {
        var chars = Array(s.unicodeScalars)
        var secrets: [String] = []
        var i = 0
        while i + 2 < chars.count {
            guard chars[i] == ":", chars[i + 1] == "/", chars[i + 2] == "/" else { i += 1; continue }
            let start = i + 3
            var end = start
            while end < chars.count, !"/?#, \t\r\n\"'".unicodeScalars.contains(chars[end]) { end += 1 }
            if let at = chars[start..<end].lastIndex(of: "@"), let c = chars[start..<at].firstIndex(of: ":"),
               String(String.UnicodeScalarView(chars[(c + 1)..<at])) != marker, at > c + 1 {
                secrets.append(String(String.UnicodeScalarView(chars[(c + 1)..<at])))
                chars.replaceSubrange((c + 1)..<at, with: marker.unicodeScalars)
                i = c + 1 + marker.unicodeScalars.count
                continue
            }
            i = end
        }
        return secrets.isEmpty ? nil : (String(String.UnicodeScalarView(chars)), secrets)
    }

    /// A human monitor command line with its secrets replaced (`nil` when it has none), and
    /// what to redact in its reply. Words are split on whitespace as HMP does, so any
    /// spacing is understood; the line keeps its own spacing.
    static func redactHMP(_ line: String) -> (line: String?, secrets: [String], wholeReply: Bool) {
        let chars = Array(line.unicodeScalars)
        // Words: ranges of non-space characters.
        var words: [Range<Int>] = []
        var i = 0
        while i < chars.count {
            while i < chars.count, chars[i].properties.isWhitespace { i += 1 }
            let s = i
            while i < chars.count, !chars[i].properties.isWhitespace { i += 1 }
            if i > s { words.append(s..<i) }
        }
        guard !words.isEmpty else { return (nil, [], false) }
        func word(_ n: Int) -> String? { n < words.count ? String(String.UnicodeScalarView(chars[words[n]])) : nil }
        func toEnd(_ n: Int) -> Range<Int> { words[n].lowerBound..<words.last!.upperBound }
        let name = word(0)!.lowercased().replacing("_", with: "-")
        // Character ranges to replace, and by what (the marker unless said).
        var replace: [(Range<Int>, String)] = []
        var wholeReply = false
        let rest: Range<Int>? = words.count > 1 ? words[1].lowerBound..<chars.count : nil
        switch name {
        case "set-password":
            // set_password PROTOCOL PASSWORD [ACTION]
            if words.count > 2 { replace.append((words[2], marker)) }
        case "change":
            // change vnc password [PASSWORD]
            if word(1) == "vnc", word(2) == "password", words.count > 3 { replace.append((toEnd(3), marker)) }
        case "block-passwd":
            // block_passwd DEVICE PASSWORD
            if words.count > 2 { replace.append((toEnd(2), marker)) }
        case "object-add":
            if let r = rest { replace += keyvalValues(chars, in: r, keys: secretProperties).map { ($0, marker) } }
        case "qom-set":
            // qom-set PATH PROPERTY VALUE (the value is the rest of the line)
            if let p = word(2), secretProperties.contains(p), words.count > 3 { replace.append((toEnd(3), marker)) }
        case "qom-get":
            if let p = word(2), secretProperties.contains(p) { wholeReply = true }
        case "migrate", "migrate-incoming":
            // migrate [-d] [-b] [-i] [-r] URI
            if let n = (1..<max(1, words.count)).last(where: { !(word($0)!.hasPrefix("-")) }),
               let r = redactMigrateURI(word(n)!) {
                replace.append((words[n], r.text))
            }
        default:
            break
        }
        // Any command: password=/passphrase=/key= options (also dotted, file.password=).
        if let r = rest { replace += keyvalValues(chars, in: r, keys: secretMemberNames).map { ($0, marker) } }
        // Apply, last first, skipping ranges inside one already replaced.
        var out = chars
        var lowest = Int.max
        var secrets: [String] = []
        for (r, with) in replace.sorted(by: { $0.0.lowerBound > $1.0.lowerBound }) where r.upperBound <= lowest {
            let old = String(String.UnicodeScalarView(chars[r]))
            if old != with {
                out.replaceSubrange(r, with: with.unicodeScalars)
                if with == marker { secrets.append(old) } else if let m = redactMigrateURI(old) { secrets += m.secrets }
            }
            lowest = r.lowerBound
        }
        var text = String(String.UnicodeScalarView(out))
        // Credentials in URLs, in any command.
        if let u = redactURLs(text) {
            text = u.text
            secrets += u.secrets
        }
        return (text == line ? nil : text, secrets, wholeReply)
    }

    /// The value ranges of `KEY=VALUE` options whose key (or its last dotted part) is in
    /// `keys`, in QEMU's option syntax (values end at a comma; `,,` is a literal comma).
    static func keyvalValues(_ chars: [Unicode.Scalar], in range: Range<Int>, keys: Set<String>) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var i = range.lowerBound
        while i < range.upperBound {
            // Start of an option: after the start, a comma or whitespace.
            let s = i
            while i < range.upperBound, chars[i] != "=" && chars[i] != "," && !chars[i].properties.isWhitespace { i += 1 }
            guard i < range.upperBound else { break }
            if chars[i] != "=" { i += 1; continue }
            let key = String(String.UnicodeScalarView(chars[s..<i])).lowercased()
            let last = key.split(separator: ".").last.map(String.init) ?? key
            i += 1
            let vs = i
            while i < range.upperBound {
                if chars[i] == "," {
                    if i + 1 < range.upperBound, chars[i + 1] == "," { i += 2; continue }
                    break
                }
                if chars[i].properties.isWhitespace { break }
                i += 1
            }
            if keys.contains(last) || keys.contains(key), i > vs { out.append(vs..<i) }
            if i < range.upperBound { i += 1 }
        }
        return out
    }

    // MARK: Applying edits to the exact bytes

    private mutating func apply(_ edits: [Edit], to m: QMPMessage) -> QMPMessage {
        var found: [(Range<Int>, [UInt8])] = []
        m.bytes.withUnsafeBufferPointer { buf in
            let payload = UnsafeBufferPointer(rebasing: buf[m.payload])
            for e in edits {
                guard let r = DialectScan.valueRange(path: e.path, in: payload) else { continue }
                var replacement: [UInt8] = []
                JSONWriter.writeString(e.string ?? Redactor.marker, into: &replacement)
                if payload[r.lowerBound] == DialectScan.sq {
                    // Keep QEMU's single-quoted spelling: only the secret's bytes change.
                    replacement = DialectScan.singleQuoted(replacement)
                }
                found.append(((r.lowerBound + m.payload.lowerBound)..<(r.upperBound + m.payload.lowerBound), replacement))
            }
        }
        guard !found.isEmpty else { return m }
        var bytes = m.bytes
        var end = m.payload.upperBound
        // Last first, and never two edits on overlapping bytes (a path inside a replaced one).
        var lowest = Int.max
        for (r, with) in found.sorted(by: { $0.0.lowerBound > $1.0.lowerBound }) where r.upperBound <= lowest {
            bytes.replaceSubrange(r, with: with)
            end += with.count - r.count
            lowest = r.lowerBound
            redactions += 1
        }
        return QMPMessage(bytes: bytes, payload: m.payload.lowerBound..<end)
    }
}

/// Finds values by member path in a JSON text written in QEMU's input dialect too (strings
/// in double or single quotes, `\'` accepted), without parsing the rest: what the redactor
/// needs to change only a secret's bytes in what QEMU would execute.
enum DialectScan {
    static let dq = UInt8(ascii: "\""), sq = UInt8(ascii: "'"), bs = UInt8(ascii: "\\")

    static func isQuote(_ c: UInt8) -> Bool { c == dq || c == sq }

    /// A double-quoted JSON string written with single quotes (QEMU's dialect): the same
    /// escapes, `\"` for a double quote (QEMU takes it in either kind), `\'` for a single one.
    static func singleQuoted(_ json: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [sq]
        for c in json.dropFirst().dropLast() {
            if c == sq { out.append(bs) }
            out.append(c)
        }
        out.append(sq)
        return out
    }

    /// Index just past the string starting at `start` (a quote of either kind).
    static func skipString(_ b: UnsafeBufferPointer<UInt8>, _ start: Int) -> Int? {
        let q = b[start]
        var i = start + 1
        while i < b.count {
            if b[i] == bs { i += 2; continue }
            if b[i] == q { return i + 1 }
            i += 1
        }
        return nil
    }

    static func skipValue(_ b: UnsafeBufferPointer<UInt8>, _ start: Int) -> Int? {
        guard start < b.count else { return nil }
        let c = b[start]
        if isQuote(c) { return skipString(b, start) }
        if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
            var depth = 0
            var i = start
            while i < b.count {
                let x = b[i]
                if isQuote(x) {
                    guard let e = skipString(b, i) else { return nil }
                    i = e
                    continue
                }
                if x == UInt8(ascii: "{") || x == UInt8(ascii: "[") {
                    depth += 1
                } else if x == UInt8(ascii: "}") || x == UInt8(ascii: "]") {
                    depth -= 1
                    if depth == 0 { return i + 1 }
                }
                i += 1
            }
            return nil
        }
        var i = start
        while i < b.count, b[i] != UInt8(ascii: ","), b[i] != UInt8(ascii: "}"), b[i] != UInt8(ascii: "]"), !isJSONSpace(b[i]) { i += 1 }
        return i > start ? i : nil
    }

    /// Members of an object text: decoded key and value range.
    static func members(_ b: UnsafeBufferPointer<UInt8>) -> [(key: String, value: Range<Int>)]? {
        var i = 0
        let n = b.count
        func ws() { while i < n, isJSONSpace(b[i]) { i += 1 } }
        ws()
        guard i < n, b[i] == UInt8(ascii: "{") else { return nil }
        i += 1
        ws()
        var out: [(String, Range<Int>)] = []
        if i < n, b[i] == UInt8(ascii: "}") { return out }
        while true {
            ws()
            guard i < n, isQuote(b[i]), let keyEnd = skipString(b, i),
                  let key = QEMUDialect.parse(UnsafeBufferPointer(rebasing: b[i..<keyEnd]))?.value.stringValue else { return nil }
            i = keyEnd
            ws()
            guard i < n, b[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            ws()
            guard let end = skipValue(b, i) else { return nil }
            out.append((key, i..<end))
            i = end
            ws()
            guard i < n else { return nil }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            if b[i] == UInt8(ascii: "}") { return out }
            return nil
        }
    }

    static func elements(_ b: UnsafeBufferPointer<UInt8>) -> [Range<Int>]? {
        var i = 0
        let n = b.count
        func ws() { while i < n, isJSONSpace(b[i]) { i += 1 } }
        ws()
        guard i < n, b[i] == UInt8(ascii: "[") else { return nil }
        i += 1
        ws()
        var out: [Range<Int>] = []
        if i < n, b[i] == UInt8(ascii: "]") { return out }
        while true {
            ws()
            guard let end = skipValue(b, i) else { return nil }
            out.append(i..<end)
            i = end
            ws()
            guard i < n else { return nil }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            if b[i] == UInt8(ascii: "]") { return out }
            return nil
        }
    }

    /// The byte range of the value at `path` (member names, or array indexes as text).
    static func valueRange(path: [String], in buf: UnsafeBufferPointer<UInt8>) -> Range<Int>? {
        JSONScan.valueRange(path: path, in: buf, members: members, elements: elements)
    }
}

extension String {
    func trimmingLeadingSpaces() -> String { String(drop { $0 == " " || $0 == "\t" }) }
}
