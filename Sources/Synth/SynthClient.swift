import QMP
import Recording

/// A command the client sends in reaction to something it saw (libvirt's event handlers
/// and its recovery of a paused guest), scheduled a little after the trigger.
enum SynthIntent: Sendable {
    /// Resume a guest paused by `stop`, an I/O error or the watchdog.
    case cont
    /// Recover from a panic: `cont` (refused), then `system_reset` and `cont`.
    case recoverPanic
    /// libvirt's fake reboot after a guest shutdown: `system_reset`, then `cont`.
    case resetAndCont
    /// libvirt kills QEMU (SIGTERM) after the guest shut down.
    case kill
    case wakeup
    /// libvirt answers NIC_RX_FILTER_CHANGED with `query-rx-filter {"name": alias}`.
    case queryRxFilter(nic: Int)
    case setBalloon
    case startJob
    case completeJob(serial: Int)
    case cancelJob(serial: Int)
    case finalizeJob(serial: Int)
    case dismissJob(serial: Int)
    case resumeJob(serial: Int)
    case changeMedium
    case blockdevDel
}

/// What the client does on its own at each poll.
enum SynthClientOp: Sendable, CaseIterable {
    case queryStatus, queryBalloon, setBalloon, queryBlockJobs, queryRxAll, queryRxNamed, queryRxBad
    case queryCpus, stop, reset, powerdown, quit, startJob, pauseJob, cancelMissingJob
    case deviceDel, deviceAdd, changeMedium, unknownCommand, wakeupEarly, disconnect, migrate
}

extension SynthEngine {
    // MARK: Polling

    /// Seconds between two polls of the client, per profile.
    mutating func pollGap() -> Int64 {
        switch profile {
        case .mixed: return seconds(0.3, 5)
        case .balloonFlood: return seconds(2, 8)
        case .rtcDrift: return seconds(8, 40)
        case .rxFilter: return seconds(1, 10)
        case .lifecycle: return seconds(1, 8)
        case .blockJobs: return seconds(0.5, 4)
        case .migration: return seconds(1, 6)
        }
    }

    func opWeights() -> [(SynthClientOp, Double)] {
        switch profile {
        case .mixed:
            return [
                (.queryStatus, 16), (.queryBalloon, 8), (.setBalloon, 1.2), (.queryBlockJobs, 5), (.queryRxAll, 2.5),
                (.queryRxNamed, 1.5), (.queryRxBad, 0.3), (.queryCpus, 4), (.stop, 0.6), (.reset, 0.3),
                (.powerdown, 0.15), (.quit, 0.05), (.startJob, 0.8), (.pauseJob, 0.3), (.cancelMissingJob, 0.15),
                (.deviceDel, 0.3), (.deviceAdd, 0.6), (.changeMedium, 0.35), (.unknownCommand, 0.2),
                (.wakeupEarly, 0.1), (.disconnect, 0.06),
            ]
        case .balloonFlood:
            return [(.queryBalloon, 10), (.queryStatus, 3), (.setBalloon, 1.4), (.unknownCommand, 0.05)]
        case .rtcDrift:
            return [(.queryStatus, 10), (.queryBalloon, 1), (.queryCpus, 1)]
        case .rxFilter:
            return [(.queryStatus, 4), (.queryRxAll, 2.5), (.queryRxNamed, 2.5), (.queryRxBad, 0.6), (.disconnect, 0.05)]
        case .lifecycle:
            return [
                (.queryStatus, 12), (.stop, 1.6), (.reset, 0.9), (.powerdown, 0.8), (.quit, 0.35), (.disconnect, 0.3),
                (.wakeupEarly, 0.2), (.unknownCommand, 0.1),
            ]
        case .blockJobs:
            return [(.queryBlockJobs, 10), (.queryStatus, 2), (.startJob, 2.5), (.pauseJob, 0.25), (.cancelMissingJob, 0.08)]
        case .migration:
            return [(.queryStatus, 8), (.queryBalloon, 1), (.migrate, 1.5)]
        }
    }

    /// Whether the op makes sense now (libvirt does not `stop` a paused guest).
    func available(_ op: SynthClientOp) -> Bool {
        let calm = !vm.shutdownInFlight
        switch op {
        case .stop, .reset, .powerdown: return vm.running && calm
        case .quit, .disconnect: return calm
        case .startJob: return freeJobDisk() != nil
        case .pauseJob: return vm.jobs.contains { ($0.status == "running" || $0.status == "ready") && !$0.cancelRequested }
        case .deviceDel: return vm.running && vm.hotplugAttached && !vm.hotplugPending
        case .deviceAdd: return !vm.hotplugAttached && !vm.hotplugPending
        case .queryRxNamed: return vm.nics.contains { $0.name != nil }
        case .wakeupEarly: return vm.run != .suspended
        case .migrate: return vm.running && calm && !vm.migrating
        default: return true
        }
    }

    mutating func clientTick() {
        defer { schedule(in: pollGap(), .client) }
        guard qemuAlive && connected && negotiated else { return }
        let table = opWeights()
        let i = rng.weighted(table.map { available($0.0) ? $0.1 : 0 })
        let op = table[i].0
        guard available(op) else { return }
        run(op)
    }

    mutating func run(_ op: SynthClientOp) {
        switch op {
        case .queryStatus: queryStatus()
        case .queryBalloon: queryBalloon()
        case .setBalloon: setBalloon()
        case .queryBlockJobs: queryBlockJobs()
        case .queryRxAll: queryRxFilter(nic: nil)
        case .queryRxNamed:
            let named = vm.nics.indices.filter { vm.nics[$0].name != nil }
            queryRxFilter(nic: rng.pick(named))
        case .queryRxBad: queryRxFilterBad()
        case .queryCpus: queryCpus()
        case .stop: stopVM()
        case .reset: systemReset()
        case .powerdown: systemPowerdown()
        case .quit: quit()
        case .startJob: startJob()
        case .pauseJob: pauseJob()
        case .cancelMissingJob: cancelMissingJob()
        case .deviceDel: deviceDel()
        case .deviceAdd: deviceAdd()
        case .changeMedium: changeMedium()
        case .unknownCommand:
            // Removed in QEMU 6.0; old clients still try it.
            let id = send("query-cpus")
            fail("CommandNotFound", "The command query-cpus has not been found", id)
        case .wakeupEarly: systemWakeup()
        case .disconnect: disconnectClient()
        case .migrate: migrate()
        }
    }

    // MARK: Reactions

    mutating func perform(_ intent: SynthIntent) {
        if case .kill = intent {
            kill()
            return
        }
        guard connected && negotiated else {
            // Not connected right now: try again once the client is back.
            schedule(in: seconds(0.5, 2), .intent(intent, epoch: epoch))
            return
        }
        switch intent {
        case .cont: cont()
        case .recoverPanic:
            if vm.run == .guestPanicked {
                cont()
                advance(ms(300, 3_000))
                resetAndCont()
            }
        case .resetAndCont:
            if vm.run.needsReset { resetAndCont() }
        case .kill: break
        case .wakeup: systemWakeup()
        case .queryRxFilter(let nic): queryRxFilter(nic: nic)
        case .setBalloon: setBalloon()
        case .startJob: if freeJobDisk() != nil { startJob() }
        case .completeJob(let s): completeJob(serial: s)
        case .cancelJob(let s): cancelJob(serial: s)
        case .finalizeJob(let s): finalizeJob(serial: s)
        case .dismissJob(let s): dismissJob(serial: s)
        case .resumeJob(let s): resumeJob(serial: s)
        case .changeMedium: changeMedium()
        case .blockdevDel:
            let id = send("blockdev-del", synData(["node-name": .string("libvirt-3-format")]))
            replyEmpty(id, work: us(200, 3_000))
        }
    }

    // MARK: Queries

    mutating func queryStatus() {
        let id = send("query-status")
        reply(synObj([
            "status": .string(vm.run.rawValue), "singlestep": .bool(false), "running": .bool(vm.running),
        ]), id)
    }

    mutating func queryBalloon() {
        let id = send("query-balloon")
        if vm.balloon.present {
            reply(synObj(["actual": .int(vm.balloon.actual)]), id)
        } else {
            fail("DeviceNotActive", "No balloon device has been activated", id)
        }
    }

    mutating func queryCpus() {
        let id = send("query-cpus-fast")
        let cpus: [JSONValue] = vm.vcpuThreads.enumerated().map { i, tid in
            synObj([
                "thread-id": .int(tid),
                "props": synObj(["core-id": .int(0), "thread-id": .int(0), "socket-id": .int(i)]),
                "qom-path": .string("/machine/unattached/device[\(i)]"),
                "cpu-index": .int(i),
                "target": .string("x86_64"),
            ])
        }
        reply(.array(cpus), id)
    }

    // MARK: Run state

    /// `stop`: STOP is written before the reply (docs/QEMU-FACTS.md, "Wire protocol", ordering).
    mutating func stopVM() {
        let id = send("stop")
        advance(us(100, 900))
        raise("STOP")
        vm.run = .paused
        replyEmpty(id)
        schedule(in: seconds(1.5, 45), .intent(.cont, epoch: epoch))
    }

    /// `cont`: RESUME before the reply; refused after a shutdown or panic until a reset.
    mutating func cont() {
        switch vm.run {
        case .paused, .ioError, .watchdog, .prelaunch:
            let wasIOError = vm.run == .ioError
            let id = send("cont")
            advance(us(200, 2_500))
            raise("RESUME")
            vm.run = .running
            replyEmpty(id)
            if wasIOError && rng.chance(0.25) {
                // The retried request fails again (the volume is still full).
                schedule(in: ms(5, 400), .guestDone(.ioErrorAgain, epoch: epoch))
            }
        case .shutdown, .guestPanicked:
            let id = send("cont")
            fail("GenericError", "Resetting the Virtual Machine is required", id)
        case .finishMigrate:
            let id = send("cont")
            fail("GenericError", "Migration is not finalized yet", id)
        case .running, .suspended, .postmigrate:
            break
        }
    }

    /// `system_reset` then `cont`; after a reset from a stopped state QEMU is in prelaunch.
    mutating func resetAndCont() {
        let id = send("system_reset")
        replyEmpty(id)
        advance(us(100, 1_500))
        raise("RESET", synData(["guest": .bool(false), "reason": .string("host-qmp-system-reset")]))
        if !vm.running { vm.run = .prelaunch }
        advance(ms(2, 40))
        cont()
        guestRebooted()
    }

    /// `system_reset` on a running guest: the reply first, then RESET from the main loop.
    mutating func systemReset() {
        let id = send("system_reset")
        replyEmpty(id)
        advance(us(100, 1_500))
        raise("RESET", synData(["guest": .bool(false), "reason": .string("host-qmp-system-reset")]))
        guestRebooted()
    }

    /// `system_powerdown`: the reply, POWERDOWN, and the guest shuts down a few seconds later.
    mutating func systemPowerdown() {
        let id = send("system_powerdown")
        replyEmpty(id)
        advance(us(100, 1_500))
        raise("POWERDOWN")
        vm.shutdownInFlight = true
        schedule(in: seconds(0.5, 6), .guestDone(.shutdownAfterPowerdown, epoch: epoch))
    }

    /// `quit`: the reply first, then SHUTDOWN, then QEMU closes the socket.
    mutating func quit() {
        let id = send("quit")
        replyEmpty(id)
        advance(us(200, 3_000))
        raise("SHUTDOWN", synData(["guest": .bool(false), "reason": .string("host-qmp-quit")]))
        qemuExited()
    }

    /// SIGTERM from libvirt: QEMU reports a host-signal shutdown and exits.
    mutating func kill() {
        advance(ms(1, 30))
        raise("SHUTDOWN", synData(["guest": .bool(false), "reason": .string("host-signal")]))
        qemuExited()
    }

    /// `system_wakeup`: refused unless the guest is in S3; WAKEUP follows the reply.
    mutating func systemWakeup() {
        let id = send("system_wakeup")
        guard vm.run == .suspended else {
            fail("GenericError", "Unable to wake up: guest is not in suspended state", id)
            return
        }
        replyEmpty(id)
        vm.run = .running
        advance(us(100, 2_000))
        raise("WAKEUP")
    }

    // MARK: Process start

    /// A new QEMU (`-S`): the client connects, asks a few things and starts the guest.
    mutating func startProcess() {
        epoch += 1
        qemuAlive = true
        pid += rng.int(40...3_000)
        vm = SynthVM(profile: profile, config: config, rng: &rng, first: epoch == 1)
        vm.rtc.lastUpdate = now
        throttles = []
        connectClient()
        if profile == .migration {
            advance(us(200, 3_000))
            enableMigrationEvents()
        }
        if profile == .balloonFlood || profile == .mixed {
            advance(us(200, 3_000))
            queryBalloon()
        }
        advance(ms(2, 60))
        cont()
        startGuest()
    }
}
