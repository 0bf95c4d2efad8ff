import Recording
import QMP
/// What a synthetic recording is about. Each profile is a libvirt-like client talking to
/// a QEMU 7.2 whose guest does one kind of thing a lot (docs/QEMU-FACTS.md names the facts
/// each profile exercises).
///
/// Example: `SynthProfile(rawValue: "balloon-flood")`.
public enum SynthProfile: String, CaseIterable, Sendable {
    /// Everything: polls, errors, lifecycle, jobs, balloon, RTC, rx-filter, VNC/SPICE,
    /// devices, watchdog, I/O errors; every event of the catalog shows up.
    case mixed
    /// Balloon targets, BALLOON_CHANGE at the throttle's 1 s cadence, flapping between two
    /// values (the arm64 64 KiB-page bug) and `query-balloon` polls.
    case balloonFlood = "balloon-flood"
    /// RTC_CHANGE with absolute offsets that drift slowly, occasional steps, `qom-path` present.
    case rtcDrift = "rtc-drift"
    /// Two or three NICs whose NIC_RX_FILTER_CHANGED respect the per-NIC latch re-armed by
    /// `query-rx-filter` (with and without a name).
    case rxFilter = "rx-filter"
    /// stop/cont, system_reset, guest resets, powerdown and shutdown, panics, S3/S4,
    /// watchdog actions, quit and QEMU restarts.
    case lifecycle
    /// Block jobs: JOB_STATUS_CHANGE walks and BLOCK_JOB_* with len/offset; some cancelled,
    /// some failing, `query-block-jobs` polls.
    case blockJobs = "block-jobs"
    /// Outgoing migrations from the source's monitor: `migrate`, MIGRATION setup/active,
    /// MIGRATION_PASS, the switch-over's STOP, then completed (the source is then ended) or
    /// failed (RESUME); `query-status` polls see `finish-migrate` and `postmigrate`.
    case migration

    /// Mixed into the seed so that profiles sharing a seed are unrelated streams.
    var salt: UInt64 {
        switch self {
        case .mixed: return 0x6D69_7865_6400_0001
        case .balloonFlood: return 0x6261_6C6C_6F6F_0002
        case .rtcDrift: return 0x7274_6364_7269_0003
        case .rxFilter: return 0x7278_6669_6C74_0004
        case .lifecycle: return 0x6C69_6665_6379_0005
        case .blockJobs: return 0x626C_6F63_6B6A_0006
        case .migration: return 0x6D69_6772_6174_0007
        }
    }
}
