import QMP
import Recording
import Testing
@testable import Shell
import TestSupport

/// A `ShellOutput` that keeps what the shell wrote.
final class AnalysisBufferOutput: ShellOutput {
    var text = ""
    let width: Int
    init(width: Int = 100) { self.width = width }
    func write(_ s: String) { text += s }
    var colors: Bool { false }
}

/// The shell's `analyze`, `plot` and `triage`, driven through `ShellSession.execute`.
@Suite("shell: analyze, plot, triage")
struct ShellAnalysisTests {
    static func session(_ name: String, width: Int = 100) throws -> (ShellSession, AnalysisBufferOutput) {
        let out = AnalysisBufferOutput(width: width)
        return (try ShellSession(recording: try Recording(path: PackageRoot.recording(name)), out: out), out)
    }

    @Test("triage numbers the grouped findings with their records; goto N jumps to finding N's first record, goto @REC to a record")
    func triageThenGoto() throws {
        let (sh, out) = try Self.session("lifecycle.qmprec")
        try sh.execute("triage")
        let lines = out.text.split(separator: "\n").map(String.init)
        #expect(lines[0] == "triage of #0..#22 (receive clock): 1 error, 0 warnings, 2 info (3 findings grouping 3 occurrences)")
        #expect(lines[1] == "  1.  error    +00:00:07.887  runstate: VM paused for 10.248s after BLOCK_IO_ERROR on")
        #expect(lines[3].hasSuffix("records @13 @14"))
        #expect(lines.contains { $0.hasPrefix("  3.  info     +00:00:18.135  runstate: VM shut down: SHUTDOWN reason host-qmp-quit") })
        #expect(lines.last == "'goto N' jumps to finding N ('goto 1' is @13, its first record); 'goto @REC' to any record listed")
        try sh.execute("goto @13")
        #expect(sh.cursor == 13)
        #expect(sh.prompt.hasPrefix("[#13 +00:00:07.887 BLOCK_IO_ERROR]"))
        try sh.execute("goto 3")
        #expect(sh.cursor == 22)
        out.text = ""
        try sh.execute("goto 1")
        #expect(sh.cursor == 13)
        #expect(out.text.hasPrefix("finding 1: error runstate: VM paused for 10.248s after BLOCK_IO_ERROR"))
        #expect(throws: ShellError.self) { try sh.execute("goto 4") }
        do { try sh.execute("goto 4") } catch { #expect(error.message == "triage listed findings 1 to 3; 'goto @4' goes to record 4") }
        try sh.execute("seek 4")
        #expect(sh.cursor == 4, "seek N stays a record number")
        out.text = ""
        try sh.execute("triage 1")
        #expect(out.text.contains("  1.  error") && !out.text.contains("  2.  ") && out.text.contains("… 2 more ('triage' without a number lists them all)"))
        // Imported from plain QMP lines: commands take the time of the record before them, so
        // their "latencies" are not measured and no slow-reply warning is made.
        out.text = ""
        try sh.execute("analyze commands")
        #expect(out.text.contains("latencies not measured") && !out.text.contains("slowest reply"))
    }

    @Test("analyze prints the table with its clock over the whole recording, a range, or up to the cursor (--here); --json")
    func analyze() throws {
        let (sh, out) = try Self.session("guest-balloon.qmprec")
        try sh.execute("analyze balloon")
        #expect(out.text.hasPrefix("balloon — "))
        #expect(out.text.contains("clock: receive (times are the recorder's monotonic receive times"))
        #expect(out.text.contains("range: records #0..<#\(sh.recording.count)"))
        out.text = ""
        try sh.execute("goto #17")
        out.text = ""
        try sh.execute("analyze balloon --here --json")
        let j = try JSONParser.parse(Array(out.text.utf8))
        #expect(j["analysis"]?.stringValue == "balloon" && j["clock"]?.stringValue == "receive")
        #expect(j["samples"]?.arrayValue?.compactMap { $0["record"]?.int64Value }.allSatisfy { $0 <= 17 } == true)
        #expect(j["range"]?["to_ns"]?.int64Value == sh.recording.time(17))
        out.text = ""
        try sh.execute("analyze balloon --from 2s --to #25 --json")
        let part = try JSONParser.parse(Array(out.text.utf8))
        #expect(part["samples"]?.arrayValue?.map { $0["record"]!.int64Value! } == [15, 17, 20, 22, 25])
    }

    @Test("plot draws the series at the output's width; not a series, unknown names and bad options are one-line errors")
    func plotAndErrors() throws {
        let (sh, out) = try Self.session("guest-balloon.qmprec", width: 72)
        try sh.execute("plot balloon")
        #expect(out.text.contains("█") && out.text.contains("receive clock"))
        let rows = out.text.split(separator: "\n").map(String.init).filter { $0.contains("┤") }
        #expect(!rows.isEmpty && rows.allSatisfy { $0.count <= 72 })
        let before = sh.cursor
        #expect(throws: ShellError.self) { try sh.execute("plot commands") }
        do { try sh.execute("plot commands") } catch {
            #expect(error.message == "'commands' is not a series and has no plot; plots: balloon, rtc, runstate, triage ('analyze commands' shows its table)")
        }
        do { try sh.execute("analyze nope") } catch {
            #expect(error.message.hasPrefix("unknown analysis 'nope' (analyses: balloon, rtc, nic-rx-filter"))
        }
        do { try sh.execute("analyze balon") } catch {
            #expect(error.message.hasPrefix("unknown analysis 'balon'; did you mean 'balloon'? (analyses: balloon, rtc"))
        }
        do { try sh.execute("analyze") } catch { #expect(error.message.hasPrefix("analyze needs an analysis: balloon, rtc")) }
        do { try sh.execute("analyze rtc --to") } catch { #expect(error.message.hasPrefix("analyze: --to needs a time")) }
        do { try sh.execute("analyze rtc --frm 2s") } catch { #expect(error.message.hasPrefix("analyze: unknown option '--frm'; did you mean '--from'?")) }
        do { try sh.execute("triage --from 10s --to 2s") } catch { #expect(error.message == "triage: --to is before --from") }
        #expect(sh.cursor == before)
        #expect(Completer.analysisNames.last == "triage" && Completer.analysisNames.contains("nic-rx-filter"))
        #expect(ShellSession.spec("triage")?.usage == "triage [N] [--from T] [--to T] [--here] [--json]")
    }
}
