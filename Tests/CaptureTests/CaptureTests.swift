import QMP
@testable import Recording
import Testing
@testable import Capture

import TestSupport
import Transport

#if canImport(Glibc)
import Glibc
#endif

@Suite("redaction")
struct RedactorTests {
    private func redact(_ client: String, reply: String? = nil) -> (QMPMessage, QMPMessage?) {
        var r = Redactor()
        let c = r.process(QMPMessage(text: client + "\n"), from: .client, connection: 1)
        let rep = reply.map { r.process(QMPMessage(text: $0 + "\r\n"), from: .qemu, connection: 1) }
        return (c, rep)
    }

    @Test("passwords in set_password and change-vnc-password are replaced, nothing else changes")
    func passwords() {
        let (m, _) = redact(#"{"execute": "set_password", "arguments": {"protocol": "vnc", "password": "s3cr\"et"}, "id": 1}"#)
        #expect(m.payloadText == #"{"execute": "set_password", "arguments": {"protocol": "vnc", "password": "<redacted>"}, "id": 1}"#)
        #expect(m.bytes.last == 0x0A)
        #expect(m.kind == .command)
        let (v, _) = redact(#"{"execute":"change-vnc-password","arguments":{"password":"hunter2"}}"#)
        #expect(!v.payloadText.contains("hunter2"))
    }

    @Test("secret objects (flat and under props), credentials in migrate URIs, blockdev keys, HMP")
    func secrets() {
        let (a, _) = redact(#"{"execute":"object-add","arguments":{"qom-type":"secret","id":"sec0","data":"cGFzcw==","iv":"aXY=","format":"base64"}}"#)
        #expect(a.payloadText == #"{"execute":"object-add","arguments":{"qom-type":"secret","id":"sec0","data":"<redacted>","iv":"<redacted>","format":"base64"}}"#)
        let (b, _) = redact(#"{"execute":"object-add","arguments":{"qom-type":"secret","id":"s","props":{"data":"x"}}}"#)
        #expect(!b.payloadText.contains("\"x\""))
        let (c, _) = redact(#"{"execute":"migrate","arguments":{"uri":"tcp:user:pw@10.0.0.1:4444"}}"#)
        #expect(!c.payloadText.contains("pw@"))
        let (c2, _) = redact(#"{"execute":"migrate","arguments":{"uri":"tcp:10.0.0.1:4444"}}"#)
        #expect(c2.payloadText.contains("tcp:10.0.0.1:4444"))
        let (d, _) = redact(#"{"execute":"blockdev-add","arguments":{"driver":"rbd","node-name":"n","key":"AQB...","server":{"password":"p"}}}"#)
        #expect(!d.payloadText.contains("AQB") && !d.payloadText.contains("\"p\""))
        #expect(d.payloadText.contains("\"node-name\":\"n\""))
        let (e, _) = redact(#"{"execute":"human-monitor-command","arguments":{"command-line":"set_password vnc abc"}}"#)
        #expect(!e.payloadText.contains("abc"))
        let (f, _) = redact(#"{"execute":"human-monitor-command","arguments":{"command-line":"info status"}}"#)
        #expect(f.payloadText.contains("info status"))
    }

    @Test("replies to query-* commands lose echoed passwords; other replies are untouched")
    func replies() {
        let (_, r) = redact(#"{"execute":"query-block","id":"a"}"#, reply: #"{"return": [{"device": "d", "inserted": {"password": "x", "file": "f"}}], "id": "a"}"#)
        #expect(r?.payloadText == #"{"return": [{"device": "d", "inserted": {"password": "<redacted>", "file": "f"}}], "id": "a"}"#)
        let (_, r2) = redact(#"{"execute":"query-vnc","id":"b"}"#, reply: #"{"return": {"password": "x", "enabled": true}, "id": "b"}"#)
        #expect(r2?.payloadText == #"{"return": {"password": "<redacted>", "enabled": true}, "id": "b"}"#)
        #expect(r2?.bytes.suffix(2) == [0x0D, 0x0A])
        let (_, r3) = redact(#"{"execute":"cont","id":"c"}"#, reply: #"{"return": {"password": "x"}, "id": "c"}"#)
        #expect(r3?.payloadText.contains("\"x\"") == true)
    }

    @Test("disabled redaction keeps everything")
    func disabled() {
        var r = Redactor(enabled: false)
        let m = QMPMessage(text: #"{"execute":"set_password","arguments":{"password":"p"}}"#)
        #expect(r.process(m, from: .client, connection: 1) == m)
    }
}

@Suite("endpoints and commands")
struct EndpointTests {
    @Test(arguments: [
        ("unix:/run/qmp.sock", Endpoint.unix("/run/qmp.sock")),
        ("tcp:127.0.0.1:4444", .tcp(host: "127.0.0.1", port: 4444)),
        ("tcp::4444", .tcp(host: "127.0.0.1", port: 4444)),
        ("tcp:4444", .tcp(host: "127.0.0.1", port: 4444)),
        ("tcp:[::1]:4444", .tcp(host: "::1", port: 4444)),
    ])
    func parses(_ s: String, _ e: Endpoint) throws {
        #expect(try Endpoint(parsing: s) == e)
    }

    @Test(arguments: ["", "unix:", "tcp:host:notaport", "tcp:host:70000", "http://x", "/run/qmp.sock"])
    func rejects(_ s: String) {
        #expect(throws: Endpoint.ParseError.self) { _ = try Endpoint(parsing: s) }
    }

    @Test("recorder commands: name, name + JSON arguments, or a whole object")
    func commands() throws {
        #expect(try RecorderCommand(parsing: "query-status") == RecorderCommand(name: "query-status"))
        let b = try RecorderCommand(parsing: #"balloon {"value": 536870912}"#)
        #expect(b.name == "balloon" && b.arguments?["value"]?.int64Value == 536_870_912)
        let c = try RecorderCommand(parsing: #"{"execute": "query-rx-filter", "arguments": {"name": "net0"}}"#)
        #expect(c.name == "query-rx-filter" && c.arguments?["name"]?.stringValue == "net0")
        #expect(String(decoding: b.bytes(id: "x"), as: UTF8.self) == #"{"execute":"balloon","arguments":{"value":536870912},"id":"x"}"# + "\n")
        #expect(throws: JSONParseError.self) { _ = try RecorderCommand(parsing: "balloon {oops") }
    }

    @Test("rotated file names")
    func parts() {
        #expect(CaptureSink.partPath("/x/cap.qmprec", 1) == "/x/cap.1.qmprec")
        #expect(CaptureSink.partPath("cap.qmprec.gz", 2) == "cap.2.qmprec.gz")
        #expect(CaptureSink.partPath("cap", 3) == "cap.3")
    }
}

/// The proxy against an in-process fake QMP peer (a unit test of forwarding and recording;
/// the integration tests run the same against a real QEMU).
@Suite("proxy with a fake peer", .serialized)
struct ProxyFakePeerTests {
    @Test("bytes pass unchanged both ways, are recorded exactly, and a second client is served after the first")
    func forwarding() throws {
        let dir = "/tmp/qmpreplay-proxy-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        mkdir(dir, 0o700)
        let up = dir + "/qemu.sock", listen = dir + "/proxy.sock", out = dir + "/p.qmprec"
        let upFD = try Sockets.listen(.unix(up))
        let greeting = Array(#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#.utf8) + [13, 10]
        // Fake QEMU, one connection at a time as QEMU's monitor: greet, then answer every
        // line with an event and {"return": {}}.
        let peer = JoinableThread {
            var served = 0
            while served < 3, let (fd, _) = Sockets.accept(upFD) {
                served += 1
                Sockets.writeAll(fd, greeting)
                var buf = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = recv(fd, &buf, buf.count, 0)
                    if n <= 0 { break }
                    for _ in buf[..<n].filter({ $0 == 0x0A }) {
                        Sockets.writeAll(fd, Array(#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}"#.utf8) + [13, 10])
                        Sockets.writeAll(fd, Array(#"{"return": {}}"#.utf8) + [13, 10])
                    }
                }
                close(fd)
            }
        }
        let rec = ProxyRecorder(config: ProxyModeConfig(listen: .unix(listen), upstream: .unix(up)), options: completeOptions(out))
        try rec.start()   // the version probe was the fake's first connection (served = 1)
        var received: [[UInt8]] = []
        let sent: [[UInt8]] = [Array("{\"execute\":\"qmp_capabilities\"}\n".utf8), Array("{\"execute\": \"stop\", \"id\": 5}\r\n".utf8)]
        for round in 0..<2 {
            // The second client waits (as in QEMU's backlog) until the first one's QEMU
            // connection is let go.
            let c = try LineClient(.unix(listen), negotiate: false)
            var got = Array(try c.readLine()) + [10]
            for s in sent {
                c.send(s)
                for _ in 0..<2 { got += Array(try c.readLine()) + [10] }   // the event, the reply
            }
            c.close()
            received.append(got)
            #expect(got.starts(with: greeting), "round \(round)")
        }
        rec.stop(by: "the test")
        let outcome = rec.wait()
        shutdown(upFD, Int32(SHUT_RDWR))  // wakes the fake peer's accept if it still waits
        close(upFD)
        peer.join()
        #expect(outcome.reason == "stopped")
        let r = try Recording(path: out)
        #expect(r.header?.mode == .proxy && r.header?.qemuVersion == "7.2.0")
        #expect(r.trailer?.reason == "stopped")
        for (round, conn) in [UInt32(1), 2].enumerated() {
            var q: [UInt8] = [], c: [UInt8] = []
            for i in 0..<r.count where r.connection(i) == conn {
                guard let b = try r.rawBytes(i) else { continue }
                if r.direction(i) == .qemu { q += b } else { c += b }
            }
            #expect(q == received[round], "QEMU -> client bytes of connection \(conn)")
            #expect(c == sent.flatMap { $0 }, "client -> QEMU bytes of connection \(conn)")
        }
        #expect((0..<r.count).filter { r.kind($0) == .close }.count == 2)
    }
}

/// Rotation, several clients at once, and the bounded queue, against the fast fake peer.
@Suite("proxy limits", .serialized)
struct ProxyLimitTests {
    private func dir() -> String {
        let d = "/tmp/qmpreplay-limits-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        mkdir(d, 0o700)
        return d
    }

    /// Starts a proxy in front of a fast peer; returns it, the listen endpoint and the peer.
    private func start(_ d: String, _ tune: (inout ProxyModeConfig, inout CaptureOptions) -> Void) throws
        -> (ProxyRecorder, Endpoint, FastQMPPeer) {
        let (proxy, cfg, peer) = try proxyBeforeFastPeer(d, tune)
        return (proxy, cfg.listen, peer)
    }

    /// Stops the proxy (its clients have left or not) and the peer.
    private func end(_ proxy: ProxyRecorder, _ peer: FastQMPPeer) -> CaptureOutcome {
        proxy.stop(by: "the test")
        let outcome = proxy.wait()
        peer.stop()
        return outcome
    }

    @Test("--rotate: numbered files, each complete and readable, linked by labels")
    func rotation() throws {
        let d = dir()
        let (proxy, listen, peer) = try start(d) { _, o in o.rotateBytes = 200_000; o.flushInterval = 10_000_000 }
        let c = try LineClient(listen)
        #expect(try c.flood(20_000) == 20_001)
        c.close()
        _ = end(proxy, peer)
        let first = try Recording(path: d + "/p.qmprec")
        #expect(first.trailer?.reason.hasPrefix("rotated to \(d)/p.1.qmprec") == true)
        var total = first.count
        var n = 1
        while access(CaptureSink.partPath(d + "/p.qmprec", n), F_OK) == 0 {
            let part = try Recording(path: CaptureSink.partPath(d + "/p.qmprec", n))
            #expect(part.header?.label("part") == String(n))
            #expect(part.trailer != nil)
            #expect(part.problems.isEmpty, "\(part.problems)")
            total += part.count
            n += 1
        }
        #expect(n >= 3, "a 4 MB flood with 200 kB files makes several parts")
        // Every event made it into some file.
        var events = 0
        for i in 0..<n {
            let r = try Recording(path: i == 0 ? d + "/p.qmprec" : CaptureSink.partPath(d + "/p.qmprec", i))
            events += (0..<r.count).filter { r.kind($0) == .event }.count
        }
        #expect(events == 20_000)
        #expect(total > 20_000)
    }

    @Test("--max-clients 2: two clients at once, each with its own upstream connection and number")
    func twoClients() throws {
        let d = dir()
        let (proxy, listen, peer) = try start(d) { c, _ in c.maxClients = 2 }
        let a = try LineClient(listen)
        let b = try LineClient(listen)
        _ = try a.roundTrip(Array("{\"execute\":\"query-status\"}\n".utf8))
        _ = try b.roundTrip(Array("{\"execute\":\"query-status\"}\n".utf8))
        a.close(); b.close()
        _ = end(proxy, peer)
        let r = try Recording(path: d + "/p.qmprec")
        let conns = Set((0..<r.count).filter { r.kind($0) == .greeting }.map { r.connection($0) })
        #expect(conns.count >= 2)
        let commands = (0..<r.count).filter { r.kind($0) == .command && r.name($0) == "query-status" }
        #expect(Set(commands.map { r.connection($0) }).count == 2)
    }

    @Test("a disk that cannot keep up: traffic is still forwarded whole, drops are counted and noted")
    func drops() throws {
        let d = dir()
        let (proxy, listen, peer) = try start(d) { _, o in o.queueLimitBytes = 1 }
        let c = try LineClient(listen)
        #expect(try c.flood(5_000) == 5_001, "the client got every message")
        c.close()
        _ = end(proxy, peer)
        let r = try Recording(path: d + "/p.qmprec")
        #expect((r.trailer?.dropped ?? 0) > 0)
        let notes = try (0..<r.count).filter { r.kind($0) == .note }.map { try r.record(at: $0) }
        #expect(notes.contains { if case .note(let text, _) = $0.body { return text.contains("could not keep up") } else { return false } })
        // Whole messages only, and every one accounted for: greeting, two commands, their two
        // replies and 5000 events = recorded + noted as dropped.
        #expect((0..<r.count).filter { r.kind($0) == .other }.isEmpty)
        let recorded = (0..<r.count).filter { r.direction($0) != nil }.count
        let dropped = notes.reduce(0) { n, rec in
            if case .note(_, let data) = rec.body { return n + Int(data["gap_messages"]?.int64Value ?? 0) }
            return n
        }
        #expect(recorded + dropped == 5005)
    }
}
