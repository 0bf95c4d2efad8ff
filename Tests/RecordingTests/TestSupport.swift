import QMP
@testable import Recording

#if canImport(Glibc)
import Glibc
#endif

/// A fresh temporary directory for one test.
func makeTempDir(_ name: String = #function) -> String {
    var template = Array("/tmp/qmpreplay-test-XXXXXX".utf8CString)
    let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    return String(cString: p!)
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "cannot create \(path)")
    bytes.withUnsafeBytes { _ = write(fd, $0.baseAddress, $0.count) }
    close(fd)
}

func readFile(_ path: String) -> [UInt8] {
    let fb = try! FileBytes(path: path)
    return fb.copyBytes()
}

/// A small but varied session: greeting, negotiation, an event with CRLF, a client command
/// without terminator, pretty JSON, garbage, non-UTF-8 bytes, open/close and a note.
struct SampleSession {
    static let greeting = #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}"# + "\r\n"
    static let messages: [(Int64, Direction, [UInt8])] = [
        (1_000, .qemu, Array(greeting.utf8)),
        (2_000_000, .client, Array(#"{"execute":"qmp_capabilities","id":1}"#.utf8) + [0x0A]),
        (2_500_000, .qemu, Array(#"{"return": {}, "id": 1}"#.utf8) + [0x0D, 0x0A]),
        (9_000_000, .client, Array(#"{"execute": "stop", "id": {"a": [1, 2.5, null]}}"#.utf8)),
        (9_100_000, .qemu, Array(#"{"timestamp": {"seconds": 1763632800, "microseconds": 9100}, "event": "STOP"}"#.utf8) + [0x0D, 0x0A]),
        (9_200_000, .qemu, Array(#"{"return": {}, "id": {"a": [1, 2.5, null]}}"#.utf8) + [0x0D, 0x0A]),
        (10_000_000, .qemu, Array("{\n    \"timestamp\": {\n        \"seconds\": 1763632800,\n        \"microseconds\": 10000\n    },\n    \"event\": \"RESUME\"\n}\r\n".utf8)),
        (11_000_000, .client, Array("garbage here\n".utf8)),
        (11_500_000, .qemu, Array(#"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword 'garbage'"}}"#.utf8) + [0x0D, 0x0A]),
        (12_000_000, .client, [0xFF, 0xFE, 0x7B, 0x00, 0x0A]),
        (13_000_000, .client, Array("  {\"execute\":\"query-status\"}\t\n".utf8)),
        (13_100_000, .qemu, Array(#"{"return": {"status": "running", "singlestep": false, "running": true}}"#.utf8) + [0x0D, 0x0A]),
        (14_000_000, .qemu, Array(#"{"timestamp": {"seconds": 1763632801, "microseconds": 5}, "event": "BALLOON_CHANGE", "data": {"actual": 1073741824}}"#.utf8) + [0x0D, 0x0A]),
    ]

    static let header = RecordingHeader(
        startMicros: 1_763_632_800_000_000, source: "unix:/tmp/qmp.sock", mode: .client, host: "testhost",
        qemuVersion: "7.2.0", redacted: true, labels: [("case", "sample")])

    /// Writes the session to `path`; returns the exact bytes of each message in order.
    @discardableResult
    static func write(to path: String, trailer: Bool = true) throws -> [[UInt8]] {
        let w = try RecordingWriter(path: path, header: header)
        try w.append(time: 0, connection: 1, .open(peer: "unix:/tmp/qmp.sock", info: JSONObject(["role": .string("client")])))
        var raws: [[UInt8]] = []
        for (t, d, bytes) in messages {
            let m = QMPMessage(bytes: bytes)
            try w.message(time: t, connection: 1, from: d, m)
            raws.append(bytes)
        }
        try w.append(time: 15_000_000, connection: 0, .note(text: "a note", data: JSONObject(["x": .int(1)])))
        try w.append(time: 16_000_000, connection: 1, .close(by: "qemu", reason: "eof"))
        if trailer { try w.finish(reason: "eof") } else { w.abandon() }
        return raws
    }
}
