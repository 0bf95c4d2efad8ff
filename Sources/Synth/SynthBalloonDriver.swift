import QMP
import Recording

/// The `balloon` command and the guest's balloon driver (docs/QEMU-FACTS.md, "BALLOON_CHANGE"):
/// the host sets a target and gets `{}` at once; the guest then moves toward it in chunks,
/// each write raising a (throttled) BALLOON_CHANGE, so a long inflation arrives as one
/// event per second with lagging timestamps. An unreachable target makes a 64 KiB-page
/// guest flap between two values forever (the arm64 bug fixed in 2023).
extension SynthEngine {
    /// A target as libvirt would set it: whole MiB, or KiB (`virsh setmem` sizes), or all RAM.
    mutating func chooseBalloonTarget() -> Int64 {
        let ram = vm.balloon.ram
        let lo: Int64 = 1 << 30
        let hi = ram - (512 << 20)
        let r = rng.unit()
        let deflate: Double = profile == .balloonFlood ? 0.12 : 0.2
        if r < deflate { return ram }
        let kibGranular: Double = profile == .balloonFlood ? 0.55 : 0.2
        if r < deflate + kibGranular { return rng.int64(lo >> 10...hi >> 10) << 10 }
        return rng.int64(lo >> 20...hi >> 20) << 20
    }

    mutating func setBalloon() {
        let target = chooseBalloonTarget()
        let id = send("balloon", synData(["value": .int(target)]))
        guard vm.balloon.present else {
            fail("DeviceNotActive", "No balloon device has been activated", id)
            return
        }
        replyEmpty(id)
        vm.balloon.setTarget(target)
        if !vm.balloon.writerActive {
            vm.balloon.writerActive = true
            schedule(in: ms(20, 400), .balloonWrite(epoch: epoch))
        }
    }

    /// One write of the guest driver to the balloon's config space.
    mutating func balloonWrite() {
        var b = vm.balloon
        guard b.present else {
            vm.balloon.writerActive = false
            return
        }
        guard vm.running else {
            schedule(in: seconds(0.5, 3), .balloonWrite(epoch: epoch))
            return
        }
        let chunk = max(b.page, rng.int64(16 << 20...320 << 20) / b.page * b.page)
        var next: Int64 = 0
        if b.flapping && (b.actual == b.low || b.actual == b.high) {
            b.actual = b.actual == b.low ? b.high : b.low
            next = ms(40, 400)  // the buggy driver flips several times a second
        } else if b.actual > b.high {
            b.actual = max(b.high, b.actual - chunk)  // inflate
            next = ms(60, 600)
        } else if b.actual < b.low {
            b.actual = min(b.low, b.actual + chunk)  // deflate
            next = ms(60, 600)
        } else {
            b.writerActive = false
            vm.balloon = b
            return
        }
        let settled = !b.flapping && b.actual == b.low
        if settled { b.writerActive = false }
        vm.balloon = b
        raiseThrottled("BALLOON_CHANGE", key: "BALLOON_CHANGE", synData(["actual": .int(b.actual)]))
        if !settled { schedule(in: next, .balloonWrite(epoch: epoch)) }
    }
}
