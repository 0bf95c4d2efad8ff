import QMP
import Recording
import Testing
@testable import Shell
import TestSupport

/// `describe` and tab completion from the recording's schema (QEMU 7.2.22's, shipped, for
/// the guest lab's captures).
@Suite("shell: describe and completion from QEMU's schema")
struct SchemaShellTests {
    static func completer(_ name: String) throws -> Completer {
        let (sh, _) = try ShellAnalysisTests.session(name)
        return Completer(recording: sh.recording, schema: sh.schema.schema, marks: { [] })
    }

    static func words(_ c: Completer, _ before: String) -> [String] {
        guard case .words(let w) = c.candidates(before: before, word: "") else { return [] }
        return w
    }

    @Test("describe NAME prints a command's arguments and return type, an event's data with the catalog's notes")
    func describe() throws {
        let (sh, out) = try ShellAnalysisTests.session("io-errors.qmprec")
        try sh.execute("describe block-job-cancel")
        #expect(out.text == """
            command block-job-cancel
              from QEMU 7.2.22's schema (shipped)
              arguments:
                device  str
                force?  bool
              returns: nothing ({})

            """)
        out.text = ""
        try sh.execute("describe BLOCK_IO_ERROR")
        let lines = out.text.split(separator: "\n").map(String.init)
        #expect(lines.prefix(4) == ["event BLOCK_IO_ERROR", "  from QEMU 7.2.22's schema (shipped)", "  data:", "    device      str"])
        #expect(lines.contains("    operation   'read' | 'write'"))
        #expect(lines.contains("    followed by STOP when action is 'stop'"))
        out.text = ""
        try sh.execute("describe drive-backup")
        #expect(out.text.hasPrefix("command drive-backup  [deprecated]\n"))
        out.text = ""
        try sh.execute("describe")
        #expect(out.text.hasPrefix("schema: shipped (qemu-7.2.22-x86_64.json.gz, QEMU 7.2.22: 216 commands, 52 events)"))
        #expect(throws: ShellError.self) { try sh.execute("describe BLOCK_IO_EROR") }
        do {
            try sh.execute("describe blockdev-mirorr")
        } catch {
            #expect(error.description.contains("did you mean 'blockdev-mirror'?"))
        }
    }

    @Test("describe falls back on the seed catalog for an event the schema lacks")
    func describeFromCatalog() throws {
        let (sh, out) = try ShellAnalysisTests.session("io-errors.qmprec")
        // HV_BALLOON_STATUS_REPORT: QEMU 10.0 has it, 7.2 does not; the catalog names it (throttling).
        try sh.execute("describe HV_BALLOON_STATUS_REPORT")
        #expect(out.text.hasPrefix("event HV_BALLOON_STATUS_REPORT\n(not in QEMU 7.2.22's schema (shipped); from the seed catalog)\n  data: not described\n"))
        #expect(out.text.contains("throttled: one per second per event name"))
    }

    @Test("Tab: describe completes the schema's names; filters complete argument and data paths and enum values")
    func completion() throws {
        let c = try Self.completer("block-jobs-reuse.qmprec")
        let d = Self.words(c, "describe ")
        #expect(d.contains("blockdev-reopen") && d.contains("MIGRATION") && d.contains("drive-backup"))
        let afterCommand = Self.words(c, "filter command ")
        #expect(afterCommand.contains("blockdev-backup") && afterCommand.contains("query-migrate"))
        // Paths of the command named on the line.
        let args = Self.words(c, "filter command blockdev-mirror and ")
        #expect(args.contains("arguments.sync") && args.contains("arguments.on-target-error"))
        // Of the recording's events when none is named.
        let data = Self.words(c, "find ")
        #expect(data.contains("data.status") && data.contains("data.len"))
        // Enum values after a comparison.
        #expect(Self.words(c, "filter command blockdev-mirror and arguments.sync == ") == ["bitmap", "full", "incremental", "none", "top"])
        #expect(Self.words(c, "next event JOB_STATUS_CHANGE and data.status == \"").contains("concluded"))
        #expect(Self.words(c, "find data.type != ").contains("mirror"))
    }

    @Test("without a schema, completion is what it was")
    func noSchema() throws {
        let (sh, _) = try ShellAnalysisTests.session("vnc.qmprec")
        let c = Completer(recording: sh.recording, marks: { [] })
        let w = Self.words(c, "filter ")
        #expect(w.contains("VNC_CONNECTED") && w.contains("data.server.host"))
        #expect(Self.words(c, "find data.client.family == ").contains("VNC_CONNECTED"))
    }
}
