import QMP
import Recording
import Testing
@testable import Analysis

/// The VM model's rules (docs/ANALYSIS.md, "One model of the VM", "incidents") on small
/// hand-made sessions, for the cases the real captures in Recordings/ do not show; each
/// case names the QEMU fact in docs/QEMU-FACTS.md it follows.
@Suite("VM model rules and incidents on hand-made sessions")
struct ModelRulesTests {
    func triage(_ ss: Session) throws -> [AnalysisFinding] { try Analyses.run("triage", on: try ss.open()).findings }
    func codes(_ f: [AnalysisFinding]) -> [String] { f.map { "\($0.severity.rawValue) \($0.code)" } }

    @Test("BLOCK_IO_ERROR: report is an error the guest saw, ignore a warning (hidden), stop a pause")
    func ioErrorActions() throws {
        var ss = Session()
        ss.event(s(1), "BLOCK_IO_ERROR", #"{"device": "d1", "operation": "write", "action": "report"}"#)
        ss.event(s(2), "BLOCK_IO_ERROR", #"{"device": "d2", "operation": "write", "action": "ignore"}"#)
        ss.event(s(3), "BLOCK_IO_ERROR", #"{"device": "d3", "operation": "read", "action": "report"}"#)
        ss.endTime = s(10)
        let f = try triage(ss)
        #expect(codes(f).filter { $0.hasSuffix("io-error-reported") || $0.hasSuffix("io-error-ignored") }
                == ["error io-error-reported", "error io-error-reported", "warning io-error-ignored"])
        #expect(f.contains { $0.message == "an I/O error on d2 (write) was hidden from the guest: BLOCK_IO_ERROR action ignore" })
    }

    @Test("block jobs: errors then a cancel are reported; an id reused after a new QEMU process is a new job")
    func jobs() throws {
        var ss = Session()
        ss.greeting(0)
        ss.event(s(1), "JOB_STATUS_CHANGE", #"{"id": "j", "status": "created"}"#)
        ss.event(s(1.1), "JOB_STATUS_CHANGE", #"{"id": "j", "status": "running"}"#)
        ss.event(s(2), "BLOCK_JOB_ERROR", #"{"device": "j", "operation": "write", "action": "stop"}"#)
        ss.event(s(3), "BLOCK_JOB_CANCELLED", #"{"type": "mirror", "device": "j", "len": 100, "offset": 10, "speed": 0}"#)
        ss.event(s(3.1), "JOB_STATUS_CHANGE", #"{"id": "j", "status": "concluded"}"#)
        ss.event(s(4), "JOB_STATUS_CHANGE", #"{"id": "j", "status": "created"}"#)
        ss.event(s(4.1), "JOB_STATUS_CHANGE", #"{"id": "j", "status": "running"}"#)
        // QEMU exits without SHUTDOWN and a new process greets on the same connection.
        ss.greeting(s(6))
        ss.event(s(7), "JOB_STATUS_CHANGE", #"{"id": "j", "status": "created"}"#)
        ss.endTime = s(8)
        let r = try ss.open()
        let jobs = try #require(try Analyses.run("block-jobs", on: r).result as? BlockJobsResult).jobs
        #expect(jobs.map(\.outcome) == ["cancelled", "ended-with-qemu", "unfinished"])
        let f = try Analyses.run("triage", on: r).findings
        #expect(f.contains { $0.code == "job-errors" && $0.severity == .warning && $0.message.contains("was cancelled after errors") })
        #expect(f.contains { $0.code == "job-ended-with-qemu" })
        #expect(f.contains { $0.code == "qemu-gone" && $0.severity == .error })
        // The shell's state after the new process knows only the new job.
        let m = modelState(r)
        #expect(m.blockJobs["j"]?.status == "created")
        #expect(m.processStart != nil)
    }

    @Test("a reboot loop: several RESETs per reboot count once; three reboots within minutes are an error")
    func rebootLoop() throws {
        var ss = Session()
        for k in 0..<3 {
            let t = Double(2 + 2 * k)
            ss.event(s(t), "RESET", #"{"guest": true, "reason": "guest-reset"}"#)
            ss.event(s(t + 0.02), "RESET", #"{"guest": true, "reason": "guest-reset"}"#)
        }
        // A reset asked for by system_reset (no reason: before QEMU 4.0) is not the guest's.
        ss.command(s(20), "system_reset", id: "1")
        ss.reply(s(20.001), id: "1")
        ss.event(s(20.01), "RESET", #"{"guest": false}"#)
        ss.endTime = s(30)
        let f = try triage(ss)
        let loop = try #require(f.first { $0.code == "reboot-loop" })
        #expect(loop.severity == .error && loop.records.count == 3)
        #expect(f.first { $0.code == "guest-reset" }?.count == 3)
    }

    @Test("SUSPEND without WAKEUP, repeated error replies, an unplug completed during its command")
    func moreIncidents() throws {
        var ss = Session()
        for k in 0..<3 {
            ss.command(s(Double(k)), "query-balloon", id: "\(k)")
            ss.error(s(Double(k) + 0.001), "DeviceNotActive", "No balloon device has been activated", id: "\(k)")
        }
        ss.command(s(3), "query-cpus", id: "\"a\"")
        ss.error(s(3.001), "CommandNotFound", "The command query-cpus has not been found", id: "\"a\"")
        // A device that needs no guest goes at once: DEVICE_DELETED before the reply.
        ss.command(s(4), "device_del", #"{"id": "kbd0"}"#, id: "\"d\"")
        ss.event(s(4.0005), "DEVICE_DELETED", #"{"device": "kbd0", "path": "/machine/peripheral/kbd0"}"#)
        ss.reply(s(4.001), id: "\"d\"")
        ss.event(s(5), "SUSPEND")
        ss.endTime = s(20)
        let f = try triage(ss)
        let repeated = f.filter { $0.code == "repeated-error" }
        #expect(repeated.count == 1)
        #expect(repeated.first?.message == "a client got the same error 3 times: query-balloon: DeviceNotActive: No balloon device has been activated")
        #expect(!f.contains { $0.code == "unplug-incomplete" })
        #expect(f.contains { $0.code == "suspended-no-wakeup" && $0.severity == .warning })
    }

    @Test("QEMU gone: a close by QEMU without SHUTDOWN is an error; after SHUTDOWN, or after WATCHDOG poweroff, it is not")
    func qemuGone() throws {
        var a = Session()
        a.greeting(0)
        a.command(s(1), "query-status", id: "\"x\"")
        a.close(s(2), by: "qemu")
        a.endTime = s(3)
        let fa = try triage(a)
        #expect(fa.first?.code == "qemu-gone")
        #expect(fa.contains { $0.code == "unanswered" && $0.message.hasPrefix("query-status (#1) was never answered") })

        var b = Session()
        b.greeting(0)
        b.event(s(1), "SHUTDOWN", #"{"guest": false, "reason": "host-qmp-quit"}"#)
        b.close(s(1.1), by: "qemu")
        #expect(!(try triage(b)).contains { $0.code == "qemu-gone" })

        // docs/QEMU-FACTS.md, "WATCHDOG actions": poweroff exits at once, no SHUTDOWN.
        var c = Session()
        c.greeting(0)
        c.event(s(1), "WATCHDOG", #"{"action": "poweroff"}"#)
        c.close(s(1.01), by: "qemu")
        c.endTime = s(5)
        let fc = try triage(c)
        #expect(!fc.contains { $0.code == "qemu-gone" || $0.code == "missing-follow-up" })
        #expect(fc.contains { $0.code == "watchdog" })
    }

    @Test("migration without MIGRATION events: the STOP after `migrate` replied is the switch-over")
    func migrationWithoutEvents() throws {
        var ss = Session()
        ss.command(s(1), "migrate", #"{"uri": "unix:/tmp/m"}"#, id: "\"m\"")
        ss.reply(s(1.001), id: "\"m\"")
        ss.event(s(3), "STOP")
        ss.command(s(4), "query-migrate", id: "\"q\"")
        ss.reply(s(4.001), #"{"status": "completed"}"#, id: "\"q\"")
        ss.endTime = s(10)
        let r = try ss.open()
        let run = try #require(try Analyses.run("runstate", on: r).result as? RunstateResult)
        #expect(run.segments.last?.state == "paused")
        #expect(run.segments.last?.cause == "migration switch-over")
        #expect(run.segments.last?.causeRecord == 0)
        #expect(try Analyses.run("triage", on: r).findings.allSatisfy { $0.severity == .info })
        #expect(modelState(r).migration?.status == "completed")
    }

    @Test("an event delivered to two monitors is one incident")
    func copies() throws {
        var ss = Session()
        ss.event(s(1), "GUEST_PANICKED", #"{"action": "pause"}"#, conn: 1, qemu: Session.start + 1_000_000)
        ss.event(s(1.0002), "GUEST_PANICKED", #"{"action": "pause"}"#, conn: 2, qemu: Session.start + 1_000_000)
        ss.endTime = s(2)
        let f = try triage(ss)
        #expect(f.first { $0.code == "guest-panic" }?.count == 1)
    }

    func modelState(_ r: Recording) -> VMState {
        var fold = ModelFold(recording: r)
        let sel = ModelSelection(recording: r)
        for i in 0..<r.count { fold.apply(i, sel) }
        return fold.model.state
    }
}
