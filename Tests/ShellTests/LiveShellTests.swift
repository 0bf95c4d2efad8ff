import QMP
import Recording
import Testing
@testable import Shell

#if canImport(Glibc)
import Glibc
#endif

/// The live shell's parts that need no QEMU: qmp-shell's argument syntax for `send`, and a
/// session on a file that grows as another writer appends to it (the end-to-end tests
/// against a real QEMU are Tests/Integration/test_shell_live.py).
@Suite("live shell")
struct LiveShellTests {
    static func args(_ line: String) throws -> String {
        let c = try QMPShellSyntax.parse(line)
        return c.name + (c.arguments.map { " " + JSONValue.object($0).serialized(.compact) } ?? "")
    }

    @Test("qmp-shell's syntax: integers, booleans, JSON, nested keys, strings as typed")
    func syntax() throws {
        #expect(try Self.args("query-status") == "query-status")
        #expect(try Self.args("balloon value=536870912") == #"balloon {"value":536870912}"#)
        #expect(try Self.args("x a=+5 b=-3 c=TRUE d=false e=3.5") == #"x {"a":5,"b":-3,"c":true,"d":false,"e":"3.5"}"#)
        #expect(try Self.args(#"x keys=["a","b"] o={"k":1} bad={nope"#) == #"x {"keys":["a","b"],"o":{"k":1},"bad":"{nope"}"#)
        #expect(try Self.args("blockdev-add driver=null-co node-name=n0 opts.a.b=1 opts.a.c=x") ==
                #"blockdev-add {"driver":"null-co","node-name":"n0","opts":{"a":{"b":1,"c":"x"}}}"#)
        #expect(try Self.args(#"x s="a b" t='c'"#) == #"x {"s":"\"a b\"","t":"'c'"}"#)
        #expect(try Self.args(#"{"execute":"stop","id":7}"#) == "stop")
        #expect(try Self.args(#"  {"execute":"balloon","arguments":{"value":1}}"#) == #"balloon {"value":1}"#)
    }

    @Test("qmp-shell's errors")
    func syntaxErrors() {
        func message(_ line: String) -> String {
            do { _ = try QMPShellSyntax.parse(line); return "" } catch { return error.description }
        }
        #expect(message("x value") == "Expected a key=value pair, got 'value'")
        #expect(message("x a=1 a=2") == "Cannot set \"a\" multiple times")
        #expect(message("x a=1 a.b=2") == "Cannot use \"a\" as both leaf and non-leaf key")
        #expect(message("x a.b=1 a=2") == "Cannot use \"a\" as both leaf and non-leaf key")
        #expect(message(#"x s="open"#).contains("unterminated quote"))
        #expect(message(#"{"arguments":{}}"#).contains("execute"))
        #expect(message("").contains("needs a command"))
    }

    static let header = #"{"qmprec":1,"start_us":1800000000000000,"source":"test","mode":"client"}"#
    static func event(_ t: Int, _ name: String) -> String {
        #"{"t":\#(t),"c":1,"from":"qemu","k":"event","n":"\#(name)","msg":{"event":"\#(name)","timestamp":{"seconds":1800000000,"microseconds":\#(t / 1000)}}}"#
    }

    static func append(_ path: String, _ text: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }

    @Test("a growing file: follow prints new records through the filter, watch while staying, state at the live end, the trailer ends it")
    func growing() throws {
        var template = Array("/tmp/qmpreplay-live-XXXXXX".utf8CString)
        let dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
        let path = dir + "/live.qmprec"
        Self.append(path, Self.header + "\n" + Self.event(1_000, "RESUME") + "\n")
        let out = ExtremeValuesShellTests.Sink()
        let sh = try ShellSession(recording: try Recording(path: path), out: out)
        sh.goLive(recorder: nil)
        #expect(sh.prompt.hasSuffix("] live qmp> "))

        Self.append(path, Self.event(2_000, "STOP") + "\n" + Self.event(3_000, "RTC_CHANGE") + "\n" + #"{"t":4000,"c":1,"from":"qemu","k":"ev"#)
        #expect(sh.refresh())
        #expect(sh.recording.count == 3)
        #expect(sh.cursor == 2)
        #expect(out.text.contains("STOP") && out.text.contains("RTC_CHANGE"))
        out.text = ""
        try sh.execute("state")
        #expect(out.text.contains("paused"))

        try sh.execute("filter event RESUME")
        try sh.execute("watch event SHUTDOWN")
        out.text = ""
        // The torn line completes; only what passes the filter (or the watch) prints.
        Self.append(path, #"ent","n":"RESUME","msg":{"event":"RESUME"}}"# + "\n" + Self.event(5_000, "BALLOON_CHANGE") + "\n")
        #expect(sh.refresh())
        #expect(sh.recording.count == 5)
        #expect(out.text.contains("RESUME") && !out.text.contains("BALLOON_CHANGE"))
        #expect(sh.cursor == 3)
        try sh.execute("filter off")

        try sh.execute("prev STOP")
        #expect(sh.cursor == 1)
        #expect(sh.prompt.hasSuffix("] +3 qmp> "))
        out.text = ""
        Self.append(path, Self.event(6_000, "RTC_CHANGE") + "\n" + Self.event(7_000, "SHUTDOWN") + "\n")
        #expect(sh.refresh())
        #expect(sh.cursor == 1)
        #expect(!out.text.contains("RTC_CHANGE") && out.text.contains("SHUTDOWN"))
        #expect(throws: ShellError.self) { try sh.execute("send stop") }

        try sh.execute("follow")
        out.text = ""
        try sh.execute("state")
        #expect(out.text.contains("state at #6"))
        Self.append(path, #"{"t":8000,"k":"end","records":7,"reason":"eof"}"# + "\n")
        #expect(sh.refresh())
        #expect(out.text.contains("the recording ended (eof)"))
        #expect(sh.prompt.hasSuffix("] ended qmp> "))
        #expect(!sh.refresh())
        #expect(sh.recording.problems.isEmpty)
    }
}
