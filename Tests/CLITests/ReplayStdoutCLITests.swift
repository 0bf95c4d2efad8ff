import Foundation
import QMP
import Recording
import Testing

/// What `replay --stdout` prints (README, docs/REPLAY.md): QEMU's side of the connection,
/// greeting first, then every reply and event, in recorded order; no client command.
@Suite("qmpreplay replay --stdout", .serialized)
struct ReplayStdoutCLITests {
    @Test("a recording with several connections: which one is replayed is said once, and --connection picks another")
    func severalConnections() throws {
        let path = CLI.recording("synthetic-mixed.qmprec")
        let r = try CLI.run(["replay", path, "--stdout", "--speed", "max", "--quiet"])
        #expect(r.status == 0)
        #expect(r.stderr.hasPrefix("qmpreplay: warning: \(path) has 2 connections (1, 2); serving connection 1, the first with a greeting: --connection N serves another\n"))
        let two = try CLI.run(["replay", path, "--stdout", "--speed", "max", "--quiet", "--connection", "2"])
        #expect(two.status == 0 && !two.stderr.contains("connections ("))
        #expect(two.out != r.out, "connection 2 is another conversation")
        let one = try CLI.run(["replay", CLI.recording("lifecycle-qemu.qmprec"), "--stdout", "--speed", "max", "--quiet"])
        #expect(!one.stderr.contains("connections ("), "one connection: nothing to say")
    }

    @Test("greeting, then QEMU's replies and events in recorded order; the README's jq filter keeps the events")
    func stream() throws {
        let path = CLI.recording("lifecycle-qemu.qmprec")
        let r = try CLI.run(["replay", path, "--stdout", "--speed", "max", "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        // Recorded QEMU bytes: one message per CR LF line.
        let lines = r.out.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        let messages = try lines.map { try JSONParser.parse($0) }
        #expect(messages.first?["QMP"] != nil, "the greeting comes first")
        #expect(!messages.contains { $0["execute"] != nil }, "no client command")

        // Exactly the QEMU-side replies and events of the recording, in order.
        let rec = try Recording(path: path)
        var expected: [[UInt8]] = []
        for i in 0..<rec.count where rec.direction(i) == .qemu && [.return, .error, .event].contains(rec.kind(i)) {
            let raw = try #require(try rec.rawBytes(i))
            expected.append(Array(raw.prefix { $0 != 0x0D && $0 != 0x0A }))
        }
        #expect(lines.dropFirst().map { Array($0.utf8) } == expected)

        // `jq -c 'select(.event) | .event'`: the event names, and no null.
        let events = messages.compactMap { $0["event"]?.stringValue }
        #expect(events == ["STOP", "RESUME", "RESET", "POWERDOWN", "SHUTDOWN"])
        #expect(messages.filter { $0["event"] == nil }.count == messages.count - events.count)
    }
}
