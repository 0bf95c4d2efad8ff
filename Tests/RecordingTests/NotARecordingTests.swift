import QMP
import Testing
@testable import Recording

/// `Recording.notARecording`: decided once when a file is opened, for every file that has
/// neither a header line nor a record line; never for a recording, however damaged.
@Suite("Files that are not recordings")
struct NotARecordingTests {
    static func open(_ text: String) throws -> Recording {
        try Recording(bytes: FileBytes(bytes: Array(text.utf8)), path: "x")
    }

    @Test("what a file that is not a recording holds")
    func kinds() throws {
        let cases: [(String, NotARecording.Content)] = [
            ("", .empty),
            ("\n \n\r\n", .blank),
            ("{\"a\":1}\n{\"a\":2}\n", .json),
            ("[1, 2]\n", .json),
            ("just some text\n", .text),
            ("{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n{\"execute\": \"qmp_capabilities\"}\n{\"return\": {}}\r\n", .qmpTraffic(.qmpLines)),
        ]
        for (text, content) in cases {
            let r = try Self.open(text)
            #expect(r.notARecording?.content == content, "\(text.debugDescription)")
            #expect(r.count == 0)
        }
        let binary = try Recording(bytes: FileBytes(bytes: [0x7F, 0x45, 0x4C, 0x46, 0, 1, 2, 0x0A, 0xFF, 0xFE]), path: "b")
        #expect(binary.notARecording?.content == .binary)
        let latin1 = try Recording(bytes: FileBytes(bytes: Array("caf".utf8) + [0xE9, 0x0A]), path: "l")
        #expect(latin1.notARecording?.content == .binary)
    }

    @Test("a damaged recording is a recording: header only, header torn, no header but records")
    func damagedIsARecording() throws {
        let header = #"{"qmprec":1,"start_us":1763632800000000,"source":"x","mode":"client"}"#
        let record = #"{"t":5,"c":1,"from":"qemu","k":"event","n":"STOP","msg":{"event":"STOP"}}"#
        for text in [header + "\n", header, #"{"qmprec":1,"start_us":17636328"#, "garbage\n" + record + "\n",
                     record + "\n\u{0}\u{0}\u{0}\u{0}", header + "\n\u{0}\u{0}\u{0}"] {
            let r = try Self.open(text)
            #expect(r.notARecording == nil, "\(text.debugDescription)")
        }
    }

    @Test("requireRecording refuses in one line, with the import command for QMP traffic")
    func required() throws {
        let text = "{\"execute\": \"query-status\"}\n{\"return\": {\"status\": \"running\", \"running\": true}}\n"
        #expect(throws: RecordingOpenError.self) {
            _ = try Recording(bytes: FileBytes(bytes: Array(text.utf8)), path: "my log.txt", options: RecordingOptions(requireRecording: true))
        }
        do {
            _ = try Recording(bytes: FileBytes(bytes: Array(text.utf8)), path: "my log.txt", options: RecordingOptions(requireRecording: true))
        } catch {
            #expect(error.description == "my log.txt: not a .qmprec recording: it holds QMP messages as plain text; convert it with: qmpreplay import 'my log.txt' -o OUT.qmprec")
        }
        // Lenient by default: the library opens it, empty, and says what it is.
        let r = try Self.open(text)
        #expect(r.count == 0 && r.notARecording != nil)
    }

    @Test("a record time more than 10^18 ns after the start is a bad line")
    func timeLimit() throws {
        let text = """
            {"qmprec":1,"start_us":1763632800000000,"source":"x","mode":"client"}
            {"k":"event","from":"qemu","c":1,"t":999999999999999999,"n":"STOP","msg":{"event":"STOP"}}
            {"k":"event","from":"qemu","c":1,"t":1000000000000000000,"n":"RESUME","msg":{"event":"RESUME"}}
            {"k":"event","from":"qemu","c":1,"t":9223372036854775807,"n":"RESUME","msg":{"event":"RESUME"}}

            """
        let r = try Self.open(text)
        #expect(r.count == 1 && r.time(0) == 999_999_999_999_999_999)
        #expect(r.problems.filter(\.badLine).map(\.line) == [3, 4])
        #expect(r.problems.first { $0.line == 3 }?.message == "record time \"t\" 1000000000000000000 ns is more than 31 years after the start; skipped")
    }

    @Test("saturating helpers")
    func saturating() {
        #expect(Int64(saturating: 9.3e18) == .max && Int64(saturating: -9.3e18) == .min && Int64(saturating: .nan) == 0)
        #expect(Int64(saturating: Double(Int64.max)) == .max)
        #expect(Int64(saturating: -1.5) == -1)
        #expect(Int64.max.absoluteDifference(.min) == UInt64.max)
        #expect(Int64(-5).absoluteDifference(5) == 10 && Int64(5).absoluteDifference(-5) == 10)
    }
}
