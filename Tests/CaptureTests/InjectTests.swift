import NIOCore
import QMP
import Recording
import Testing
@testable import Capture
import Transport

/// `ClientDriver.inject`, what the live shell's `send` goes through (`ClientRecorder.send`):
/// on an `EmbeddedEventLoop` whose QEMU answers every command by id (`ClientRig`).
@Suite("client mode: commands injected by the live shell")
struct InjectTests {
    /// The replies handed over, in order (everything runs on the test's thread).
    final class Replies: @unchecked Sendable {
        var got: [Result<QMPMessage, SocketError>] = []
        var ids: [String?] { got.map { (try? $0.get())?.id?.stringValue } }
    }

    @Test("queued until negotiated, recorded as the client's, the reply handed over; QEMU gone fails what waits")
    func inject() throws {
        var cfg = ClientModeConfig(endpoint: .unix("/fake/qemu.sock"))
        cfg.initCommands = [RecorderCommand(name: "query-version")]
        let rig = ClientRig(cfg, script: [.qemu])
        try rig.begin()
        let replies = Replies()
        // Before QEMU answered qmp_capabilities: held, then sent.
        rig.driver.inject(RecorderCommand(name: "stop")) { replies.got.append($0) }
        #expect(replies.got.isEmpty)
        try rig.run(ms: 5)
        #expect(replies.ids == ["qmpreplay-shell-1"])
        rig.driver.inject(RecorderCommand(name: "balloon", arguments: JSONObject(["value": .int(1 << 30)]))) { replies.got.append($0) }
        try rig.run(ms: 5)
        #expect(replies.ids == ["qmpreplay-shell-1", "qmpreplay-shell-2"])
        // A command QEMU never answers: its waiter hears that QEMU went away.
        rig.driver.inject(RecorderCommand(name: "query-status")) { replies.got.append($0) }
        rig.channels[0].peerSendsEOF()
        #expect(replies.got.count == 3)
        if case .failure(let e) = replies.got[2] { #expect(e.reason.contains("QEMU closed the connection")) } else { Issue.record("no failure") }
        #expect(rig.reason == "upstream lost")
        let r = try rig.recording()
        let commands = (0..<r.count).filter { r.kind($0) == .command }.map { r.name($0) ?? "" }
        #expect(commands == ["qmp_capabilities", "stop", "query-version", "balloon", "query-status"])
        let answered = (0..<r.count).filter { r.kind($0) == .return }.compactMap { try? r.record(at: $0).message?.id?.stringValue }
        #expect(answered.contains("qmpreplay-shell-2"))
    }

    @Test("without a connection: refused at once")
    func refused() throws {
        let rig = ClientRig(ClientModeConfig(endpoint: .unix("/fake/qemu.sock")), script: [.qemu])
        let replies = Replies()
        rig.driver.inject(RecorderCommand(name: "stop")) { replies.got.append($0) }
        #expect(replies.got.count == 1)
        if case .failure(let e) = replies.got[0] { #expect(e.reason == "not connected to QEMU") } else { Issue.record("no failure") }
    }
}
