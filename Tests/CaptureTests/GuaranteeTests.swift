import Foundation
import Logging
import QMP
@testable import Recording
import Testing
@testable import Capture

import TestSupport
import Transport

#if canImport(Glibc)
import Glibc
#endif

// Unit tests of the recorder's guarantees where a fake peer suffices (docs/RECORDER.md,
// "Guarantees"); Tests/Integration/test_recorder_guarantees.py holds each of them against
// a real QEMU as well.

private func scratch(_ name: String) -> String {
    let d = "/tmp/qmpreplay-\(name)-\(getpid())-\(Int.random(in: 0..<1_000_000))"
    mkdir(d, 0o700)
    return d
}

private func header() -> RecordingHeader {
    RecordingHeader(startMicros: 1_763_632_800_000_000, source: "unix:/fake", mode: .proxy, redacted: true)
}

private func notes(_ r: Recording) throws -> [(text: String, data: JSONObject, time: Int64, index: Int)] {
    try (0..<r.count).filter { r.kind($0) == .note }.compactMap { i in
        let rec = try r.record(at: i)
        if case .note(let text, let data) = rec.body { return (text, data, rec.time, i) }
        return nil
    }
}

@Suite("redaction of every spelling QEMU executes")
struct RedactionLeakTests {
    /// Runs a command (and optionally its reply) through a redactor; returns both as recorded.
    private func run(_ command: String, reply: String? = nil) -> (QMPMessage, QMPMessage?) {
        var r = Redactor()
        let c = r.process(QMPMessage(text: command + "\n"), from: .client, connection: 1)
        let rep = reply.map { r.process(QMPMessage(text: $0 + "\r\n"), from: .qemu, connection: 1) }
        return (c, rep)
    }

    /// The stored line of a message record, as the file would hold it.
    private func line(_ m: QMPMessage, _ dir: Direction = .client) -> String {
        String(decoding: RecordEncoder.encode(time: 0, connection: 1, body: .message(from: dir, m)), as: UTF8.self)
    }

    @Test("qom-get of a secret's data: the reply that echoes it is redacted")
    func qomGet() {
        let (_, rep) = run(#"{"execute": "qom-get", "arguments": {"path": "/objects/sec0", "property": "data"}, "id": 2}"#,
                           reply: #"{"return": "hunter2", "id": 2}"#)
        #expect(rep?.payloadText == #"{"return": "<redacted>", "id": 2}"#)
        let (_, other) = run(#"{"execute": "qom-get", "arguments": {"path": "/machine", "property": "type"}, "id": 3}"#,
                             reply: #"{"return": "pc-q35-7.2-machine", "id": 3}"#)
        #expect(other?.payloadText.contains("pc-q35") == true)
    }

    @Test("HMP qom-get of a secret's data: the reply is redacted")
    func hmpQomGet() {
        let (_, rep) = run(#"{"execute": "human-monitor-command", "arguments": {"command-line": "qom-get /objects/sec0 data"}, "id": "h"}"#,
                           reply: #"{"return": "\"hunter2\"\r\n", "id": "h"}"#)
        #expect(rep?.payloadText == #"{"return": "<redacted>", "id": "h"}"#)
    }

    @Test("qom-set of a secret property, QMP and HMP")
    func qomSet() {
        let (m, _) = run(#"{"execute": "qom-set", "arguments": {"path": "/objects/sec0", "property": "data", "value": "hunter2"}}"#)
        #expect(m.payloadText == #"{"execute": "qom-set", "arguments": {"path": "/objects/sec0", "property": "data", "value": "<redacted>"}}"#)
        let (h, _) = run(#"{"execute": "human-monitor-command", "arguments": {"command-line": "qom-set /objects/sec0 data hunter2"}}"#)
        #expect(h.payloadText.contains("qom-set /objects/sec0 data <redacted>") && !h.payloadText.contains("hunter2"))
    }

    @Test("HMP object_add in every spelling", arguments: [
        ("object_add secret,id=s,data=hunter2", "object_add secret,id=s,data=<redacted>"),
        ("object_add qom-type=secret,id=s,data=hunter2", "object_add qom-type=secret,id=s,data=<redacted>"),
        ("object_add id=s,qom-type=secret,data=hunter2,format=raw", "object_add id=s,qom-type=secret,data=<redacted>,format=raw"),
        ("object_add  secret,id=s,data=hunter2", "object_add  secret,id=s,data=<redacted>"),
        ("  object-add secret,id=s,data=hun,,ter2,iv=aXY=", "  object-add secret,id=s,data=<redacted>,iv=<redacted>"),
        ("object_add secret_keyring,id=s,serial=1,data=hunter2", "object_add secret_keyring,id=s,serial=1,data=<redacted>"),
    ])
    func hmpObjectAdd(line: String, expected: String) {
        let (m, _) = run(#"{"execute": "human-monitor-command", "arguments": {"command-line": "# + JSONWriter.quoted(line) + "}}")
        #expect(m.json?["arguments"]?["command-line"]?.stringValue == expected)
    }

    @Test("HMP migrate with credentials, set_password, change vnc password, key= options")
    func hmpOthers() {
        #expect(Redactor.redactHMP("migrate -d tcp:user:hunter2@10.0.0.1:4444").line == "migrate -d tcp:user:<redacted>@10.0.0.1:4444")
        #expect(Redactor.redactHMP("migrate  -b tcp:tok@10.0.0.1:4444").line == "migrate  -b tcp:<redacted>@10.0.0.1:4444")
        #expect(Redactor.redactHMP("set_password vnc hunter2 keep").line == "set_password vnc <redacted> keep")
        #expect(Redactor.redactHMP("change vnc password hunter2").line == "change vnc password <redacted>")
        #expect(Redactor.redactHMP("drive_add 0 if=none,id=d,file.password=hunter2").line == "drive_add 0 if=none,id=d,file.password=<redacted>")
        #expect(Redactor.redactHMP("info status").line == nil)
        #expect(Redactor.redactHMP("migrate -d tcp:10.0.0.1:4444").line == nil)
    }

    @Test("a URL with user:pass@ in blockdev-add (any command, any depth)")
    func urls() {
        let (m, _) = run(#"{"execute": "blockdev-add", "arguments": {"driver": "http", "node-name": "web", "url": "http://user:hunter2@host/x.img"}}"#)
        #expect(m.json?["arguments"]?["url"]?.stringValue == "http://user:<redacted>@host/x.img")
        let (n, _) = run(#"{"execute": "drive-mirror", "arguments": {"device": "d", "target": "ssh://root:hunter2@h/disk", "sync": "full"}}"#)
        #expect(!n.payloadText.contains("hunter2"))
        let (plain, _) = run(#"{"execute": "blockdev-add", "arguments": {"driver": "ssh", "node-name": "s", "server": {"host": "h"}, "path": "ssh://root@h/disk"}}"#)
        #expect(plain.payloadText.contains("ssh://root@h/disk"), "a user name alone is not a secret")
    }

    @Test("single-quoted JSON: redacted in what QEMU executes, in the exact bytes and in msg, quotes kept")
    func dialect() {
        let text = "{'execute': 'object-add', 'arguments': {'qom-type': 'secret', 'id': 'sq0', 'data': 'hunter2'}, 'id': 'x'}"
        let (m, _) = run(text)
        #expect(m.dialect && m.kind == .command)
        #expect(m.payloadText == "{'execute': 'object-add', 'arguments': {'qom-type': 'secret', 'id': 'sq0', 'data': '<redacted>'}, 'id': 'x'}")
        let l = line(m)
        #expect(!l.contains("hunter2"))
        #expect(l.contains("\"text\":") && l.contains("\"msg\":{"))
        #expect(m.json?["arguments"]?["data"]?.stringValue == Redactor.marker)
        let (h, _) = run(#"{"execute": 'human-monitor-command', "arguments": {'command-line': 'object_add secret,id=s,data=hunter2'}}"#)
        #expect(!line(h).contains("hunter2") && h.payloadText.contains("'object_add secret,id=s,data=<redacted>'"))
        let (p, _) = run(#"{'execute': 'set_password', 'arguments': {'protocol': 'vnc', 'password': 'it\'s-secret'}}"#)
        #expect(!line(p).contains("secret'") && p.payloadText.contains("'password': '<redacted>'"))
    }

    @Test("pretty (multi-line) replies: text and msg are both redacted")
    func prettyText() {
        var r = Redactor()
        _ = r.process(QMPMessage(text: #"{"execute": "query-vnc", "id": 1}"# + "\n"), from: .client, connection: 1)
        let rep = r.process(QMPMessage(text: "{\r\n    \"return\": {\r\n        \"password\": \"hunter2\"\r\n    },\r\n    \"id\": 1\r\n}\r\n"), from: .qemu, connection: 1)
        #expect(!line(rep, .qemu).contains("hunter2"))
        #expect(line(rep, .qemu).contains("\"text\":"))
    }

    @Test("a reply that echoes a secret the command carried (an error quoting it) is scrubbed")
    func echoed() {
        let (_, err) = run(#"{"execute": "blockdev-add", "arguments": {"driver": "http", "node-name": "w", "url": "http://u:hunter2@h/x"}, "id": 9}"#,
                           reply: #"{"error": {"class": "GenericError", "desc": "could not open 'http://u:hunter2@h/x'"}, "id": 9}"#)
        #expect(err?.payloadText == #"{"error": {"class": "GenericError", "desc": "could not open 'http://u:<redacted>@h/x'"}, "id": 9}"#)
        let (_, hmp) = run(#"{"execute": "human-monitor-command", "arguments": {"command-line": "migrate -d tcp:user:hunter2@h:1"}, "id": 8}"#,
                           reply: #"{"return": "error: cannot parse 'user:hunter2@h:1'\r\n", "id": 8}"#)
        #expect(hmp?.payloadText.contains("hunter2") == false)
    }
}

@Suite("the proxy never blocks on one peer", .serialized)
struct ProxyStallTests {
    @Test("a client that stops reading is dropped past --peer-buffer; a reading client beside it is not held up; a stop is prompt")
    func stalledClient() throws {
        let d = scratch("stall")
        let log = LogLines(leveled: true)
        let (proxy, cfg, peer) = try proxyBeforeFastPeer(d, context: RecorderContext(logger: log.logger)) { c, o in
            c.maxClients = 3
            c.peerBufferLimit = 1 << 20
            o.stopBudget = CaptureOptions(output: "").stopBudget   // the stop is timed here
        }
        let reader = try LineClient(cfg.listen)
        let cmd = Array("{\"execute\":\"query-status\"}\n".utf8)
        // The stalled client asks for 30 MB of events and never reads a byte.
        let stalled = try Sockets.connect(cfg.listen)
        Sockets.writeAll(stalled, Array("{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"flood\",\"arguments\":{\"n\":250000}}\n".utf8))
        var worst: Int64 = 0
        for _ in 0..<200 { worst = max(worst, try reader.roundTrip(cmd)) }
        // On a busy machine the peer may not have queued 1 MiB yet: wait (up to 20 s) until
        // the proxy has hung up on the stalled client, as it must.
        #expect(FDWait.wait(stalled, for: 0, timeoutMs: 20_000) & Int16(POLLHUP) != 0, "the stalled client was disconnected")
        let t0 = WallClock.monotonicNanos()
        proxy.stop(by: "SIGTERM")
        let outcome = proxy.wait()
        let stopNanos = WallClock.monotonicNanos() - t0
        reader.close()
        close(stalled)
        peer.stop()
        #expect(worst < 500_000_000, "worst round trip beside the stalled client: \(worst / 1_000_000) ms")
        // Prompt, not a benchmark: the bug was a stop that never came while a peer stalled.
        // (The 1 s guarantee is held against a real QEMU in test_recorder_guarantees.py; this
        // unit test also runs under ThreadSanitizer, several times slower.)
        #expect(stopNanos < 5_000_000_000, "stop took \(stopNanos / 1_000_000) ms; \(outcome.stats)")
        #expect(outcome.reason == "signal")
        // Why the stalled client was dropped (the close record that says so: GlueTests; here the
        // stop may cut what the encoder has not reached yet under ThreadSanitizer).
        #expect(log.lines.contains { $0.hasPrefix("warning: the client stopped reading: ") && $0.contains("(limit 1048576)") })
    }

    @Test("a client that stops reading does not delay another client's replies (two pairs, --max-clients 2)")
    func stalledBesideReader() throws {
        let d = scratch("two")
        let (proxy, cfg, peer) = try proxyBeforeFastPeer(d) { c, _ in
            c.maxClients = 2
            c.peerBufferLimit = 256 << 20   // the stalled client stays, stalled, for the whole test
        }
        // The stalled client asks QEMU for 100,000 events (14 MB) and never reads a byte.
        let stalled = try LineClient(cfg.listen)
        let flood = 100_000
        stalled.send(Array("{\"execute\":\"flood\",\"arguments\":{\"n\":\(flood)}}\n".utf8))
        let reader = try LineClient(cfg.listen)
        let cmd = Array("{\"execute\":\"query-status\"}\n".utf8)
        // The reader goes on talking while the whole flood passes through the proxy and waits
        // there for the stalled client: every command gets its reply (a proxy that waited for
        // the stalled client would leave the reader's read to time out instead).
        var replies = 0
        while (proxy.progress?.stats.events ?? 0) < flood || replies < 200 {
            _ = try reader.roundTrip(cmd)
            replies += 1
            guard replies < 2_000_000 else { break }
        }
        #expect(FDWait.wait(stalled.fd, for: 0, timeoutMs: 0) & Int16(POLLHUP) == 0, "the stalled client is still connected")
        proxy.stop(by: "the test")
        let outcome = proxy.wait()
        reader.close()
        stalled.close()
        peer.stop()
        let r = try Recording(path: d + "/p.qmprec")
        let readerConn = UInt32(2)
        #expect((0..<r.count).filter { r.connection($0) == readerConn && r.kind($0) == .return }.count == replies + 1, "\(replies) round trips and the negotiation")
        #expect((0..<r.count).filter { r.kind($0) == .event }.count == flood, "QEMU's flood is recorded although nobody read it")
        #expect(try r.closes().map(\.reason) == ["stopped by the test", "stopped by the test"])
        #expect(!outcome.incomplete)
    }

    @Test("a QEMU that does not take its input: the client is dropped past the bound, nobody waits")
    func deafUpstream() throws {
        let d = scratch("deaf")
        let up = try Sockets.listen(.unix(d + "/qemu.sock"))
        let greeting = Array(#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#.utf8) + [13, 10]
        // Greets every connection and never reads.
        let deaf = JoinableThread {
            var held: [Int32] = []
            while let (fd, _) = Sockets.accept(up) { Sockets.writeAll(fd, greeting); held.append(fd) }
            for fd in held { close(fd) }
        }
        var cfg = ProxyModeConfig(listen: .unix(d + "/proxy.sock"), upstream: .unix(d + "/qemu.sock"))
        cfg.peerBufferLimit = 256 << 10
        let proxy = ProxyRecorder(config: cfg, options: CaptureOptions(output: d + "/p.qmprec"))
        try proxy.start()
        let c = try Sockets.connect(cfg.listen)
        Sockets.setNonBlocking(c)
        let junk = [UInt8](repeating: 0x20, count: 64 << 10)
        var sent = 0
        let deadline = WallClock.monotonicNanos() + 5_000_000_000
        var closed = false
        while WallClock.monotonicNanos() < deadline && !closed {
            let n = junk.withUnsafeBytes { Glibc.send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n } else if n < 0 && errno != EAGAIN { closed = true } else { _ = FDWait.wait(c, for: Int16(POLLIN | POLLOUT), timeoutMs: 100) }
            var b = [UInt8](repeating: 0, count: 4096)
            if recv(c, &b, b.count, 0) == 0 { closed = true }
        }
        #expect(closed, "the proxy disconnected the client after \(sent) bytes")
        let t0 = WallClock.monotonicNanos()
        proxy.stop(by: "SIGTERM")
        _ = proxy.wait()
        #expect(WallClock.monotonicNanos() - t0 < 1_000_000_000)
        close(c)
        shutdown(up, Int32(SHUT_RDWR))
        close(up)
        deaf.join()
        let r = try Recording(path: d + "/p.qmprec")
        let closes = try (0..<r.count).filter { r.kind($0) == .close }.map { try r.record(at: $0) }
        #expect(closes.contains { if case .close(_, let reason) = $0.body { return reason.contains("QEMU stopped reading") } else { return false } })
    }
}

@Suite("the sink: true receive times, whole-message drop spans, a bounded stop", .serialized)
struct SinkGuaranteeTests {
    /// A sink writing into a FIFO drained by a reader thread at `bytesPerSecond`, so that
    /// the disk is slow; returns what was written once the sink finished.
    private func slowOutput(_ d: String, bytesPerSecond: Int, _ body: (CaptureSink) -> Void, tune: (inout CaptureOptions) -> Void = { _ in })
        throws -> (Recording, CaptureEnd, Int64) {
        let fifo = d + "/out.qmprec"
        mkfifo(fifo, 0o600)
        let collected = d + "/collected.qmprec"
        let reader = JoinableThread {
            let fd = open(fifo, O_RDONLY)
            _ = fcntl(fd, 1031 /* F_SETPIPE_SZ */, 4096)   // a small pipe: the reader's pace is the disk's
            let out = open(collected, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(fd, &buf, buf.count)
                if n <= 0 { break }
                _ = write(out, buf, n)
                usleep(UInt32(1_000_000 * n / bytesPerSecond))
            }
            close(fd); close(out)
        }
        var o = CaptureOptions(output: fifo)
        o.queueLimitBytes = 16 << 10
        o.stopBudget = 300_000_000
        tune(&o)
        let sink = try CaptureSink(header: header(), options: o)
        body(sink)
        let t0 = WallClock.monotonicNanos()
        let end = sink.finish(reason: "signal", time: 10_000_000_000)
        let stop = WallClock.monotonicNanos() - t0
        reader.join()
        return (try Recording(path: collected), end, stop)
    }

    private static func event(_ i: Int) -> [UInt8] {
        Array(#"{"timestamp": {"seconds": 1763632800, "microseconds": \#(i)}, "event": "BALLOON_CHANGE", "data": {"actual": \#(1_073_741_824 - i * 4096)}}"#.utf8) + [13, 10]
    }

    @Test("a slow disk, every chunk ending at a message's closing brace: a drop that begins with the line end counts that message once")
    func dropAtLineEnd() throws {
        let d = scratch("lineend")
        let n = 3000
        let (r, _, _) = try slowOutput(d, bytesPerSecond: 200_000) { sink in
            sink.open(0, 1, peer: "unix")
            // Each chunk: the previous message's CR LF, then a message up to its closing brace.
            for i in 0...n {
                var chunk: [UInt8] = i == 0 ? [] : [13, 10]
                if i < n { chunk += Self.event(i).dropLast(2) }
                sink.data(Int64(i) * 100_000, 1, .qemu, chunk)
                if i % 50 == 0 { usleep(2000) }
            }
        }
        let events = (0..<r.count).filter { r.kind($0) == .event }.count
        let gaps = try notes(r).filter { $0.data["gap_messages"] != nil }
        #expect(!gaps.isEmpty, "the slow disk made the recorder drop")
        let lost = gaps.reduce(0) { $0 + Int($1.data["gap_messages"]!.int64Value!) }
        #expect(events + lost == n)
    }

    @Test("a slow disk: records keep their receive times, drops are whole messages noted as spans, and the counts add up")
    func slowDisk() throws {
        let d = scratch("slow")
        let n = 3000
        var wire: Int64 = 0
        let (r, end, stop) = try slowOutput(d, bytesPerSecond: 200_000) { sink in
            sink.open(0, 1, peer: "unix")
            // Chunks cut messages anywhere: 3 messages in 5 chunks.
            var stream: [UInt8] = []
            for i in 0..<n { stream += Self.event(i) }
            wire = Int64(stream.count)
            var off = 0, i = 0
            while off < stream.count {
                let len = min(97 + (i * 31) % 211, stream.count - off)
                sink.data(Int64(i) * 100_000, 1, .qemu, Array(stream[off..<(off + len)]))
                off += len
                i += 1
                // The traffic's shape, not a wait: spread over ~120 ms, so that spans dropped
                // for the slow disk alternate with records written.
                if i % 50 == 0 { usleep(2000) }
            }
        }
        #expect(end.trailerWritten)
        #expect(stop < 1_500_000_000, "stop took \(stop / 1_000_000) ms")
        #expect(r.problems.filter(\.badLine).isEmpty)
        let events = (0..<r.count).filter { r.kind($0) == .event }
        #expect((0..<r.count).filter { r.kind($0) == .other }.isEmpty, "no half message is recorded as garbage")
        let gaps = try notes(r).filter { $0.data["gap_messages"] != nil }
        #expect(!gaps.isEmpty, "the slow disk made the recorder drop")
        let lost = gaps.reduce(0) { $0 + Int($1.data["gap_messages"]!.int64Value!) }
        let lostBytes = gaps.reduce(Int64(0)) { $0 + $1.data["gap_bytes"]!.int64Value! }
        #expect(events.count + lost == n)
        var recordedBytes: Int64 = 0
        for i in events { recordedBytes += Int64(try r.rawBytes(i)?.count ?? 0) }
        #expect(recordedBytes + lostBytes == wire)
        // Each record's time is the receive time of the chunk that completed it (a multiple
        // of 100 µs here), never the time it was written; spans hold no recorded message.
        for i in events { #expect(r.time(i) % 100_000 == 0 && r.time(i) <= 10_000_000_000) }
        for g in gaps {
            let from = g.data["gap_from"]!.int64Value!, to = g.data["gap_to"]!.int64Value!
            #expect(from <= to)
            #expect(events.allSatisfy { ($0 < g.index && r.time($0) <= from) || ($0 > g.index && r.time($0) >= to) })
        }
        #expect(r.trailer?.dropped == gaps.reduce(0) { $0 + Int($1.data["gap_records"]!.int64Value!) })
    }

    @Test("a stop on a disk that takes nothing more ends within the budget and notes what was queued")
    func boundedStop() throws {
        let d = scratch("stop")
        let (r, end, stop) = try slowOutput(d, bytesPerSecond: 20_000) { sink in
            sink.open(0, 1, peer: "unix")
            for i in 0..<400 { sink.data(Int64(i) * 1_000_000, 1, .qemu, Self.event(i)) }
        } tune: { $0.queueLimitBytes = 1 << 20 }
        #expect(stop < 1_500_000_000, "stop took \(stop / 1_000_000) ms")
        #expect(end.trailerWritten)
        let gaps = try notes(r).filter { $0.data["cause"]?.stringValue == "the recorder was stopped before it was written" }
        #expect(gaps.count == 1)
        let events = (0..<r.count).filter { r.kind($0) == .event }.count
        #expect(events + Int(gaps.first?.data["gap_messages"]?.int64Value ?? 0) == 400)
    }
}

@Suite("rotation", .serialized)
struct RotationGuaranteeTests {
    private static func traffic(_ sink: CaptureSink, commands: Int) {
        sink.open(0, 1, peer: "unix")
        sink.data(1, 1, .qemu, Array(#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#.utf8) + [13, 10])
        sink.data(2, 1, .client, Array("{\"execute\":\"qmp_capabilities\"}\n".utf8))
        sink.data(3, 1, .qemu, Array("{\"return\": {}}\r\n".utf8))
        for i in 0..<commands {
            let t = Int64(10 + i * 10)
            sink.data(t, 1, .client, Array("{\"execute\":\"query-status\",\"id\":\(i)}\n".utf8))
            sink.data(t + 5, 1, .qemu, Array("{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}, \"id\": \(i)}\r\n".utf8))
        }
    }

    @Test("existing part files: refused at start, or removed with --force (and said so)")
    func existingParts() throws {
        let d = scratch("parts")
        let out = d + "/v.qmprec"
        _ = FileManager.default.createFile(atPath: d + "/v.3.qmprec", contents: Data("old\n".utf8))
        var o = CaptureOptions(output: out)
        o.rotateBytes = 4096
        #expect(throws: CaptureOutputError.self) { _ = try CaptureSink(header: header(), options: o) }
        #expect(access(out, F_OK) != 0)
        #expect(CaptureSink.existingParts(out) == [d + "/v.3.qmprec"])
        o.replaceExisting = true
        let log = LogLines(leveled: true)
        let sink = try CaptureSink(header: header(), options: o, logger: log.logger)
        #expect(log.lines.contains { $0.contains("removed 1 part files") })
        sink.finish(reason: "signal", time: 1)
        #expect(access(d + "/v.3.qmprec", F_OK) != 0)
        #expect(CaptureSink.partNumber("v.12.qmprec", of: "v.qmprec") == 12)
        #expect(CaptureSink.partNumber("v.x.qmprec", of: "v.qmprec") == nil)
        #expect(CaptureSink.partNumber("w.1.qmprec", of: "v.qmprec") == nil)
    }

    @Test("a part that appears while recording is left alone: the next free number is used and noted")
    func partAppears() throws {
        let d = scratch("race")
        let out = d + "/v.qmprec"
        var o = CaptureOptions(output: out)
        o.rotateBytes = 4096
        let log = LogLines(leveled: true)
        let sink = try CaptureSink(header: header(), options: o, logger: log.logger)
        _ = FileManager.default.createFile(atPath: d + "/v.1.qmprec", contents: Data("someone else's\n".utf8))
        Self.traffic(sink, commands: 40)
        sink.finish(reason: "signal", time: 1_000_000)
        #expect(String(decoding: FileManager.default.contents(atPath: d + "/v.1.qmprec") ?? Data(), as: UTF8.self) == "someone else's\n")
        let first = try Recording(path: out)
        #expect(first.trailer?.reason == "rotated to \(d)/v.2.qmprec")
        let second = try Recording(path: d + "/v.2.qmprec")
        let n = try notes(second)
        #expect(n.first?.text.contains("already existed and was left alone") == true)
        #expect(log.lines.contains { $0.contains("v.1.qmprec already existed") })
    }

    @Test("sizes are checked per record, and every part validates on its own")
    func partsValidate() throws {
        let d = scratch("rot")
        let out = d + "/v.qmprec"
        var o = CaptureOptions(output: out)
        o.rotateBytes = 4096
        let sink = try CaptureSink(header: header(), options: o)
        Self.traffic(sink, commands: 200)
        sink.close(3_000, 1, by: "client", reason: "eof")
        sink.finish(reason: "signal", time: 4_000)
        let stats = sink.currentStats
        #expect(stats.parts.count > 5)
        #expect(stats.bytes == stats.parts.reduce(0) { $0 + $1.bytes })
        var messages = 0
        for (n, p) in stats.parts.enumerated() {
            var st = stat()
            stat(p.path, &st)
            #expect(st.st_size <= 4096, "\(p.path): \(st.st_size) bytes")
            #expect(Int64(st.st_size) == p.bytes)
            let r = try Recording(path: p.path)
            #expect(r.trailer != nil && r.problems.isEmpty)
            messages += (0..<r.count).filter { r.direction($0) != nil }.count
            let findings = RecordingValidation.run(r)
            #expect(findings.filter { $0.severity >= .warning }.isEmpty, "\(p.path): \(findings.map(\.message))")
            if n > 0 {
                #expect(r.header?.label("part") == String(n) && r.header?.label("previous") == stats.parts[n - 1].path)
                #expect(findings.contains { $0.code == "continued-connection" && $0.severity == .info })
            }
        }
        #expect(messages == 3 + 400)
    }
}

/// A fake QEMU that greets and answers every command at once, echoing its id; counts the
/// commands it answered, so that a test can wait for traffic instead of for time.
private final class EchoPeer: @unchecked Sendable {
    let fd: Int32
    private var thread: JoinableThread?
    private let answered = DispatchSemaphore(value: 0)

    init(path: String) throws {
        fd = try Sockets.listen(.unix(path))
        let listenFD = fd
        let answered = self.answered
        thread = JoinableThread {
            while let (c, _) = Sockets.accept(listenFD) {
                JoinableThread {
                    Sockets.writeAll(c, Array(#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#.utf8) + [13, 10])
                    var framer = QMPFramer()
                    var buf = [UInt8](repeating: 0, count: 4096)
                    while true {
                        let n = recv(c, &buf, buf.count, 0)
                        if n <= 0 { break }
                        for f in framer.push(buf[..<n]) + framer.drain() {
                            var reply = JSONObject(["return": .object(JSONObject())])
                            if let id = f.message().id { reply["id"] = id }
                            Sockets.writeAll(c, JSONValue.object(reply).serializedBytes(.compact) + [13, 10])
                            answered.signal()
                        }
                    }
                    close(c)
                }.detach()
            }
        }
    }

    /// Waits until `n` more commands were answered (false after 20 s).
    func waitForAnswers(_ n: Int) -> Bool {
        (0..<n).allSatisfy { _ in answered.wait(timeout: .now() + 20) == .success }
    }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        thread?.join()
        close(fd)
    }
}

@Suite("client mode over a socket", .serialized)
struct ClientModeGuaranteeTests {
    @Test("connects, negotiates, runs --init, and a stop by signal name ends it cleanly")
    func stopBySignal() throws {
        let d = scratch("client")
        let peer = try EchoPeer(path: d + "/qemu.sock")
        var cfg = ClientModeConfig(endpoint: .unix(d + "/qemu.sock"))
        cfg.initCommands = [RecorderCommand(name: "query-status"), RecorderCommand(name: "query-name")]
        let rec = ClientRecorder(config: cfg, options: CaptureOptions(output: d + "/c.qmprec"))
        nonisolated(unsafe) var outcome: CaptureOutcome?
        let t = JoinableThread { outcome = try? rec.run() }
        #expect(peer.waitForAnswers(3), "negotiation and two init commands")
        rec.stop(by: "SIGINT")
        t.join()
        peer.stop()
        #expect(outcome?.reason == "signal" && outcome?.qemuLost == false && outcome?.incomplete == false)
        let r = try Recording(path: d + "/c.qmprec")
        #expect(r.header?.qemuVersion == "7.2.0" && r.header?.mode == .client)
        #expect((0..<r.count).filter { r.kind($0) == .command }.map { r.name($0) } == ["qmp_capabilities", "query-status", "query-name"])
        let close = try (0..<r.count).filter { r.kind($0) == .close }.map { try r.record(at: $0) }
        #expect(close.count == 1)
        if case .close(let by, let reason)? = close.first?.body { #expect(by == "recorder" && reason == "stopped by SIGINT") }
    }

    @Test("nothing to connect to: the error names the address, nothing is written")
    func unreachable() throws {
        let d = scratch("noqemu")
        let rec = ClientRecorder(config: ClientModeConfig(endpoint: .unix(d + "/none.sock")), options: CaptureOptions(output: d + "/c.qmprec"))
        #expect { _ = try rec.run() } throws: { ($0 as? SocketError)?.description.hasPrefix("unix:\(d)/none.sock: cannot connect: ") == true }
        #expect(access(d + "/c.qmprec", F_OK) != 0)
    }
}
