/// Tokens of the filter language (see `FilterExpression`).
///
/// Columns are 1-based and count characters (grapheme clusters), which is what a caret
/// under a terminal line needs for the usual ASCII input.
struct FilterToken: Sendable {
    enum Kind: Sendable, Equatable {
        /// A run of name characters: keywords, names, globs, paths, numbers, times.
        case word
        /// A `"..."` string; `text` holds the decoded value.
        case string
        /// A `/.../` regex; `text` holds its source (with `\/` turned into `/`).
        case regex
        /// `(` `)` `&&` `||` `!` `==` `!=` `<` `<=` `>` `>=` `~` `!~` `=` `..`
        case op
        case end
    }

    var kind: Kind
    var text: String
    var column: Int
    /// Regex flags written after the closing slash (`i`, `s`, `m`).
    var flags: String = ""

    func isOp(_ s: String) -> Bool { kind == .op && text == s }

    /// `and`/`&&`.
    var isAnd: Bool { (kind == .word && text.lowercased() == "and") || isOp("&&") }
    /// `or`/`||`.
    var isOr: Bool { (kind == .word && text.lowercased() == "or") || isOp("||") }
    /// `not`/`!`.
    var isNot: Bool { (kind == .word && text.lowercased() == "not") || isOp("!") }
    /// A word that joins or negates conditions (`and`, `or`, `not`), which is never a value.
    var isConnective: Bool { kind == .word && ["and", "or", "not"].contains(text.lowercased()) }

    /// How the token is named in error messages.
    var quoted: String {
        switch kind {
        case .end: return "the end of the expression"
        case .string: return "the string \"\(text)\""
        case .regex: return "the regex /\(text)/"
        default: return "'\(text)'"
        }
    }
}

enum FilterLexer {
    /// Characters that end a word (besides white space).
    static let delimiters: Set<Character> = ["(", ")", "&", "|", "!", "=", "<", ">", "~", "\"", "'", "/"]

    static func isWordCharacter(_ c: Character) -> Bool { !c.isWhitespace && !delimiters.contains(c) }

    static func tokenize(_ text: String) throws(FilterParseError) -> [FilterToken] {
        let chars = Array(text)
        var tokens: [FilterToken] = []
        var i = 0
        func op(_ s: String, _ start: Int) { tokens.append(FilterToken(kind: .op, text: s, column: start + 1)) }
        while i < chars.count {
            let c = chars[i]
            let next: Character? = i + 1 < chars.count ? chars[i + 1] : nil
            if c.isWhitespace { i += 1; continue }
            switch c {
            case "(", ")", "~":
                op(String(c), i); i += 1
            case "&":
                guard next == "&" else {
                    throw FilterParseError(column: i + 1, message: "'&' is not an operator; write '&&' or 'and'")
                }
                op("&&", i); i += 2
            case "|":
                guard next == "|" else {
                    throw FilterParseError(column: i + 1, message: "'|' is not an operator; write '||' or 'or'")
                }
                op("||", i); i += 2
            case "!":
                if next == "=" { op("!=", i); i += 2 } else if next == "~" { op("!~", i); i += 2 } else { op("!", i); i += 1 }
            case "=":
                if next == "=" { op("==", i); i += 2 } else if next == "~" { op("~", i); i += 2 } else { op("=", i); i += 1 }
            case "<", ">":
                if next == "=" { op(String(c) + "=", i); i += 2 } else { op(String(c), i); i += 1 }
            case "\"":
                let (value, end) = try lexString(chars, i)
                tokens.append(FilterToken(kind: .string, text: value, column: i + 1))
                i = end
            case "'":
                throw FilterParseError(
                    column: i + 1, message: "strings are written in double quotes, as in JSON: \"ide0-hd0\"")
            case "/":
                let (source, flags, end) = try lexRegex(chars, i)
                tokens.append(FilterToken(kind: .regex, text: source, column: i + 1, flags: flags))
                i = end
            case "." where next == ".":
                op("..", i); i += 2
            default:
                let start = i
                while i < chars.count, isWordCharacter(chars[i]) {
                    if chars[i] == ".", i + 1 < chars.count, chars[i + 1] == "." { break }
                    i += 1
                }
                tokens.append(FilterToken(kind: .word, text: String(chars[start..<i]), column: start + 1))
            }
        }
        tokens.append(FilterToken(kind: .end, text: "", column: chars.count + 1))
        return tokens
    }

    /// A JSON string starting at `chars[start] == "\""`; returns the decoded value and the index after it.
    private static func lexString(_ chars: [Character], _ start: Int) throws(FilterParseError) -> (String, Int) {
        var out = ""
        var i = start + 1
        var pendingHigh: (unit: UInt32, column: Int)?
        func flushHigh() throws(FilterParseError) {
            if let h = pendingHigh {
                throw FilterParseError(
                    column: h.column, message: "\\u\(hex4(h.unit)) is half of a surrogate pair; the low half \\uDC00-\\uDFFF must follow")
            }
        }
        while i < chars.count {
            let c = chars[i]
            if c == "\"" {
                try flushHigh()
                return (out, i + 1)
            }
            if c != "\\" {
                try flushHigh()
                if let a = c.asciiValue, a < 0x20 {
                    throw FilterParseError(column: i + 1, message: "control character in a string; write it as an escape such as \\t or \\u0001")
                }
                out.append(c)
                i += 1
                continue
            }
            guard i + 1 < chars.count else { break }
            let e = chars[i + 1]
            if e == "u" {
                guard i + 5 < chars.count, let unit = UInt32(String(chars[(i + 2)...(i + 5)]), radix: 16),
                      chars[(i + 2)...(i + 5)].allSatisfy(\.isHexDigit)
                else {
                    throw FilterParseError(column: i + 1, message: "\\u must be followed by four hex digits, as in \\u00e9")
                }
                if let h = pendingHigh {
                    guard unit >= 0xDC00 && unit <= 0xDFFF else { try flushHigh(); break }
                    let scalar = 0x10000 + ((h.unit - 0xD800) << 10) + (unit - 0xDC00)
                    out.unicodeScalars.append(Unicode.Scalar(scalar)!)
                    pendingHigh = nil
                } else if unit >= 0xD800 && unit <= 0xDBFF {
                    pendingHigh = (unit, i + 1)
                } else if unit >= 0xDC00 && unit <= 0xDFFF {
                    throw FilterParseError(column: i + 1, message: "\\u\(hex4(unit)) is a lone low surrogate; it must follow a high one \\uD800-\\uDBFF")
                } else {
                    out.unicodeScalars.append(Unicode.Scalar(unit)!)
                }
                i += 6
                continue
            }
            try flushHigh()
            switch e {
            case "\"": out.append("\"")
            case "\\": out.append("\\")
            case "/": out.append("/")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "n": out.append("\n")
            case "r": out.append("\r")
            case "t": out.append("\t")
            default:
                throw FilterParseError(
                    column: i + 1, message: "invalid escape '\\\(e)' in a string (JSON escapes: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)")
            }
            i += 2
        }
        throw FilterParseError(column: start + 1, message: "unterminated string: add a closing \" (a \" inside a string is written \\\")")
    }

    private static func hex4(_ v: UInt32) -> String {
        let s = String(v, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }

    /// A `/regex/flags` starting at `chars[start] == "/"`. `\/` stands for `/`; every other
    /// backslash sequence is kept for the regex engine (`\d`, `\.`, `\\`).
    private static func lexRegex(_ chars: [Character], _ start: Int) throws(FilterParseError) -> (String, String, Int) {
        var source = ""
        var i = start + 1
        while i < chars.count {
            let c = chars[i]
            if c == "/" {
                i += 1
                var flags = ""
                while i < chars.count, chars[i].isLetter {
                    guard ["i", "s", "m"].contains(chars[i]) else {
                        throw FilterParseError(
                            column: i + 1,
                            message: "unknown regex flag '\(chars[i])' (i: ignore case, s: . matches newlines, m: ^ and $ match at line ends)")
                    }
                    if !flags.contains(chars[i]) { flags.append(chars[i]) }
                    i += 1
                }
                return (source, flags, i)
            }
            if c == "\\", i + 1 < chars.count {
                if chars[i + 1] == "/" { source.append("/") } else { source.append(c); source.append(chars[i + 1]) }
                i += 2
                continue
            }
            source.append(c)
            i += 1
        }
        throw FilterParseError(column: start + 1, message: "unterminated /regex/: add the closing / (a / inside a regex is written \\/)")
    }
}
