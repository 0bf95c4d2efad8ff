import QMP
import Testing

/// QEMU's monitor input and output rules, each expectation observed on qemu-system-x86_64
/// 7.2.22 (docs/QEMU-FACTS.md, "QEMU's JSON lexer and streamer", "QEMU's JSON parser",
/// "QEMU's JSON writer", "QEMU's dictionaries"); the differential test
/// (Tests/Integration/test_replay_differential.py) checks the same against the real QEMU.
struct QEMUInputTests {
    func items(_ s: String, _ p: inout QMPInputParser) -> [QMPInputParser.Item] { p.push(Array(s.utf8)) }
    func items(_ b: [UInt8]) -> [QMPInputParser.Item] {
        var p = QMPInputParser()
        return p.push(b)
    }
    func errors(_ s: String) -> [String] {
        items(Array(s.utf8)).compactMap { if case .error(let e) = $0 { return e } else { return nil } }
    }

    @Test func topLevelScalarsAreRequestsOnceComplete() {
        var p = QMPInputParser()
        #expect(items("42", &p).isEmpty)  // a number ends only at the next byte
        #expect(items(" ", &p) == [.value(.int(42))])
        #expect(items("\"str\"\n3.5\n[]\ntrue\n", &p) == [.value(.string("str")), .value(.number(JSONNumber(text: "3.5"))),
                                                             .value(.array([])), .value(.bool(true))])
        // A message needs no newline.
        #expect(items(#"{"execute":"x"}"#, &p).count == 1)
    }

    @Test func lexicalErrorsAndRecovery() {
        #expect(errors("garbage here\n") == ["JSON parse error, invalid keyword 'garbage'", "JSON parse error, invalid keyword 'here'"])
        #expect(errors("\u{1}\n") == ["JSON parse error, stray '\u{1}'"])
        #expect(errors("01\n") == ["JSON parse error, stray '01'"])
        #expect(errors("-x\n") == ["JSON parse error, stray '-x'"])
        #expect(errors("%\n") == ["JSON parse error, stray '%'"])
        #expect(errors("'abc\n") == ["JSON parse error, stray ''abc\n'"])
        // A NUL ends the quoted token (QEMU's token is a C string); malformed UTF-8 is U+FFFD.
        #expect(errors("\0\n") == ["JSON parse error, stray ''"])
        #expect(items([0xC3, 0xA9, 0x0A]) == [.error("JSON parse error, stray '\u{FFFD}'")])
        // After an error input is skipped up to a control character, a structural character
        // or 0xFE/0xFF: three errors here, the rest of the line skipped.
        #expect(items([0xFF, 0xFE, 0x00] + Array(" binary\n".utf8)).count == 3)
        // Recovery swallows a string that follows on the same line.
        #expect(errors("% \"ab\u{1}c\"\n") == ["JSON parse error, stray '%'", "JSON parse error, stray '\u{1}'"])
    }

    @Test func parserErrorsFirstOneWins() {
        #expect(errors(#"{"a": [foo]}"#) == ["JSON parse error, invalid keyword 'foo'"])
        #expect(errors("[}\n]\n") == ["JSON parse error, expecting value", "JSON parse error, expecting value"])
        #expect(errors(#"{"a" 1}"#) == ["JSON parse error, missing : in object pair"])
        #expect(errors(#"{"a":1,"a":2}"#) == ["JSON parse error, duplicate key"])
        #expect(errors(#"{1:2}"#) == ["JSON parse error, key is not a string in object"])
        #expect(errors(#"{"a":1 "b":2}"#) == ["JSON parse error, expected separator in dict"])
        #expect(errors(#"["\ud800"]"#) == [#"JSON parse error, \ud800 is not a valid Unicode character"#])
        #expect(errors(#"["\uFDD0"]"#) == [#"JSON parse error, \uFDD0 is not a valid Unicode character"#])
        #expect(items(Array(#"[""#.utf8) + [0xED, 0xA0, 0x80] + Array(#""]"#.utf8)) == [.error("JSON parse error, invalid UTF-8 sequence in string")])
    }

    @Test func keywordErrorsAreCutTo1023Bytes() {
        let e = errors(String(repeating: "a", count: 100_000) + "\n")
        #expect(e.count == 1)
        #expect(e[0].utf8.count == 18 + 1023)
        #expect(e[0].hasPrefix("JSON parse error, invalid keyword 'aaa"))
    }

    @Test func stringsAsQEMUReadsThem() {
        let v = items(Array(#"['it\'s', "\u00e9\b\/", "\ud83d\ude00"]"#.utf8) + [0x20])
        #expect(v == [.value(.array([.string("it's"), .string("é\u{8}/"), .string("😀")]))])
        // Modified UTF-8: C0 80 is U+0000.
        #expect(items(Array(#"[""#.utf8) + [0xC0, 0x80] + Array(#""]"#.utf8)) == [.value(.array([.string("\u{0}")]))])
    }

    @Test func limitsUseQEMUsTexts() {
        var p = QMPInputParser(tokenSizeLimit: 100)
        let out = items(#"{"s":""# + String(repeating: "a", count: 150) + "\"}\n", &p)
        #expect(out == [.error("JSON token size limit exceeded"),
                        .error("JSON parse error, invalid keyword '" + String(repeating: "a", count: 50) + "'"),
                        .error("JSON parse error, stray '\"}\n'")])
        var q = QMPInputParser(nestingLimit: 3)
        #expect(items("[[[[1]]]]\n", &q).first == .error("JSON nesting depth limit exceeded"))
        var r = QMPInputParser(tokenCountLimit: 4)
        #expect(items("[1,2,3]\n", &r).first == .error("JSON token count limit exceeded"))
    }

    @Test func longMessagesAreNotKeptBeyondTheRetainLimit() {
        var p = QMPInputParser(retainLimit: 1024)
        let out = items(#"{"execute":"x","arguments":{"s":""# + String(repeating: "a", count: 10_000) + "\"}}\n", &p)
        #expect(out == [.overlong])
        #expect(p.pendingByteCount < 2048)
        #expect(items(#"{"execute":"y"}"#, &p).count == 1)
    }

    @Test func writerEscapesAndNumbersAsQEMU() {
        func w(_ v: JSONValue) -> String { String(decoding: QEMUJSONWriter.bytes(v, qdictOrder: true), as: UTF8.self) }
        #expect(w(.string("é\u{8}/\u{7F}\u{0}😀\"\\")) == #""\u00E9\b/\u007F\u0000\uD83D\uDE00\"\\""#)
        for (text, qemu) in [("1.50", "1.5"), ("1e2", "100"), ("1E+2", "100"), ("-0", "0"), ("-0.0", "-0"), ("0.1", "0.10000000000000001"),
                             ("18446744073709551615", "18446744073709551615"), ("18446744073709551616", "1.8446744073709552e+19"),
                             ("-9223372036854775809", "-9.2233720368547758e+18"), ("1e999", "inf")] {
            #expect(w(.number(JSONNumber(text: text))) == qemu)
        }
    }

    @Test func dictionaryOrderIsQEMUs() {
        func w(_ s: String) -> String {
            var p = QMPInputParser()
            guard case .value(let v)? = p.push(Array(s.utf8)).first else { return "" }
            return String(decoding: QEMUJSONWriter.bytes(v, qdictOrder: true), as: UTF8.self)
        }
        #expect(w(#"{"a":1,"b":2,"c":3,"id":4,"zz":[1,{"y":1,"x":2}]}"#) == #"{"a": 1, "zz": [1, {"x": 2, "y": 1}], "b": 2, "c": 3, "id": 4}"#)
        #expect(w(#"{"id":1,"return":{}}"#) == #"{"return": {}, "id": 1}"#)
        #expect(w(#"{"error":{"desc":"d","class":"c"},"id":1}"#) == #"{"id": 1, "error": {"class": "c", "desc": "d"}}"#)
        #expect(w(#"{"data":{"reason":"r","guest":false},"event":"SHUTDOWN","timestamp":{"microseconds":1,"seconds":2}}"#)
                == #"{"timestamp": {"seconds": 2, "microseconds": 1}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "r"}}"#)
    }

    /// Arbitrary bytes, in arbitrary chunks: no trap, and the same items whatever the chunking.
    @Test func anyBytesAnyChunking() {
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 { seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17; return seed }
        let alphabet = Array(#"{}[],:"'\ueE.-+0123456789abcdeflnrstux/ \#n"#.utf8) + [0x00, 0x01, 0x0A, 0xC3, 0xA9, 0xED, 0xFE, 0xFF, 0xF0, 0x80]
        for _ in 0..<2000 {
            let n = Int(next() % 60)
            let bytes = (0..<n).map { _ in alphabet[Int(next() % UInt64(alphabet.count))] } + [0x0A]
            var whole = QMPInputParser(retainLimit: 64, tokenSizeLimit: 40)
            let a = whole.push(bytes)
            var pieces = QMPInputParser(retainLimit: 64, tokenSizeLimit: 40)
            var b: [QMPInputParser.Item] = []
            var i = 0
            while i < bytes.count {
                let k = min(bytes.count, i + 1 + Int(next() % 5))
                b += pieces.push(bytes[i..<k])
                i = k
            }
            #expect(a == b, "\(bytes)")
        }
    }
}
