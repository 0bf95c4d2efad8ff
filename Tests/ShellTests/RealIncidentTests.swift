import Foundation
import QMP
import Recording
import Shell
import Testing
import TestSupport

/// What each analysis and the shell's `state` must say on real QEMU 7.2 captures of
/// incidents, made by the guest lab (Scripts/capture-recordings, Recordings/README.md):
/// triage reports every incident as a warning or error, and is quiet on clean traffic.
@Suite("real incidents: triage and state on captures from a real QEMU")
struct RealIncidentTests {
    static func open(_ name: String) throws -> Recording {
        try Recording(path: PackageRoot.recording(name + ".qmprec"))
    }

    /// Triage's grouped findings as `severity analysis/code`, ranked.
    static func triage(_ r: Recording) throws -> [AnalysisFinding] {
        try Analyses.run("triage", on: r).findings
    }

    static func codes(_ f: [AnalysisFinding], _ severity: FindingSeverity) -> Set<String> {
        Set(f.filter { $0.severity == severity }.map { "\($0.analysis)/\($0.code)" })
    }

    static func finalState(_ r: Recording) -> VMState { StateTracker(recording: r).state(at: r.count - 1) }

    @Test("clean traffic: no warning, no error", arguments: ["lifecycle-qemu", "guest-balloon", "guest-rtc", "guest-rx-filter", "rx-filter", "block-jobs", "vnc"])
    func clean(_ name: String) throws {
        let f = try Self.triage(try Self.open(name))
        #expect(f.filter { $0.severity != .info }.isEmpty, "\(name): \(f.filter { $0.severity != .info }.map(\.message))")
    }

    @Test("migration: the switch-over STOP is the migration's, the source stays paused (postmigrate)")
    func migration() throws {
        let r = try Self.open("migration")
        let f = try Self.triage(r)
        #expect(f.filter { $0.severity != .info }.isEmpty, "\(f.map(\.message))")
        let run = try #require(try Analyses.run("runstate", on: r).result as? RunstateResult)
        let last = try #require(run.segments.last)
        #expect(last.state == "paused")
        #expect(last.cause.hasPrefix("migration"))
        let s = Self.finalState(r)
        #expect(s.runState == .paused)
        #expect(s.migration?.status == "completed")
        #expect(s.runStateCause?.hasPrefix("migration") == true)
    }

    @Test("migration-failed: an error, and the source runs again")
    func migrationFailed() throws {
        let r = try Self.open("migration-failed")
        let f = try Self.triage(r)
        #expect(Self.codes(f, .error).contains("incidents/migration-failed"))
        let s = Self.finalState(r)
        #expect(s.migration?.status == "failed")
    }

    @Test("panic=none: GUEST_PANICKED action run is an error; the VM keeps running")
    func panicNone() throws {
        let r = try Self.open("panic-none")
        let f = try Self.triage(r)
        let panic = try #require(f.first { $0.code == "guest-panic" })
        #expect(panic.severity == .error)
        #expect(panic.message.contains("action run"))
        #expect(f.first?.code == "guest-panic")
        #expect(Self.finalState(r).runState == .running)
    }

    @Test("panic=pause: panicked (state and runstate), an error")
    func panicPause() throws {
        let r = try Self.open("panic-pause")
        let f = try Self.triage(r)
        #expect(Self.codes(f, .error).isSuperset(of: ["incidents/guest-panic", "runstate/paused"]))
        let tracker = StateTracker(recording: r)
        let stop = try #require((0..<r.count).first { r.name($0) == "STOP" })
        #expect(tracker.state(at: stop).runState == .panicked)
        let run = try #require(try Analyses.run("runstate", on: r).result as? RunstateResult)
        #expect(run.segments.contains { $0.state == "panicked" })
    }

    @Test("panic=shutdown: the shutdown the panic caused is an error, not an info")
    func panicShutdown() throws {
        let r = try Self.open("panic-shutdown")
        let f = try Self.triage(r)
        let shutdown = try #require(f.first { $0.code == "shutdown" })
        #expect(shutdown.severity == .error)
        #expect(shutdown.message.contains("guest panic"))
        #expect(Self.codes(f, .error).contains("incidents/guest-panic"))
        #expect(Self.finalState(r).runState == .shutdown)
        // QEMU exited after SHUTDOWN: an orderly exit, not a kill.
        #expect(!f.contains { $0.code == "qemu-gone" })
    }

    @Test("watchdog: an error for each action; reset is followed by RESET (no missing follow-up, no unexplained reset)",
          arguments: ["watchdog-reset", "watchdog-pause", "watchdog-none"])
    func watchdog(_ name: String) throws {
        let r = try Self.open(name)
        let f = try Self.triage(r)
        #expect(Self.codes(f, .error).contains("incidents/watchdog"))
        #expect(!f.contains { $0.code == "missing-follow-up" || $0.code == "guest-reset" }, "\(f.map(\.message))")
        if name == "watchdog-pause" {
            let stop = try #require((0..<r.count).first { r.name($0) == "STOP" })
            let s = StateTracker(recording: r).state(at: stop)
            #expect(s.runState == .paused)
            #expect(s.runStateCause == "WATCHDOG (action pause)")
            #expect(r.name(s.runStateCauseRecord ?? 0) == "WATCHDOG")
        }
    }

    @Test("io-errors: report is an error the guest saw; stop is a pause with its cause")
    func ioErrors() throws {
        let r = try Self.open("io-errors")
        let f = try Self.triage(r)
        #expect(Self.codes(f, .error).isSuperset(of: ["incidents/io-error-reported", "runstate/paused"]))
        let pause = try #require(f.first { $0.code == "paused" })
        #expect(pause.message.contains("BLOCK_IO_ERROR"))
        // werror=ignore: the guest's write "succeeded"; the error was hidden from it.
        let ignored = try #require(f.first { $0.code == "io-error-ignored" })
        #expect(ignored.severity == .warning)
        #expect(ignored.message.contains("was hidden from the guest"))
    }

    @Test("job-error-cancelled: the errors of a job that was then cancelled are a warning")
    func jobErrorCancelled() throws {
        let r = try Self.open("job-error-cancelled")
        let f = try Self.triage(r)
        let errs = try #require(f.first { $0.code == "job-errors" })
        #expect(errs.severity == .warning)
        #expect(errs.message.hasPrefix("block job job0 was cancelled after errors: write error, action stop"))
        let jobs = try #require(try Analyses.run("block-jobs", on: r).result as? BlockJobsResult).jobs
        #expect(jobs.map(\.outcome) == ["cancelled"])
        #expect(jobs.first?.errors.count == 2)
    }

    @Test("qemu-killed: QEMU gone without SHUTDOWN is an error, the command it left is a warning")
    func qemuKilled() throws {
        let r = try Self.open("qemu-killed")
        let f = try Self.triage(r)
        #expect(f.first?.code == "qemu-gone")
        #expect(f.first?.severity == .error)
        #expect(Self.codes(f, .warning).contains("incidents/unanswered"))
    }

    @Test("reboot-loop: repeated guest resets are one error (Linux's several RESETs per reboot count once)")
    func rebootLoop() throws {
        let r = try Self.open("reboot-loop")
        let f = try Self.triage(r)
        let loop = try #require(f.first { $0.code == "reboot-loop" })
        #expect(loop.severity == .error)
        let resets = (0..<r.count).filter { r.name($0) == "RESET" }.count
        let reboots = try #require(f.first { $0.code == "guest-reset" })
        #expect(reboots.count * 2 == resets)
    }

    @Test("unplug-stuck: the unplug the guest never completed is a warning; the one a reset completed is not")
    func unplugStuck() throws {
        let r = try Self.open("unplug-stuck")
        let f = try Self.triage(r)
        let stuck = f.filter { $0.code == "unplug-incomplete" }
        #expect(stuck.count == 1)
        #expect(stuck.first?.severity == .warning)
        #expect(stuck.first?.message.contains("device_del nic10") == true)
        let s = Self.finalState(r)
        #expect(Set(s.pendingUnplugs.keys) == ["nic10"])
        // While nic9 was pending (before the reset), the shell showed it.
        let reset = try #require((0..<r.count).first { r.name($0) == "RESET" })
        #expect(StateTracker(recording: r).state(at: reset - 1).pendingUnplugs["nic9"] != nil)
    }

    @Test("block-jobs-reuse: jobs that reuse one id are separate jobs")
    func blockJobsReuse() throws {
        let r = try Self.open("block-jobs-reuse")
        let jobs = try #require(try Analyses.run("block-jobs", on: r).result as? BlockJobsResult).jobs
        #expect(Set(jobs.map(\.id)).count < jobs.count, "\(jobs.map(\.id))")
        #expect(jobs.count >= 4)
        #expect(Set(jobs.compactMap(\.type)).count >= 3, "\(jobs.map(\.type))")
    }

    @Test("quirky-ids: every command is answered, whatever QEMU did to its id's bytes")
    func quirkyIDs() throws {
        let r = try Self.open("quirky-ids")
        let commands = try #require(try Analyses.run("commands", on: r).result as? CommandsResult)
        #expect(commands.commands.allSatisfy { $0.unanswered == 0 }, "\(commands.commands.filter { $0.unanswered > 0 }.map(\.name))")
        #expect(try Self.triage(r).filter { $0.severity != .info }.isEmpty)
    }
}
