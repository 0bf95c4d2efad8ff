/// Why a byte sequence is not one JSON text, and where (byte offset from its start).
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let offset: Int
    public let reason: String
    public var description: String { "\(reason) at byte \(offset)" }

    public init(offset: Int, reason: String) { self.offset = offset; self.reason = reason }
}

/// A strict RFC 8259 parser working directly on bytes. It builds `JSONValue` trees,
/// so callers on hot paths (the recording index) avoid it and use targeted scanners;
/// it is used for records that are shown, validated or analysed.
///
/// Example: `try JSONParser.parse(Array(#"{"return": {}, "id": 1}"#.utf8))`.
public struct JSONParser {
    /// Deeper nesting than this is refused rather than risking the stack on hostile input.
    public static let maxDepth = 512

    private let base: UnsafePointer<UInt8>
    private let end: Int
    private var pos = 0
    private var depth = 0

    private init(base: UnsafePointer<UInt8>, count: Int) {
        self.base = base
        self.end = count
    }

    public static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        do {
            return try bytes.withUnsafeBufferPointer { try parse($0) }
        } catch let e as JSONParseError {
            throw e
        } catch {
            throw JSONParseError(offset: 0, reason: "\(error)")
        }
    }

    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try parse(Array(text.utf8))
    }

    public static func parse(_ buffer: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> JSONValue {
        guard let base = buffer.baseAddress, buffer.count > 0 else {
            throw JSONParseError(offset: 0, reason: "empty input")
        }
        var p = JSONParser(base: base, count: buffer.count)
        p.skipWhitespace()
        let v = try p.parseValue()
        p.skipWhitespace()
        if p.pos != p.end { throw JSONParseError(offset: p.pos, reason: "unexpected data after the JSON text") }
        return v
    }

    public static func parse(_ buffer: UnsafeRawBufferPointer) throws(JSONParseError) -> JSONValue {
        try parse(buffer.bindMemory(to: UInt8.self))
    }

    private func fail(_ reason: String) -> JSONParseError { JSONParseError(offset: pos, reason: reason) }

    @inline(__always) private mutating func skipWhitespace() {
        while pos < end {
            let c = base[pos]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { pos += 1 } else { return }
        }
    }

    private mutating func parseValue() throws(JSONParseError) -> JSONValue {
        guard pos < end else { throw fail("unexpected end of input") }
        switch base[pos] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw fail("unexpected character '\(printable(base[pos]))'")
        }
    }

    private mutating func literal(_ word: StaticString) throws(JSONParseError) {
        let n = word.utf8CodeUnitCount
        guard end - pos >= n else { throw fail("truncated literal") }
        let w = word.utf8Start
        for i in 0..<n where base[pos + i] != w[i] { throw fail("invalid literal") }
        pos += n
    }

    private mutating func parseObject() throws(JSONParseError) -> JSONValue {
        depth += 1
        if depth > JSONParser.maxDepth { throw fail("nesting deeper than \(JSONParser.maxDepth)") }
        pos += 1
        var members: [JSONObject.Member] = []
        skipWhitespace()
        if pos < end && base[pos] == UInt8(ascii: "}") {
            pos += 1; depth -= 1
            return .object(JSONObject(members))
        }
        while true {
            skipWhitespace()
            guard pos < end else { throw fail("unterminated object") }
            guard base[pos] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
            let key = try parseString()
            skipWhitespace()
            guard pos < end, base[pos] == UInt8(ascii: ":") else { throw fail("expected ':' after member name") }
            pos += 1
            skipWhitespace()
            let value = try parseValue()
            members.append(JSONObject.Member(key: key, value: value))
            skipWhitespace()
            guard pos < end else { throw fail("unterminated object") }
            if base[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if base[pos] == UInt8(ascii: "}") { pos += 1; break }
            throw fail("expected ',' or '}' in object")
        }
        depth -= 1
        return .object(JSONObject(members))
    }

    private mutating func parseArray() throws(JSONParseError) -> JSONValue {
        depth += 1
        if depth > JSONParser.maxDepth { throw fail("nesting deeper than \(JSONParser.maxDepth)") }
        pos += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if pos < end && base[pos] == UInt8(ascii: "]") {
            pos += 1; depth -= 1
            return .array(items)
        }
        while true {
            skipWhitespace()
            items.append(try parseValue())
            skipWhitespace()
            guard pos < end else { throw fail("unterminated array") }
            if base[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if base[pos] == UInt8(ascii: "]") { pos += 1; break }
            throw fail("expected ',' or ']' in array")
        }
        depth -= 1
        return .array(items)
    }

    private mutating func parseNumber() throws(JSONParseError) -> JSONNumber {
        let start = pos
        if base[pos] == UInt8(ascii: "-") { pos += 1 }
        guard pos < end, isDigit(base[pos]) else { throw fail("invalid number") }
        if base[pos] == UInt8(ascii: "0") {
            pos += 1
        } else {
            while pos < end && isDigit(base[pos]) { pos += 1 }
        }
        if pos < end && base[pos] == UInt8(ascii: ".") {
            pos += 1
            guard pos < end, isDigit(base[pos]) else { throw fail("invalid fraction") }
            while pos < end && isDigit(base[pos]) { pos += 1 }
        }
        if pos < end && (base[pos] == UInt8(ascii: "e") || base[pos] == UInt8(ascii: "E")) {
            pos += 1
            if pos < end && (base[pos] == UInt8(ascii: "+") || base[pos] == UInt8(ascii: "-")) { pos += 1 }
            guard pos < end, isDigit(base[pos]) else { throw fail("invalid exponent") }
            while pos < end && isDigit(base[pos]) { pos += 1 }
        }
        let text = String(decoding: UnsafeBufferPointer(start: base + start, count: pos - start), as: UTF8.self)
        return JSONNumber(text: text)
    }

    private mutating func parseString() throws(JSONParseError) -> String {
        pos += 1  // opening quote
        let start = pos
        // Fast path: no escapes, pure bytes until the closing quote.
        while pos < end {
            let c = base[pos]
            if c == UInt8(ascii: "\"") {
                let s = try makeString(start, pos)
                pos += 1
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw fail("control character in string") }
            pos += 1
        }
        var bytes = Array(UnsafeBufferPointer(start: base + start, count: pos - start))
        while pos < end {
            let c = base[pos]
            if c == UInt8(ascii: "\"") {
                pos += 1
                return try makeString(bytes, start: start)
            }
            if c < 0x20 { throw fail("control character in string") }
            if c != UInt8(ascii: "\\") {
                bytes.append(c); pos += 1; continue
            }
            pos += 1
            guard pos < end else { break }
            let e = base[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""): bytes.append(0x22)
            case UInt8(ascii: "\\"): bytes.append(0x5C)
            case UInt8(ascii: "/"): bytes.append(0x2F)
            case UInt8(ascii: "b"): bytes.append(0x08)
            case UInt8(ascii: "f"): bytes.append(0x0C)
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    if end - pos >= 6 && base[pos] == UInt8(ascii: "\\") && base[pos + 1] == UInt8(ascii: "u") {
                        pos += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("invalid surrogate pair") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        throw fail("unpaired surrogate")
                    }
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw fail("unpaired surrogate")
                }
                appendUTF8(scalar, to: &bytes)
            default:
                throw fail("invalid escape '\\\(printable(e))'")
            }
        }
        throw fail("unterminated string")
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard end - pos >= 4 else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = base[pos]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("invalid \\u escape")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }

    private func makeString(_ from: Int, _ to: Int) throws(JSONParseError) -> String {
        let buf = UnsafeBufferPointer(start: base + from, count: to - from)
        // QMP text is almost always ASCII, which needs no validation.
        var high: UInt8 = 0
        for c in buf { high |= c }
        if high < 0x80 { return String(decoding: buf, as: UTF8.self) }
        guard let s = String(validating: buf, as: UTF8.self) else {
            throw JSONParseError(offset: from, reason: "invalid UTF-8 in string")
        }
        return s
    }

    private func makeString(_ bytes: [UInt8], start: Int) throws(JSONParseError) -> String {
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw JSONParseError(offset: start, reason: "invalid UTF-8 in string")
        }
        return s
    }
}

@inline(__always) func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

func printable(_ c: UInt8) -> String {
    c >= 0x20 && c < 0x7F ? String(UnicodeScalar(c)) : hexByte(c)
}

func hexByte(_ c: UInt8) -> String {
    let hex = Array("0123456789abcdef")
    return "\\x" + String(hex[Int(c >> 4)]) + String(hex[Int(c & 15)])
}

func appendUTF8(_ scalar: UInt32, to bytes: inout [UInt8]) {
    switch scalar {
    case 0..<0x80:
        bytes.append(UInt8(scalar))
    case 0x80..<0x800:
        bytes.append(UInt8(0xC0 | (scalar >> 6)))
        bytes.append(UInt8(0x80 | (scalar & 0x3F)))
    case 0x800..<0x10000:
        bytes.append(UInt8(0xE0 | (scalar >> 12)))
        bytes.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
        bytes.append(UInt8(0x80 | (scalar & 0x3F)))
    default:
        bytes.append(UInt8(0xF0 | (scalar >> 18)))
        bytes.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
        bytes.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
        bytes.append(UInt8(0x80 | (scalar & 0x3F)))
    }
}
