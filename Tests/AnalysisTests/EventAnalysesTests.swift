import QMP
import Recording
import Testing
@testable import Analysis

@Suite("nic-rx-filter, runstate, block-jobs, sessions analyses")
struct EventAnalysesTests {
    static func nicData(_ name: String) -> String {
        "{\"name\": \"\(name)\", \"path\": \"/machine/peripheral/\(name)/virtio-backend\"}"
    }

    @Test("nic-rx-filter: named and unnamed queries, failed query, unrecorded re-arm, changes never re-armed")
    func nic() throws {
        var ss = Session()
        ss.event(s(1), "NIC_RX_FILTER_CHANGED", Self.nicData("vnet0"))                       // 0
        ss.command(s(1.2), "query-rx-filter", "{\"name\": \"vnet0\"}", id: "1")               // 1
        ss.reply(s(1.21), "[{\"name\": \"vnet0\"}]", id: "1")                                 // 2
        ss.event(s(2), "NIC_RX_FILTER_CHANGED", Self.nicData("vnet0"))                       // 3
        ss.event(s(3), "NIC_RX_FILTER_CHANGED", Self.nicData("vnet0"))                       // 4: nobody re-armed it here
        ss.event(s(3.5), "NIC_RX_FILTER_CHANGED", Self.nicData("vnet1"))                     // 5
        ss.command(s(4), "query-rx-filter", "{\"name\": \"vnet9\"}", id: "2")                 // 6
        ss.error(s(4.01), "GenericError", "invalid net client name: vnet9", id: "2")         // 7
        ss.command(s(5), "query-rx-filter", id: "3")                                          // 8: re-arms every NIC
        ss.reply(s(5.01), "[]", id: "3")                                                      // 9
        ss.event(s(6), "NIC_RX_FILTER_CHANGED", Self.nicData("vnet1"))                       // 10: never queried
        ss.endTime = s(16)
        let report = try Analyses.run("nic-rx-filter", on: try ss.open())
        let r = try #require(report.result as? NICRxFilterResult)
        #expect(r.nics.map(\.name) == ["vnet0", "vnet1", "vnet9"])
        let v0 = r.nics[0], v1 = r.nics[1]
        #expect(v0.path == "/machine/peripheral/vnet0/virtio-backend")
        #expect(v0.events.map(\.latchArmed) == [true, true, false])
        #expect(v0.events.map(\.outcome) == ["rearmed", "rearmed-unrecorded", "rearmed"])
        #expect(v0.events[0].latency == s(0.2) && v0.events[0].rearmRecord == 1)
        #expect(v0.events[2].latency == s(2) && v0.events[2].rearmRecord == 8)
        #expect(v1.events.map(\.outcome) == ["rearmed", "never"])
        #expect(v1.events[0].latency == s(1.5))
        #expect(r.queries.map(\.outcome) == ["ok", "error", "ok"])
        #expect(r.queries.map(\.name) == ["vnet0", "vnet9", nil])
        #expect(r.queries(of: r.nics[2]).first?.error == "GenericError: invalid net client name: vnet9")
        #expect(r.verdict(v1).hasPrefix("not re-armed after the last event (#10)"))
        #expect(r.verdict(v0).hasPrefix("1 event while the latch should have been disarmed"))
        let f = report.findings
        // An unrecorded client re-arming is worth knowing (info), not an incident.
        #expect(f.map(\.code) == ["invisible-changes", "failed-query", "unrecorded-rearm"])
        #expect(f.map(\.severity) == [.warning, .warning, .info])
        #expect(f[0].message == "NIC vnet1: filter changes after #10 invisible to the client (no query-rx-filter re-armed the latch for 10.000s)")
        #expect(f[2].records == [4])
        #expect(f[1].records == [6, 7])
    }

    @Test("runstate: user stop, paused after BLOCK_IO_ERROR, watchdog follow-up missing, query-status, shutdown")
    func runstate() throws {
        var ss = Session()
        ss.command(s(1), "query-status", id: "1")                                                                 // 0
        ss.reply(s(1.01), "{\"status\": \"running\", \"singlestep\": false, \"running\": true}", id: "1")          // 1
        ss.command(s(2), "stop", id: "2")                                                                         // 2
        ss.event(s(2.01), "STOP")                                                                                 // 3
        ss.reply(s(2.02), id: "2")                                                                                // 4
        ss.command(s(5), "cont", id: "3")                                                                         // 5
        ss.event(s(5.01), "RESUME")                                                                               // 6
        ss.reply(s(5.02), id: "3")                                                                                // 7
        ss.event(s(10), "BLOCK_IO_ERROR", "{\"device\": \"ide0-hd1\", \"operation\": \"write\", \"action\": \"stop\", \"nospace\": true}")  // 8
        ss.event(s(10.001), "STOP")                                                                               // 9
        ss.event(s(52.001), "RESUME")                                                                             // 10
        ss.event(s(60), "WATCHDOG", "{\"action\": \"reset\"}")                                                    // 11: no RESET follows
        ss.event(s(70), "SHUTDOWN", "{\"guest\": true, \"reason\": \"guest-shutdown\"}")                           // 12
        ss.endTime = s(75)
        let report = try Analyses.run("runstate", on: try ss.open())
        let r = try #require(report.result as? RunstateResult)
        #expect(r.segments.map(\.state) == ["unknown", "running", "paused", "running", "paused", "running", "shutdown"])
        #expect(r.paused.map(\.duration) == [s(3), s(42)])
        #expect(r.paused.map(\.cause) == ["stop command", "BLOCK_IO_ERROR on ide0-hd1 (write, no space)"])
        #expect(r.paused.map(\.causeRecord) == [2, 8])
        #expect(r.missing.map(\.expected) == ["RESET"])
        #expect(r.missing.first?.record == 11)
        #expect(r.segments.last?.duration == s(5))
        let f = report.findings
        #expect(f[0].message == "VM paused for 42.000s after BLOCK_IO_ERROR on ide0-hd1 (write, no space)")
        #expect(f[0].severity == .error && f[0].records == [8, 9])
        #expect(f[1].code == "missing-follow-up" && f[1].records == [11])
        #expect(report.svg()?.contains("<rect") == true)
        #expect(report.terminalChart(width: 40, height: 5)?.contains("▒") == true)
    }

    @Test("runstate: no STOP expected after BLOCK_IO_ERROR when already paused; watchdog pause explains the STOP")
    func runstateFollowUps() throws {
        var ss = Session()
        ss.event(s(1), "WATCHDOG", "{\"action\": \"pause\"}")
        ss.event(s(1.001), "STOP")
        ss.event(s(2), "BLOCK_IO_ERROR", "{\"device\": \"d0\", \"operation\": \"read\", \"action\": \"stop\"}")
        ss.endTime = s(10)
        let r = try #require(try Analyses.run("runstate", on: try ss.open()).result as? RunstateResult)
        #expect(r.paused.map(\.cause) == ["WATCHDOG (action pause)"])
        #expect(r.missing.isEmpty)
    }

    @Test("block-jobs: completed, cancelled with progress, failed with error")
    func blockJobs() throws {
        var ss = Session()
        func st(_ t: Double, _ id: String, _ status: String) { ss.event(s(t), "JOB_STATUS_CHANGE", "{\"status\": \"\(status)\", \"id\": \"\(id)\"}") }
        st(1, "j1", "created"); st(1.001, "j1", "running")
        st(2, "j2", "created"); st(2.001, "j2", "running")
        ss.command(s(3), "query-block-jobs", id: "1")
        ss.reply(s(3.001), "[{\"device\": \"j2\", \"type\": \"mirror\", \"len\": 1000, \"offset\": 250, \"status\": \"running\"}]", id: "1")
        st(5, "j1", "waiting"); st(5.001, "j1", "pending")
        ss.event(s(5.002), "BLOCK_JOB_COMPLETED", "{\"device\": \"j1\", \"len\": 4000000, \"offset\": 4000000, \"speed\": 0, \"type\": \"stream\"}")
        st(5.003, "j1", "concluded"); st(5.004, "j1", "null")
        st(6, "j2", "aborting")
        ss.event(s(6.001), "BLOCK_JOB_CANCELLED", "{\"device\": \"j2\", \"len\": 1000, \"offset\": 300, \"speed\": 0, \"type\": \"mirror\"}")
        st(6.002, "j2", "concluded"); st(6.003, "j2", "null")
        ss.event(s(7), "BLOCK_JOB_ERROR", "{\"device\": \"j3\", \"operation\": \"write\", \"action\": \"report\"}")
        ss.event(s(7.5), "BLOCK_JOB_COMPLETED", "{\"device\": \"j3\", \"len\": 10, \"offset\": 5, \"speed\": 0, \"type\": \"commit\", \"error\": \"Input/output error\"}")
        let report = try Analyses.run("block-jobs", on: try ss.open())
        let r = try #require(report.result as? BlockJobsResult)
        #expect(r.jobs.map(\.id) == ["j1", "j2", "j3"])
        #expect(r.jobs.map(\.outcome) == ["completed", "cancelled", "failed"])
        #expect(r.jobs[0].duration == s(4.003))
        #expect(r.jobs[0].throughput.map { Int($0) } == Int(4_000_000 / 4.003))
        #expect(r.jobs[1].offset == 300 && r.jobs[1].len == 1000)
        #expect(r.jobs[1].steps.map(\.what) == ["created", "running", "query-block-jobs", "aborting", "BLOCK_JOB_CANCELLED", "concluded", "null"])
        #expect(r.jobs[2].errors == ["write error, action report", "Input/output error"])
        #expect(r.jobs[2].duration == s(0.5))
        #expect(report.findings.map(\.code) == ["job-failed", "job-cancelled"])
        #expect(report.findings[1].message == "block job j2 (mirror) cancelled at 30.0% (300 B of 1000 B)")
    }

    @Test("sessions: complete, never initialised, still open, started before the recording")
    func sessions() throws {
        var ss = Session()
        func vnc(_ t: Double, _ ev: String, _ port: String) {
            ss.event(s(t), ev, "{\"server\": {\"auth\": \"vnc\", \"family\": \"ipv4\", \"service\": \"5900\", \"host\": \"0.0.0.0\", \"websocket\": false}, \"client\": {\"family\": \"ipv4\", \"service\": \"\(port)\", \"host\": \"10.0.0.5\", \"websocket\": false}}")
        }
        vnc(1, "VNC_DISCONNECTED", "1000")
        vnc(2, "VNC_CONNECTED", "2000"); vnc(2.5, "VNC_INITIALIZED", "2000"); vnc(12.5, "VNC_DISCONNECTED", "2000")
        vnc(3, "VNC_CONNECTED", "3000"); vnc(33, "VNC_DISCONNECTED", "3000")
        vnc(4, "VNC_CONNECTED", "4000"); vnc(4.1, "VNC_INITIALIZED", "4000")
        ss.endTime = s(20)
        let report = try Analyses.run("sessions", on: try ss.open())
        let r = try #require(report.result as? SessionsResult)
        #expect(r.sessions.map(\.service) == ["1000", "2000", "3000", "4000"])
        #expect(r.sessions.map(\.state) == ["started-before", "complete", "never-initialized", "open"])
        #expect(r.sessions.map { r.duration($0) } == [s(1), s(10.5), s(30), s(29)])
        #expect(r.sessions[1].auth == "vnc")
        #expect(report.findings.count == 3)
    }
}
