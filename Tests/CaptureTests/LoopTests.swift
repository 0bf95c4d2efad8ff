import Logging
import NIOCore
import NIOEmbedded
import QMP
import Recording
import Testing
@testable import Capture

import Transport

#if canImport(Glibc)
import Glibc
#endif

// The recorders' event-loop logic on an EmbeddedEventLoop (Rigs.swift): every timing rule
// (drain quiet, linger, --duration, polls, reconnects) is checked at the exact nanosecond,
// and no test sleeps.

@Suite("the proxy's glue: one client channel, one QEMU channel")
struct GlueTests {
    @Test("bytes pass unchanged both ways at once, and are recorded with their receive times")
    func forwarding() throws {
        let rig = try GlueRig()
        try rig.qemu(fakeGreeting)
        #expect(try rig.client.written() == fakeGreeting)
        rig.advance(ms: 5)
        try rig.clientSends(#"{"execute": "qmp_capabilities"}"# + "\n" + #"{"execute": "query-st"#)
        #expect(try rig.upstream.written() == #"{"execute": "qmp_capabilities"}"# + "\n" + #"{"execute": "query-st"#)
        try rig.clientSends("atus\"}\n")
        #expect(try rig.upstream.written() == "atus\"}\n")
        rig.advance(ms: 1)
        try rig.qemu("{\"return\": {}}\r\n{\"return\": {\"status\": \"running\"}}\r\n")
        #expect(try rig.client.written() == "{\"return\": {}}\r\n{\"return\": {\"status\": \"running\"}}\r\n")
        #expect(!rig.ended)
        #expect(rig.log.lines == ["info: client connected [conn=1 peer=tcp:127.0.0.1:40000]"])
        let r = try rig.recording()
        #expect(try r.stream(.qemu, conn: 1) == fakeGreeting + "{\"return\": {}}\r\n{\"return\": {\"status\": \"running\"}}\r\n")
        #expect(try r.stream(.client, conn: 1) == #"{"execute": "qmp_capabilities"}"# + "\n" + #"{"execute": "query-status"}"# + "\n")
        let commands = (0..<r.count).filter { r.kind($0) == .command }
        #expect(commands.map { r.time($0) } == [5_000_000, 5_000_000], "a message's time is when its last byte came")
        #expect((0..<r.count).filter { r.kind($0) == .return }.map { r.time($0) } == [6_000_000, 6_000_000])
        #expect(r.kind(0) == .open && r.connection(0) == 1)
    }

    @Test("the client leaves: QEMU's answers are read and recorded, not forwarded, until QEMU is quiet for 150 ms")
    func drainQuiet() throws {
        let rig = try GlueRig()
        try rig.qemu(fakeGreeting)
        try rig.clientSends("{\"execute\":\"query-qmp-schema\",\"id\":2}\n")
        rig.client.peerSendsEOF()
        _ = try rig.client.written()
        rig.advance(ms: 100)
        #expect(!rig.ended)
        try rig.qemu("{\"return\": [], \"id\": 2}\r\n")
        #expect(try rig.client.written() == "", "nothing goes to a client that left")
        rig.advance(ms: 149)
        #expect(!rig.ended, "QEMU has been quiet for 149 ms only")
        rig.advance(ms: 1)
        #expect(rig.ended && rig.end?.qemuClosed == false)
        #expect(!rig.upstream.isActive && !rig.client.isActive)
        let r = try rig.recording()
        #expect((0..<r.count).filter { r.kind($0) == .return }.map { r.time($0) } == [100_000_000])
        let closes = try r.closes()
        #expect(closes.count == 1)
        #expect(closes.first?.by == "client" && closes.first?.time == 250_000_000)
        #expect(closes.first?.reason == "client closed (eof) at +00:00:00.000; QEMU's pending output read, upstream connection closed")
    }

    @Test("a QEMU that keeps talking to a client that left is cut off when the linger ends (1 s)")
    func drainBounded() throws {
        let rig = try GlueRig()
        rig.client.peerSendsEOF()
        for _ in 0..<9 {
            rig.advance(ms: 100)
            try rig.qemu("{\"event\": \"X\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 0}}\r\n")
        }
        rig.advance(ms: 99)
        #expect(!rig.ended)
        rig.advance(ms: 1)
        #expect(rig.ended)
        let r = try rig.recording()
        #expect(try r.closes().map(\.time) == [1_000_000_000])
    }

    @Test("a client lost with an error: its close record says why, and QEMU is still drained")
    func clientLost() throws {
        let rig = try GlueRig()
        rig.advance(ms: 2)
        rig.client.pipeline.fireErrorCaught(IOError(errnoCode: ECONNRESET, reason: "read"))
        #expect(!rig.client.isActive && rig.upstream.isActive)
        rig.advance(ms: 150)
        #expect(rig.ended)
        let r = try rig.recording()
        #expect(try r.closes().map(\.reason) == ["client lost at +00:00:00.002 (Connection reset by peer); QEMU's pending output read, upstream connection closed"])
    }

    @Test("QEMU closes: the client is given what still waits for it, then closed")
    func lingerForClient() throws {
        let rig = try GlueRig(clientReads: false)
        try rig.qemu("{\"event\": \"SHUTDOWN\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}\r\n")
        rig.upstream.peerSendsEOF()
        rig.advance(ms: 500)
        #expect(!rig.ended, "the client has not taken QEMU's last message yet")
        rig.clientHold?.release()
        #expect(rig.ended && rig.end?.qemuClosed == true)
        #expect(try rig.client.written().contains("SHUTDOWN"))
        let r = try rig.recording()
        let closes = try r.closes()
        #expect(closes.map(\.by) == ["qemu"])
        #expect(closes.first?.reason == "eof: QEMU closed the connection after SHUTDOWN; client disconnected")
        #expect(closes.first?.time == 0)
    }

    @Test("QEMU closes and the client never reads: closed when the linger ends")
    func lingerEnds() throws {
        let rig = try GlueRig(clientReads: false)
        try rig.qemu("{\"return\": {}}\r\n")
        rig.upstream.peerSendsEOF()
        rig.advance(ms: 999)
        #expect(!rig.ended)
        rig.advance(ms: 1)
        #expect(rig.ended)
        let r = try rig.recording()
        #expect(try r.closes().map(\.reason) == ["upstream lost: QEMU closed the connection without SHUTDOWN; client disconnected"])
    }

    @Test("past --peer-buffer bytes waiting for a client that stopped reading, the recorder ends the pair")
    func peerBufferClient() throws {
        let rig = try GlueRig(limits: PairLimits(peerBuffer: 1000, linger: 1_000_000_000), clientReads: false)
        let event = "{\"event\": \"BALLOON_CHANGE\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, \"data\": {\"actual\": 1}}\r\n"
        var sent = 0
        while sent <= 1000 {
            #expect(!rig.ended)
            try rig.qemu(event)
            sent += event.utf8.count
        }
        #expect(rig.ended && !rig.client.isActive && !rig.upstream.isActive)
        let why = "the client stopped reading: \(sent) bytes were waiting (limit 1000); the client was disconnected and its QEMU connection closed"
        #expect(rig.log.lines.last == "warning: \(why) [conn=1 peer=tcp:127.0.0.1:40000]")
        let r = try rig.recording()
        #expect(try r.closes().map(\.by) == ["recorder"])
        #expect(try r.closes().map(\.reason) == [why])
        #expect((0..<r.count).filter { r.kind($0) == .event }.count == sent / event.utf8.count, "what QEMU sent is recorded all the same")
    }

    @Test("past --peer-buffer bytes waiting for a QEMU that does not take its input, the recorder ends the pair")
    func peerBufferQEMU() throws {
        let rig = try GlueRig(limits: PairLimits(peerBuffer: 100, linger: 1_000_000_000), qemuReads: false)
        try rig.clientSends(String(repeating: " ", count: 60))
        #expect(!rig.ended)
        try rig.clientSends(String(repeating: " ", count: 60))
        #expect(rig.ended)
        let r = try rig.recording()
        #expect(try r.closes().first?.reason.hasPrefix("QEMU stopped reading its input: 120 bytes were waiting (limit 100)") == true)
    }

    @Test("a stop ends an open pair by the recorder and a lingering one as it stands")
    func stop() throws {
        let open = try GlueRig()
        open.pair.stop("stopped by SIGTERM")
        #expect(open.ended)
        #expect(try open.recording().closes().map(\.reason) == ["stopped by SIGTERM"])
        let lingering = try GlueRig()
        lingering.client.peerSendsEOF()
        lingering.advance(ms: 20)
        lingering.pair.stop("stopped by SIGTERM")
        #expect(lingering.ended)
        let closes = try lingering.recording().closes()
        #expect(closes.map(\.by) == ["client"] && closes.first?.time == 20_000_000)
    }
}

/// A `ProxyServer` on an `EmbeddedEventLoop`: clients are `EmbeddedChannel`s handed to it as
/// if accepted, and QEMU connections are `EmbeddedChannel`s from the rig's connector.
final class ServerRig: LoopRig {
    private(set) var sink: CaptureSink!
    private(set) var server: ProxyServer!
    private(set) var done: EventLoopFuture<String>!
    /// QEMU's side of every connection the proxy made, and the clients, in order.
    private(set) var upstreams: [EmbeddedChannel] = []
    private(set) var clients: [EmbeddedChannel] = []
    var qemuDown = false

    init(_ tune: (inout ProxyModeConfig) -> Void = { _ in }) throws {
        super.init("server")
        var config = ProxyModeConfig(listen: .unix(dir + "/proxy.sock"), upstream: .unix("/fake/qemu.sock"))
        tune(&config)
        sink = try makeSink(.proxy, "p.qmprec")
        server = ProxyServer(config: config, context: context, start: 0, wallStart: 0, loop: loop) { [unowned self] pair in
            if self.qemuDown {
                return self.loop.makeFailedFuture(SocketError(endpoint: "unix:/fake/qemu.sock", reason: "cannot connect: Connection refused", errno: ECONNREFUSED))
            }
            let up = self.qemuConnection(pair.handler(for: .upstream))
            up.assumeIsolated().whenSuccess { self.upstreams.append($0 as! EmbeddedChannel) }
            return up
        }
        done = server.begin(listener: nil, sink: sink, versionNote: VersionNote(headerHasVersion: true))
    }

    /// A client connects.
    @discardableResult
    func connect() throws -> EmbeddedChannel {
        let c = try channel(to: SocketAddress(unixDomainSocketPath: dir + "/proxy.sock"))
        clients.append(c)
        server.accepted(c)
        return c
    }

    var reason: String? { value(done) }

    func recording() throws -> Recording {
        if reason == nil { server.stop(by: "the test") }
        return try finish(sink, reason: reason ?? "", file: "p.qmprec")
    }
}

@Suite("the proxy's accept side: clients, --max-clients, --once, --duration, QEMU unreachable")
struct ProxyServerTests {
    @Test("one client at a time: the next waits, unread, until the first one's QEMU connection is let go")
    func oneAtATime() throws {
        let rig = try ServerRig()
        try rig.connect()
        try rig.connect()
        #expect(rig.upstreams.count == 1, "the second client waits as in QEMU's listen backlog")
        rig.clients[0].peerSendsEOF()
        rig.advance(ms: 149)
        #expect(rig.upstreams.count == 1)
        rig.advance(ms: 1)
        #expect(rig.upstreams.count == 2, "admitted once QEMU had been quiet for 150 ms after the first left")
        #expect(rig.log.lines.filter { $0.hasPrefix("info: client connected") } == [
            "info: client connected [conn=1 peer=unix]", "info: client connected [conn=2 peer=unix]",
        ])
        let r = try rig.recording()
        #expect((0..<r.count).filter { r.kind($0) == .open }.map { r.connection($0) } == [1, 2])
        #expect((0..<r.count).filter { r.kind($0) == .open }.map { r.time($0) } == [0, 150_000_000])
    }

    @Test("--max-clients 2: two sessions at once, each with its own QEMU connection")
    func twoAtOnce() throws {
        let rig = try ServerRig { $0.maxClients = 2 }
        try rig.connect()
        try rig.connect()
        try rig.connect()
        #expect(rig.upstreams.count == 2)
        try rig.upstreams[1].writeInbound(ByteBuffer(string: fakeGreeting))
        #expect(try rig.clients[1].written() == fakeGreeting && rig.clients[0].written() == "")
        _ = try rig.recording()
    }

    @Test("--once: the recording ends with the first session, telling QEMU lost from a clean end")
    func once() throws {
        let clean = try ServerRig { $0.once = true }
        try clean.connect()
        clean.clients[0].peerSendsEOF()
        clean.advance(ms: 150)
        #expect(clean.reason == "complete (--once)")
        _ = try clean.recording()
        let lost = try ServerRig { $0.once = true }
        try lost.connect()
        lost.upstreams[0].peerSendsEOF()
        #expect(lost.reason == "upstream lost (--once)")
        _ = try lost.recording()
    }

    @Test("--duration: open sessions are ended by the recorder when it elapses")
    func duration() throws {
        let rig = try ServerRig { $0.duration = 2_000_000_000 }
        try rig.connect()
        rig.advance(ms: 1999)
        #expect(rig.reason == nil)
        rig.advance(ms: 1)
        #expect(rig.reason == "duration")
        #expect(!rig.clients[0].isActive)
        let r = try rig.recording()
        #expect(try r.closes().map { "\($0.by): \($0.reason) at \($0.time)" } == ["recorder: duration reached at 2000000000"])
    }

    @Test("QEMU unreachable when a client connects: noted, the client closed, the proxy goes on")
    func unreachable() throws {
        let rig = try ServerRig()
        rig.qemuDown = true
        try rig.connect()
        #expect(!rig.clients[0].isActive)
        #expect(rig.log.lines.contains { $0.hasPrefix("warning: a client connected but QEMU could not be reached: unix:/fake/qemu.sock: cannot connect: Connection refused") })
        rig.qemuDown = false
        try rig.connect()
        #expect(rig.upstreams.count == 1)
        let r = try rig.recording()
        #expect(try r.notes().contains { $0.conn == 1 && $0.text.contains("could not be reached") })
        #expect((0..<r.count).filter { r.kind($0) == .open }.map { r.connection($0) } == [2])
    }

    @Test("a stop by signal: sessions closed with the signal's name, waiting clients let go, trailer 'signal'")
    func stopBySignal() throws {
        let rig = try ServerRig()
        try rig.connect()
        try rig.connect()
        rig.server.stop(by: "SIGINT")
        #expect(rig.reason == "signal")
        #expect(!rig.clients[0].isActive && !rig.clients[1].isActive)
        let r = try rig.recording()
        #expect(try r.closes().map(\.reason) == ["stopped by SIGINT"])
    }
}

/// A `ClientDriver` on an `EmbeddedEventLoop`, connecting to `EmbeddedChannel`s that play
/// QEMU by a script: each attempt is refused, accepted and closed before a word, or a QEMU.
final class ClientRig: LoopRig {
    enum Attempt { case refuse, closeAtOnce, qemu }

    private(set) var driver: ClientDriver!
    private var script: [Attempt]
    private(set) var attempts = 0
    private(set) var sink: CaptureSink?
    private(set) var done: EventLoopFuture<String>?

    init(_ config: ClientModeConfig, script: [Attempt]) {
        self.script = script
        super.init("client")
        driver = ClientDriver(config: config, context: context, start: 0, wallStart: 0, loop: loop) { [unowned self] handler in
            self.attempts += 1
            let step = self.script.isEmpty ? .refuse : self.script.removeFirst()
            if step == .refuse { return self.loop.makeFailedFuture(IOError(errnoCode: ECONNREFUSED, reason: "connect")) }
            let up = self.qemuConnection(handler)
            up.assumeIsolated().whenSuccess { ch in
                let ch = ch as! EmbeddedChannel
                self.loop.assumeIsolated().execute {
                    if step == .closeAtOnce { ch.peerSendsEOF() } else { _ = try? ch.writeInbound(ByteBuffer(string: fakeGreeting)) }
                }
            }
            return up
        }
    }

    /// Connects until greeted, then creates the file and records.
    func begin() throws {
        let greeted = driver.begin()
        loop.run()
        #expect(value(greeted) == .some("7.2.0"))
        let sink = try makeSink(.client, "c.qmprec")
        self.sink = sink
        done = driver.record(into: sink)
    }

    /// QEMU's part: answers every command the recorder sent on the last connection.
    func answer() throws {
        guard let ch = channels.last, ch.isActive else { return }
        for line in try ch.written().split(separator: "\n") {
            guard let id = try JSONParser.parse(String(line))["id"] else { continue }
            try ch.writeInbound(ByteBuffer(string: "{\"return\": {}, \"id\": \(JSONValue.string(id.stringValue ?? "").serialized())}\r\n"))
        }
    }

    /// Moves time in 1 ms steps, answering as QEMU would.
    func run(ms: Int) throws {
        for _ in 0..<ms {
            try answer()
            loop.advanceTime(by: .milliseconds(1))
        }
    }

    var reason: String? { value(done) }

    func recording() throws -> Recording { try finish(sink, reason: reason ?? "", file: "c.qmprec") }
}

@Suite("client mode on the event loop: polls, reconnects, stops")
struct ClientDriverTests {
    @Test("--poll at 10 ms is kept exactly, one command of its own in flight")
    func pollCadence() throws {
        var cfg = ClientModeConfig(endpoint: .unix("/fake/qemu.sock"))
        cfg.initCommands = [RecorderCommand(name: "query-version")]
        cfg.polls = [PollSpec(command: RecorderCommand(name: "query-status"), interval: 10_000_000)]
        cfg.duration = 600_000_000
        let rig = ClientRig(cfg, script: [.qemu])
        try rig.begin()
        try rig.run(ms: 600)
        #expect(rig.reason == "duration")
        let r = try rig.recording()
        let names = (0..<r.count).filter { r.kind($0) == .command }.map { r.name($0) ?? "" }
        #expect(names.prefix(2) == ["qmp_capabilities", "query-version"])
        let polls = (0..<r.count).filter { r.kind($0) == .command && r.name($0) == "query-status" }.map { r.time($0) }
        #expect(polls.count == 60, "\(polls.count) polls in 0.6 s")
        #expect(zip(polls, polls.dropFirst()).allSatisfy { $1 - $0 == 10_000_000 }, "\(polls.prefix(5))")
        #expect(r.header?.label("polls") == nil, "labels come from the recorder, not the driver")
        #expect(try r.closes().map(\.reason) == ["duration reached"])
    }

    @Test("--reconnect: a connection QEMU closes before greeting is retried, not recorded; QEMU lost is counted")
    func reconnect() throws {
        var cfg = ClientModeConfig(endpoint: .unix("/fake/qemu.sock"))
        cfg.initCommands = []
        cfg.reconnect = true
        cfg.duration = 2_000_000_000
        let rig = ClientRig(cfg, script: [.qemu, .closeAtOnce, .refuse, .closeAtOnce, .qemu])
        try rig.begin()
        try rig.run(ms: 100)
        rig.channels[0].peerSendsEOF()              // QEMU vanishes (no SHUTDOWN)
        #expect(rig.attempts == 2, "the first attempt to reconnect is made at once")
        try rig.run(ms: 249)
        #expect(rig.attempts == 2)
        try rig.run(ms: 1)
        #expect(rig.attempts == 3)
        try rig.run(ms: 500)
        #expect(rig.attempts == 5)
        #expect(rig.log.lines.contains("warning: QEMU closed the connection (upstream lost: QEMU closed the connection without SHUTDOWN); waiting to reconnect [conn=1]"))
        #expect(rig.log.lines.contains("info: reconnected to QEMU [conn=2]"))
        try rig.run(ms: 1150)
        #expect(rig.reason == "duration")
        #expect(rig.driver.lostConnections == 1)
        let r = try rig.recording()
        let opens = (0..<r.count).filter { r.kind($0) == .open }.map { r.connection($0) }
        let greeted = Set((0..<r.count).filter { r.kind($0) == .greeting }.map { r.connection($0) })
        #expect(opens == [1, 2])
        #expect(Set(opens) == greeted, "every recorded connection carried QEMU's greeting")
        #expect(try r.closes().map { "\($0.conn) \($0.by): \($0.reason)" } == [
            "1 qemu: upstream lost: QEMU closed the connection without SHUTDOWN", "2 recorder: duration reached",
        ])
    }

    @Test("a stop while waiting for QEMU to come back ends the recording, trailer 'signal'")
    func stopWhileReconnecting() throws {
        var cfg = ClientModeConfig(endpoint: .unix("/fake/qemu.sock"))
        cfg.initCommands = []
        cfg.reconnect = true
        let rig = ClientRig(cfg, script: [.qemu])
        try rig.begin()
        try rig.run(ms: 10)
        rig.channels[0].peerSendsEOF()
        try rig.run(ms: 1000)
        #expect(rig.reason == nil)
        rig.driver.stop(by: "SIGTERM")
        #expect(rig.reason == "signal")
        _ = try rig.recording()
    }

    @Test("QEMU unreachable without --reconnect: the first error, nothing recorded")
    func unreachable() throws {
        let rig = ClientRig(ClientModeConfig(endpoint: .unix("/fake/qemu.sock")), script: [.refuse])
        var error: Error?
        rig.driver.begin().assumeIsolated().whenFailure { error = $0 }
        #expect((error as? SocketError)?.description == "unix:/fake/qemu.sock: cannot connect: Connection refused")
        try rig.loop.syncShutdownGracefully()
    }
}

@Suite("clock jumps")
struct ClockWatchTests {
    @Test("a wall-clock step of more than a second against the monotonic clock is a jump")
    func jumps() {
        var w = ClockWatch(startWall: 1_000_000_000)
        #expect(w.check(monotonic: 1_000_000_000, wall: 1_001_000_000) == nil)
        #expect(w.check(monotonic: 2_000_000_000, wall: 1_002_000_400) == nil, "drift is not a jump")
        #expect(w.check(monotonic: 3_000_000_000, wall: 1_063_000_000) == 59_999_600)
        #expect(w.check(monotonic: 4_000_000_000, wall: 1_064_000_000) == nil)
    }
}
