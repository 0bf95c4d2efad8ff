import QMP
import Recording
import Testing
@testable import Analysis

@Suite("grouped findings, SPICE sessions, reply pairing, clocks")
struct FindingGroupTests {
    @Test("repeated findings become one per analysis, code and subject, with count, span, capped records and the total")
    func grouping() throws {
        var ss = Session()
        // 150 RTC steps alternating +65 s / -65 s, one every 10 s (the first +64 s from 0, assumed).
        for k in 0..<150 {
            ss.event(s(10 + 10 * Double(k)), "RTC_CHANGE", "{\"offset\": \(k % 2 == 0 ? 64 : -1), \"qom-path\": \"/machine/rtc\"}")
        }
        // Failed queries on two names: two groups.
        for k in 0..<3 {
            ss.command(s(2000 + Double(k)), "query-rx-filter", "{\"name\": \"net5\"}", id: "\"a\(k)\"")
            ss.error(s(2000.01 + Double(k)), "GenericError", "invalid net client name: net5", id: "\"a\(k)\"")
        }
        ss.command(s(2010), "query-rx-filter", "{\"name\": \"hostnet0\"}", id: "\"b\"")
        ss.error(s(2010.01), "GenericError", "net client(hostnet0) isn't a NIC", id: "\"b\"")
        ss.endTime = s(2100)
        let rec = try ss.open()
        let report = try Analyses.run("triage", on: rec)
        let f = report.findings
        let steps = try #require(f.first { $0.code == "step" })
        #expect(steps.message == "RTC /machine/rtc: guest set its clock 150 times (steps from -65 s to +65 s)")
        #expect(steps.subject == "RTC /machine/rtc" && steps.count == 150)
        #expect(steps.time == s(10) && steps.end == s(1500))
        #expect(steps.records.count == FindingGroup.recordLimit && steps.records.first == 0 && steps.recordCount == 150)
        let failed = f.filter { $0.code == "failed-query" }
        #expect(failed.map(\.subject) == ["net5", "hostnet0"])
        let net5 = try #require(failed.first { $0.subject == "net5" })
        #expect(net5.message == "query-rx-filter net5 failed 3 times: GenericError: invalid net client name: net5")
        #expect(net5.records == [150, 151, 152, 153, 154, 155] && net5.count == 3)
        let single = try #require(failed.first { $0.subject == "hostnet0" })
        #expect(single.count == 1 && single.message == "query-rx-filter hostnet0 failed: GenericError: net client(hostnet0) isn't a NIC")
        // Commands findings carry the time of their first record, not 0.
        let errs = try #require(f.first { $0.analysis == "commands" && $0.code == "errors" })
        #expect(errs.time == s(2000.01) && errs.records.first == 151)
        // JSON: every group, records capped at 100 with the total.
        let j = report.json
        let groups = try #require(j["findings"]?.arrayValue)
        #expect(groups.count == f.count)
        let jsteps = try #require(groups.first { $0["code"]?.stringValue == "step" })
        #expect(jsteps["count"]?.int64Value == 150 && jsteps["record_count"]?.int64Value == 150)
        #expect(jsteps["records"]?.arrayValue?.count == 100 && jsteps["end_ns"]?.int64Value == s(1500))
        #expect(jsteps["subject"]?.stringValue == "RTC /machine/rtc")
        #expect(j["occurrences"]?["info"]?.int64Value == 151)
        #expect(j["results"]?["rtc"]?["findings"]?.arrayValue?.count == 1)
        // The table lists the group once with its first records and the total.
        let table = report.table(colors: false, width: 100)
        #expect(table.contains("records @0 @1 @2 @3 @4 @5 … (150 records)"))
    }

    @Test("runstate pauses group by cause (the device for I/O errors), with total and longest")
    func pausesByCause() throws {
        var ss = Session()
        for (k, op) in ["write", "read", "write"].enumerated() {
            let t = 10 + 100 * Double(k)
            ss.event(s(t), "BLOCK_IO_ERROR", "{\"device\": \"drive-virtio-disk0\", \"operation\": \"\(op)\", \"action\": \"stop\"}")
            ss.event(s(t + 0.001), "STOP")
            ss.event(s(t + 5 + Double(k)), "RESUME")
        }
        ss.endTime = s(400)
        let f = try Analyses.run("runstate", on: try ss.open()).findings
        #expect(f.count == 1)
        #expect(f[0].message == "VM paused 3 times after BLOCK_IO_ERROR on drive-virtio-disk0: 17.997s in total, longest 6.999s (#7)")
        #expect(f[0].records == [0, 1, 3, 4, 6, 7] && f[0].severity == .error && abs(f[0].weight - 17.997) < 1e-9)
    }

    @Test("sessions: SPICE channels keyed by client host and port; QEMU closing the monitor ends the open ones")
    func spice() throws {
        var ss = Session()
        func spice(_ t: Double, _ ev: String, _ port: String, host: String = "10.0.0.7", channel: Int = 1) {
            let client = ev == "SPICE_INITIALIZED"
                ? "{\"host\": \"\(host)\", \"port\": \"\(port)\", \"family\": \"ipv4\", \"connection-id\": 1804289383, \"channel-type\": \(channel), \"channel-id\": 0, \"tls\": true}"
                : "{\"host\": \"\(host)\", \"port\": \"\(port)\", \"family\": \"ipv4\"}"
            let server = ev == "SPICE_INITIALIZED"
                ? "{\"auth\": \"spice\", \"host\": \"0.0.0.0\", \"port\": \"5901\", \"family\": \"ipv4\"}"
                : "{\"host\": \"0.0.0.0\", \"port\": \"5901\", \"family\": \"ipv4\"}"
            ss.event(s(t), ev, "{\"server\": \(server), \"client\": \(client)}")
        }
        spice(1, "SPICE_CONNECTED", "40001"); spice(1.2, "SPICE_INITIALIZED", "40001")                 // 0 1: main channel
        spice(1.3, "SPICE_CONNECTED", "40002"); spice(1.4, "SPICE_INITIALIZED", "40002", channel: 2)   // 2 3: display channel
        spice(9, "SPICE_DISCONNECTED", "40002")                                                         // 4
        spice(10, "SPICE_CONNECTED", "40003")                                                           // 5: never initialised
        spice(10.5, "SPICE_DISCONNECTED", "40003")                                                      // 6
        spice(11, "SPICE_CONNECTED", "40004", host: "10.0.0.8")                                         // 7: open when QEMU exits
        ss.close(s(20), by: "qemu")                                                                     // 8
        spice(30, "SPICE_CONNECTED", "40005"); spice(30.1, "SPICE_INITIALIZED", "40005")               // 9 10: still open
        ss.endTime = s(40)
        let report = try Analyses.run("sessions", on: try ss.open())
        let r = try #require(report.result as? SessionsResult)
        #expect(r.sessions.map(\.service) == ["40001", "40002", "40003", "40004", "40005"])
        #expect(r.sessions.map(\.state) == ["ended-with-qemu", "complete", "never-initialized", "ended-with-qemu", "open"])
        #expect(r.sessions.allSatisfy { $0.protocolName == "spice" })
        #expect(r.sessions[0].auth == "spice" && r.sessions[0].channels == 1 && r.sessions[0].family == "ipv4")
        #expect(r.sessions[0].disconnectedRecord == 8 && r.sessions[0].disconnected == s(20))
        #expect(r.sessions[1].initialized! - r.sessions[1].connected! == s(0.1) && r.duration(r.sessions[1]) == s(7.7))
        #expect(r.sessions[3].host == "10.0.0.8")
        let f = report.findings
        #expect(f.map(\.code).sorted() == ["never-initialized", "open"])
        #expect(f.first { $0.code == "open" }?.message == "SPICE client 10.0.0.7:40005 still connected at the end (10.000s)")
        let json = report.json["sessions"]?.arrayValue ?? []
        #expect(json.map { $0["channels"]?.int64Value } == [1, 1, 0, 0, 1])
    }

    @Test("pairing: only commands of interest, ids echoed, id-less replies in order past commands nobody asked about")
    func pairing() throws {
        var ss = Session()
        ss.command(s(1), "query-status")                                      // 0: not of interest to balloon, no id
        ss.command(s(1.1), "query-balloon")                                   // 1: of interest, no id
        ss.reply(s(1.2), "{\"status\": \"running\", \"running\": true}")      // 2: answers #0 (in order)
        ss.reply(s(1.3), "{\"actual\": 1073741824}")                          // 3: answers #1
        ss.command(s(2), "query-balloon", id: "\"x\"")                        // 4
        ss.command(s(2.1), "query-cpus", id: "\"y\"")                         // 5
        ss.error(s(2.2), "CommandNotFound", "The command query-cpus has not been found", id: "\"y\"")   // 6
        ss.reply(s(2.3), "{\"actual\": 536870912}", id: "\"x\"")              // 7: answers #4 by id
        ss.command(s(3), "query-balloon")                                     // 8: dropped by the close
        ss.close(s(3.5))                                                      // 9
        ss.command(s(4), "query-balloon", conn: 2)                            // 10
        ss.reply(s(4.1), "{\"actual\": 268435456}", conn: 2)                  // 11
        let report = try Analyses.run("balloon", on: try ss.open())
        let r = try #require(report.result as? BalloonResult)
        #expect(r.samples.map(\.record) == [3, 7, 11])
        #expect(r.samples.map(\.actual) == [1_073_741_824, 536_870_912, 268_435_456])
        // The commands analysis pairs everything the same way.
        let c = try #require(try Analyses.run("commands", on: try ss.open()).result as? CommandsResult)
        let qb = try #require(c.commands.first { $0.name == "query-balloon" })
        #expect(qb.count == 4 && qb.ok == 3 && qb.unanswered == 1 && qb.p50 == s(0.2) && qb.max == s(0.3))
        #expect(c.commands.first { $0.name == "query-status" }?.p50 == s(0.2))
        #expect(c.commands.first { $0.name == "query-cpus" }?.errors == ["CommandNotFound": 1])
    }

    @Test("every analysis says which clock it uses: table, JSON, terminal chart")
    func clocks() throws {
        let rec = try Recording(path: Fixtures.recording("synthetic-mixed.qmprec"))
        for name in Analyses.names {
            let r = try Analyses.run(name, on: rec)
            #expect(r.table(colors: false, width: 100).contains("clock: receive (times are the recorder's monotonic receive times"), "\(name)")
            #expect(r.json["clock"]?.stringValue == "receive")
            if let chart = r.terminalChart(width: 70, height: 8) { #expect(chart.contains("receive clock"), "\(name)") }
        }
    }
}
