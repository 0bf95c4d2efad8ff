import QMP
import Recording
import Testing
@testable import Analysis

@Suite("commands, throttle, triage, rendering")
struct CommandsThrottleTriageTests {
    @Test("commands: latency percentiles, error classes, unanswered on close, ids of any JSON type")
    func commands() throws {
        var ss = Session()
        for k in 1...100 {
            ss.command(s(Double(k)), "query-status", id: "\(k)")
            ss.reply(s(Double(k) + Double(k) / 1000), "{\"status\": \"running\", \"running\": true}", id: "\(k)")
        }
        ss.command(s(200), "device_del", "{\"id\": \"x\"}", id: "{\"a\": [1, 2]}")
        ss.error(s(200.5), "DeviceNotFound", "Device 'x' not found", id: "{\"a\": [1,2]}")
        ss.command(s(201), "query-kvm")
        ss.error(s(201.01), "CommandNotFound", "Expecting capabilities negotiation")
        ss.command(s(202), "migrate", id: "\"m\"")
        ss.close(s(203))
        let report = try Analyses.run("commands", on: try ss.open())
        let r = try #require(report.result as? CommandsResult)
        let qs = try #require(r.commands.first { $0.name == "query-status" })
        #expect(qs.count == 100 && qs.ok == 100)
        #expect(qs.p50 == s(0.05) && qs.p99 == s(0.099) && qs.max == s(0.1))
        let dd = try #require(r.commands.first { $0.name == "device_del" })
        #expect(dd.errors == ["DeviceNotFound": 1] && dd.p50 == s(0.5))
        #expect(r.commands.first { $0.name == "query-kvm" }?.errors == ["CommandNotFound": 1])
        #expect(r.commands.first { $0.name == "migrate" }?.unanswered == 1)
    }

    @Test("latency stats stay within 1.6% past the exact limit")
    func latencyHistogram() {
        var l = LatencyStats()
        for v in 1...20_000 { l.add(Int64(v) * 1000) }
        #expect(!l.isExact)
        let p50 = Double(l.percentile(50)!), p99 = Double(l.percentile(99)!)
        #expect(abs(p50 - 10_000_000) / 10_000_000 < 0.016)
        #expect(abs(p99 - 19_800_000) / 19_800_000 < 0.016)
        #expect(l.max == 20_000_000)
    }

    @Test("throttle: a flood at the 1 s cadence, a violation, merged QEMU timestamps, copies on two monitors counted once")
    func throttle() throws {
        var ss = Session()
        for k in 0..<12 {
            let t = s(10 + Double(k))
            // Created 0.2 s into each window, delivered when it ends.
            ss.event(t, "BALLOON_CHANGE", "{\"actual\": \(1000 + k)}", qemu: Session.start + t / 1000 - 800_000 + (k == 0 ? 800_000 : 0))
            ss.event(t + 1_000, "BALLOON_CHANGE", "{\"actual\": \(1000 + k)}", conn: 2,
                     qemu: Session.start + t / 1000 - 800_000 + (k == 0 ? 800_000 : 0))
        }
        ss.event(s(40), "RTC_CHANGE", "{\"offset\": 1}")
        ss.event(s(40.3), "RTC_CHANGE", "{\"offset\": 2}")
        ss.event(s(50), "BLOCK_IO_ERROR", "{\"device\": \"d\", \"qom-path\": \"/q\", \"operation\": \"write\", \"action\": \"stop\"}")
        let report = try Analyses.run("throttle", on: try ss.open())
        let r = try #require(report.result as? ThrottleResult)
        #expect(r.keys.map(\.key) == ["BALLOON_CHANGE", "RTC_CHANGE"])
        let b = r.keys[0]
        #expect(b.deliveries == 12 && b.violationCount == 0)
        #expect(b.floods.count == 1 && b.floods[0].deliveries == 12 && b.floods[0].end - b.floods[0].start == s(11))
        #expect(b.minQemuGap == s(0.2))
        // Every delivery after the first was created 0.2 s into its window and held to its
        // end (ThrottleRule): the second by its QEMU timestamp (0.2 s after the first's), the
        // others 1 s after a held delivery, at the receive cadence.
        #expect(b.merged == 11)
        #expect(r.keys[1].violationCount == 1 && r.keys[1].minGap == s(0.3))
        #expect(r.exempt == 1)
        #expect(report.findings.map(\.code) == ["flood", "violation"])
    }

    @Test("triage ranks findings from every analysis: errors, then warnings by impact, with records")
    func triage() throws {
        var ss = Session()
        ss.event(s(10), "BLOCK_IO_ERROR", "{\"device\": \"ide0-hd1\", \"operation\": \"write\", \"action\": \"stop\"}")
        ss.event(s(10.001), "STOP")
        ss.event(s(52.001), "RESUME")
        ss.event(s(60), "NIC_RX_FILTER_CHANGED", "{\"name\": \"vnet0\", \"path\": \"/p\"}")
        ss.event(s(70), "RTC_CHANGE", "{\"offset\": 1650000000}")
        ss.endTime = s(100)
        let report = try Analyses.run("triage", on: try ss.open())
        let f = report.findings
        #expect(f.map(\.code) == ["paused", "anomaly", "invisible-changes"])
        #expect(f[0].message == "VM paused for 42.000s after BLOCK_IO_ERROR on ide0-hd1 (write)")
        #expect(f[0].records == [0, 1])
        #expect(f[2].message.hasPrefix("NIC vnet0: filter changes after #3 invisible to the client"))
        let json = report.json
        #expect(json["analysis"]?.stringValue == "triage")
        #expect(json["counts"]?["error"]?.int64Value == 2)
        #expect(json["results"]?["runstate"]?["paused"]?.arrayValue?.count == 1)
        #expect(report.csv().hasPrefix("rank,severity,analysis,code,t_ns,wall,message,records,subject,count,end_ns,record_count\n1,error,runstate,paused,10001000000,2027-01-15T08:00:10.001000Z,"))
    }

    @Test("every analysis renders table, JSON with the common envelope, CSV; series render SVG and a terminal chart")
    func rendering() throws {
        let rec = try Recording(path: Fixtures.recording("synthetic-mixed.qmprec"))
        for name in Analyses.names {
            let r = try Analyses.run(name, on: rec)
            let j = r.json
            for key in ["analysis", "schema", "file", "clock", "clock_note", "start", "start_us", "range", "findings"] {
                #expect(j[key] != nil, "\(name) lacks \(key)")
            }
            #expect(try JSONParser.parse(j.serialized(.pretty(indent: 2))) == j)
            #expect(r.table(colors: false, width: 100).contains("clock: "))
            #expect(!r.table(colors: false, width: 100).contains("\u{1B}["))
            #expect(r.csv().split(separator: "\n").count >= 1)
            if ["balloon", "rtc", "runstate"].contains(name) {
                let svg = try #require(r.svg(), "\(name) has no SVG")
                #expect(svg.hasPrefix("<?xml") && svg.hasSuffix("</svg>\n"))
                #expect(svg.contains("time of day (UTC)"))
                #expect(r.terminalChart(width: 60, height: 8) != nil)
            } else if name == "triage" {
                // The incident timeline (TriageTimeline).
                #expect(r.svg()?.hasSuffix("</svg>\n") == true)
            } else {
                #expect(r.svg() == nil)
            }
        }
        #expect(throws: UnknownAnalysisError.self) { try Analyses.run("nope", on: rec) }
        #expect(Analyses.names.count == 10 && Analyses.names.last == "triage")
        #expect(Analyses.summary(of: "balloon") != nil && Analyses.summary(of: "nope") == nil)
    }
}
