import QMP
import Recording
@testable import Replay

import Transport

#if canImport(Glibc)
import Glibc
#endif

/// Builds small recordings for the tests: `(time ns, direction, text)` lines on connection 1.
enum TestRecording {
    static let greeting = #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#
    static let greetingNoOOB = #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 11, "major": 2}, "package": ""}, "capabilities": []}}"#

    static func ev(_ name: String, _ s: Int, data: String? = nil) -> String {
        let d = data.map { #", "data": \#($0)"# } ?? ""
        return #"{"timestamp": {"seconds": \#(1_763_632_800 + s), "microseconds": 0}, "event": "\#(name)"\#(d)}"#
    }

    /// A session: negotiation at 1 s; query-status (running) at 2 s; stop with STOP at 3 s;
    /// query-status (paused) at 4 s; balloon at 5 s with BALLOON_CHANGE at 6 s (after the reply);
    /// query-balloon failing at 7 s; cont with RESUME at 8 s; a clock event at 9 s.
    static let session: [(Int64, Direction, String)] = [
        (0, .qemu, greeting),
        (1_000_000_000, .client, #"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"#),
        (1_000_100_000, .qemu, #"{"return": {}}"#),
        (2_000_000_000, .client, #"{"execute":"query-status","id":"r1"}"#),
        (2_000_100_000, .qemu, #"{"return": {"status": "running", "singlestep": false, "running": true}, "id": "r1"}"#),
        (3_000_000_000, .client, #"{"execute":"stop","id":"r2"}"#),
        (3_000_050_000, .qemu, ev("STOP", 3)),
        (3_000_100_000, .qemu, #"{"return": {}, "id": "r2"}"#),
        (4_000_000_000, .client, #"{"execute":"query-status","id":"r3"}"#),
        (4_000_100_000, .qemu, #"{"return": {"status": "paused", "singlestep": false, "running": false}, "id": "r3"}"#),
        (5_000_000_000, .client, #"{"execute":"balloon","arguments":{"value":1073741824},"id":"r4"}"#),
        (5_000_100_000, .qemu, #"{"return": {}, "id": "r4"}"#),
        (6_000_100_000, .qemu, ev("BALLOON_CHANGE", 6, data: #"{"actual": 1073741824}"#)),
        (7_000_000_000, .client, #"{"execute":"query-balloon","id":"r5"}"#),
        (7_000_100_000, .qemu, #"{"id": "r5", "error": {"class": "DeviceNotActive", "desc": "No balloon device has been activated"}}"#),
        (8_000_000_000, .client, #"{"execute":"cont","id":"r6"}"#),
        (8_000_050_000, .qemu, ev("RESUME", 8)),
        (8_000_100_000, .qemu, #"{"return": {}, "id": "r6"}"#),
        (9_000_100_000, .qemu, ev("RTC_CHANGE", 9, data: #"{"offset": 20}"#)),
    ]

    static func tempPath(_ name: String) -> String {
        var template = Array("/tmp/qmpreplay-replaytest-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        return String(cString: p!) + "/" + name
    }

    static func write(_ lines: [(Int64, Direction, String)], to path: String) throws {
        let header = RecordingHeader(startMicros: 1_763_632_800_000_000, source: "unix:/tmp/qmp.sock", mode: .client, host: "test", qemuVersion: "7.2.0")
        let w = try RecordingWriter(path: path, header: header)
        try w.append(time: 0, connection: 1, .open(peer: "unix:/tmp/qmp.sock", info: JSONObject()))
        for (t, d, text) in lines {
            let eol: [UInt8] = d == .qemu ? [0x0D, 0x0A] : [0x0A]
            try w.message(time: t, connection: 1, from: d, QMPMessage(bytes: Array(text.utf8) + eol))
        }
        try w.finish(reason: "eof")
    }

    static func recording(_ lines: [(Int64, Direction, String)] = session) throws -> Recording {
        let path = tempPath("t.qmprec")
        try write(lines, to: path)
        return try Recording(path: path)
    }
}

/// A session under a manual clock, with helpers to talk to it line by line.
final class Harness {
    let clock = ManualClock(start: 1_000_000_000_000)
    let session: ServerSession
    let script: ReplayScript

    init(_ lines: [(Int64, Direction, String)] = TestRecording.session, options: ReplayOptions = ReplayOptions()) throws {
        let r = try TestRecording.recording(lines)
        script = try ReplayScript(recording: r, options: options)
        session = ServerSession(script: script, options: options, clock: clock)
    }

    /// Everything queued since the last call, as lines (each must end in CR LF).
    func lines() -> [String] {
        let text = String(decoding: session.takeOutput(), as: UTF8.self)
        guard !text.isEmpty else { return [] }
        precondition(text.hasSuffix("\r\n"), "output must end in CR LF: \(text)")
        return text.components(separatedBy: "\r\n").dropLast().map { $0 }
    }

    func send(_ s: String) -> [String] {
        session.receive(Array(s.utf8))
        session.releaseDue()
        return lines()
    }

    func json(_ s: String) -> JSONValue { try! JSONParser.parse(s) }

    /// Connects and negotiates; returns nothing (the greeting and reply are consumed).
    func negotiate() {
        session.connect()
        _ = lines()
        _ = send(#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"# + "\n")
    }

    func advance(_ ns: Int64) -> [String] {
        clock.advance(by: ns)
        session.releaseDue()
        return lines()
    }
}

extension String {
    func components(separatedBy sep: String) -> [String] {
        var out: [String] = []
        var rest = Substring(self)
        while let r = rest.range(of: sep) {
            out.append(String(rest[..<r.lowerBound]))
            rest = rest[r.upperBound...]
        }
        out.append(String(rest))
        return out
    }
}

extension Substring {
    func range(of s: String) -> Range<Substring.Index>? {
        guard !s.isEmpty, count >= s.count else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(s) { return i..<index(i, offsetBy: s.count) }
            i = index(after: i)
        }
        return nil
    }
}
