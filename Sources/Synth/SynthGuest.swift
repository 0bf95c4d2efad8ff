import QMP
import Recording

/// A consequence that comes a little after its cause, on QEMU's or the guest's side.
enum SynthGuestFollowUp: Sendable {
    /// The guest finishes the shutdown that POWERDOWN (or WATCHDOG shutdown) asked for.
    case shutdownAfterPowerdown
    /// The guest acknowledged `device_del`.
    case deviceDeleted
    /// The guest leaves S3 by itself (an RTC alarm, a keypress).
    case wakeupByGuest
    case trayClose
    /// The guest unlocks and opens the tray after a refused eject.
    case trayOpenForEject
    /// The guest's driver (re)initialises a NIC's filter after boot.
    case nicInit(Int)
    case agentPort(open: Bool)
    /// `cont` after an I/O error retried the request and it failed again.
    case ioErrorAgain
}

extension SynthEngine {
    /// Starts the guest's own activity for a new QEMU process.
    mutating func startGuest() {
        let e = epoch
        switch profile {
        case .mixed:
            schedule(in: seconds(15, 90), .guest(epoch: e))
            schedule(in: seconds(10, 90), .display(epoch: e))
            schedule(in: seconds(30, 600), .rtcWrite(epoch: e, once: false))
        case .lifecycle:
            schedule(in: seconds(3, 20), .guest(epoch: e))
            schedule(in: seconds(300, 660), .rtcWrite(epoch: e, once: false))
        case .rtcDrift:
            schedule(in: seconds(10, 60), .rtcWrite(epoch: e, once: false))
        case .rxFilter:
            for i in vm.nics.indices { schedule(in: seconds(3, 15), .rxChange(nic: i, epoch: e)) }
        case .balloonFlood:
            schedule(in: seconds(3, 12), .intent(.setBalloon, epoch: e))
        case .blockJobs:
            schedule(in: seconds(1, 5), .intent(.startJob, epoch: e))
        case .migration:
            schedule(in: seconds(60, 600), .rtcWrite(epoch: e, once: false))
        }
        if profile == .mixed {
            for i in vm.nics.indices { schedule(in: seconds(30, 400), .rxChange(nic: i, epoch: e)) }
        }
        guestBooting()
    }

    /// What a booting guest does: its NIC drivers set their filters, hwclock writes the
    /// RTC, the guest agent opens its port.
    mutating func guestBooting() {
        let e = epoch
        for i in vm.nics.indices { schedule(in: seconds(1.5, 8), .guestDone(.nicInit(i), epoch: e)) }
        if profile != .balloonFlood && profile != .blockJobs {
            schedule(in: seconds(2, 10), .rtcWrite(epoch: e, once: true))
        }
        if profile == .mixed || profile == .lifecycle {
            schedule(in: seconds(6, 25), .guestDone(.agentPort(open: true), epoch: e))
        }
    }

    /// After a reset the guest boots again; the guest agent's port closes first.
    mutating func guestRebooted() {
        if vm.agentPortOpen { agentPort(open: false) }
        guestBooting()
    }

    /// Seconds between two things the guest does by itself.
    func guestGap() -> (Double, Double) {
        profile == .lifecycle ? (10, 60) : (15, 150)
    }

    /// Something the guest does by itself, chosen by weight for the profile.
    mutating func guestActivity() {
        let gap = guestGap()
        defer { schedule(in: seconds(gap.0, gap.1), .guest(epoch: epoch)) }
        // A paused or suspended guest does nothing; nor does one that is shutting down.
        guard vm.running && !vm.shutdownInFlight else { return }
        let weights: [Double]
        // reboot, shutdown, watchdog, panic, s3, s4, ioStop, ioReport, corrupt, tray
        switch profile {
        case .lifecycle: weights = [4, 2, 2, 1, 2, 0.7, 0.8, 0, 0, 0]
        default: weights = [3, 0.3, 1.5, 0.4, 1.2, 0.15, 1.5, 1.2, 0.3, 1.2]
        }
        switch rng.weighted(weights) {
        case 0:
            raise("RESET", synData(["guest": .bool(true), "reason": .string("guest-reset")]))
            guestRebooted()
        case 1: guestShutdown(reason: "guest-shutdown")
        case 2: watchdog()
        case 3: panic()
        case 4:
            raise("SUSPEND")
            vm.run = .suspended
            if rng.chance(0.7) { schedule(in: seconds(4, 80), .intent(.wakeup, epoch: epoch)) }
            schedule(in: seconds(3, 90), .guestDone(.wakeupByGuest, epoch: epoch))
        case 5:
            if vm.agentPortOpen { agentPort(open: false) }
            raise("SUSPEND_DISK")
            advance(ms(200, 900))
            guestShutdown(reason: "guest-shutdown", reaction: .kill)
        case 6: ioErrorStop()
        case 7: ioErrorReport(disk: rng.int(0...1))
        case 8: imageCorrupted()
        default:
            if !vm.trayOpen {
                trayMoved(open: true)
                schedule(in: seconds(3, 40), .guestDone(.trayClose, epoch: epoch))
            }
        }
    }

    /// SHUTDOWN, then STOP (libvirt runs QEMU with -no-shutdown); libvirt then kills QEMU,
    /// or resets and resumes it (its fake reboot).
    mutating func guestShutdown(reason: String, reaction: SynthIntent? = nil) {
        if vm.agentPortOpen { agentPort(open: false) }
        raise("SHUTDOWN", synData(["guest": .bool(true), "reason": .string(reason)]))
        advance(us(50, 800))
        raise("STOP")
        vm.run = .shutdown
        vm.shutdownInFlight = false
        let then = reaction ?? (rng.chance(0.6) ? .kill : .resetAndCont)
        schedule(in: ms(5, 400), .intent(then, epoch: epoch))
    }

    /// WATCHDOG and its documented consequence: reset -> RESET, shutdown -> (POWERDOWN)
    /// SHUTDOWN, pause -> STOP. Only when its throttle window is closed, so the
    /// consequence never overtakes a delayed WATCHDOG.
    mutating func watchdog() {
        guard throttleIsOpen("WATCHDOG") else { return }
        let actions = ["reset", "shutdown", "poweroff", "pause", "debug", "none", "inject-nmi"]
        let action = actions[rng.weighted([3, 1.5, 0.6, 2, 0.5, 1, 0.7])]
        raiseThrottled("WATCHDOG", key: "WATCHDOG", synData(["action": .string(action)]))
        switch action {
        case "reset":
            advance(us(100, 1_500))
            raise("RESET", synData(["guest": .bool(true), "reason": .string("guest-reset")]))
            guestRebooted()
        case "shutdown":
            advance(us(100, 1_500))
            raise("POWERDOWN")
            vm.shutdownInFlight = true
            schedule(in: ms(250, 850), .guestDone(.shutdownAfterPowerdown, epoch: epoch))
        case "poweroff":
            // watchdog_perform_action: exit(0), no SHUTDOWN event.
            qemuExited()
        case "pause":
            advance(us(100, 1_500))
            raise("STOP")
            vm.run = .watchdog
            schedule(in: seconds(2, 30), .intent(.cont, epoch: epoch))
        default:
            break
        }
    }

    /// GUEST_PANICKED, then STOP (action pause) or SHUTDOWN guest-panic and STOP (poweroff).
    mutating func panic() {
        if vm.agentPortOpen { agentPort(open: false) }
        var data = JSONObject()
        let pause = rng.chance(0.6)
        data["action"] = .string(pause ? "pause" : "poweroff")
        if rng.chance(0.35) {
            // A Windows guest reports its bugcheck through Hyper-V.
            data["info"] = synObj([
                "type": .string("hyper-v"), "arg1": .int(rng.pick([0x7E, 0xD1, 0x50, 0x133])),
                "arg2": .int(rng.int64(0...0xFFFF_FFFF)), "arg3": .int(0), "arg4": .int(0), "arg5": .int(0),
            ])
        }
        raise("GUEST_PANICKED", data)
        advance(us(50, 1_000))
        if pause {
            raise("STOP")
            vm.run = .guestPanicked
            schedule(in: seconds(0.5, 10), .intent(.recoverPanic, epoch: epoch))
        } else {
            guestShutdown(reason: "guest-panic", reaction: .kill)
        }
    }

    // MARK: Disks

    static let diskDevices = ["drive-virtio-disk0", "drive-virtio-disk1"]

    /// BLOCK_IO_ERROR with action stop (werror=stop/enospc, exempt from throttling): one
    /// per failed request, then STOP; libvirt resumes once the volume has grown.
    mutating func ioErrorStop() {
        let nospace = rng.chance(0.7)
        for _ in 0..<rng.int(1...3) {
            raise("BLOCK_IO_ERROR", synData([
                "device": .string(Self.diskDevices[0]), "node-name": .string("libvirt-\(vm.diskNodes[0])-format"),
                "operation": .string(rng.chance(0.85) ? "write" : "read"), "action": .string("stop"),
                "nospace": .bool(nospace), "reason": .string(nospace ? "No space left on device" : "Input/output error"),
            ]))
            advance(us(10, 400))
        }
        advance(us(200, 2_500))
        raise("STOP")
        vm.run = .ioError
        schedule(in: seconds(2, 25), .intent(.cont, epoch: epoch))
    }

    /// A burst of failing requests with action report/ignore, one event each: QEMU 7.2's
    /// BLOCK_IO_ERROR has no `qom-path` and is not throttled (that came later, per qom-path).
    mutating func ioErrorReport(disk: Int, action: String? = nil) {
        let act = action ?? (rng.chance(0.8) ? "report" : "ignore")
        for _ in 0..<rng.int(2...8) {
            raise("BLOCK_IO_ERROR", synData([
                "device": .string(Self.diskDevices[disk]), "node-name": .string("libvirt-\(vm.diskNodes[disk])-format"),
                "operation": .string(rng.chance(0.7) ? "read" : "write"), "action": .string(act),
                "nospace": .bool(false), "reason": .string("Input/output error"),
            ]))
            advance(us(200, 40_000))
        }
    }

    /// qcow2 marks an image corrupt; later writes fail with EIO.
    mutating func imageCorrupted() {
        let fatal = rng.chance(0.7)
        var data = synData([
            "device": .string(Self.diskDevices[1]), "node-name": .string("libvirt-\(vm.diskNodes[1])-format"),
        ])
        if fatal {
            data["msg"] = .string("Preventing invalid write on metadata (overlaps with active L1 table)")
            data["offset"] = .int(Int64(rng.int(1...4_096)) * 65_536)
            data["size"] = .int(65_536)
        } else {
            data["msg"] = .string("Cannot free unaligned cluster 0x\(String(rng.int(1...65_535) * 512 + 17, radix: 16))")
        }
        data["fatal"] = .bool(fatal)
        raise("BLOCK_IMAGE_CORRUPTED", data)
        if fatal {
            advance(ms(1, 30))
            ioErrorReport(disk: 1, action: "report")
        }
    }

    mutating func trayMoved(open: Bool) {
        raise("DEVICE_TRAY_MOVED", synData([
            "device": .string("drive-sata0-0-0"), "tray-open": .bool(open), "id": .string("sata0-0-0"),
        ]))
        vm.trayOpen = open
    }

    /// VSERPORT_CHANGE for the guest agent's channel, throttled per port id.
    mutating func agentPort(open: Bool) {
        vm.agentPortOpen = open
        raiseThrottled("VSERPORT_CHANGE", key: "VSERPORT_CHANGE|channel0",
                       synData(["id": .string("channel0"), "open": .bool(open)]))
    }

    mutating func guestFollowUp(_ f: SynthGuestFollowUp) {
        switch f {
        case .shutdownAfterPowerdown:
            guard vm.running else {
                vm.shutdownInFlight = false
                return
            }
            guestShutdown(reason: "guest-shutdown")
        case .deviceDeleted:
            guard vm.running else {
                schedule(in: seconds(1, 3), .guestDone(.deviceDeleted, epoch: epoch))
                return
            }
            raise("DEVICE_DELETED", synData(["path": .string("/machine/peripheral/virtio-disk2/virtio-backend")]))
            advance(us(20, 300))
            raise("DEVICE_DELETED", synData([
                "device": .string("virtio-disk2"), "path": .string("/machine/peripheral/virtio-disk2"),
            ]))
            vm.hotplugAttached = false
            vm.hotplugPending = false
            schedule(in: ms(1, 20), .intent(.blockdevDel, epoch: epoch))
        case .wakeupByGuest:
            guard vm.run == .suspended else { return }
            raise("WAKEUP")
            vm.run = .running
        case .trayClose:
            if vm.trayOpen && vm.running { trayMoved(open: false) }
        case .trayOpenForEject:
            if !vm.trayOpen { trayMoved(open: true) }
        case .nicInit(let i):
            rxChange(nic: i, loop: false)
        case .agentPort(let open):
            guard vm.running, vm.agentPortOpen != open else { return }
            agentPort(open: open)
        case .ioErrorAgain:
            if vm.running && !vm.shutdownInFlight { ioErrorStop() }
        }
    }
}
