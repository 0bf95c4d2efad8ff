import QMP
import Testing

// MARK: - Helpers

private func utf8(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Feeds `chunks` in order, then ends the stream.
private func frames(_ chunks: [[UInt8]], limit: Int = QMPFramer.defaultLimit) -> [Frame] {
    var framer = QMPFramer(limit: limit)
    var out: [Frame] = []
    for chunk in chunks { out += framer.push(chunk) }
    out += framer.finish()
    return out
}

private func frames(_ input: [UInt8], limit: Int = QMPFramer.defaultLimit) -> [Frame] {
    frames([input], limit: limit)
}

private func payloadText(_ f: Frame) -> String { String(decoding: f.bytes[f.payload], as: UTF8.self) }

/// Where to split `input` in two. Every offset for ordinary inputs; for the 10 kB inputs of the
/// limit tests (each split refeeds the whole input) a dense sample: every offset around limit
/// multiples, line ends and the start and end, plus every 37th offset, to keep the run short.
private func splitOffsets(_ input: [UInt8], limit: Int) -> [Int] {
    if input.count <= 3000 { return Array(0...input.count) }
    var cuts = Set(stride(from: 0, through: input.count, by: 37))
    var marks = [0, input.count]
    marks += stride(from: limit, through: input.count, by: limit)
    marks += input.indices.filter { input[$0] == 0x0A || input[$0] == UInt8(ascii: "{") }.prefix(200)
    for m in marks {
        for d in -3...3 where m + d >= 0 && m + d <= input.count { cuts.insert(m + d) }
    }
    return cuts.sorted()
}

/// Checks the framer's central promises for `input`: the frames do not depend on how the
/// stream is chunked (every two-chunk split, one byte at a time, with empty chunks mixed in),
/// and the frames' bytes put together are the input exactly. Returns the reference frames.
@discardableResult
private func checkChunkingInvariance(
    _ input: [UInt8], limit: Int = QMPFramer.defaultLimit, sourceLocation: SourceLocation = #_sourceLocation
) -> [Frame] {
    let reference = frames(input, limit: limit)
    #expect(reference.flatMap(\.bytes) == input, "frame bytes do not add up to the input", sourceLocation: sourceLocation)
    for f in reference {
        #expect(f.payload.lowerBound >= 0 && f.payload.upperBound <= f.bytes.count, sourceLocation: sourceLocation)
    }

    var badSplits: [Int] = []
    for cut in splitOffsets(input, limit: limit) {
        let got = frames([Array(input[..<cut]), Array(input[cut...])], limit: limit)
        if got != reference { badSplits.append(cut) }
        if got.flatMap(\.bytes) != input { badSplits.append(cut) }
    }
    #expect(badSplits.isEmpty, "different frames when split at \(badSplits.prefix(10))", sourceLocation: sourceLocation)

    let byteByByte = frames(input.map { [$0] }, limit: limit)
    #expect(byteByByte == reference, "different frames when fed one byte at a time", sourceLocation: sourceLocation)

    // Empty chunks change nothing; uneven chunk sizes neither.
    var chunks: [[UInt8]] = []
    var i = 0
    var size = 1
    while i < input.count {
        let j = min(input.count, i + size)
        chunks.append([])
        chunks.append(Array(input[i..<j]))
        i = j
        size = size % 13 + 2
    }
    #expect(frames(chunks, limit: limit) == reference, "different frames with uneven chunks", sourceLocation: sourceLocation)
    return reference
}

// MARK: - A realistic stream

/// What a real socket carries: QEMU's messages end with "\r\n", the client's with "\n" or
/// nothing; several texts on one line; pretty multi-line JSON as `-mon pretty=on` writes it.
private enum RealisticStream {
    static let greeting = #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}"#
    static let capabilities = #"{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}"#
    static let emptyReturn = #"{"return": {}}"#
    static let hmp = #"{"execute": "human-monitor-command", "arguments": {"command-line": "info \"}{\" [x] {"}, "id": "a\\"}"#
    static let hmpReply = #"{"return": "ok }]\r\n", "id": "a\\"}"#
    static let balloon = #"{"timestamp": {"seconds": 1267020223, "microseconds": 435656}, "event": "BALLOON_CHANGE", "data": {"actual": 944766976}}"#
    static let queryStatus = #"{"execute":"query-status","id":1}"#
    static let cont = #"{"execute":"cont","id":2}"#
    static let statusReply = #"{"return": {"running": false, "singlestep": false, "status": "paused"}, "id": 1}"#
    static let prettyStop = "{\n    \"timestamp\": {\n        \"seconds\": 1267041730,\n        \"microseconds\": 281295\n    },\n    \"event\": \"STOP\"\n}"
    static let prettyBlock = """
        {
            "return": [
                {
                    "device": "ide0-hd0",
                    "inserted": {
                        "file": "/tmp/a b{c}.qcow2",
                        "ro": false
                    },
                    "tray_open": null
                },
                {
                    "device": "floppy0",
                    "locked": false
                }
            ],
            "id": "libvirt-12"
        }
        """
    static let multiLineClient = "{\"execute\": \"qom-get\",\n \"arguments\": {\"path\": \"/machine\", \"property\": \"type\"},\n \"id\": \"libvirt-13\"}"
    static let resume = #"{"timestamp": {"seconds": 1271770767, "microseconds": 582542}, "event": "RESUME"}"#
    static let reset = #"{"timestamp": {"seconds": 1271770768, "microseconds": 1}, "event": "RESET", "data": {"guest": true, "reason": "guest-reset"}}"#
    static let lastReply = #"{"return": {}, "id": 2}"#

    static let text =
        greeting + "\r\n"
        + capabilities + "\n"
        + emptyReturn + "\r\n"
        + hmp + "\n"
        + hmpReply + "\r\n"
        + balloon + "\r\n"
        + queryStatus + cont + "\n"
        + statusReply + "\r\n"
        + prettyStop + "\r\n"
        + prettyBlock + "\r\n"
        + multiLineClient + "\n"
        + "\r\n\r\n"
        + resume + " " + reset + "  \t" + emptyReturn + "\r\n"
        + lastReply

    static let payloads = [
        greeting, capabilities, emptyReturn, hmp, hmpReply, balloon, queryStatus, cont, statusReply, prettyStop,
        prettyBlock, multiLineClient, resume, reset, emptyReturn, lastReply,
    ]
}

@Suite("QMPFramer: realistic stream")
struct FramerStreamTests {
    @Test("the whole stream gives one .json frame per message")
    func wholeStream() throws {
        let out = frames(utf8(RealisticStream.text))
        #expect(out.map(\.kind) == Array(repeating: .json, count: RealisticStream.payloads.count))
        #expect(out.map(payloadText) == RealisticStream.payloads)
        #expect(out.flatMap(\.bytes) == utf8(RealisticStream.text))
        for f in out {
            let m = f.message()
            #expect(m.kind != .other, "\(payloadText(f)) → \(m.body)")
            let json = try JSONParser.parse(Array(f.bytes[f.payload]))
            #expect(m.json == json)
        }
        // Terminators and blank lines stay with the frame they follow or precede.
        #expect(String(decoding: out[0].bytes, as: UTF8.self) == RealisticStream.greeting + "\r\n")
        #expect(String(decoding: out[1].bytes, as: UTF8.self) == RealisticStream.capabilities + "\n")
        #expect(String(decoding: out[6].bytes, as: UTF8.self) == RealisticStream.queryStatus)
        #expect(String(decoding: out[12].bytes, as: UTF8.self) == "\r\n\r\n" + RealisticStream.resume + " ")
        #expect(out.last?.bytes == utf8(RealisticStream.lastReply))
    }

    @Test("identical frames for every chunking of the stream")
    func everySplit() {
        let reference = checkChunkingInvariance(utf8(RealisticStream.text))
        #expect(reference.count == RealisticStream.payloads.count)
    }

    @Test("a frame ending in a newline comes out with the byte that completes it")
    func noDelay() {
        let input = utf8(RealisticStream.text)
        var framer = QMPFramer()
        var emittedAt: [Int] = []
        var all: [Frame] = []
        for (i, b) in input.enumerated() {
            let out = framer.push([b])
            emittedAt += Array(repeating: i, count: out.count)
            all += out
        }
        var offset = 0
        for (f, at) in zip(all, emittedAt) {
            let end = offset + f.bytes.count - 1
            if f.bytes.last == 0x0A {
                #expect(at == end, "\(payloadText(f)) ended at \(end) but came out at \(at)")
            } else {
                // No terminator: it can only be known complete when the next message starts.
                #expect(at == end + 1)
            }
            offset += f.bytes.count
        }
        // Only the unterminated last reply is still held.
        #expect(framer.pendingByteCount == RealisticStream.lastReply.utf8.count)
        #expect(framer.finish().map(payloadText) == [RealisticStream.lastReply])
    }

    @Test("pseudo-random chunkings agree with the whole stream")
    func randomChunks() {
        let input = utf8(RealisticStream.text)
        let reference = frames(input)
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<200 {
            var chunks: [[UInt8]] = []
            var i = 0
            while i < input.count {
                seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                let n = Int(seed >> 58) + 1  // 1...64
                let j = min(input.count, i + n)
                chunks.append(Array(input[i..<j]))
                i = j
            }
            #expect(frames(chunks) == reference)
        }
    }

    @Test("strings containing braces, brackets and escaped quotes do not end a frame", arguments: [
        #"{"a": "}"}"#, #"{"a": "{{{"}"#, #"{"a": "\"}"}"#, #"{"a": "\\"}"#, #"{"a": ["]", "[", {"b": "}"}]}"#,
        #"{"a": "\\\"}"}"#, #"[1, "]", {"x": "}"}]"#,
    ])
    func stringsInside(text: String) {
        let input = utf8(text + "\r\n" + text + "\n")
        let out = checkChunkingInvariance(input)
        #expect(out.map(\.kind) == [.json, .json])
        #expect(out.map(payloadText) == [text, text])
    }
}

// MARK: - Garbage

@Suite("QMPFramer: garbage and broken input")
struct FramerGarbageTests {
    @Test("bytes before a message")
    func bytesBefore() {
        let out = checkChunkingInvariance(utf8("junk {\"return\": {}}\r\n"))
        #expect(out.map(\.kind) == [.garbage, .json])
        #expect(out.map(payloadText) == ["junk", #"{"return": {}}"#])
        #expect(out[0].message().kind == .other)
        #expect(out[1].message().kind == .return)
    }

    @Test("a garbage line between messages")
    func garbageLine() {
        let input = utf8("{\"return\": {}}\r\nthis is not JSON: [1, 2]\r\n{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n")
        let out = checkChunkingInvariance(input)
        #expect(out.map(\.kind) == [.json, .garbage, .json])
        #expect(payloadText(out[1]) == "this is not JSON: [1, 2]")
        #expect(String(decoding: out[1].bytes, as: UTF8.self) == "this is not JSON: [1, 2]\r\n")
        #expect(out[2].message().kind == .event)
    }

    @Test("binary garbage")
    func binaryGarbage() {
        let input: [UInt8] = [0xFF, 0x00, 0xFE, 0x01, 0x80, 0x0D, 0x0A] + utf8("{\"return\": {}, \"id\": 1}\r\n")
            + [0x00, 0xFF] + utf8("{\"return\": {}, \"id\": 2}\n")
        let out = checkChunkingInvariance(input)
        #expect(out.map(\.kind) == [.garbage, .json, .garbage, .json])
        #expect(Array(out[0].bytes[out[0].payload]) == [0xFF, 0x00, 0xFE, 0x01, 0x80])
        #expect(Array(out[2].bytes[out[2].payload]) == [0x00, 0xFF])
        #expect(out[1].message().id == .int(1))
        #expect(out[3].message().id == .int(2))
        #expect(out[0].message().body == .other(reason: "not JSON", json: nil))
    }

    @Test("an unbalanced text is cut short by a message at the start of the next line")
    func truncatedThenGood() {
        let good = #"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}"#
        let out = checkChunkingInvariance(utf8("{\"a\": \n" + good + "\r\n"))
        #expect(out.map(\.kind) == [.truncated, .json])
        #expect(payloadText(out[0]) == #"{"a":"#)
        #expect(String(decoding: out[0].bytes, as: UTF8.self) == "{\"a\": \n")
        #expect(payloadText(out[1]) == good)
        #expect(out[0].message().body == .other(reason: "truncated JSON text", json: nil))
        #expect(out[1].message().name == "RESUME")
    }

    @Test("an unterminated string does not swallow the next line's message")
    func unterminatedString() {
        let good = #"{"return": {}}"#
        let out = checkChunkingInvariance(utf8("{\"execute\": \"cont\", \"id\": \"abc\n" + good + "\r\n"))
        #expect(out.map(\.kind) == [.truncated, .json])
        #expect(payloadText(out[1]) == good)
    }

    @Test("a top-level scalar is not a message")
    func scalar() {
        let out = checkChunkingInvariance(utf8("42\n{\"return\": 42}\n"))
        #expect(out.map(\.kind) == [.garbage, .json])
        #expect(payloadText(out[0]) == "42")
        #expect(out[0].message().kind == .other)
        #expect(out[1].message().kind == .return)
    }

    @Test("a balanced but invalid text is a .json frame whose message is .other")
    func balancedInvalid() {
        let out = checkChunkingInvariance(utf8("{\"a\" 1}\r\n"))
        #expect(out.map(\.kind) == [.json])
        let m = out[0].message()
        #expect(m.kind == .other)
        if case .other(let reason, let json) = m.body {
            #expect(reason.hasPrefix("invalid JSON"))
            #expect(json == nil)
        }
    }

    @Test("a top-level array is framed; it means nothing to QMP")
    func topLevelArray() throws {
        let out = checkChunkingInvariance(utf8("[1, {\"a\": 2}]\r\n"))
        #expect(out.map(\.kind) == [.json])
        let json = try JSONParser.parse("[1, {\"a\": 2}]")
        #expect(out[0].message().body == .other(reason: "QMP input must be a JSON object", json: json))
    }

    @Test("mixed garbage keeps every byte in every chunking", arguments: [
        "}}}\n{\"return\": {}}\n",
        "{\"a\": ]}\n{\"return\": {}}\n",
        "\"just a string\"\r\n{\"return\": {}}\r\n",
        "abc{\"return\": {}}def\n",
        "{\"a\": {\"b\": \n{\"c\": 1}\n\n]\n",
        "\r\n\r\n   \t",
        "null\ntrue\n[]\n{}\n",
        "{\"event\": \"X\"}{\"event\": \"Y\"}garbage{\"event\": \"Z\"}",
    ])
    func mixed(text: String) {
        checkChunkingInvariance(utf8(text))
    }
}

// MARK: - Limits

@Suite("QMPFramer: size limit")
struct FramerLimitTests {
    static let limit = 1024

    @Test("a never-ending line becomes .oversize pieces, then the framer resynchronises")
    func hugeJSONLine() {
        let head = utf8(#"{"execute": "x", "arguments": {"blob": ""#) + Array(repeating: UInt8(ascii: "A"), count: 10_000)
        let good = #"{"return": {}}"#
        let input = head + [0x0A] + utf8(good + "\r\n")
        let out = checkChunkingInvariance(input, limit: Self.limit)
        #expect(out.count >= 10_000 / Self.limit)
        let pieces = out.dropLast()
        #expect(pieces.allSatisfy { $0.kind == .oversize })
        #expect(pieces.allSatisfy { $0.bytes.count <= Self.limit }, "\(pieces.map(\.bytes.count))")
        #expect(pieces.flatMap(\.bytes) == head + [0x0A])
        #expect(pieces.last?.bytes.last == 0x0A)
        #expect(out.last?.kind == .json)
        #expect(out.last.map(payloadText) == good)
        #expect(out.last?.message().kind == .return)
        #expect(pieces.first?.message().kind == .other)
    }

    @Test("a huge balanced text is passed on in pieces, nothing dropped")
    func hugeBalanced() {
        let big = #"{"return": ""# + String(repeating: "x", count: 5000) + #""}"#
        let input = utf8(big + "\r\n" + #"{"return": 1}"# + "\r\n")
        let out = checkChunkingInvariance(input, limit: Self.limit)
        #expect(out.dropLast().allSatisfy { $0.kind == .oversize && $0.bytes.count <= Self.limit })
        #expect(out.last.map(payloadText) == #"{"return": 1}"#)
    }

    @Test("a huge garbage line becomes .garbage pieces within the limit")
    func hugeGarbage() {
        let junk = Array(repeating: UInt8(ascii: "x"), count: 10_000)
        let input = junk + utf8("\n{\"return\": {}}\n")
        let out = checkChunkingInvariance(input, limit: Self.limit)
        #expect(out.dropLast().allSatisfy { $0.kind == .garbage && $0.bytes.count <= Self.limit })
        #expect(out.last?.kind == .json)
    }

    @Test("a huge run of whitespace is bounded too")
    func hugeWhitespace() {
        let input = Array(repeating: UInt8(ascii: " "), count: 5000) + utf8("{\"return\": {}}\n")
        let out = checkChunkingInvariance(input, limit: Self.limit)
        #expect(out.allSatisfy { $0.bytes.count <= Self.limit })
        #expect(out.last?.kind == .json)
        #expect(out.dropLast().allSatisfy { $0.payload.isEmpty })
    }

    /// The type documents "Memory is bounded by `limit`". Whitespace after a complete text
    /// (before its newline) must not be able to grow the held buffer without bound either.
    @Test("whitespace after a complete message is bounded by the limit")
    func hugeTrailingWhitespace() {
        let input = utf8("{\"return\": {}}") + Array(repeating: UInt8(ascii: " "), count: 5000)
            + utf8("\r\n{\"return\": 1}\r\n")
        var framer = QMPFramer(limit: Self.limit)
        var maxPending = 0
        var out: [Frame] = []
        for b in input {
            out += framer.push([b])
            maxPending = max(maxPending, framer.pendingByteCount)
        }
        out += framer.finish()
        #expect(out.flatMap(\.bytes) == input)
        #expect(maxPending <= Self.limit, "held \(maxPending) bytes with a limit of \(Self.limit)")
        #expect(out.allSatisfy { $0.bytes.count <= Self.limit }, "frame sizes \(out.map(\.bytes.count))")
        #expect(out.filter { $0.kind == .json }.map(payloadText) == [#"{"return": {}}"#, #"{"return": 1}"#])
    }

    @Test("memory held while framing never exceeds the limit for long lines")
    func pendingBounded() {
        let input = utf8("{\"a\": \"") + Array(repeating: UInt8(ascii: "z"), count: 4000) + utf8("\"}\n")
            + Array(repeating: UInt8(ascii: "q"), count: 4000) + utf8("\n")
        var framer = QMPFramer(limit: Self.limit)
        var maxPending = 0
        for b in input {
            _ = framer.push([b])
            maxPending = max(maxPending, framer.pendingByteCount)
        }
        #expect(maxPending <= Self.limit)
    }

    @Test("the limit has a floor of 16 bytes")
    func limitFloor() {
        #expect(QMPFramer(limit: 1).limit == 16)
        #expect(QMPFramer(limit: -5).limit == 16)
        #expect(QMPFramer(limit: 4096).limit == 4096)
        #expect(QMPFramer().limit == QMPFramer.defaultLimit)
    }
}

// MARK: - drain() and finish()

@Suite("QMPFramer: drain and finish")
struct FramerDrainFinishTests {
    @Test("drain() hands out a complete message that has no terminator yet")
    func drainComplete() {
        var framer = QMPFramer()
        let command = #"{"execute": "query-status", "id": 1}"#
        #expect(framer.push(utf8(command)).isEmpty)
        #expect(framer.pendingByteCount == command.utf8.count)
        let drained = framer.drain()
        #expect(drained.count == 1)
        #expect(drained.first?.kind == .json)
        #expect(drained.first?.bytes == utf8(command))
        #expect(drained.first?.message().name == "query-status")
        #expect(framer.pendingByteCount == 0)
        #expect(framer.drain().isEmpty)

        // The late terminator leads the next frame; nothing is lost or duplicated.
        #expect(framer.push(utf8("\n")).isEmpty)
        let next = framer.push(utf8(#"{"execute": "cont"}"# + "\n"))
        #expect(next.count == 1)
        #expect(next.first.map { String(decoding: $0.bytes, as: UTF8.self) } == "\n" + #"{"execute": "cont"}"# + "\n")
        #expect(next.first.map(payloadText) == #"{"execute": "cont"}"#)
        #expect(framer.finish().isEmpty)
    }

    @Test("drain() keeps a message whose trailing whitespace has begun")
    func drainTrailing() {
        var framer = QMPFramer()
        #expect(framer.push(utf8("{\"return\": {}}\r")).isEmpty)
        let drained = framer.drain()
        #expect(drained.map(\.bytes) == [utf8("{\"return\": {}}\r")])
        #expect(drained.map(payloadText) == [#"{"return": {}}"#])
        let rest = framer.push(utf8("\n{\"return\": 1}\r\n"))
        #expect(rest.map(payloadText) == [#"{"return": 1}"#])
        #expect(rest.first?.bytes.first == 0x0A)
    }

    @Test("drain() leaves unfinished text, garbage and whitespace alone", arguments: [
        #"{"execute": "#, "{\"a\": \"}", "garbage", "  \r\n", "",
    ])
    func drainUnfinished(text: String) {
        var framer = QMPFramer()
        _ = framer.push(utf8(text))
        let before = framer.pendingByteCount
        #expect(framer.drain().isEmpty)
        #expect(framer.pendingByteCount == before)
    }

    @Test("drain() after every byte still preserves the stream")
    func drainEverywhere() {
        let input = utf8(RealisticStream.text)
        var framer = QMPFramer()
        var out: [Frame] = []
        for b in input {
            out += framer.push([b])
            out += framer.drain()
        }
        out += framer.finish()
        #expect(out.flatMap(\.bytes) == input)
        let json = out.filter { $0.kind == .json }.map(payloadText)
        #expect(json == RealisticStream.payloads)
    }

    @Test("finish() with partial data", arguments: [
        // (input, kinds, payloads)
        (#"{"return": {"a""#, [Frame.Kind.truncated], [#"{"return": {"a""#]),
        ("{\"return\": {\"a\"\r\n  ", [.truncated], [#"{"return": {"a""#]),
        (#"{"return": {}}"#, [.json], [#"{"return": {}}"#]),
        ("{\"return\": {}}  \r", [.json], [#"{"return": {}}"#]),
        ("garbage", [.garbage], ["garbage"]),
        ("{\"return\": {}}\n \r\n", [.json, .garbage], [#"{"return": {}}"#, ""]),
        ("", [], []),
    ] as [(String, [Frame.Kind], [String])])
    func finishPartial(text: String, kinds: [Frame.Kind], payloads: [String]) {
        let input = utf8(text)
        let out = checkChunkingInvariance(input)
        #expect(out.map(\.kind) == kinds)
        #expect(out.map(payloadText) == payloads)
    }

    @Test("finish() in the middle of an oversize line")
    func finishOversize() {
        let input = Array(repeating: UInt8(ascii: "["), count: 1) + Array(repeating: UInt8(ascii: "1"), count: 100)
        let out = checkChunkingInvariance(input, limit: 32)
        #expect(out.allSatisfy { $0.kind == .oversize && $0.bytes.count <= 32 })
        #expect(out.flatMap(\.bytes) == input)
    }

    @Test("finish() resets the framer")
    func finishResets() {
        var framer = QMPFramer()
        _ = framer.push(utf8("{\"a\": "))
        #expect(framer.finish().map(\.kind) == [.truncated])
        #expect(framer.finish().isEmpty)
        #expect(framer.pendingByteCount == 0)
        #expect(framer.push(utf8("{\"return\": {}}\n")).map(\.kind) == [.json])
    }
}
