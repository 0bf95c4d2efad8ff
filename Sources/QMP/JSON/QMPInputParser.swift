/// What QEMU's monitor makes of the bytes a client sends: requests (any JSON value; the
/// dispatcher decides whether it is a command) or QEMU's error texts, in stream order.
///
/// It follows the behaviour of QEMU's JSON lexer, streamer and parser (docs/QEMU-FACTS.md,
/// "QEMU's JSON lexer and streamer", "QEMU's JSON parser"): a top-level value is parsed as
/// soon as its last token is complete (so `42` followed by a space is a request, and a
/// message needs no newline); a byte that cannot continue a token is a "stray" error, after
/// which input is skipped up to the next structural character or control character; single-
/// quoted strings are accepted; a message whose tokens exceed 64 MiB, 2M tokens or nesting
/// 1024 is refused with QEMU's texts. Memory is bounded by `retainLimit`: the tokens of one
/// message are kept up to that many bytes; a longer message that QEMU would still have
/// accepted is reported as `.overlong` (qmpreplay's own limit).
///
/// Example: feeding `garbage {"execute": 'stop'}` yields `.error("JSON parse error, invalid
/// keyword 'garbage'")` and `.value({"execute": "stop"})`.
public struct QMPInputParser: Sendable {
    public enum Item: Sendable, Equatable {
        /// A complete, well-formed JSON value.
        case value(JSONValue)
        /// QEMU's error text for bad input (it becomes a GenericError without id).
        case error(String)
        /// A message QEMU's limits allow but longer than `retainLimit`: not kept.
        case overlong
    }

    /// QEMU's limits (qobject/json-streamer.c, qobject/json-lexer.c).
    public static let qemuTokenSizeLimit = 64 << 20
    public static let qemuTokenCountLimit = 2 << 20
    public static let qemuNestingLimit = 1024

    public let retainLimit: Int
    public let tokenSizeLimit: Int
    public let tokenCountLimit: Int
    public let nestingLimit: Int

    enum State: UInt8, Sendable {
        case start, recovery, dqString, dqEscape, sqString, sqEscape
        case zero, sign, digits, mantissa, mantissaDigits, expE, expSign, expDigits, keyword
    }

    enum TokenKind: UInt8, Sendable {
        case lcurly, rcurly, lsquare, rsquare, comma, colon, integer, float, keyword, string
    }

    struct Token: Sendable {
        var kind: TokenKind
        var range: Range<Int>
    }

    private var state: State = .start
    /// The current token's bytes (possibly only a prefix, see `tokenKeep`) and true length.
    private var token: [UInt8] = []
    private var tokenLength = 0
    private var tokenKeep = Int.max

    // The message being assembled.
    private var braces = 0
    private var brackets = 0
    private var tokenSize = 0
    private var tokens: [Token] = []
    private var tokenCount = 0
    private var text: [UInt8] = []
    private var overlong = false

    /// The longest keyword prefix worth keeping: QEMU cuts its messages to 1023 bytes.
    static let keywordKeep = 1100
    /// The longest stray token quoted back in an error (QEMU quotes it whole; see the docs).
    public static let strayKeep = 1 << 20

    public init(retainLimit: Int = 16 << 20, tokenSizeLimit: Int = QMPInputParser.qemuTokenSizeLimit,
                tokenCountLimit: Int = QMPInputParser.qemuTokenCountLimit, nestingLimit: Int = QMPInputParser.qemuNestingLimit) {
        self.retainLimit = max(retainLimit, 64)
        self.tokenSizeLimit = tokenSizeLimit
        self.tokenCountLimit = tokenCountLimit
        self.nestingLimit = nestingLimit
    }

    /// Bytes held for an unfinished message.
    public var pendingByteCount: Int { text.count + token.count + tokens.count * MemoryLayout<Token>.stride }

    /// Feeds a chunk of any size; `emit` is called for every item it completes, in order.
    public mutating func push<C: Collection>(_ chunk: C, _ emit: (Item) -> Void) where C.Element == UInt8 {
        let done: Void? = chunk.withContiguousStorageIfAvailable { feed($0, emit) }
        if done == nil {
            let a = Array(chunk)
            a.withUnsafeBufferPointer { feed($0, emit) }
        }
    }

    /// Convenience for tests: the items one chunk completes.
    public mutating func push<C: Collection>(_ chunk: C) -> [Item] where C.Element == UInt8 {
        var out: [Item] = []
        push(chunk) { out.append($0) }
        return out
    }

    // MARK: lexer

    private static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0D || c == 0x0A }
    private static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    private static func isLower(_ c: UInt8) -> Bool { c >= 0x61 && c <= 0x7A }
    /// Where error recovery stops skipping: structural characters, ASCII controls other than
    /// tab, and the bytes that never occur in UTF-8.
    private static func endsRecovery(_ c: UInt8) -> Bool {
        switch c {
        case 0x09: return false
        case 0x00...0x1F, 0xFE, 0xFF: return true
        case UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: "{"), UInt8(ascii: "}"), UInt8(ascii: ":"), UInt8(ascii: ","): return true
        default: return false
        }
    }

    private mutating func begin(_ s: State, _ c: UInt8, keep: Int) {
        state = s
        token.removeAll(keepingCapacity: token.capacity <= 4096)
        tokenLength = 0
        tokenKeep = keep
        append(c)
    }

    @inline(__always) private mutating func append(_ c: UInt8) {
        if token.count < tokenKeep { token.append(c) }
        tokenLength += 1
    }

    private mutating func appendRun(_ b: UnsafeBufferPointer<UInt8>, _ r: Range<Int>) {
        let room = max(0, tokenKeep - token.count)
        if room > 0 { token.append(contentsOf: UnsafeBufferPointer(rebasing: b[r.lowerBound..<min(r.upperBound, r.lowerBound + room)])) }
        tokenLength += r.count
    }

    /// How many more bytes the current token may take before QEMU's lexer cuts it (it emits a
    /// token as soon as it is longer than the token size limit).
    private var lexerRoom: Int { tokenSizeLimit + 1 - tokenLength }

    private var stringKeep: Int { max(0, retainLimit - text.count - tokens.count * MemoryLayout<Token>.stride) }

    private mutating func feed(_ b: UnsafeBufferPointer<UInt8>, _ emit: (Item) -> Void) {
        var i = 0
        let n = b.count
        while i < n {
            let c = b[i]
            switch state {
            case .start:
                if QMPInputParser.isSpace(c) { i += 1; continue }
                i += 1
                switch c {
                case UInt8(ascii: "{"): process(.lcurly, single: c, emit)
                case UInt8(ascii: "}"): process(.rcurly, single: c, emit)
                case UInt8(ascii: "["): process(.lsquare, single: c, emit)
                case UInt8(ascii: "]"): process(.rsquare, single: c, emit)
                case UInt8(ascii: ","): process(.comma, single: c, emit)
                case UInt8(ascii: ":"): process(.colon, single: c, emit)
                case UInt8(ascii: "\""): begin(.dqString, c, keep: stringKeep)
                case UInt8(ascii: "'"): begin(.sqString, c, keep: stringKeep)
                case UInt8(ascii: "0"): begin(.zero, c, keep: stringKeep)
                case UInt8(ascii: "-"): begin(.sign, c, keep: stringKeep)
                case 0x31...0x39: begin(.digits, c, keep: stringKeep)
                case 0x61...0x7A: begin(.keyword, c, keep: QMPInputParser.keywordKeep)
                default:
                    begin(.start, c, keep: QMPInputParser.strayKeep)
                    stray(emit)
                }
                continue
            case .recovery:
                var j = i
                while j < n, !QMPInputParser.endsRecovery(b[j]) { j += 1 }
                i = j
                if j < n { state = .start }
                continue
            case .dqString, .sqString:
                let quote: UInt8 = state == .dqString ? 0x22 : 0x27
                var j = i
                let limit = min(n, i + lexerRoom)
                while j < limit {
                    let d = b[j]
                    if d == quote || d == 0x5C || d < 0x20 || d >= 0xFE { break }
                    j += 1
                }
                if j > i { appendRun(b, i..<j) }
                i = j
                if overLexerLimit(emit) { continue }
                guard i < n, j < limit else { continue }
                let d = b[i]
                i += 1
                append(d)
                if d == quote {
                    finishToken(.string, emit)
                } else if d == 0x5C {
                    state = state == .dqString ? .dqEscape : .sqEscape
                } else {
                    stray(emit)
                }
            case .dqEscape, .sqEscape:
                i += 1
                append(c)
                if c >= 0x20 && c <= 0xFD {
                    state = state == .dqEscape ? .dqString : .sqString
                } else {
                    stray(emit)
                }
            case .keyword:
                var j = i
                let limit = min(n, i + lexerRoom)
                while j < limit, QMPInputParser.isLower(b[j]) { j += 1 }
                if j > i { appendRun(b, i..<j) }
                i = j
                if overLexerLimit(emit) { continue }
                if i < n && j < limit { finishToken(.keyword, emit) }  // lookahead: b[i] is not consumed
            case .zero:
                if QMPInputParser.isDigit(c) { i += 1; append(c); stray(emit) }
                else if c == UInt8(ascii: ".") { i += 1; append(c); state = .mantissa }
                else { finishToken(.integer, emit) }
            case .sign:
                i += 1
                append(c)
                if c == UInt8(ascii: "0") { state = .zero }
                else if c >= 0x31 && c <= 0x39 { state = .digits }
                else { stray(emit) }
            case .digits:
                if QMPInputParser.isDigit(c) { i += 1; append(c) }
                else if c == UInt8(ascii: "e") || c == UInt8(ascii: "E") { i += 1; append(c); state = .expE }
                else if c == UInt8(ascii: ".") { i += 1; append(c); state = .mantissa }
                else { finishToken(.integer, emit) }
            case .mantissa:
                i += 1
                append(c)
                if QMPInputParser.isDigit(c) { state = .mantissaDigits } else { stray(emit) }
            case .mantissaDigits:
                if QMPInputParser.isDigit(c) { i += 1; append(c) }
                else if c == UInt8(ascii: "e") || c == UInt8(ascii: "E") { i += 1; append(c); state = .expE }
                else { finishToken(.float, emit) }
            case .expE:
                i += 1
                append(c)
                if c == UInt8(ascii: "-") || c == UInt8(ascii: "+") { state = .expSign }
                else if QMPInputParser.isDigit(c) { state = .expDigits }
                else { stray(emit) }
            case .expSign:
                i += 1
                append(c)
                if QMPInputParser.isDigit(c) { state = .expDigits } else { stray(emit) }
            case .expDigits:
                if QMPInputParser.isDigit(c) { i += 1; append(c) } else { finishToken(.float, emit) }
            }
            if state != .start && state != .recovery { _ = overLexerLimit(emit) }
        }
    }

    /// QEMU's lexer hands on a token that grew past the size limit as it is, and the streamer
    /// refuses it ("JSON token size limit exceeded"); lexing goes on from the start state.
    private mutating func overLexerLimit(_ emit: (Item) -> Void) -> Bool {
        guard tokenLength > tokenSizeLimit else { return false }
        resetToken()
        state = .start
        failMessage("JSON token size limit exceeded", emit)
        return true
    }

    private mutating func resetToken() {
        token.removeAll(keepingCapacity: token.capacity <= 4096)
        tokenLength = 0
        tokenKeep = Int.max
    }

    /// A byte that cannot continue the token: QEMU reports the token so far, that byte
    /// included, drops the message and skips input until a resynchronisation point.
    private mutating func stray(_ emit: (Item) -> Void) {
        // The token is a C string in QEMU: a NUL byte ends it.
        var bytes = token
        if let z = bytes.firstIndex(of: 0) { bytes.removeSubrange(z...) }
        resetToken()
        state = .recovery
        failMessage(QEMUText.decode(Array("JSON parse error, stray '".utf8) + bytes + [UInt8(ascii: "'")]), emit)
    }

    // MARK: streamer

    private mutating func process(_ kind: TokenKind, single c: UInt8, _ emit: (Item) -> Void) {
        token.removeAll(keepingCapacity: true)
        token.append(c)
        tokenLength = 1
        finishToken(kind, emit)
    }

    private mutating func finishToken(_ kind: TokenKind, _ emit: (Item) -> Void) {
        let length = tokenLength
        let complete = token.count == tokenLength
        state = .start
        switch kind {
        case .lcurly: braces += 1
        case .rcurly: braces -= 1
        case .lsquare: brackets += 1
        case .rsquare: brackets -= 1
        default: break
        }
        if tokenSize + length + 1 > tokenSizeLimit { resetToken(); failMessage("JSON token size limit exceeded", emit); return }
        if tokenCount + 1 > tokenCountLimit { resetToken(); failMessage("JSON token count limit exceeded", emit); return }
        if braces + brackets > nestingLimit { resetToken(); failMessage("JSON nesting depth limit exceeded", emit); return }
        tokenSize += length
        tokenCount += 1
        if !complete && kind != .keyword { overlong = true }
        if !overlong {
            let start = text.count
            text.append(contentsOf: token)
            tokens.append(Token(kind: kind, range: start..<text.count))
            if text.count + tokens.count * MemoryLayout<Token>.stride > retainLimit { overlong = true }
        }
        if overlong && !tokens.isEmpty { tokens = []; text = [] }
        resetToken()
        if (braces > 0 || brackets > 0) && braces >= 0 && brackets >= 0 { return }
        let item: Item
        if overlong {
            item = .overlong
        } else {
            var p = QMPTokenParser(tokens: tokens, text: text)
            item = p.parse().map(Item.value) ?? .error(p.error ?? "JSON parse error, expecting value")
        }
        resetMessage()
        emit(item)
    }

    private mutating func failMessage(_ desc: String, _ emit: (Item) -> Void) {
        resetMessage()
        emit(.error(desc))
    }

    private mutating func resetMessage() {
        braces = 0
        brackets = 0
        tokenSize = 0
        tokenCount = 0
        overlong = false
        tokens.removeAll(keepingCapacity: tokens.capacity <= 1024)
        text.removeAll(keepingCapacity: text.capacity <= 1 << 16)
    }
}

/// QEMU's parser over one message's tokens, with its error texts; the first error wins.
struct QMPTokenParser {
    let tokens: [QMPInputParser.Token]
    let text: [UInt8]
    var position = 0
    private(set) var error: String?

    init(tokens: [QMPInputParser.Token], text: [UInt8]) {
        self.tokens = tokens
        self.text = text
    }

    mutating func parse() -> JSONValue? {
        let v = value()
        return error == nil ? v : nil
    }

    /// QEMU formats parser messages into a 1024-byte buffer, so they are cut to 1023 bytes.
    private mutating func fail(_ message: String) {
        guard error == nil else { return }
        var bytes = Array(message.utf8)
        if bytes.count > 1023 { bytes.removeSubrange(1023...) }
        error = "JSON parse error, " + QEMUText.decode(bytes)
    }

    private var peek: QMPInputParser.Token? { position < tokens.count ? tokens[position] : nil }

    private mutating func pop() -> QMPInputParser.Token? {
        guard position < tokens.count else { return nil }
        position += 1
        return tokens[position - 1]
    }

    private func bytes(_ t: QMPInputParser.Token) -> ArraySlice<UInt8> { text[t.range] }

    private mutating func value() -> JSONValue? {
        guard let t = peek else { fail("premature EOI"); return nil }
        switch t.kind {
        case .lcurly: return object()
        case .lsquare: return array()
        case .integer, .float:
            position += 1
            return .number(JSONNumber(text: String(decoding: bytes(t), as: UTF8.self)))
        case .string:
            position += 1
            return string(t).map(JSONValue.string)
        case .keyword:
            position += 1
            switch String(decoding: bytes(t), as: UTF8.self) {
            case "true": return .bool(true)
            case "false": return .bool(false)
            case "null": return .null
            case let word: fail("invalid keyword '\(word)'"); return nil
            }
        default:
            fail("expecting value")
            return nil
        }
    }

    private mutating func object() -> JSONValue? {
        _ = pop()
        var o = JSONObject()
        var keys = Set<String>()
        guard let first = peek else { fail("premature EOI"); return nil }
        if first.kind == .rcurly { _ = pop(); return .object(o) }
        guard pair(&o, &keys) else { return nil }
        guard var t = pop() else { fail("premature EOI"); return nil }
        while t.kind != .rcurly {
            guard t.kind == .comma else { fail("expected separator in dict"); return nil }
            guard pair(&o, &keys) else { return nil }
            guard let next = pop() else { fail("premature EOI"); return nil }
            t = next
        }
        return .object(o)
    }

    private mutating func pair(_ o: inout JSONObject, _ keys: inout Set<String>) -> Bool {
        guard peek != nil else { fail("premature EOI"); return false }
        guard case .string(let key)? = value() else { fail("key is not a string in object"); return false }
        guard let colon = pop() else { fail("premature EOI"); return false }
        guard colon.kind == .colon else { fail("missing : in object pair"); return false }
        guard let v = value() else { fail("Missing value in dict"); return false }
        guard keys.insert(key).inserted else { fail("duplicate key"); return false }
        o.members.append(JSONObject.Member(key: key, value: v))
        return true
    }

    private mutating func array() -> JSONValue? {
        _ = pop()
        var items: [JSONValue] = []
        guard let first = peek else { fail("premature EOI"); return nil }
        if first.kind == .rsquare { _ = pop(); return .array(items) }
        guard let v = value() else { fail("expecting value"); return nil }
        items.append(v)
        guard var t = pop() else { fail("premature EOI"); return nil }
        while t.kind != .rsquare {
            guard t.kind == .comma else { fail("expected separator in list"); return nil }
            guard let v = value() else { fail("expecting value"); return nil }
            items.append(v)
            guard let next = pop() else { fail("premature EOI"); return nil }
            t = next
        }
        return .array(items)
    }

    /// A string token (with its quotes) decoded as QEMU does: escapes including `\'`,
    /// surrogate pairs, modified UTF-8 (`C0 80` is U+0000); noncharacters, lone surrogates
    /// and malformed UTF-8 are errors.
    private mutating func string(_ t: QMPInputParser.Token) -> String? {
        let b = bytes(t)
        var i = b.startIndex + 1
        let end = b.endIndex - 1
        var scalars = String.UnicodeScalarView()
        while i < end {
            let c = b[i]
            if c == 0x5C {
                let beg = i
                i += 1
                let e = b[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "'"): scalars.append("'")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{8}")
                case UInt8(ascii: "f"): scalars.append("\u{C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    var cp = hex4(b, i)
                    i += 4
                    if cp >= 0xD800 && cp <= 0xDBFF && i + 1 < end && b[i] == 0x5C && b[i + 1] == UInt8(ascii: "u") {
                        let trail = hex4(b, i + 2)
                        if trail >= 0xDC00 && trail <= 0xDFFF {
                            cp = 0x10000 + ((cp & 0x3FF) << 10) | (trail & 0x3FF)
                            i += 6
                        } else {
                            cp = -1
                        }
                    }
                    guard QEMUText.isValid(cp), let u = Unicode.Scalar(UInt32(cp)) else {
                        let shown = b[beg..<min(i, b.endIndex)].prefix { $0 != 0 }
                        fail("\(String(decoding: shown, as: UTF8.self)) is not a valid Unicode character")
                        return nil
                    }
                    scalars.append(u)
                default:
                    fail("invalid escape sequence in string")
                    return nil
                }
            } else {
                let (cp, next) = QEMUText.codepoint(b, i, limit: end)
                guard cp >= 0, let u = Unicode.Scalar(UInt32(cp)) else { fail("invalid UTF-8 sequence in string"); return nil }
                scalars.append(u)
                i = next
            }
        }
        return String(scalars)
    }

    /// Four hex digits at `i`, or -1.
    private func hex4(_ b: ArraySlice<UInt8>, _ i: Int) -> Int {
        var v = 0
        for k in 0..<4 {
            guard i + k < b.endIndex else { return -1 }
            let c = b[i + k]
            let d: Int
            switch c {
            case 0x30...0x39: d = Int(c) - 0x30
            case 0x41...0x46: d = Int(c) - 0x41 + 10
            case 0x61...0x66: d = Int(c) - 0x61 + 10
            default: return -1
            }
            v = v << 4 | d
        }
        return v
    }
}

/// QEMU's reading of byte strings as modified UTF-8 (docs/QEMU-FACTS.md, "QEMU's JSON
/// writer"): used to decode strings and to turn raw input bytes quoted in error texts into
/// what QEMU writes (each malformed sequence becomes U+FFFD).
public enum QEMUText {
    /// A code point QEMU accepts: in range, not a surrogate, not one of the 66 noncharacters.
    public static func isValid(_ cp: Int) -> Bool {
        guard cp >= 0 && cp <= 0x10FFFF else { return false }
        if cp >= 0xD800 && cp <= 0xDFFF { return false }
        if (cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE { return false }
        return true
    }

    /// The code point starting at `i` (or -1 when malformed) and where the next one starts:
    /// after a bad lead byte or stray continuation byte, one byte on; after a short sequence,
    /// after the continuation bytes that were there; overlong forms are malformed except
    /// `C0 80` (U+0000).
    public static func codepoint<C: RandomAccessCollection>(_ b: C, _ i: C.Index, limit: C.Index) -> (Int, C.Index)
    where C.Element == UInt8 {
        let lead = b[i]
        var p = b.index(after: i)
        if lead < 0x80 { return (Int(lead), p) }
        if lead >= 0xFE || lead & 0x40 == 0 { return (-1, p) }
        var len = 0
        var mask: UInt8 = 0x80
        while lead & mask != 0 { len += 1; mask >>= 1 }
        var cp = Int(lead & (mask &- 1))
        for _ in 1..<len {
            guard p < limit, b[p] & 0xC0 == 0x80 else { return (-1, p) }
            cp = cp << 6 | Int(b[p] & 0x3F)
            p = b.index(after: p)
        }
        let minimum = [0x80, 0x800, 0x10000, 0x200000, 0x400_0000][len - 2]
        if !isValid(cp) { return (-1, p) }
        if cp < minimum && !(cp == 0 && len == 2) { return (-1, p) }
        return (cp, p)
    }

    /// Bytes as QEMU's writer sees them: well-formed sequences as their code points, each
    /// malformed one as U+FFFD.
    public static func decode(_ bytes: [UInt8]) -> String {
        var scalars = String.UnicodeScalarView()
        var i = 0
        while i < bytes.count {
            let (cp, next) = codepoint(bytes, i, limit: bytes.count)
            scalars.append(cp >= 0 ? Unicode.Scalar(UInt32(cp))! : "\u{FFFD}")
            i = next
        }
        return String(scalars)
    }
}
