import Foundation
import Options
import QMP
import Recording
import Testing
@testable import Shell
import TestSupport

/// What a new user meets first in the shell: moves that say where they landed, Enter that
/// repeats a move, goto by name or finding, "did you mean", a large reply cut to size,
/// jq-style paths and bare words in filters, marks that move, export that does not overwrite.
@Suite("shell: habits and help for new users")
struct ShellUsabilityTests {
    static func session(_ name: String, width: Int = 100) throws -> (ShellSession, AnalysisBufferOutput) {
        try ShellAnalysisTests.session(name, width: width)
    }

    static let root = PackageRoot.path

    static func tempDir() -> String {
        let path = NSTemporaryDirectory() + "qmpreplay-shell-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// A recording whose one reply is as large as a real `query-qmp-schema` reply: 1,500
    /// schema entries, a 5,000-character string and a value nested ten levels deep.
    static func bigReply() throws -> (ShellSession, AnalysisBufferOutput) {
        let path = tempDir() + "/schema.qmprec"
        let w = try RecordingWriter(path: path, header: RecordingHeader(startMicros: 1_763_632_800_000_000, source: "test", mode: .synthetic))
        let greeting = #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#
        try w.message(time: 0, connection: 1, from: .qemu, QMPMessage(text: greeting + "\r\n"))
        try w.message(time: 1_000, connection: 1, from: .client, QMPMessage(text: #"{"execute": "query-qmp-schema", "id": 1}"# + "\n"))
        var entries: [String] = []
        for i in 0..<1500 {
            entries.append(#"{"name": "t\#(i)", "meta-type": "object", "members": [{"name": "a", "type": "str"}, {"name": "b", "type": "int"}]}"#)
        }
        let deep = String(repeating: #"{"x": "#, count: 10) + "1" + String(repeating: "}", count: 10)
        let long = String(repeating: "y", count: 5000)
        let reply = #"{"return": [\#(entries.joined(separator: ", ")), {"long": "\#(long)", "deep": \#(deep)}], "id": 1}"#
        try w.message(time: 2_000, connection: 1, from: .qemu, QMPMessage(text: reply + "\r\n"))
        try w.finish(reason: "complete")
        let out = AnalysisBufferOutput(width: 100)
        return (try ShellSession(recording: try Recording(path: path), out: out), out)
    }

    @Test("next, prev, seek, goto, first and last print the record they land on")
    func landingSummary() throws {
        let (sh, out) = try Self.session("lifecycle.qmprec")
        try sh.execute("next STOP")
        let line = out.text.split(separator: "\n").last.map(String.init) ?? ""
        #expect(line.hasPrefix(">") && line.contains("#\(sh.cursor) ") && line.contains("STOP"))
        out.text = ""
        try sh.execute("seek @3")
        #expect(out.text.hasPrefix(">      #3 "))
        out.text = ""
        try sh.execute("last")
        #expect(out.text.contains("#22 ") && out.text.contains("SHUTDOWN"))
    }

    @Test("Enter on an empty line repeats the last next/prev; absolute moves forget it")
    func enterRepeats() throws {
        let (sh, _) = try Self.session("lifecycle.qmprec")
        try sh.executeOrRepeat("")
        #expect(sh.cursor == 0, "nothing to repeat yet")
        try sh.execute("next STOP")
        let first = sh.cursor
        try sh.execute("show")
        try sh.executeOrRepeat("")
        #expect(sh.cursor > first && sh.recording.name(sh.cursor) == "STOP", "show in between keeps the move to repeat")
        let second = sh.cursor
        #expect(throws: ShellError.self) { try sh.executeOrRepeat("   ") }
        #expect(sh.cursor == second, "no third STOP: the repeat fails and the cursor stays")
        try sh.execute("prev 2")
        let back = sh.cursor
        try sh.executeOrRepeat("")
        #expect(sh.cursor < back)
        try sh.execute("seek @5")
        try sh.executeOrRepeat("")
        #expect(sh.cursor == 5)
        #expect(sh.lastMove == nil)
    }

    @Test("goto NAME goes to the first record of that name, or says what the name might be")
    func gotoName() throws {
        let (sh, out) = try Self.session("lifecycle.qmprec")
        try sh.execute("goto SHUTDOWN")
        #expect(sh.recording.name(sh.cursor) == "SHUTDOWN")
        #expect(out.text.hasPrefix("first of 1 SHUTDOWN record\n"))
        out.text = ""
        try sh.execute("goto STOP")
        #expect(out.text.hasPrefix("first of 2 STOP records; 'next STOP' goes to the next one"))
        let at = sh.cursor
        #expect(throws: ShellError.self) { try sh.execute("goto STOPP") }
        do { try sh.execute("goto STOPP") } catch {
            #expect(error.message.hasPrefix("no event named STOPP in this recording; did you mean STOP?"))
        }
        do { try sh.execute("goto NIC_RX_FILTER_CHANGE") } catch {
            #expect(error.message.hasPrefix("no event named NIC_RX_FILTER_CHANGE in this recording; did you mean NIC_RX_FILTER_CHANGED? (there is none of those here either)"))
        }
        #expect(sh.cursor == at)
    }

    @Test("did you mean: commands, event names, filter fields, analyses, options, settings")
    func didYouMean() throws {
        let (sh, out) = try Self.session("rx-filter.qmprec")
        func message(_ line: String) -> String {
            do { try sh.execute(line); return "" } catch { return error.message }
        }
        #expect(message("nxet") == "unknown command 'nxet'; did you mean 'next'? ('help' lists the commands)")
        #expect(message("zzzz") == "unknown command 'zzzz'; 'help' lists the commands")
        #expect(message("shwo") .hasPrefix("unknown command 'shwo'; did you mean 'show'?"))
        #expect(message("NIC_RX_FILTER_CHANGED").hasPrefix("unknown command 'NIC_RX_FILTER_CHANGED'; 'next NIC_RX_FILTER_CHANGED' goes to the next"))
        #expect(message("next NIC_RX_FILTER_CHANGE") == "no event named NIC_RX_FILTER_CHANGE in this recording; did you mean NIC_RX_FILTER_CHANGED?")
        #expect(message("next query-rx-filer") == "no command named query-rx-filer in this recording; did you mean query-rx-filter?")
        #expect(message("next data.nmae == \"net0\"") == "no record has data.nmae; did you mean data.name?")
        #expect(message("help fliter").hasPrefix("no command 'fliter'; did you mean 'filter'?"))
        #expect(message("set pagr off").hasPrefix("unknown option 'pagr'; did you mean 'pager'?"))
        #expect(message("show --ful").hasPrefix("show: unknown option '--ful'; did you mean '--full'?"))
        out.text = ""
        try sh.execute("find data.nmae == \"net0\"")
        #expect(out.text == "0 matches\nnote: no record has data.nmae; did you mean data.name?\n")
        out.text = ""
        try sh.execute("filter event NIC_RX_FILTER_CHANGE")
        #expect(out.text.contains("(0 of ") && out.text.contains("note: no event named NIC_RX_FILTER_CHANGE in this recording; did you mean NIC_RX_FILTER_CHANGED?"))
        try sh.execute("filter off")
        #expect(Suggestions.closest(to: "blaloon", among: ["balloon", "rtc"]) == ["balloon"])
        #expect(Suggestions.closest(to: "BALLOON", among: ["BALLOON_CHANGE", "STOP"]) == ["BALLOON_CHANGE"])
        #expect(Suggestions.closest(to: "xyz", among: ["balloon", "rtc"]).isEmpty)
    }

    @Test("filters take jq-style [N] positions and bare words as text, or say what to type")
    func filterForms() throws {
        let (sh, out) = try Self.session("rx-filter.qmprec")
        func count(_ expr: String) throws -> String {
            out.text = ""
            try sh.execute("find " + expr)
            return String(out.text.split(separator: "\n").last ?? "")
        }
        let dotted = try count("return.0.name == \"net0\"")
        #expect(dotted != "0 matches")
        #expect(try count("return[0].name == \"net0\"") == dotted)
        #expect(try count(".return[0].name == net0") == dotted)
        #expect(try count("data.name == net0") == (try count("data.name == \"net0\"")))
        #expect(try count("data.name != net0 and event NIC_RX_FILTER_CHANGED") != "0 matches")
        do { try sh.execute("find return[x].name == net0") } catch {
            #expect(error.message.contains("'[x]' is not an array position: write a number counted from 0, as in data.list[0].name"))
        }
        do { try sh.execute("find data.actual < 5x") } catch {
            #expect(error.message.contains("'5x' is not a number (sizes: 1K 1M 1G 1T); for text write it in double quotes: data.actual < \"5x\""))
        }
        let f = try FilterExpression(parsing: "data.name == net0")
        #expect(f.description == "data.name == \"net0\"")
    }

    @Test("show cuts a large message and says how to see all of it; --full and set show-* change that")
    func showLargeMessage() throws {
        let (sh, out) = try Self.bigReply()
        try sh.execute("seek @2")
        out.text = ""
        try sh.execute("show")
        let lines = out.text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count < 140, "cut to a screen or two, not \(lines.count) lines")
        #expect(out.text.contains(" more items (1,501 in all)"))
        #expect(out.text.contains("more items; 'show --full' shows everything, 'set show-lines N|all' changes the limit)"))
        try sh.execute("set show-lines all")
        out.text = ""
        try sh.execute("show")
        #expect(out.text.contains("… 1,481 more items (1,501 in all)"))
        #expect(out.text.contains("(not shown: 1,481 more items; 'show --full' shows everything, 'set show-items N|all' changes the limit)"))
        out.text = ""
        try sh.execute("show --full")
        #expect(out.text.contains("\"name\": \"t1499\""))
        #expect(out.text.contains(String(repeating: "y", count: 5000)))
        #expect(!out.text.contains("not shown"))
        try sh.execute("set show-items all")
        out.text = ""
        try sh.execute("show")
        #expect(out.text.contains("\"name\": \"t1499\""))
        #expect(out.text.contains("\"long\": \"" + String(repeating: "y", count: 400) + "…\" (5,000 characters)"))
        #expect(out.text.contains("{… 1 member}"))
        #expect(out.text.contains("(not shown: 1 nested value deeper than 6 levels, 1 long string; 'show --full' shows everything, 'set show-depth N|all' changes the limit)"))
        try sh.execute("set show-depth 3")
        out.text = ""
        try sh.execute("show")
        #expect(out.text.contains("\"members\": [… 2 items]"))
        try sh.execute("set show-depth all")
        try sh.execute("set show-string all")
        out.text = ""
        try sh.execute("show")
        #expect(!out.text.contains("not shown"))
        out.text = ""
        try sh.execute("set")
        #expect(out.text.contains("show-items   all") && out.text.contains("pager        on"))
        #expect(throws: ShellError.self) { try sh.execute("set show-items 0") }
    }

    @Test("mark on an existing name says it moved the mark")
    func markMoves() throws {
        let dir = Self.tempDir()
        let path = dir + "/l.qmprec"
        try FileManager.default.copyItem(atPath: Self.root + "/Recordings/lifecycle.qmprec", toPath: path)
        let out = AnalysisBufferOutput()
        let sh = try ShellSession(recording: try Recording(path: path), out: out)
        try sh.execute("seek @3")
        try sh.execute("mark here")
        #expect(out.text.hasSuffix("mark here = #3 (saved in \(path).marks.json)\n"))
        try sh.execute("seek @7")
        out.text = ""
        try sh.execute("mark here")
        #expect(out.text == "mark here moved from #3 to #7 (saved in \(path).marks.json)\n")
        #expect(throws: ShellError.self) { try sh.execute("mark @5") }
    }

    @Test("export refuses to replace a file unless --force")
    func exportRefuses() throws {
        let (sh, out) = try Self.session("lifecycle.qmprec")
        let file = Self.tempDir() + "/span.qmprec"
        try sh.execute("export @0 @5 -o \(file)")
        #expect(out.text.hasSuffix("wrote 6 records (#0..#5) to \(file)\n"))
        do {
            try sh.execute("export @0 @1 -o \(file)")
            Issue.record("overwrote \(file)")
        } catch {
            #expect(error.message == "\(file) already exists; not overwriting it (recordings are evidence): choose another name or add --force")
        }
        #expect(try Recording(path: file).count == 6)
        try sh.execute("export @0 @0 -o \(file) --force")
        #expect(out.text.hasSuffix("wrote 1 record (#0..#0) to \(file)\n"))
        #expect(try Recording(path: file).count == 1)
    }

    @Test("plot of a series without its data says there is no data")
    func plotWithoutData() throws {
        let (sh, _) = try Self.session("vnc.qmprec")
        do {
            try sh.execute("plot balloon")
            Issue.record("plotted")
        } catch {
            #expect(error.message == "no balloon data in this recording (no BALLOON_CHANGE events or query-balloon replies): nothing to plot")
        }
        do { try sh.execute("plot rtc --from 1s") } catch {
            #expect(error.message == "no RTC data in this range (no RTC_CHANGE events): nothing to plot")
        }
    }

    @Test("help aligns synopses and descriptions, and wraps to the width")
    func helpLayout() throws {
        let (sh, out) = try Self.session("lifecycle.qmprec", width: 100)
        try sh.execute("help")
        let lines = out.text.split(separator: "\n").map(String.init)
        #expect(lines.allSatisfy { $0.count <= 100 })
        for c in ShellSession.commands {
            guard let i = lines.firstIndex(where: { $0.hasPrefix("  " + c.usage) }) else {
                Issue.record("no line for \(c.usage)")
                continue
            }
            // The description starts in the same column on every entry.
            let described = c.usage.count <= 34 ? lines[i] : lines[i + 1]
            #expect(described.count > 36 && String(described.prefix(36)).trimmingCharacters(in: .whitespaces) == (c.usage.count <= 34 ? c.usage : ""), "\(described)")
            #expect(described.dropFirst(36).first != " ", "\(described)")
        }
        out.text = ""
        try sh.execute("help goto")
        #expect(out.text.hasPrefix("seek T | goto T|MARK|N|NAME\n"))
        #expect(out.text.split(separator: "\n").allSatisfy { $0.count <= 100 })
    }

    @Test("replay start --listen takes a bare socket path or HOST:PORT, as the command line does")
    func listenAddresses() {
        #expect(Address.withScheme("/tmp/q.sock") == "unix:/tmp/q.sock")
        #expect(Address.withScheme("./q.sock") == "unix:./q.sock")
        #expect(Address.withScheme("localhost:4444") == "tcp:localhost:4444")
        #expect(Address.withScheme("unix:/x") == "unix:/x")
        #expect(Address.withScheme("tcp::4444") == "tcp::4444")
    }

    @Test("time forms: @N is a record number everywhere, as #N")
    func recordForms() throws {
        #expect(try TimeSpec.parse("@160") == .record(160))
        #expect(throws: TimeSpec.ParseError.self) { _ = try TimeSpec.parse("@") }
        #expect(throws: TimeSpec.ParseError.self) { _ = try TimeSpec.parse("@-1") }
        let (sh, _) = try Self.session("lifecycle.qmprec")
        try sh.execute("show @4")
        try sh.execute("seek @4")
        #expect(sh.cursor == 4)
        try sh.execute("list 2 from @6")
        try sh.execute("find time >= @20")
        try sh.execute("analyze runstate --from @2 --to @13")
    }
}
