import QMP
import Recording

/// The guest writing its RTC (docs/QEMU-FACTS.md, "RTC_CHANGE"): each write reports the absolute
/// offset in whole seconds (truncated, so a correct guest reports 0 or -1), drifting
/// slowly with the guest clock, with occasional steps (someone set the time, or a DST
/// jump with `-rtc base=localtime`). hwclock sometimes writes twice within a second: the
/// throttle then delivers the second one at the end of the window, with its older timestamp.
extension SynthEngine {
    mutating func rtcWrite(once: Bool) {
        guard vm.running else {
            if !once { schedule(in: seconds(1, 5), .rtcWrite(epoch: epoch, once: false)) }
            return
        }
        var rtc = vm.rtc
        rtc.errorNs += rtc.driftPPM * (now - rtc.lastUpdate) / 1_000_000
        rtc.lastUpdate = now
        if !once {
            let stepChance = profile == .rtcDrift ? 0.04 : 0.01
            if rng.chance(stepChance) {
                let step = rng.int64(2...90) * Self.second
                rtc.errorNs += rng.chance(0.5) ? step : -step
            } else if profile == .rtcDrift && rng.chance(0.004) {
                rtc.errorNs += rng.chance(0.5) ? 3_600 * Self.second : -3_600 * Self.second
            }
        }
        vm.rtc = rtc
        let phase = rng.int64(0...Self.second - 1)
        var offset = (rtc.errorNs - phase) / Self.second
        if (rtc.errorNs - phase) % Self.second < 0 { offset -= 1 }  // floor
        raiseThrottled("RTC_CHANGE", key: "RTC_CHANGE", synData([
            "offset": .int(offset), "qom-path": .string(rtc.qomPath),
        ]))
        guard !once else { return }
        if rng.chance(0.12) { schedule(in: ms(80, 900), .rtcWrite(epoch: epoch, once: true)) }
        // NTP-synchronised Linux writes every 11 minutes; the drift profile's guest syncs more often.
        let gap = profile == .rtcDrift ? seconds(15, 90) : seconds(655, 665)
        schedule(in: gap, .rtcWrite(epoch: epoch, once: false))
    }
}
