import QMP
import Testing
@testable import Recording

import Synth

#if canImport(Glibc)
import Glibc
#endif

@Suite("qmprec format")
struct FormatTests {
    @Test("every message's exact bytes come back, whatever their shape")
    func roundTripExactBytes() throws {
        let dir = makeTempDir()
        let path = dir + "/s.qmprec"
        let raws = try SampleSession.write(to: path)
        let r = try Recording(path: path)
        #expect(r.problems.isEmpty, "\(r.problems)")
        #expect(r.count == raws.count + 3)  // open, messages, note, close
        var got: [[UInt8]] = []
        for i in 0..<r.count {
            if let b = try r.rawBytes(i) { got.append(b) }
        }
        #expect(got == raws)
        #expect(r.header == SampleSession.header)
        #expect(r.trailer?.reason == "eof")
        #expect(r.trailer?.records == r.count)
    }

    @Test("single-line JSON objects are stored as JSON objects that jq can select")
    func inlineMessagesAreJSON() throws {
        let dir = makeTempDir()
        let path = dir + "/s.qmprec"
        try SampleSession.write(to: path)
        let text = String(decoding: readFile(path), as: UTF8.self)
        let lines = text.split(separator: "\n")
        // Every line is a JSON object.
        for l in lines { #expect(throws: Never.self) { _ = try JSONParser.parse(String(l)) } }
        let stop = try #require(lines.first { $0.contains("\"STOP\"") })
        let v = try JSONParser.parse(String(stop))
        #expect(v["msg"]?["event"]?.stringValue == "STOP")
        #expect(v["k"]?.stringValue == "event")
        #expect(v["from"]?.stringValue == "qemu")
        #expect(v["eol"]?.stringValue == "\r\n")
        // Pretty JSON keeps its exact text and also has a compact msg for jq.
        let resume = try #require(lines.first { $0.contains("RESUME") })
        let rv = try JSONParser.parse(String(resume))
        #expect(rv["text"] != nil)
        #expect(rv["msg"]?["event"]?.stringValue == "RESUME")
        // Non-UTF-8 bytes go to b64.
        #expect(lines.contains { $0.contains("\"b64\"") })
        // The header comes first and the trailer last.
        #expect(lines.first!.hasPrefix("{\"qmprec\":1,"))
        #expect(lines.last!.contains("\"k\":\"end\""))
    }

    @Test("the index reads kinds, directions, names and connections without parsing")
    func indexFields() throws {
        let dir = makeTempDir()
        let path = dir + "/s.qmprec"
        try SampleSession.write(to: path)
        let r = try Recording(path: path)
        #expect(r.kind(0) == .open)
        #expect(r.direction(0) == nil)
        #expect(r.kind(1) == .greeting && r.direction(1) == .qemu)
        #expect(r.kind(2) == .command && r.direction(2) == .client && r.name(2) == "qmp_capabilities")
        #expect(r.kind(5) == .event && r.name(5) == "STOP")
        #expect(r.kind(7) == .event && r.name(7) == "RESUME")
        #expect(r.kind(8) == .other)
        #expect(r.kind(9) == .error && r.name(9) == "GenericError")
        #expect(r.kind(10) == .other)
        #expect(r.connection(3) == 1)
        #expect(r.kind(r.count - 2) == .note && r.connection(r.count - 2) == 0)
        #expect(r.kind(r.count - 1) == .close)
        #expect(r.line(0) == 2)
        #expect(r.eventTimestampMicros(5) == 1_763_632_800_009_100)
        #expect(r.eventTimestampMicros(7) == 1_763_632_800_010_000)  // pretty: through the full decode
    }

    @Test("decoded records carry envelope details")
    func decodeNonMessages() throws {
        let dir = makeTempDir()
        let path = dir + "/s.qmprec"
        try SampleSession.write(to: path)
        let r = try Recording(path: path)
        guard case .open(let peer, let info) = try r.record(at: 0).body else { Issue.record("not open"); return }
        #expect(peer == "unix:/tmp/qmp.sock")
        #expect(info["role"]?.stringValue == "client")
        guard case .close(let by, let reason) = try r.record(at: r.count - 1).body else { Issue.record("not close"); return }
        #expect(by == "qemu" && reason == "eof")
        guard case .note(let text, let data) = try r.record(at: r.count - 2).body else { Issue.record("not note"); return }
        #expect(text == "a note" && data["x"]?.int64Value == 1)
    }

    @Test("a recording torn at every byte offset opens and keeps every complete record")
    func tornTailAtEveryOffset() throws {
        let dir = makeTempDir()
        let path = dir + "/full.qmprec"
        try SampleSession.write(to: path)
        let full = readFile(path)
        let reference = try Recording(path: path)
        // Byte offset where each line ends (after its newline).
        var lineEnds: [Int] = []
        for (i, b) in full.enumerated() where b == 0x0A { lineEnds.append(i + 1) }
        let torn = dir + "/torn.qmprec"
        for cut in 0...full.count {
            writeFile(torn, Array(full[..<cut]))
            let r = try Recording(path: torn)
            let completeLines = lineEnds.filter { $0 <= cut }.count
            // Complete records = complete lines minus the header; a final line missing only
            // its newline is whole JSON and counts too.
            var expected = max(0, min(completeLines - 1, reference.count))
            if cut < full.count, let next = lineEnds.first(where: { $0 > cut }), next - 1 == cut, completeLines >= 1,
               completeLines - 1 < reference.count {
                expected += 1
            }
            #expect(r.count == expected, "cut at \(cut)")
            for i in 0..<r.count {
                #expect(try r.rawBytes(i) == reference.rawBytes(i), "cut at \(cut), record \(i)")
            }
            if cut < full.count - 1 {
                #expect(r.trailer == nil)
                #expect(r.problems.contains { $0.message.contains("no trailer") || (cut == 0 && $0.message.contains("empty file")) }, "cut at \(cut)")
            }
        }
    }

    @Test("gzip-compressed recordings read the same")
    func gzip() throws {
        let dir = makeTempDir()
        let path = dir + "/s.qmprec"
        try SampleSession.write(to: path)
        #expect(system("gzip -k -f \(path)") == 0)
        let a = try Recording(path: path)
        let b = try Recording(path: path + ".gz")
        #expect(a.count == b.count)
        for i in 0..<a.count { #expect(try a.rawBytes(i) == b.rawBytes(i)) }
        #expect(b.problems.isEmpty)
        // A truncated .gz yields what decompressed before the damage.
        let gz = readFile(path + ".gz")
        writeFile(dir + "/cut.qmprec.gz", Array(gz[..<(gz.count * 2 / 3)]))
        let c = try Recording(path: dir + "/cut.qmprec.gz")
        #expect(c.count <= a.count)
        for i in 0..<c.count { #expect(try c.rawBytes(i) == a.rawBytes(i)) }
    }

    @Test("bad lines are reported with their line number and skipped; --strict refuses them")
    func badLines() throws {
        let dir = makeTempDir()
        let path = dir + "/s.qmprec"
        try SampleSession.write(to: path)
        var lines = String(decoding: readFile(path), as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.insert("this is not json", at: 3)
        lines.insert("", at: 5)
        lines.insert("[1,2]", at: 7)
        lines.insert(#"{"t":5,"c":1,"k":"mystery"}"#, at: 8)
        let damaged = dir + "/bad.qmprec"
        writeFile(damaged, Array(lines.joined(separator: "\n").utf8))
        let r = try Recording(path: damaged)
        let good = try Recording(path: path)
        #expect(r.count == good.count)
        let bad = r.problems.filter(\.badLine)
        #expect(bad.map(\.line) == [4, 6, 8, 9])
        #expect(bad[0].message.contains("not valid JSON"))
        #expect(bad[3].message.contains("unknown record kind"))
        #expect(throws: RecordingOpenError.self) { _ = try Recording(path: damaged, options: RecordingOptions(strict: true)) }
        do {
            _ = try Recording(path: damaged, options: RecordingOptions(strict: true))
        } catch {
            #expect(error.description.contains("line 4"))
        }
    }

    @Test("records in another key order (e.g. rewritten by jq) still read")
    func slowPath() throws {
        let text = """
            {"qmprec":1,"start_us":1763632800000000,"source":"x","mode":"import"}
            {"msg":{"event":"STOP","timestamp":{"seconds":1,"microseconds":2}},"from":"qemu","t":5,"c":2}
            {"k":"command","from":"client","t":7,"msg":{"execute":"cont"}}
            {"t":9,"k":"end","records":2,"reason":"complete"}

            """
        let r = try Recording(bytes: FileBytes(bytes: Array(text.utf8)), path: "mem")
        #expect(r.count == 2)
        #expect(r.kind(0) == .event && r.name(0) == "STOP" && r.connection(0) == 2 && r.time(0) == 5)
        #expect(r.kind(1) == .command && r.name(1) == "cont" && r.direction(1) == .client)
        #expect(try r.rawBytes(0) == Array(#"{"event":"STOP","timestamp":{"seconds":1,"microseconds":2}}"#.utf8))
        #expect(r.problems.isEmpty, "\(r.problems)")
    }

    @Test("no crash on arbitrary bytes")
    func garbageFiles() throws {
        var rng = SystemRandomNumberGenerator()
        let dir = makeTempDir()
        let path = dir + "/s.qmprec"
        try SampleSession.write(to: path)
        let full = readFile(path)
        for _ in 0..<200 {
            var b = full
            for _ in 0..<8 { b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            let r = try Recording(bytes: FileBytes(bytes: b), path: "flipped")
            for i in 0..<r.count { _ = try? r.record(at: i) }
            _ = RecordingSummary(r)
            _ = RecordingValidation.run(r)
        }
        for n in [0, 1, 2, 100] {
            let b = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let r = try Recording(bytes: FileBytes(bytes: b), path: "random")
            #expect(r.count == 0)
        }
    }

    @Test("write errors name the file")
    func writeErrors() throws {
        #expect(throws: RecordingWriteError.self) {
            _ = try RecordingWriter(path: "/nonexistent-dir/x.qmprec", header: SampleSession.header)
        }
        if access("/dev/full", W_OK) == 0 {
            do {
                let w = try RecordingWriter(path: "/dev/full", header: SampleSession.header)
                try w.finish(reason: "x")
                Issue.record("writing to /dev/full succeeded")
            } catch {
                #expect(error.description.contains("/dev/full"))
                #expect(error.errno == ENOSPC)
            }
        }
    }
}

@Suite("index names")
struct IndexNameTests {
    @Test("a record in canonical order but without \"n\" still gets its name from the message")
    func nameFromMessage() throws {
        let text = #"{"qmprec":1,"start_us":0,"source":"x","mode":"import"}"# + "\n"
            + #"{"t":1,"c":1,"from":"qemu","k":"event","msg":{"event":"STOP","timestamp":{"seconds":1,"microseconds":0}}}"# + "\n"
            + #"{"t":2,"c":1,"from":"client","k":"command","msg":{"execute":"cont"}}"# + "\n"
        let r = try Recording(bytes: FileBytes(bytes: Array(text.utf8)), path: "mem")
        #expect(r.name(0) == "STOP")
        #expect(r.name(1) == "cont")
    }
}

@Suite("parallel index")
struct ParallelIndexTests {
    @Test("two threads give exactly the index, names and problems of one", arguments: [false, true])
    func sameAsSequential(damaged: Bool) throws {
        let dir = makeTempDir()
        let path = dir + "/s.qmprec"
        try Synthesizer(seed: 5, profile: .mixed).write(records: 20_000, to: path)
        var bytes = readFile(path)
        if damaged {
            // Bad lines around the middle (where the split falls), a backwards time, a stray
            // trailer in the middle, and a torn last line.
            var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map(Array.init)
            let mid = lines.count / 2
            lines.insert(Array("not json at all".utf8), at: mid)
            lines.insert([], at: mid + 2)
            lines.insert(Array(#"{"t":1,"c":1,"from":"qemu","k":"event","n":"LATE","msg":{"event":"LATE"}}"#.utf8), at: mid + 5)
            lines.insert(Array(#"{"t":5,"k":"end","records":3,"reason":"x"}"#.utf8), at: mid - 3)
            lines[lines.count - 2] = Array(lines[lines.count - 2].prefix(20))
            bytes = Array(lines.joined(separator: [0x0A]))
        }
        let fb = FileBytes(bytes: bytes)
        let one = IndexBuilder.build(fb, parallelThreshold: Int.max)
        let two = IndexBuilder.build(fb, parallelThreshold: 1)
        #expect(one.times == two.times)
        #expect(one.offsets == two.offsets)
        #expect(one.lines == two.lines)
        #expect(one.conns == two.conns)
        #expect(one.kindDir == two.kindDir)
        #expect(one.nameIDs.map { one.names[Int($0)] } == two.nameIDs.map { two.names[Int($0)] })
        #expect(one.allProblems == two.allProblems)
        #expect(one.header == two.header)
        #expect(one.trailer == two.trailer)
        #expect(one.lastLine == two.lastLine && one.completeLines == two.completeLines && one.completeEnd == two.completeEnd)
        #expect(one.firstTrailerLine == two.firstTrailerLine)
        if damaged {
            #expect(one.allProblems.contains { $0.message.contains("not valid JSON") })
            #expect(one.allProblems.contains { $0.message.contains("time goes backwards") })
            #expect(one.allProblems.contains { $0.message.contains("after the trailer") })
        } else {
            #expect(one.allProblems.isEmpty)
        }
    }
}
