import QMP
import Recording
import Testing
@testable import Shell

/// The shell on recordings whose header and event timestamps hold values at the 64-bit
/// limits (found by the `shell-state` fuzz target, docs/FUZZING.md): `info` multiplied the
/// QEMU clock skew in µs by 1000 and `show` added the header's start to a record's time,
/// both with trapping arithmetic. They saturate now.
@Suite("shell on extreme values")
struct ExtremeValuesShellTests {
    final class Sink: ShellOutput {
        var text = ""
        func write(_ s: String) { text += s }
        var colors: Bool { false }
        var width: Int { 100 }
    }

    static func session(start: Int64, seconds: String) throws -> (ShellSession, Sink) {
        let lines = [
            #"{"qmprec":1,"start_us":\#(start),"source":"x","mode":"synthetic"}"#,
            #"{"t":1000000000,"c":1,"from":"qemu","k":"event","n":"STOP","eol":"\r\n","msg":{"timestamp": {"seconds": \#(seconds), "microseconds": 0}, "event": "STOP"}}"#,
            #"{"t":2000000000,"c":1,"from":"qemu","k":"event","n":"RESUME","eol":"\r\n","msg":{"timestamp": {"seconds": 1800000002, "microseconds": 0}, "event": "RESUME"}}"#,
        ]
        let r = try Recording(bytes: FileBytes(bytes: Array((lines.joined(separator: "\n") + "\n").utf8)), path: "/nonexistent/extreme.qmprec")
        let out = Sink()
        return (try ShellSession(recording: r, out: out), out)
    }

    @Test("info, show and state with QEMU timestamps ±9.2e18 µs from the receive time",
          arguments: [(Int64(1_800_000_000_000_000), "9223372036854"), (Int64(1_800_000_000_000_000), "-9223372036854"),
                      (Int64.max, "1800000001"), (Int64(1), "-9223372036854")])
    func extremes(_ start: Int64, _ seconds: String) throws {
        let (sh, out) = try Self.session(start: start, seconds: seconds)
        for line in ["info", "first", "show", "state", "last", "show", "state", "find event STOP"] {
            try sh.execute(line)
        }
        #expect(out.text.contains("QEMU clock skew"))
        #expect(out.text.contains("(event timestamp)"))
    }
}
