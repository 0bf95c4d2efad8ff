import Recording
import Replay
import Transport

/// The replay server's request handling (`ServerSession`, the same code `serve` runs per
/// client) under arbitrary client bytes, against a real recording. The input is split in
/// two: the first byte picks the chunk size and options, the rest is what the client sends.
/// Invariants: every reply the session writes is a complete CRLF-terminated line (QEMU's
/// framing), and nothing is written before the greeting.
enum ReplayFuzz {
    static let script: ReplayScript = {
        var o = ReplayOptions()
        o.speed = nil
        return try! ReplayScript(recording: FuzzTarget.sample, options: o)
    }()

    static func run(_ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        var options = ReplayOptions()
        options.speed = nil
        options.match = first & 0x40 != 0 ? .name : .exact
        options.unmatched = first & 0x80 != 0 ? .empty : .error
        options.strict = first & 0x20 != 0
        options.inputLimit = 4096
        let clock = ManualClock()
        let session = ServerSession(script: script, options: options, clock: clock)
        session.connect()
        let input = bytes.dropFirst()
        let chunk = Int(first % 16) + 1
        var i = input.startIndex
        while i < input.endIndex {
            let end = input.index(i, offsetBy: chunk, limitedBy: input.endIndex) ?? input.endIndex
            session.receive(input[i..<end])
            clock.advance(by: 1_000_000)
            session.releaseDue()
            i = end
        }
        session.finish(reason: "fuzz")
        let out = session.takeOutput()
        precondition(out.isEmpty || out.starts(with: Array("{\"QMP\"".utf8)), "output does not start with the greeting")
        precondition(out.isEmpty || out.suffix(2) == [0x0D, 0x0A], "output ends inside a message")
    }
}
