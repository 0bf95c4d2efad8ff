import QMP
import Recording
import Shell
import Testing

import Synth
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Fixture

/// A small recording covering every record kind, both directions, two connections, a
/// pretty (`text`) message, a `b64` message, escaped keys, a big integer id and arrays.
/// Start: 2025-11-20T10:00:00Z (start_us 1763632800000000).
private enum Fixture {
    static let lines: [String] = [
        /* 0 */ #"{"t":0,"c":1,"k":"open","peer":"unix:/run/qmp.sock"}"#,
        /* 1 */ #"{"t":1000000,"c":1,"from":"qemu","k":"greeting","msg":{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}}"#,
        /* 2 */ #"{"t":2000000,"c":1,"from":"client","k":"command","n":"qmp_capabilities","msg":{"execute":"qmp_capabilities","id":1}}"#,
        /* 3 */ #"{"t":3000000,"c":1,"from":"qemu","k":"return","msg":{"return": {}, "id": 1}}"#,
        /* 4 */ #"{"t":1000000000,"c":1,"from":"client","k":"command","n":"query-status","msg":{"execute":"query-status","id":2}}"#,
        /* 5 */ #"{"t":1100000000,"c":1,"from":"qemu","k":"return","msg":{"return": {"status": "running", "singlestep": false, "running": true}, "id": 2}}"#,
        /* 6 */ #"{"t":5000000000,"c":1,"from":"qemu","k":"event","n":"STOP","msg":{"timestamp": {"seconds": 1763632805, "microseconds": 0}, "event": "STOP"}}"#,
        /* 7 */ #"{"t":6000000000,"c":1,"from":"qemu","k":"event","n":"RESUME","text":"{\n  \"timestamp\": {\"seconds\": 1763632806, \"microseconds\": 0},\n  \"event\": \"RESUME\"\n}\r\n","msg":{"timestamp":{"seconds":1763632806,"microseconds":0},"event":"RESUME"}}"#,
        /* 8 */ #"{"t":10000000000,"c":1,"from":"qemu","k":"event","n":"BALLOON_CHANGE","msg":{"timestamp": {"seconds": 1763632810, "microseconds": 0}, "event": "BALLOON_CHANGE", "data": {"actual": 1073741824}}}"#,
        /* 9 */ #"{"t":10500000000,"c":1,"from":"qemu","k":"event","n":"BALLOON_CHANGE","msg":{"timestamp": {"seconds": 1763632810, "microseconds": 500000}, "event": "BALLOON_CHANGE", "data": {"actual": 1073741823}}}"#,
        /* 10 */ #"{"t":11000000000,"c":1,"from":"client","k":"command","n":"set_link","msg":{"execute": "set_link", "arguments": {"name": "vnet0", "up": false}, "id": 18446744073709551615}}"#,
        /* 11 */ #"{"t":11100000000,"c":1,"from":"qemu","k":"return","msg":{"return": {}, "id": 18446744073709551615}}"#,
        /* 12 */ #"{"t":12000000000,"c":1,"from":"client","k":"command","n":"query-block","msg":{"execute":"query-block","id":"abc"}}"#,
        /* 13 */ #"{"t":12100000000,"c":1,"from":"qemu","k":"return","msg":{"return": [{"device": "ide0-hd0", "locked": false}, {"device": "floppy0", "size": 1.5}], "id": "abc"}}"#,
        /* 14 */ #"{"t":15000000000,"c":2,"k":"open","peer":"unix:/run/qmp.sock"}"#,
        /* 15 */ #"{"t":15500000000,"c":2,"from":"client","k":"command","n":"blockdev-del","msg":{"execute":"blockdev-del","arguments":{"node-name":"drive0"},"id":5}}"#,
        /* 16 */ #"{"t":15600000000,"c":2,"from":"qemu","k":"error","n":"GenericError","msg":{"error": {"class": "GenericError", "desc": "Node 'drive0' is busy"}, "id": 5}}"#,
        /* 17 */ #"{"t":20000000000,"c":2,"from":"qemu","k":"event","n":"BLOCK_JOB_COMPLETED","msg":{"timestamp": {"seconds": 1763632820, "microseconds": 0}, "event": "BLOCK_JOB_COMPLETED", "data": {"device": "drive0", "len": 10737418240, "offset": 10737418240, "speed": 0, "type": "mirror"}}}"#,
        /* 18 */ #"{"t":21000000000,"c":1,"from":"client","k":"other","text":"garbage here\n"}"#,
        /* 19 */ #"{"t":22000000000,"c":0,"k":"note","text":"clock jump"}"#,
        /* 20 */ #"{"t":25000000000,"c":2,"k":"close","by":"qemu","reason":"eof"}"#,
        /* 21 */ #"{"t":30000000000,"c":1,"from":"qemu","k":"event","n":"DEVICE_DELETED","msg":{"timestamp": {"seconds": 1763632830, "microseconds": 0}, "event": "DEVICE_DELETED", "data": {"path": "/machine/peripheral/net0"}}}"#,
        /* 22 */ #"{"t":31000000000,"c":1,"from":"qemu","k":"event","n":"BLOCK_IO_ERROR","msg":{"timestamp": {"seconds": 1763632831, "microseconds": 0}, "event": "BLOCK_IO_ERROR", "data": {"device": "ide0-hd0", "operation": "write", "action": "stop", "nospace": false, "reason": null}}}"#,
        /* 23 */ #"{"t":32000000000,"c":1,"from":"client","k":"command","n":"migrate-pause","msg":{"exec-oob":"migrate-pause","id":7}}"#,
        /* 24 */ #"{"t":33000000000,"c":1,"from":"qemu","k":"error","n":"CommandNotFound","msg":{"error": {"class": "CommandNotFound", "desc": "The command migrate-pause has not been found"}, "id": 7}}"#,
        /* 25 */ #"{"t":34000000000,"c":1,"from":"qemu","k":"event","n":"VSERPORT_CHANGE","msg":{"timestamp": {"seconds": 1763632834, "microseconds": 0}, "event": "VSERPORT_CHANGE", "data": {"id": "chan\u0030", "\u006fpen": true}}}"#,
        /* 26 */ #"{"t":40000000000,"c":1,"from":"qemu","k":"event","n":"RTC_CHANGE","b64":"eyJ0aW1lc3RhbXAiOnsic2Vjb25kcyI6MTc2MzYzMjg0MCwibWljcm9zZWNvbmRzIjowfSwiZXZlbnQiOiJSVENfQ0hBTkdFIiwiZGF0YSI6eyJvZmZzZXQiOi01fX0NCg=="}"#,
    ]

    static let recording: Recording = make(lines)

    static func make(_ records: [String]) -> Recording {
        let header = #"{"qmprec":1,"start_us":1763632800000000,"source":"x","mode":"synthetic"}"#
        let text = ([header] + records).joined(separator: "\n") + "\n"
        return try! Recording(bytes: FileBytes(bytes: Array(text.utf8)), path: "mem")
    }

    static var all: [Int] { Array(0..<lines.count) }
    static func allBut(_ xs: Int...) -> [Int] { all.filter { !xs.contains($0) } }
}

/// The records of `recording` that `expression` matches, checked three ways
/// (`matches`, `matchingIndices`, `firstMatch`/`lastMatch`) for consistency.
private func hits(_ expression: String, _ recording: Recording = Fixture.recording,
                  sourceLocation: SourceLocation = #_sourceLocation) -> [Int] {
    let f: FilterExpression
    do {
        f = try FilterExpression(parsing: expression)
    } catch {
        Issue.record("'\(expression)' does not parse: \(error)", sourceLocation: sourceLocation)
        return []
    }
    let viaMatches = (0..<recording.count).filter { f.matches(recording, $0) }
    #expect(f.matchingIndices(in: recording) == viaMatches, "matchingIndices of \(expression)", sourceLocation: sourceLocation)
    #expect(f.firstMatch(in: recording) == viaMatches.first, "firstMatch of \(expression)", sourceLocation: sourceLocation)
    #expect(f.lastMatch(in: recording, before: recording.count) == viaMatches.last, "lastMatch of \(expression)", sourceLocation: sourceLocation)
    if let second = viaMatches.dropFirst().first {
        #expect(f.firstMatch(in: recording, from: viaMatches[0] + 1) == second, sourceLocation: sourceLocation)
    }
    return viaMatches
}

/// The error for `expression`, which must not parse.
private func parseError(_ expression: String, sourceLocation: SourceLocation = #_sourceLocation) -> FilterParseError? {
    do {
        let f = try FilterExpression(parsing: expression)
        Issue.record("'\(expression)' parsed as \(f)", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

// MARK: - Names, kinds, directions, connections

@Suite struct FilterExpressionTests {
    @Test func fixtureIsReadAsWritten() throws {
        let r = Fixture.recording
        #expect(r.count == Fixture.lines.count)
        #expect(r.problems.filter(\.badLine).isEmpty)
        #expect(r.kind(26) == .event)
        let rtc = try r.record(at: 26)
        #expect(rtc.message?.json?.value(atPath: "data.offset")?.int64Value == -5)
        let vserport = try r.record(at: 25)
        #expect(vserport.message?.json?.value(atPath: "data.open")?.boolValue == true)
    }

    @Test func eventNames() {
        #expect(hits("event STOP") == [6])
        #expect(hits("STOP") == [6])
        #expect(hits("event=STOP") == [6])
        #expect(hits("event = STOP") == [6])
        #expect(hits("event==STOP") == [6])
        #expect(hits("EVENT STOP") == [6])
        #expect(hits("event=BALLOON*") == [8, 9])
        #expect(hits("event BALLOON*") == [8, 9])
        #expect(hits("BALLOON_CHANGE") == [8, 9])
        #expect(hits("BLOCK_*") == [17, 22])
        #expect(hits("BLOCK_JOB_?????????") == [17])
        #expect(hits("BLOCK_JOB_????????") == [])
        #expect(hits("*_CHANGE") == [8, 9, 25, 26])
        #expect(hits("event \"STOP\"") == [6])
        #expect(hits("event \"BALLOON*\"") == [], "a quoted name is exact, not a glob")
        #expect(hits("event ~ /^BLOCK_(JOB|IO)_/") == [17, 22])
        #expect(hits("event =~ /change$/i") == [8, 9, 25, 26])
        #expect(hits("event stop") == [], "names are case-sensitive")
        #expect(hits("event NO_SUCH_EVENT") == [])
        #expect(hits("event") == [6, 7, 8, 9, 17, 21, 22, 25, 26])
        #expect(hits("event") == hits("kind event"))
    }

    @Test func commandNamesExcludeReplies() {
        #expect(hits("command query-status") == [4], "the reply (5) is kind return, not included")
        #expect(hits("query-status") == [4])
        #expect(hits("command=query-*") == [4, 12])
        #expect(hits("query-*") == [4, 12])
        #expect(hits("qmp_capabilities") == [2])
        #expect(hits("migrate-pause") == [23], "exec-oob commands are commands")
        #expect(hits("command ~ /^query/") == [4, 12])
        #expect(hits("command") == [2, 4, 10, 12, 15, 23])
        #expect(hits("command STOP") == [], "an event name is not a command")
        #expect(hits("event query-status") == [])
    }

    @Test func errorClasses() {
        #expect(hits("error") == [16, 24])
        #expect(hits("error GenericError") == [16])
        #expect(hits("error=Command*") == [24])
        #expect(hits("error ~ /Generic/") == [16])
    }

    @Test func kinds() {
        #expect(hits("kind event") == [6, 7, 8, 9, 17, 21, 22, 25, 26])
        #expect(hits("kind=return") == [3, 5, 11, 13])
        #expect(hits("return") == [3, 5, 11, 13])
        #expect(hits("kind error") == [16, 24])
        #expect(hits("KIND Error") == [16, 24])
        #expect(hits("greeting") == [1])
        #expect(hits("kind == greeting") == [1])
        #expect(hits("other") == [18])
        #expect(hits("open") == [0, 14])
        #expect(hits("close") == [20])
        #expect(hits("note") == [19])
        #expect(hits("kind open,close,note") == [0, 14, 19, 20])
        #expect(hits("kind command") == hits("command"))
    }

    @Test func directionsAndConnections() {
        #expect(hits("from qemu") == [1, 3, 5, 6, 7, 8, 9, 11, 13, 16, 17, 21, 22, 24, 25, 26])
        #expect(hits("from client") == [2, 4, 10, 12, 15, 18, 23])
        #expect(hits("direction=client") == [2, 4, 10, 12, 15, 18, 23])
        #expect(hits("FROM QEMU") == hits("from qemu"))
        #expect(hits("conn 2") == [14, 15, 16, 17, 20])
        #expect(hits("connection=2") == [14, 15, 16, 17, 20])
        #expect(hits("conn == 0") == [19])
        #expect(hits("conn 3") == [])
    }

    // MARK: - Boolean structure

    @Test func precedenceNotAndOr() {
        // not > and > or
        #expect(hits("STOP or RESUME and conn 2") == [6])
        #expect(hits("(STOP or RESUME) and conn 1") == [6, 7])
        #expect(hits("STOP || RESUME && conn 2") == [6])
        #expect(hits("conn 2 and STOP or RESUME") == [7])
        #expect(hits("not STOP and event") == [7, 8, 9, 17, 21, 22, 25, 26])
        #expect(hits("!STOP && kind event") == [7, 8, 9, 17, 21, 22, 25, 26])
        #expect(hits("not (STOP or RESUME) and event") == [8, 9, 17, 21, 22, 25, 26])
        #expect(hits("not kind event or conn 2") == Fixture.allBut(6, 7, 8, 9, 21, 22, 25, 26))
        #expect(hits("not not STOP") == [6])
        #expect(hits("!(from qemu or from client)") == [0, 14, 19, 20])
        #expect(hits("((STOP))") == [6])
        #expect(hits("STOP AND conn 1 OR Not from qemu and conn 2") == [6, 14, 15, 20])
        #expect(hits("event and not event BALLOON*") == [6, 7, 17, 21, 22, 25, 26])
    }

    // MARK: - JSON paths

    @Test func sizeSuffixes() {
        #expect(hits("data.actual < 1G") == [9])
        #expect(hits("data.actual <= 1G") == [8, 9])
        #expect(hits("data.actual == 1073741824") == [8])
        #expect(hits("data.actual == 1Gi") == [8])
        #expect(hits("data.actual == 1gi") == [8])
        #expect(hits("data.actual == 1024M") == [8])
        #expect(hits("data.actual == 1048576K") == [8])
        #expect(hits("data.actual == 0.5K") == [])
        #expect(hits("data.actual > 1G") == [])
        #expect(hits("data.actual >= 1g") == [8])
        #expect(hits("data.actual > 1073741822.5") == [8, 9])
        #expect(hits("data.actual < 1.0e9") == [])
        #expect(hits("data.len == 10G") == [17])
        #expect(hits("data.len == 10737418240") == [17])
        #expect(hits("data.offset == 0.009765625T") == [17], "fractions with a suffix that come out whole are exact")
        #expect(hits("data.len > 10G") == [])
        #expect(hits("data.offset < 0") == [26])
        #expect(hits("data.offset < -4") == [26])
        #expect(hits("data.offset == -5") == [26])
        #expect(hits("return.1.size == 1.5") == [13])
        #expect(hits("return.1.size > 1") == [13])
        #expect(hits("return.1.size < 2K") == [13])
    }

    @Test func bigIntegerIdsAreExact() {
        #expect(hits("id == 18446744073709551615") == [10, 11])
        #expect(hits("id == 18446744073709551614") == [])
        #expect(hits("id > 18446744073709551614") == [10, 11])
        #expect(hits("id > 9223372036854775807") == [10, 11])
        #expect(hits("id < 18446744073709551615") == [2, 3, 4, 5, 15, 16, 23, 24])
        #expect(hits("id == 18446744073709551616") == [])
        #expect(hits("id < 18446744073709551616") == [2, 3, 4, 5, 10, 11, 15, 16, 23, 24])
        #expect(hits("id >= -99999999999999999999999") == [2, 3, 4, 5, 10, 11, 15, 16, 23, 24])
        #expect(hits("id == 5") == [15, 16])
        #expect(hits("id == 5.0") == [15, 16])
        #expect(hits("id == \"5\"") == [], "a type mismatch is false")
        #expect(hits("id == \"abc\"") == [12, 13])
        #expect(hits("id < \"b\"") == [12, 13])
        #expect(hits("id >= \"abc\"") == [12, 13])
        #expect(hits("id > \"abc\"") == [])
    }

    @Test func stringsBoolsNull() {
        #expect(hits("data.device == \"ide0-hd0\"") == [22])
        #expect(hits("data.device == \"drive0\"") == [17])
        #expect(hits("return.status == \"running\"") == [5])
        #expect(hits("return.running == true") == [5])
        #expect(hits("return.singlestep == false") == [5])
        #expect(hits("arguments.up == false") == [10])
        #expect(hits("arguments.up == 0") == [], "a bool is not a number")
        #expect(hits("data.nospace == false") == [22])
        #expect(hits("data.reason == null") == [22])
        #expect(hits("error.class == \"GenericError\"") == [16])
        #expect(hits("error.class != \"GenericError\"") == Fixture.allBut(16))
        #expect(hits("kind error and error.class != \"GenericError\"") == [24])
        #expect(hits("return.0.device == \"ide0-hd0\"") == [13])
        #expect(hits("return.1.device == \"floppy0\"") == [13])
        #expect(hits("return.2.device == \"floppy0\"") == [])
        #expect(hits("data.path == \"\\/machine\\/peripheral\\/net0\"") == [21])
        #expect(hits("data.id == \"ch\\u0061n0\"") == [25])
        #expect(hits("data.id == \"chan0\"") == [25])
        #expect(hits("msg.execute == \"query-status\"") == [4])
        #expect(hits("execute == \"query-status\"") == [4])
        #expect(hits("QMP.version.qemu.major >= 7") == [1])
        #expect(hits("timestamp.seconds > 1763632820") == [21, 22, 25, 26])
        #expect(hits("timestamp.seconds >= 1763632820") == [17, 21, 22, 25, 26])
        #expect(hits("timestamp.seconds == 1763632806") == [7], "pretty messages stored as text are decoded")
    }

    @Test func regexComparisons() {
        #expect(hits("arguments.name ~ /^vnet/") == [10])
        #expect(hits("arguments.name ~ /^VNET/i") == [10])
        #expect(hits("arguments.name ~ \"^vnet[0-9]$\"") == [10])
        #expect(hits("arguments.name !~ /^vnet/") == Fixture.allBut(10))
        #expect(hits("data.device ~ /ide0/") == [22])
        #expect(hits("data.path ~ /^\\/machine\\//") == [21])
        #expect(hits("execute ~ /^query/") == [4, 12])
        #expect(hits("data.actual ~ /^1073/") == [], "~ applies to strings only")
        #expect(hits("data.device ~ /^(ide|drive)0/ and from qemu") == [17, 22])
    }

    @Test func missingPathsAndHas() {
        // A missing path is false for every operator except != and !~.
        #expect(hits("data.nothing == 1") == [])
        #expect(hits("data.nothing < 1") == [])
        #expect(hits("data.nothing >= 1") == [])
        #expect(hits("data.nothing ~ /x/") == [])
        #expect(hits("data.nothing != 1") == Fixture.all)
        #expect(hits("data.nothing !~ /x/") == Fixture.all)
        #expect(hits("data.device != \"ide0-hd0\"") == Fixture.allBut(22))
        #expect(hits("id != 5") == Fixture.allBut(15, 16))
        #expect(hits("id != \"abc\"") == Fixture.allBut(12, 13), "!= is the negation of ==, also across types")
        #expect(hits("has data.nospace") == [22])
        #expect(hits("has data.reason") == [22], "a member whose value is null exists")
        #expect(hits("has data.open") == [25], "keys written with \\u escapes are found")
        #expect(hits("data.open == true") == [25])
        #expect(hits("has data.offset") == [17, 26], "b64 messages are decoded")
        #expect(hits("has exec-oob") == [23])
        #expect(hits("has QMP.capabilities.0") == [1])
        #expect(hits("has return.1") == [13])
        #expect(hits("not has id and kind command") == [])
        #expect(hits("has id and not kind command") == [3, 5, 11, 13, 16, 24])
        #expect(hits("has msg") == Fixture.allBut(0, 14, 18, 19, 20), "every message that is JSON")
        #expect(hits("has data.device.x") == [], "a path through a string does not exist")
    }

    /// The byte search that skips records without decoding them never skips one that has
    /// the path: keys spelled with escapes, a Kelvin sign (canonically equivalent to K),
    /// base64 and text messages, keys that are also array indexes.
    @Test func prefilterIsExact() {
        let r = Fixture.make([
            /* 0 */ "{\"t\":0,\"c\":1,\"from\":\"qemu\",\"k\":\"event\",\"n\":\"X\",\"msg\":{\"event\":\"X\",\"data\":{\"\u{212A}\":1}}}",
            /* 1 */ #"{"t":1,"c":1,"from":"qemu","k":"event","n":"X","msg":{"event":"X","data":{"\u004b":2}}}"#,
            /* 2 */ #"{"t":2,"c":1,"from":"qemu","k":"event","n":"X","msg":{"event":"X","data":{"K":3}}}"#,
            /* 3 */ #"{"t":3,"c":1,"from":"qemu","k":"event","n":"X","text":"{\"event\":\"X\",\"data\":{\"K\":4}}"}"#,
            /* 4 */ #"{"t":4,"c":1,"from":"qemu","k":"event","n":"X","b64":"eyJldmVudCI6IlgiLCJkYXRhIjp7IksiOjV9fQ=="}"#,
            /* 5 */ #"{"t":5,"c":1,"from":"qemu","k":"event","n":"X","msg":{"event":"X","data":{"k":6}}}"#,
            /* 6 */ #"{"t":6,"c":1,"from":"qemu","k":"return","msg":{"return":[{"K":7}]}}"#,
            /* 7 */ #"{"t":7,"c":1,"from":"qemu","k":"return","msg":{"return":{"0":{"K":8}}}}"#,
            /* 8 */ #"{"t":8,"c":1,"k":"note","text":"data K"}"#,
        ])
        let reference = (0..<r.count).filter { i in
            (try? r.record(at: i))?.message?.json?.value(atPath: "data.K") != nil
        }
        #expect(reference == [0, 1, 2, 3, 4])
        #expect(hits("has data.K", r) == reference)
        #expect(hits("data.K > 0", r) == reference)
        #expect(hits("data.K != 0", r) == Array(0..<r.count))
        #expect(hits("has msg.data.k", r) == [5])
        #expect(hits("return.0.K >= 7", r) == [6, 7])
    }

    // MARK: - Time

    @Test func timeComparisonsAndRanges() {
        #expect(hits("time >= 10s") == Array(8...26))
        #expect(hits("time < 1m30s") == Fixture.all)
        #expect(hits("time < 1s") == [0, 1, 2, 3])
        #expect(hits("time <= 1s") == [0, 1, 2, 3, 4])
        #expect(hits("time > 5s") == Array(7...26))
        #expect(hits("time == 5s") == [6])
        #expect(hits("time = 5000ms") == [6])
        #expect(hits("time != 5s") == Fixture.allBut(6))
        #expect(hits("time 10s..20s") == Array(8...16), "start inclusive, end exclusive")
        #expect(hits("time 10s .. 20s") == Array(8...16))
        #expect(hits("time 500ms..1100ms") == [4])
        #expect(hits("time 10.5s..") == Array(9...26))
        #expect(hits("time ..5s") == [0, 1, 2, 3, 4, 5])
        #expect(hits("time 12.5s..20s and conn 2") == [14, 15, 16])
        #expect(hits("time 20s..10s") == [])
    }

    @Test func timeWallClockAndRecordNumbers() {
        #expect(hits("time 10:00:10..10:00:20") == Array(8...16))
        #expect(hits("time 2025-11-20T10:00:10Z..2025-11-20T10:00:20Z") == Array(8...16))
        #expect(hits("time 10:00:10.5..") == Array(9...26))
        #expect(hits("time >= 2025-11-20T10:00:30.000Z") == Array(21...26))
        #expect(hits("time < 10:00:01") == [0, 1, 2, 3])
        #expect(hits("time >= #8") == Array(8...26))
        #expect(hits("time #8..#10") == [8, 9])
        #expect(hits("time < #100") == Fixture.all, "#N past the end is after every record")
        #expect(hits("time >= #100") == [])
    }

    // MARK: - indexOnly and the normalised form

    @Test func indexOnly() throws {
        for e in ["event STOP or kind error", "time 1s..2s and conn 1 and from qemu", "not query-*", "kind open,close",
                  "event ~ /x/", "error GenericError"] {
            let f = try FilterExpression(parsing: e)
            #expect(f.indexOnly, "\(e)")
        }
        for e in ["data.actual < 1G", "not has id", "STOP or id == 5", "kind event and (conn 1 or data.x !~ /y/)"] {
            let f = try FilterExpression(parsing: e)
            #expect(!f.indexOnly, "\(e)")
        }
    }

    @Test func normalisedForm() throws {
        let cases: [(String, String)] = [
            ("STOP or RESUME and conn 2", "event STOP or event RESUME and conn 2"),
            ("(STOP OR RESUME) AND conn=2", "(event STOP or event RESUME) and conn 2"),
            ("!(kind=error || from==client)", "not (kind error or from client)"),
            ("a-b && (c_d || E)", "command a-b and (command c_d or event E)"),
            ("(a or b) or (c or d)", "command a or command b or command c or command d"),
            ("not (STOP and conn 1)", "not (event STOP and conn 1)"),
            ("not not STOP", "not not event STOP"),
            ("data.actual<1G", "data.actual < 1G"),
            ("msg.foo.bar = \"x\"", "msg.foo.bar == \"x\""),
            ("msg.data.x == 1", "data.x == 1"),
            ("arguments.name =~ /^v\\/x/i", "arguments.name ~ /^v\\/x/i"),
            ("arguments.name ~ \"a/b\"", "arguments.name ~ \"a/b\""),
            ("event \"A B\"", "event \"A B\""),
            ("event \"STOP\"", "event STOP"),
            ("event \"and\"", "event \"and\""),
            ("event=BALLOON*", "event BALLOON*"),
            ("event", "kind event"),
            ("EVENT ~ /x/", "event ~ /x/"),
            ("kind=return,ERROR", "kind return,error"),
            ("direction=QEMU", "from qemu"),
            ("connection == 3", "conn 3"),
            ("time 10s ..", "time 10s.."),
            ("time>=10:00:05", "time >= 10:00:05"),
            ("has  return.0.device", "has return.0.device"),
            ("data.s == \"tab\\there \\\"q\\\"\"", "data.s == \"tab\\there \\\"q\\\"\""),
            ("id == NULL", "id == null"),
        ]
        for (input, expected) in cases {
            let f = try FilterExpression(parsing: input)
            #expect(f.description == expected, "\(input)")
            #expect(f.text == input)
            // The normalised form parses back to itself and to the same filter.
            let again = try FilterExpression(parsing: f.description)
            #expect(again.description == expected, "\(input)")
            #expect(hits(f.description) == hits(input), "\(input)")
        }
    }

    // MARK: - Errors

    @Test func errorsPointAtTheirColumn() {
        let cases: [(String, Int, String)] = [
            ("evnt STOP", 1, "unknown keyword 'evnt'"),
            ("data.device == \"abc", 16, "unterminated string"),
            ("arguments.name ~ /^vnet", 18, "unterminated /regex/"),
            ("arguments.name ~ /[a-/", 18, "invalid regex /[a-/"),
            ("data.actual <", 14, "expected a value after '<' (a number like 1G or a \"string\")"),
            ("data.actual == ", 16, "expected a value after '==' (a number like 1G, a \"string\", true, false or null)"),
            ("data.actual < and STOP", 15, "expected a value after '<'"),
            ("(event STOP", 1, "'(' is never closed"),
            ("(STOP or (RESUME)", 1, "'(' is never closed"),
            ("event STOP)", 11, "')' without a matching '('"),
            ("event STOP kind error", 12, "expected 'and' or 'or' before 'kind'"),
            ("STOP RESUME", 6, "expected 'and' or 'or' before 'RESUME'"),
            ("(STOP RESUME)", 7, "expected 'and', 'or' or ')' before 'RESUME'"),
            ("kind bogus", 6, "unknown kind 'bogus'"),
            ("kind event,bogus", 12, "unknown kind 'bogus'"),
            ("kind", 5, "expected a kind after 'kind'"),
            ("from nowhere", 6, "expected qemu or client after 'from'"),
            ("conn x", 6, "expected a connection number after 'conn'"),
            ("time >= +5s", 9, "relative times need a cursor; use an absolute time"),
            ("time 10s..-2s", 11, "relative times need a cursor"),
            ("time >= 5parsecs", 9, "invalid time '5parsecs'"),
            ("time 10s", 9, "expected '..' after the time '10s'"),
            ("time ~ 1s", 6, "'~' does not apply to time"),
            ("time", 5, "expected a comparison or a range after 'time'"),
            ("", 1, "empty expression"),
            ("   ", 4, "empty expression"),
            ("event STOP and", 15, "expected a condition after 'and'"),
            ("STOP or or RESUME", 9, "expected a condition after 'or', found 'or'"),
            ("and STOP", 1, "expected a condition before 'and'"),
            ("not", 4, "expected a condition after 'not'"),
            ("()", 2, "empty parentheses"),
            ("data.actual == 5x", 16, "'5x' is not a number (sizes: 1K 1M 1G 1T); for text write it in double quotes: data.actual == \"5x\""),
            ("data.actual < /x/", 15, "a /regex/ needs '~' or '!~'"),
            ("data.actual ~ 5", 15, "expected a /regex/ after '~'"),
            ("data.x ~ /x/q", 13, "unknown regex flag 'q'"),
            ("event STOP & kind error", 12, "'&' is not an operator; write '&&' or 'and'"),
            ("STOP | RESUME", 6, "'|' is not an operator"),
            ("'abc'", 1, "strings are written in double quotes"),
            ("data.x == \"\\q\"", 12, "invalid escape '\\q'"),
            ("data.x == \"\\u12\"", 12, "\\u must be followed by four hex digits"),
            ("foo.bar == 1", 1, "unknown keyword or message member 'foo'"),
            ("dta.actual < 1G", 1, "unknown keyword or message member 'dta'"),
            ("data. == 1", 6, "empty path component"),
            ("data.actual", 12, "expected a comparison after the path 'data.actual'"),
            ("Stop", 1, "cannot tell what 'Stop' is"),
            ("*", 1, "cannot tell what '*' is"),
            ("has", 4, "expected a path after 'has'"),
            ("has STOP", 5, "unknown keyword or message member 'STOP'"),
            ("event <", 7, "'<' does not apply to event names"),
            ("event != STOP", 7, "'!=' does not apply to event names"),
            ("event =", 8, "expected an event name or pattern after '='"),
            ("command = and", 11, "expected a command name or pattern after '='"),
            ("kind != error", 6, "'!=' does not apply to kind"),
            ("data.x < true", 10, "'<' compares numbers or strings, not true"),
            ("5", 1, "a number alone is not a condition"),
            ("true", 1, "'true' alone is not a condition"),
            ("\"STOP\"", 1, "a string alone is not a condition"),
            ("STOP and /x/", 10, "a regex alone is not a condition"),
            ("STOP and <", 10, "expected a condition after 'and', found '<'"),
            (String(repeating: "(", count: 201) + "STOP" + String(repeating: ")", count: 201), 201, "nests deeper than 200"),
            (String(repeating: "not ", count: 201) + "STOP", 801, "nests deeper than 200"),
        ]
        for (input, column, fragment) in cases {
            guard let e = parseError(input) else { continue }
            #expect(e.column == column, "'\(input)': \(e)")
            #expect(e.message.contains(fragment), "'\(input)': \(e)")
            #expect(e.description == "column \(column): \(e.message)" || e.column != column)
        }
    }

    @Test func errorMessagesSayWhatWouldBeRight() {
        #expect(parseError("data.actual <")?.description
            == "column 14: expected a value after '<' (a number like 1G or a \"string\")")
        #expect(parseError("time >= +5s")?.message.contains("12.5s") == true)
        #expect(parseError("kind bogus")?.message.contains("event, command, return, error, greeting, other, open, close or note") == true)
        #expect(parseError("foo.bar == 1")?.message.contains("data, arguments, return, error, id") == true)
    }

    @Test func deepButReasonableNesting() {
        let e = String(repeating: "(not ", count: 99) + "STOP" + String(repeating: ")", count: 99)
        #expect(hits(e) == Fixture.allBut(6))
    }

    @Test func caretPointsAtTheColumn() {
        let input = "data.actual < and STOP"
        let e = parseError(input)!
        #expect(e.pointing(at: input) == "data.actual < and STOP\n              ^")
        let tabbed = FilterParseError(column: 5, message: "x").pointing(at: "ab\tcdef")
        #expect(tabbed == "ab\tcdef\n  \t ^")
        let end = FilterParseError(column: 4, message: "x").pointing(at: "not")
        #expect(end == "not\n   ^")
    }

    // MARK: - Caching per recording

    @Test func oneFilterOnSeveralRecordings() async throws {
        let f = try FilterExpression(parsing: "event=B* and time < #2")
        let a = Fixture.make([
            #"{"t":0,"c":1,"from":"qemu","k":"event","n":"BAR","msg":{"event":"BAR"}}"#,
            #"{"t":5,"c":1,"from":"qemu","k":"event","n":"BAZ","msg":{"event":"BAZ"}}"#,
            #"{"t":9,"c":1,"from":"qemu","k":"event","n":"BOO","msg":{"event":"BOO"}}"#,
        ])
        let b = Fixture.make([
            #"{"t":0,"c":1,"from":"qemu","k":"event","n":"FOO","msg":{"event":"FOO"}}"#,
            #"{"t":7,"c":1,"from":"qemu","k":"event","n":"BAR","msg":{"event":"BAR"}}"#,
        ])
        for _ in 0..<3 {
            #expect(f.matchingIndices(in: a) == [0, 1])
            #expect(f.matchingIndices(in: b) == [1])
            #expect(f.matches(a, 1) && f.matches(b, 1) && !f.matches(b, 0))
        }
        // Concurrent use of one filter on one recording.
        let r = Fixture.recording
        let g = try FilterExpression(parsing: "BALLOON_CHANGE or data.device ~ /^ide/")
        await withTaskGroup(of: [Int].self) { group in
            for _ in 0..<8 { group.addTask { g.matchingIndices(in: r) } }
            for await result in group { #expect(result == [8, 9, 22]) }
        }
    }

    // MARK: - Against brute force on a synthetic recording

    @Test func agreesWithBruteForceOnSyntheticRecording() throws {
        let path = "/tmp/qmpreplay-filter-test-\(getpid()).qmprec"
        defer { unlink(path) }
        try Synthesizer(seed: 1, profile: .mixed).write(records: 20000, to: path)
        let recording = try Recording(path: path)
        let records = try (0..<recording.count).map { try recording.record(at: $0) }

        func value(_ r: Record, _ p: String) -> JSONValue? { r.message?.json?.value(atPath: p) }
        func number(_ r: Record, _ p: String) -> Double? { value(r, p)?.doubleValue }
        func string(_ r: Record, _ p: String) -> String? { value(r, p)?.stringValue }
        let s = 1_000_000_000 as Int64

        let cases: [(String, (Record) -> Bool)] = [
            ("event STOP or kind error", { ($0.kind == .event && $0.name == "STOP") || $0.kind == .error }),
            ("BALLOON_CHANGE and data.actual < 3.5G", { $0.name == "BALLOON_CHANGE" && $0.kind == .event && (number($0, "data.actual").map { $0 < 3.5 * 1_073_741_824 } ?? false) }),
            ("data.actual >= 4000000000", { number($0, "data.actual").map { $0 >= 4e9 } ?? false }),
            ("command ~ /^query-/ and from client", { $0.kind == .command && ($0.name?.hasPrefix("query-") ?? false) && $0.direction == .client }),
            ("arguments.name ~ /^net[01]$/", { string($0, "arguments.name").map { $0 == "net0" || $0 == "net1" } ?? false }),
            ("return.status == \"running\"", { string($0, "return.status") == "running" }),
            ("error.class != \"GenericError\"", { string($0, "error.class") != "GenericError" }),
            ("kind error and not error.class == \"GenericError\"", { $0.kind == .error && string($0, "error.class") != "GenericError" }),
            ("return.0.device ~ /^commit/ or return.0.len > 30G", {
                (string($0, "return.0.device")?.hasPrefix("commit") ?? false) || (number($0, "return.0.len").map { $0 > 30 * 1_073_741_824 } ?? false)
            }),
            ("BLOCK_* and data.operation == \"write\" and data.nospace == true", {
                $0.kind == .event && ($0.name?.hasPrefix("BLOCK_") ?? false) && string($0, "data.operation") == "write" && value($0, "data.nospace")?.boolValue == true
            }),
            ("conn 2 and (STOP or RESUME or kind open)", {
                $0.connection == 2 && (($0.kind == .event && ($0.name == "STOP" || $0.name == "RESUME")) || $0.kind == .open)
            }),
            ("timestamp.seconds > 1763633000 and timestamp.seconds <= 1763634000", {
                (value($0, "timestamp.seconds")?.int64Value).map { $0 > 1_763_633_000 && $0 <= 1_763_634_000 } ?? false
            }),
            ("id == \"libvirt-20\" or id == \"libvirt-21\"", { ["libvirt-20", "libvirt-21"].contains(string($0, "id") ?? "") }),
            ("query-rx-filter and not has arguments.name", { $0.kind == .command && $0.name == "query-rx-filter" && value($0, "arguments.name") == nil }),
            ("time 10:05:00..10:10:00 and kind event", { $0.time >= 300 * s && $0.time < 600 * s && $0.kind == .event }),
            ("time >= 1h and from qemu and not event", { $0.time >= 3600 * s && $0.direction == .qemu && $0.kind != .event }),
            ("execute == \"balloon\" and arguments.value > 3000000000", {
                string($0, "execute") == "balloon" && (number($0, "arguments.value").map { $0 > 3e9 } ?? false)
            }),
            ("QMP.version.qemu.major >= 7", { (value($0, "QMP.version.qemu.major")?.int64Value).map { $0 >= 7 } ?? false }),
            ("has data.offset or data.status !~ /^(created|running)$/", {
                value($0, "data.offset") != nil || !(string($0, "data.status").map { $0 == "created" || $0 == "running" } ?? false)
            }),
            ("msg.return.singlestep == false", { value($0, "return.singlestep")?.boolValue == false }),
        ]
        for (expression, reference) in cases {
            let f = try FilterExpression(parsing: expression)
            let expected = records.indices.filter { reference(records[$0]) }
            let got = (0..<recording.count).filter { f.matches(recording, $0) }
            #expect(got == expected, "\(expression): \(got.count) matches, brute force \(expected.count)")
            #expect(!expected.isEmpty, "\(expression) should match something")
        }
    }

    // MARK: - Speed (run with QMPREPLAY_FILTER_BENCH=1, in release)

    @Test(.enabled(if: getenv("QMPREPLAY_FILTER_BENCH") != nil))
    func scanSpeed() throws {
        var path = "/tmp/qmpreplay-filter-bench-\(getpid()).qmprec"
        if let given = getenv("QMPREPLAY_FILTER_BENCH_FILE") {
            path = String(cString: given)
        } else {
            try Synthesizer(seed: 1, profile: .mixed).write(records: 1_000_000, to: path)
        }
        defer { if getenv("QMPREPLAY_FILTER_BENCH_FILE") == nil { unlink(path) } }
        let recording = try Recording(path: path)
        func clock() -> Double {
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        }
        do {
            let stop = recording.nameID(for: "STOP")!
            let t0 = clock()
            var c = 0
            for i in 0..<recording.count {
                let k = recording.kind(i)
                if k == .error || (k == .event && recording.nameID(i) == stop) { c += 1 }
            }
            print("BASELINE raw accessor loop: \(c) in \(Int((clock() - t0) * 1000)) ms")
        }
        var expressions = ["event STOP or kind error", "BLOCK_* and from qemu and conn 3",
                           "time 1h..2h and not kind return", "data.actual < 3.5G", "BALLOON_CHANGE and data.actual < 3.5G",
                           "error.class == \"GenericError\""]
        if let only = getenv("QMPREPLAY_FILTER_BENCH_EXPR") { expressions = [String(cString: only)] }
        for expression in expressions {
            let f = try FilterExpression(parsing: expression)
            _ = f.matches(recording, 0)
            var t0 = clock()
            var n = 0
            for i in 0..<recording.count where f.matches(recording, i) { n += 1 }
            let viaMatches = clock() - t0
            t0 = clock()
            let m = f.matcher(for: recording)
            var k = 0
            for i in 0..<recording.count where m.matches(i) { k += 1 }
            let viaMatcher = clock() - t0
            #expect(n == k)
            print("scan \(recording.count) records, \(expression): \(n) matches; matches() \(Int(viaMatches * 1000)) ms, matcher \(Int(viaMatcher * 1000)) ms")
        }
    }
}

@Test("fuzz find: a bare value with control characters renders to an expression that parses")
func renderedControlCharactersParse() throws {
    let bytes: [UInt8] = Array("data==a".utf8) + [0xd2, 0x3f, 0xfd, 0x01, 0xd9, 0x90, 0xfd] + Array("da".utf8) + [0xfe, 0x03, 0xfd] + Array("t".utf8)
    let f = try FilterExpression(parsing: String(decoding: bytes, as: UTF8.self))
    let again = try? FilterExpression(parsing: f.description)
    #expect(again != nil, "rendered: \(f.description.unicodeScalars.map { $0.value < 32 ? "<\($0.value)>" : String($0) }.joined())")
}
