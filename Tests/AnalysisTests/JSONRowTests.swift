import QMP
import Testing
@testable import Analysis

/// `JSONRow` writes what the tree form writes: the same bytes as `JSONWriter` for an object
/// of the same members, at any level, including the integers' edge cases and escapes.
@Suite("JSON rows")
struct JSONRowTests {
    @Test("a row equals the object written by JSONWriter, in every layout", arguments: [0, 1, 2, 5])
    func sameAsTree(level: Int) throws {
        for layout: JSONLayout in [.pretty(indent: 2), .pretty(indent: 4), .compact, .qemu] {
        for v: Int64 in [0, 7, -7, 1_763_632_800_000_000, Int64.max, Int64.min] {
            var row = JSONRow(layout: layout, level: level)
            row.int("n", v)
            row.int("none", nil as Int64?)
            row.string("s", "quote \" backslash \\ tab \t é")
            row.string("absent", nil)
            row.bool("b", v > 0)
            row.value("nested", .array([.int(1), .object(JSONObject([.init(key: "k", value: .string("v"))]))]))
            row.finish()
            var o = JSONObject()
            o["n"] = .int(v)
            o["none"] = .null
            o["s"] = .string("quote \" backslash \\ tab \t é")
            o["absent"] = .null
            o["b"] = .bool(v > 0)
            o["nested"] = .array([.int(1), .object(JSONObject([.init(key: "k", value: .string("v"))]))])
            var tree: [UInt8] = []
            JSONWriter.write(.object(o), layout: layout, level: level, into: &tree)
            #expect(row.out == tree, "\(v) at level \(level) in \(layout)")
        }
        }
    }

    @Test("an empty row is {}")
    func empty() {
        var row = JSONRow(layout: .pretty(indent: 2), level: 2)
        row.finish()
        #expect(row.out == Array("{}".utf8))
    }
}

/// Which analyses pair replies (and so have the id keys made when their recording is
/// opened: `Analyses.pairsReplies`): those whose interest or model wants commands.
@Suite("Analyses that pair replies")
struct PairsRepliesTests {
    @Test("balloon, nic-rx-filter, commands and triage pair; rtc, sessions and throttle only read events")
    func which() {
        #expect(Analyses.pairsReplies("balloon"))
        #expect(Analyses.pairsReplies("nic-rx-filter"))
        #expect(Analyses.pairsReplies("commands"))
        #expect(Analyses.pairsReplies("triage"))
        #expect(!Analyses.pairsReplies("rtc"))
        #expect(!Analyses.pairsReplies("throttle"))
        #expect(!Analyses.pairsReplies("sessions"))
        #expect(!Analyses.pairsReplies("no-such-analysis"))
    }
}
