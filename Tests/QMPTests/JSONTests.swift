import QMP
import Testing

// MARK: - Helpers

/// The error the parser gives for `bytes`, or `nil` when it accepts them.
private func parseError(_ bytes: [UInt8]) -> JSONParseError? {
    do {
        _ = try JSONParser.parse(bytes)
        return nil
    } catch {
        return error
    }
}

private func parseError(_ text: String) -> JSONParseError? { parseError(Array(text.utf8)) }

private func num(_ text: String) -> JSONValue { .number(JSONNumber(text: text)) }

// MARK: - Parser: value types

@Suite("JSON parser: values")
struct JSONParserValueTests {
    @Test("scalars parse to the right case", arguments: [
        ("null", JSONValue.null),
        ("true", .bool(true)),
        ("false", .bool(false)),
        ("0", .int(0)),
        ("-1", .int(-1)),
        ("\"\"", .string("")),
        ("\"qmp\"", .string("qmp")),
        ("[]", .array([])),
        ("{}", .object(JSONObject())),
    ])
    func scalars(text: String, expected: JSONValue) throws {
        #expect(try JSONParser.parse(text) == expected)
    }

    @Test("surrounding whitespace (space, tab, CR, LF) is allowed")
    func whitespace() throws {
        let v = try JSONParser.parse(" \t\r\n {\r\n\t\"a\" :\n [ 1 ,\t2 ] } \r\n")
        #expect(v == .object(JSONObject(["a": .array([.int(1), .int(2)])])))
    }

    @Test("numbers keep their source text", arguments: [
        "0", "-0", "1", "-17", "3.25", "-0.5", "1e3", "1E3", "1e+3", "1e-3", "-2.5E-10", "0.000001", "1.0",
        "10737418240", "9223372036853727232", "18446744073709551615", "123456789012345678901234567890",
    ])
    func numberText(text: String) throws {
        let v = try JSONParser.parse(text)
        guard case .number(let n) = v else {
            Issue.record("\(text) did not parse as a number: \(v)")
            return
        }
        #expect(n.text == text)
        #expect(v.serialized() == text)
    }

    @Test("big integers stay exact")
    func bigIntegers() throws {
        let v = try JSONParser.parse(#"{"len": 10737418240, "a": 9223372036853727232, "b": 18446744073709551615}"#)
        #expect(v["len"]?.int64Value == 10_737_418_240)
        #expect(v["a"]?.int64Value == 9_223_372_036_853_727_232)
        #expect(v["a"]?.numberValue?.text == "9223372036853727232")
        // Beyond Int64: no lossy Int64, but the text and UInt64 are exact.
        #expect(v["b"]?.int64Value == nil)
        #expect(v["b"]?.numberValue?.uint64 == UInt64.max)
        #expect(v["b"]?.numberValue?.text == "18446744073709551615")
        #expect(v.serialized(.qemu) == #"{"len": 10737418240, "a": 9223372036853727232, "b": 18446744073709551615}"#)
        #expect(v["b"]?.typeName == "int")
    }

    @Test("integer accessors")
    func integerAccessors() {
        #expect(JSONNumber(text: "1e3").int64 == 1000)
        #expect(JSONNumber(text: "1.0").int64 == 1)
        #expect(JSONNumber(text: "1.5").int64 == nil)
        #expect(JSONNumber(text: "1e400").int64 == nil)
        #expect(JSONNumber(text: "-42").int64 == -42)
        #expect(JSONNumber(text: "1.5").double == 1.5)
        #expect(JSONNumber(text: "-1").uint64 == nil)
        #expect(JSONNumber(text: "1").isInteger)
        #expect(!JSONNumber(text: "1.0").isInteger)
        #expect(!JSONNumber(text: "1e2").isInteger)
    }

    @Test("type names follow QEMU's json-* names")
    func typeNames() throws {
        let v = try JSONParser.parse(#"[null, true, 1, 1.5, 1e2, "s", [], {}]"#)
        #expect(v.arrayValue?.map(\.typeName) == ["null", "bool", "int", "number", "number", "string", "array", "object"])
    }

    @Test("nested structure and accessors")
    func nested() throws {
        let v = try JSONParser.parse(#"{"return": [{"name": "a", "ok": true, "n": null, "f": 2.5}, [1, [2, [3]]]]}"#)
        let first = v["return"]?.arrayValue?.first
        #expect(first?["name"]?.stringValue == "a")
        #expect(first?["ok"]?.boolValue == true)
        #expect(first?["n"]?.isNull == true)
        #expect(first?["f"]?.doubleValue == 2.5)
        #expect(first?["missing"] == nil)
        #expect(v["return"]?.arrayValue?.count == 2)
        #expect(v["return"]?["name"] == nil)  // subscript on an array is nil
        #expect(JSONValue.string("x")["a"] == nil)
    }

    @Test("raw UTF-8 passes through unchanged")
    func rawUTF8() throws {
        #expect(try JSONParser.parse("\"héllo €𝄞 日本\"") == .string("héllo €𝄞 日本"))
        #expect(try JSONParser.parse("\"\u{7F}\"") == .string("\u{7F}"))
    }

    @Test("all entry points agree")
    func entryPoints() throws {
        let text = #"{"a": [1, "b"]}"#
        let bytes = Array(text.utf8)
        let fromString = try JSONParser.parse(text)
        let fromBytes = try JSONParser.parse(bytes)
        let fromBuffer = try bytes.withUnsafeBufferPointer { buf throws(JSONParseError) in try JSONParser.parse(buf) }
        let fromRaw = try bytes.withUnsafeBytes { buf throws(JSONParseError) in try JSONParser.parse(buf) }
        #expect(fromString == fromBytes)
        #expect(fromBuffer == fromBytes)
        #expect(fromRaw == fromBytes)
    }
}

// MARK: - Parser: escapes

@Suite("JSON parser: escapes")
struct JSONParserEscapeTests {
    @Test("simple escapes", arguments: [
        (#""\"""#, "\""),
        (#""\\""#, "\\"),
        (#""\/""#, "/"),
        (#""\b""#, "\u{08}"),
        (#""\f""#, "\u{0C}"),
        (#""\n""#, "\n"),
        (#""\r""#, "\r"),
        (#""\t""#, "\t"),
        (#""a\"b\\c\/d\ne""#, "a\"b\\c/d\ne"),
        (#""info \"}{\" [x]""#, "info \"}{\" [x]"),
    ])
    func simple(text: String, expected: String) throws {
        #expect(try JSONParser.parse(text) == .string(expected))
    }

    @Test("\\u escapes including surrogate pairs", arguments: [
        (#""\u0041""#, "A"),
        (#""\u0000""#, "\u{0}"),
        (#""\u001f""#, "\u{1F}"),
        (#""\u00e9""#, "é"),
        (#""\u00E9""#, "é"),
        (#""\u20ac""#, "€"),
        (#""\uffff""#, "\u{FFFF}"),
        (#""\ud83d\ude00""#, "😀"),
        (#""\uD834\uDD1E""#, "𝄞"),
        (#""\udbff\udfff""#, "\u{10FFFF}"),
        (#""\ud800\udc00""#, "\u{10000}"),
        (#""x\u0041y\ud83d\ude00z""#, "xAy😀z"),
    ])
    func unicode(text: String, expected: String) throws {
        #expect(try JSONParser.parse(text) == .string(expected))
    }

    @Test("escaped text in member names")
    func escapedKey() throws {
        let v = try JSONParser.parse(#"{"a\u0062\n": 1}"#)
        #expect(v.objectValue?.keys == ["ab\n"])
    }
}

// MARK: - Parser: invalid input

@Suite("JSON parser: invalid input")
struct JSONParserErrorTests {
    /// (input, byte offset of the error)
    @Test("invalid texts are rejected with the offset of the problem", arguments: [
        ("", 0),
        ("   ", 3),
        ("[1,2,]", 5),
        (#"{"a":1,}"#, 7),
        ("[,1]", 1),
        ("[1 2]", 3),
        (#"{"a" 1}"#, 5),
        (#"{"a":1 "b":2}"#, 7),
        ("{a:1}", 1),
        ("{'a':1}", 1),
        ("[", 1),
        ("{", 1),
        (#"{"a":1"#, 6),
        ("[1,2", 4),
        (#""abc"#, 4),
        (#"{"a": "abc}"#, 11),
        ("\"a\nb\"", 2),
        ("\"a\tb\"", 2),
        ("\"\u{1}\"", 1),
        ("\"\\\u{1F}\"", 3),
        (#""\u0041"#, 7),
        (#""\q""#, 3),
        (#""\x41""#, 3),
        (#""\u12""#, 3),
        (#""\u12G4""#, 5),
        (#""\ud800""#, 7),
        (#""\ud800x""#, 7),
        (#""\ud800\u0041""#, 13),
        (#""\ud800\ud800""#, 13),
        (#""\udc00""#, 7),
        ("01", 1),
        ("-", 1),
        ("-a", 1),
        ("1.", 2),
        ("1.e3", 2),
        ("1e", 2),
        ("1e+", 3),
        (".5", 0),
        ("+1", 0),
        ("0x10", 1),
        ("NaN", 0),
        ("Infinity", 0),
        ("-Infinity", 1),
        ("tru", 0),
        ("nul", 0),
        ("trUe", 0),
        ("True", 0),
        ("[1]x", 3),
        (#"{"a":1}}"#, 7),
        ("{} {}", 3),
        ("1 2", 2),
        ("\u{FEFF}{}", 0),
    ])
    func rejected(text: String, offset: Int) {
        let e = parseError(text)
        #expect(e != nil, "accepted \(text.debugDescription)")
        #expect(e?.offset == offset, "\(text.debugDescription): \(e.map(String.init(describing:)) ?? "no error")")
        if let e { #expect(!e.reason.isEmpty) }
    }

    @Test("error descriptions name the offset")
    func description() {
        let e = parseError("[1,]")
        #expect(e?.description == "\(e?.reason ?? "") at byte 3")
    }

    @Test("reasons say what went wrong", arguments: [
        ("[1,2,]", "unexpected character"),
        (#""abc"#, "unterminated string"),
        ("\"a\nb\"", "control character"),
        ("1.", "fraction"),
        ("1e", "exponent"),
        (#""\ud800""#, "surrogate"),
        ("[1]x", "after the JSON text"),
    ])
    func reasons(text: String, fragment: String) {
        let reason = parseError(text)?.reason ?? ""
        #expect(reason.contains(fragment), "\(text.debugDescription): \(reason)")
    }

    @Test("invalid UTF-8 is rejected", arguments: [
        [0x22, 0xFF, 0x22],  // never valid in UTF-8
        [0x22, 0xC0, 0xAF, 0x22],  // overlong "/"
        [0x22, 0xE2, 0x82, 0x22],  // truncated sequence
        [0x22, 0xED, 0xA0, 0x80, 0x22],  // UTF-16 surrogate encoded in UTF-8
        [0x22, 0x80, 0x22],  // lone continuation byte
        [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // above U+10FFFF
        [0x7B, 0x22, 0x61, 0xFF, 0x22, 0x3A, 0x31, 0x7D],  // in a member name
        [0x22, 0x5C, 0x6E, 0xFF, 0x22],  // after an escape (slow path)
    ] as [[UInt8]])
    func invalidUTF8(bytes: [UInt8]) {
        let e = parseError(bytes)
        #expect(e != nil)
        #expect(e?.reason.contains("UTF-8") == true, "\(e.map(String.init(describing:)) ?? "accepted")")
    }

    /// The offset of an invalid-UTF-8 error should point into the offending string, whichever
    /// path of the string scanner found it.
    @Test("invalid UTF-8 offset points into the string", arguments: [
        // (bytes, index of the opening quote, index of the closing quote)
        ([0x22, 0xFF, 0x22], 0, 2),
        ([0x5B, 0x31, 0x2C, 0x22, 0x61, 0xFF, 0x22, 0x5D], 3, 6),
        ([0x22, 0x5C, 0x6E, 0xFF, 0x22], 0, 4),
        ([0x5B, 0x22, 0x5C, 0x74, 0x61, 0xC3, 0x22, 0x5D], 1, 6),
    ] as [([UInt8], Int, Int)])
    func invalidUTF8Offset(bytes: [UInt8], open: Int, close: Int) {
        let e = parseError(bytes)
        #expect(e != nil)
        if let e {
            #expect(e.offset >= open && e.offset <= close, "offset \(e.offset) is outside the string \(open)...\(close)")
        }
    }

    @Test("nesting 100 000 deep throws instead of overflowing the stack", arguments: ["[", "{\"a\":"])
    func deepNesting(opener: String) {
        let closer = opener == "[" ? "]" : "}"
        let depth = 100_000
        let open = String(repeating: opener, count: depth)
        // Unterminated and balanced inputs must both fail on depth, not on something else.
        for text in [open, open + "1" + String(repeating: closer, count: depth)] {
            let e = parseError(text)
            #expect(e != nil)
            #expect(e?.reason.contains("nesting") == true, "\(e.map(String.init(describing:)) ?? "accepted")")
            #expect(e?.offset == JSONParser.maxDepth * opener.utf8.count)
        }
    }

    @Test("nesting up to the limit is accepted, one more is not")
    func depthBoundary() throws {
        let ok = String(repeating: "[", count: JSONParser.maxDepth) + String(repeating: "]", count: JSONParser.maxDepth)
        var v = try JSONParser.parse(ok)
        var levels = 0
        while case .array(let items) = v {
            levels += 1
            guard let first = items.first else { break }
            v = first
        }
        #expect(levels == JSONParser.maxDepth)
        let tooDeep = "[" + ok + "]"
        #expect(parseError(tooDeep)?.offset == JSONParser.maxDepth)
        // Depth is nesting, not the number of containers: many siblings are fine.
        let wide = "[" + Array(repeating: "[[]]", count: 10_000).joined(separator: ",") + "]"
        #expect(try JSONParser.parse(wide).arrayValue?.count == 10_000)
    }
}

// MARK: - Equality and order

@Suite("JSON values: order and equality")
struct JSONEqualityTests {
    @Test("member order is preserved")
    func memberOrder() throws {
        let text = #"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP", "data": {"z": 1, "a": 2, "m": 3}}"#
        let v = try JSONParser.parse(text)
        #expect(v.objectValue?.keys == ["timestamp", "event", "data"])
        #expect(v["data"]?.objectValue?.keys == ["z", "a", "m"])
        #expect(v["timestamp"]?.objectValue?.keys == ["seconds", "microseconds"])
        #expect(v.serialized(.qemu) == text)
    }

    @Test("objects compare and hash without regard to member order")
    func orderInsensitiveObjects() throws {
        let a = try JSONParser.parse(#"{"a": 1, "b": {"x": [1, 2], "y": null}}"#)
        let b = try JSONParser.parse(#"{"b": {"y": null, "x": [1, 2]}, "a": 1}"#)
        #expect(a == b)
        #expect(a.hashValue == b.hashValue)
        #expect(Set([a, b]).count == 1)
        // ... but arrays are ordered and members must match exactly.
        #expect(try JSONParser.parse("[1, 2]") != JSONParser.parse("[2, 1]"))
        #expect(try JSONParser.parse(#"{"a": 1}"#) != JSONParser.parse(#"{"a": 1, "b": 2}"#))
        #expect(try JSONParser.parse(#"{"a": 1, "b": 2}"#) != JSONParser.parse(#"{"a": 1}"#))
        #expect(try JSONParser.parse(#"{"a": 1}"#) != JSONParser.parse(#"{"b": 1}"#))
        #expect(try JSONParser.parse(#"{"a": 1}"#) != JSONParser.parse(#"{"a": 2}"#))
    }

    @Test("numbers compare numerically", arguments: [
        ("1", "1.0"), ("1", "1e0"), ("1", "10e-1"), ("100", "1E2"), ("0", "-0"), ("0", "0.0"), ("-0.0", "0"),
        ("2.50", "2.5"), ("10737418240", "1.073741824e10"),
    ])
    func numericEquality(a: String, b: String) {
        #expect(num(a) == num(b))
        #expect(num(a).hashValue == num(b).hashValue)
        #expect(Set([num(a), num(b)]).count == 1)
    }

    @Test("different numbers are different", arguments: [
        ("1", "2"), ("1", "1.5"), ("0.1", "0.2"), ("-1", "1"),
        ("9223372036853727232", "9223372036853727233"),
        ("9223372036854775807", "9223372036854775806"),
    ])
    func numericInequality(a: String, b: String) {
        #expect(num(a) != num(b))
    }

    /// Integers beyond Int64 (QEMU prints uint64 values such as sizes and offsets) must not be
    /// compared through Double, which cannot tell neighbouring values apart.
    @Test("big integers beyond Int64 are compared exactly", arguments: [
        ("18446744073709551615", "18446744073709551614"),
        ("9223372036854775808", "9223372036854775809"),
        ("-9223372036854775809", "-9223372036854775810"),
    ])
    func bigIntegerInequality(a: String, b: String) {
        #expect(num(a) != num(b), "\(a) and \(b) compare equal")
        #expect(num(a) == num(a))
    }

    /// The parser keeps duplicate member names (RFC 8259 allows it). Equality must stay
    /// symmetric for such objects, as Equatable requires.
    @Test("object equality is symmetric with duplicate member names")
    func duplicateKeys() throws {
        let dup = try JSONParser.parse(#"{"a": 1, "a": 1}"#)
        let other = try JSONParser.parse(#"{"a": 1, "b": 2}"#)
        #expect(dup.objectValue?.count == 2)
        #expect(dup["a"] == .int(1))
        #expect((other == dup) == (dup == other))
        #expect(dup != other)
    }

    @Test("values of different types never compare equal")
    func crossType() {
        #expect(JSONValue.string("1") != .int(1))
        #expect(JSONValue.bool(true) != .int(1))
        #expect(JSONValue.null != .string("null"))
        #expect(JSONValue.array([]) != .object(JSONObject()))
        #expect(JSONValue.int(Int64(5)) == .int(5))
    }

    @Test("object member editing")
    func objectEditing() {
        var o = JSONObject(["a": .int(1), "b": .int(2)])
        o["a"] = .string("x")  // replace in place
        o["c"] = .null  // append
        o["b"] = nil  // remove
        o["zzz"] = nil  // removing a missing key is a no-op
        #expect(o.keys == ["a", "c"])
        #expect(o["a"] == .string("x"))
        #expect(o.count == 2)
        #expect(!o.isEmpty)
        #expect(o.map(\.key) == ["a", "c"])
        #expect(JSONObject().isEmpty)
    }
}

// MARK: - Writer

@Suite("JSON writer")
struct JSONWriterTests {
    static let sample = #"{"a": 1, "b": [2, 3.5, {"c": null, "d": [true, false]}], "e": {}, "f": [], "g": "x\"y"}"#

    @Test("compact layout")
    func compact() throws {
        let v = try JSONParser.parse(Self.sample)
        #expect(v.serialized() == #"{"a":1,"b":[2,3.5,{"c":null,"d":[true,false]}],"e":{},"f":[],"g":"x\"y"}"#)
        #expect(v.serialized(.compact) == v.serialized())
        #expect(v.serializedBytes() == Array(v.serialized().utf8))
    }

    @Test("QEMU layout is what QEMU writes")
    func qemu() throws {
        let v = try JSONParser.parse(Self.sample)
        #expect(v.serialized(.qemu) == Self.sample)
        let event = #"{"timestamp": {"seconds": 1267020223, "microseconds": 435656}, "event": "BALLOON_CHANGE", "data": {"actual": 944766976}}"#
        #expect(try JSONParser.parse(event).serialized(.qemu) == event)
        let greeting = #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#
        #expect(try JSONParser.parse(greeting).serialized(.qemu) == greeting)
    }

    @Test("pretty layout")
    func pretty() throws {
        let v = try JSONParser.parse(#"{"a": 1, "b": [2, {"c": null}], "e": {}, "f": []}"#)
        let expected4 = """
            {
                "a": 1,
                "b": [
                    2,
                    {
                        "c": null
                    }
                ],
                "e": {},
                "f": []
            }
            """
        #expect(v.serialized(.pretty(indent: 4)) == expected4)
        let expected2 = """
            {
              "a": 1,
              "b": [
                2,
                {
                  "c": null
                }
              ],
              "e": {},
              "f": []
            }
            """
        #expect(v.serialized(.pretty(indent: 2)) == expected2)
        #expect(JSONValue.int(3).serialized(.pretty(indent: 4)) == "3")
    }

    static let roundTripTexts = [
        "null", "true", "false", "0", "-0", "1.5e-7", "\"\"", "[]", "{}",
        Self.sample,
        #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}"#,
        #"{"execute": "human-monitor-command", "arguments": {"command-line": "info \"}{\" [x]\n"}, "id": {"x": [1, 2.0, null]}}"#,
        #"{"return": [{"name": "€ \u00e9 \ud83d\ude00", "size": 18446744073709551615, "n": 10737418240}]}"#,
        #"{"s": "\u0000\u0001\b\f\n\r\t\u001f\u007f \\ / \""}"#,
        #"[[[[[[[[[[1]]]]]]]]]]"#,
    ]

    static let layouts: [JSONLayout] = [.compact, .qemu, .pretty(indent: 4), .pretty(indent: 2), .pretty(indent: 0)]

    @Test("parse(serialize(v)) == v for every layout", arguments: JSONWriterTests.roundTripTexts)
    func roundTrip(text: String) throws {
        let v = try JSONParser.parse(text)
        for layout in Self.layouts {
            let out = v.serialized(layout)
            let back = try JSONParser.parse(out)
            #expect(back == v, "\(layout): \(out)")
            // The text is stable: serializing again gives the same bytes.
            #expect(back.serialized(layout) == out)
            // Numbers keep their exact text, not just their value.
            #expect(numberTexts(back) == numberTexts(v))
        }
    }

    private func numberTexts(_ v: JSONValue) -> [String] {
        switch v {
        case .number(let n): return [n.text]
        case .array(let items): return items.flatMap(numberTexts)
        case .object(let o): return o.members.flatMap { numberTexts($0.value) }
        default: return []
        }
    }

    @Test("strings are escaped so that every code point survives")
    func stringEscaping() throws {
        var s = ""
        for c in 0..<0x80 { s.unicodeScalars.append(Unicode.Scalar(UInt8(c))) }
        s += "é€😀\u{FFFF}\u{10FFFF}"
        let v = JSONValue.string(s)
        for layout in Self.layouts {
            let text = v.serialized(layout)
            #expect(!text.utf8.contains { $0 < 0x20 }, "raw control character in \(layout)")
            #expect(try JSONParser.parse(text) == v)
        }
        #expect(JSONWriter.quoted("a\"b\\c\nd\re\tf\u{1}\u{7F}é") == #""a\"b\\c\nd\re\tf\u0001\u007fé""#)
        #expect(JSONWriter.quoted("") == #""""#)
    }

    @Test("keys are escaped too")
    func keyEscaping() throws {
        let v = JSONValue.object(JSONObject(["a\"b\n": .int(1)]))
        #expect(v.serialized() == #"{"a\"b\n":1}"#)
        #expect(try JSONParser.parse(v.serialized()) == v)
    }

    @Test("compact input is reproduced byte for byte")
    func compactIdentity() throws {
        let text = #"{"execute":"balloon","arguments":{"value":536870912},"id":"libvirt-7"}"#
        #expect(try JSONParser.parse(text).serialized(.compact) == text)
    }

    @Test("JSONValue.int builders")
    func intBuilders() {
        #expect(JSONValue.int(7).serialized() == "7")
        #expect(JSONValue.int(Int64.min).serialized() == "-9223372036854775808")
        #expect(JSONValue.int(Int64.max).int64Value == Int64.max)
    }
}

// MARK: - value(atPath:)

@Suite("JSONValue.value(atPath:)")
struct JSONPathTests {
    static let doc = #"""
        {"event": "BALLOON_CHANGE", "data": {"actual": 944766976, "nested": {"deep": [10, {"x": "y"}]}},
         "caps": ["oob", "x"], "empty": {}, "": {"blank": 1}}
        """#

    @Test("paths", arguments: [
        ("event", #""BALLOON_CHANGE""#),
        ("data.actual", "944766976"),
        ("data.nested.deep.0", "10"),
        ("data.nested.deep.1.x", #""y""#),
        ("caps.0", #""oob""#),
        ("caps.1", #""x""#),
        ("empty", "{}"),
        (".blank", "1"),
    ])
    func found(path: String, expected: String) throws {
        let v = try JSONParser.parse(Self.doc)
        let e = try JSONParser.parse(expected)
        #expect(v.value(atPath: path) == e, "\(path)")
    }

    @Test("missing paths give nil", arguments: [
        "nope", "data.nope", "data.actual.more", "caps.2", "caps.-1", "caps.x", "event.0", "data.nested.deep.9",
        "empty.x", "data..actual",
    ])
    func missing(path: String) throws {
        let v = try JSONParser.parse(Self.doc)
        #expect(v.value(atPath: path) == nil, "\(path)")
    }

    @Test("paths on scalars")
    func scalars() {
        #expect(JSONValue.int(1).value(atPath: "a") == nil)
        #expect(JSONValue.null.value(atPath: "a.b") == nil)
    }
}

@Test("fuzz find: equality of objects nested deep is linear in the depth (an id nested 60 deep compared at once)")
func deepObjectEquality() throws {
    let text = String(repeating: #"{"a":"#, count: 60) + "1" + String(repeating: "}", count: 60)
    let a = try JSONParser.parse(Array(text.utf8))
    let b = try JSONParser.parse(Array(text.utf8))
    #expect(a == b)
    let c = try JSONParser.parse(Array(text.replacingOccurrences(of: "1", with: "2").utf8))
    #expect(a != c)
}
