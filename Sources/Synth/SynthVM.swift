import QMP
import Recording

/// QEMU's RunState, as `query-status` reports it.
enum SynthRunState: String, Sendable {
    case prelaunch, running, paused, shutdown, watchdog, suspended, postmigrate
    case finishMigrate = "finish-migrate"
    case guestPanicked = "guest-panicked"
    case ioError = "io-error"

    /// `cont` refuses these: "Resetting the Virtual Machine is required".
    var needsReset: Bool { self == .shutdown || self == .guestPanicked }
}

/// What stays the same across QEMU restarts of the domain: its NICs and their MACs.
struct SynthDomainConfig: Sendable {
    struct NIC: Sendable {
        let name: String?
        let clientName: String
        let path: String
        let mac: String
    }

    let nics: [NIC]

    init(profile: SynthProfile, rng: inout SplitMix64) {
        func mac(_ rng: inout SplitMix64) -> String {
            "52:54:00:" + [rng.int(0...255), rng.int(0...255), rng.int(0...255)].map(SynthNIC.hex2).joined(separator: ":")
        }
        var nics = [NIC(name: "net0", clientName: "net0", path: "/machine/peripheral/net0/virtio-backend", mac: mac(&rng))]
        if profile == .mixed || profile == .rxFilter {
            nics.append(NIC(name: "net1", clientName: "net1", path: "/machine/peripheral/net1/virtio-backend", mac: mac(&rng)))
        }
        if profile == .rxFilter && rng.chance(0.6) {
            // A NIC added without an id: its event has no name (docs/QEMU-FACTS.md), and
            // query-rx-filter knows it by a generated net client name.
            nics.append(NIC(
                name: nil, clientName: "virtio-net-pci.2", path: "/machine/peripheral-anon/device[2]/virtio-backend",
                mac: mac(&rng)))
        }
        self.nics = nics
    }
}

/// The simulated guest and devices of one QEMU process.
struct SynthVM: Sendable {
    var run: SynthRunState = .prelaunch
    var balloon: SynthBalloon
    var rtc: SynthRTC
    var nics: [SynthNIC]
    var jobs: [SynthJob] = []
    var sessions: [SynthDisplaySession] = []
    var vcpuThreads: [Int]
    /// The CD-ROM tray (`sata0-0-0`).
    var trayOpen = false
    /// The hot-pluggable disk `virtio-disk2`: attached, or unplug requested and not yet acknowledged.
    var hotplugAttached = true
    var hotplugPending = false
    /// An outgoing migration is under way (SynthMigration).
    var migrating = false
    /// The guest agent's virtio-serial port (VSERPORT_CHANGE).
    var agentPortOpen = false
    /// A shutdown the guest has been asked for is under way: the client leaves it alone.
    var shutdownInFlight = false
    /// Node names of the disks vda and vdb (they change when a mirror pivots), and the next free one.
    var diskNodes = [1, 2]
    var nextNode = 4

    /// A fresh process of the domain described by `config`.
    init(profile: SynthProfile, config: SynthDomainConfig, rng: inout SplitMix64, first: Bool = true) {
        let arm = profile == .balloonFlood
        let ram: Int64 = arm ? 8 << 30 : 4 << 30
        // The domain may have been edited between two runs: now and then no balloon.
        let present = profile == .balloonFlood || first || rng.chance(0.85)
        balloon = SynthBalloon(present: present, ram: ram, page: arm ? 65_536 : 4_096)
        var ppm: Int64
        switch profile {
        case .rtcDrift: ppm = rng.int64(40...800)  // 3.5 to 70 s a day
        default: ppm = rng.int64(2...80)
        }
        if rng.chance(0.5) { ppm = -ppm }
        rtc = SynthRTC(
            qomPath: arm ? "/machine/unattached/device[9]" : "/machine/unattached/device[22]",
            driftPPM: ppm)
        nics = config.nics.map { SynthNIC(name: $0.name, clientName: $0.clientName, path: $0.path, mac: $0.mac) }
        let base = rng.int(3_000...400_000)
        vcpuThreads = [base + 31, base + 32]
    }

    var running: Bool { run == .running }
}

/// The virtio balloon (docs/QEMU-FACTS.md, "BALLOON_CHANGE"): `actual` is RAM minus the
/// ballooned pages and moves in steps of the guest's page size. A target the guest's page
/// size cannot reach makes a 64 KiB-page guest flap between the two neighbours.
struct SynthBalloon: Sendable {
    var present: Bool
    let ram: Int64
    let page: Int64
    var actual: Int64
    /// The values the guest settles on; `low < high` when the target is unreachable.
    var low: Int64
    var high: Int64
    var writerActive = false

    init(present: Bool, ram: Int64, page: Int64) {
        self.present = present; self.ram = ram; self.page = page
        actual = ram; low = ram; high = ram
    }

    /// virtio_balloon_to_target: `num_pages = (ram - target) >> 12`, in 4 KiB units.
    mutating func setTarget(_ target: Int64) {
        let t = min(max(target, 1), ram)
        let pages = (ram - t) >> 12
        let perGuestPage = page >> 12
        let whole = pages / perGuestPage
        high = ram - whole * page
        low = pages % perGuestPage == 0 ? high : high - page
    }

    var flapping: Bool { low != high }
}

/// The guest's RTC as seen by QEMU (docs/QEMU-FACTS.md, "RTC_CHANGE"): the guest clock drifts
/// against the host by `driftPPM`, and each RTC write reports the whole-second offset.
struct SynthRTC: Sendable {
    let qomPath: String
    var driftPPM: Int64
    /// Guest clock minus host clock, in nanoseconds.
    var errorNs: Int64 = 0
    var lastUpdate: Int64 = 0

    init(qomPath: String, driftPPM: Int64) {
        self.qomPath = qomPath; self.driftPPM = driftPPM
    }
}

/// A virtio-net NIC and its receive filter (docs/QEMU-FACTS.md, "NIC_RX_FILTER_CHANGED").
struct SynthNIC: Sendable {
    /// The name in the event (the device id); `nil` for a NIC added without an id.
    let name: String?
    /// The net client name `query-rx-filter` reports and accepts.
    let clientName: String
    let path: String
    let mac: String
    /// The dedup latch: an event is sent only when armed; `query-rx-filter` re-arms it.
    var armed = true
    var promiscuous = false
    var allMulticast = false
    var multicastTable: [String]
    var vlanTable: [Int] = []

    init(name: String?, clientName: String, path: String, mac: String) {
        self.name = name; self.clientName = clientName; self.path = path; self.mac = mac
        multicastTable = ["01:00:5e:00:00:01", "33:33:00:00:00:01"]
    }

    static func hex2(_ v: Int) -> String {
        let d = Array("0123456789abcdef")
        return String([d[v >> 4 & 15], d[v & 15]])
    }

    /// One change the guest driver makes: promiscuous mode, all-multicast, a multicast
    /// group, a VLAN.
    mutating func change(_ rng: inout SplitMix64) {
        switch rng.int(0...5) {
        case 0: promiscuous.toggle()
        case 1: allMulticast.toggle()
        case 2, 3:
            // A guest joins and leaves a few groups; the table stays small.
            if multicastTable.count >= 6 || (multicastTable.count > 2 && rng.chance(0.5)) {
                multicastTable.remove(at: rng.int(2...multicastTable.count - 1))
            } else {
                multicastTable.append("33:33:ff:" + [rng.int(0...255), rng.int(0...255), rng.int(0...255)].map(SynthNIC.hex2).joined(separator: ":"))
            }
        case 4:
            if vlanTable.count >= 3 || (!vlanTable.isEmpty && rng.chance(0.5)) {
                vlanTable.remove(at: rng.int(0...vlanTable.count - 1))
            } else {
                vlanTable.append(rng.int(1...4094))
            }
        default: break  // virtio-net raises the event even when nothing changed
        }
    }

    var eventData: JSONObject {
        if let name { return synData(["name": .string(name), "path": .string(path)]) }
        return synData(["path": .string(path)])
    }

    /// RxFilterInfo as `query-rx-filter` returns it.
    var filterInfo: JSONValue {
        synObj([
            "name": .string(clientName),
            "promiscuous": .bool(promiscuous),
            "multicast": .string(allMulticast ? "all" : "normal"),
            "unicast": .string("normal"),
            "vlan": .string("normal"),
            "broadcast-allowed": .bool(true),
            "multicast-overflow": .bool(false),
            "unicast-overflow": .bool(false),
            "main-mac": .string(mac),
            "vlan-table": .array(vlanTable.map { .int($0) }),
            "unicast-table": .array([]),
            "multicast-table": .array(multicastTable.map { .string($0) }),
        ])
    }
}

/// A block job (docs/QEMU-FACTS.md, "Block jobs"): created -> running -> (paused, ready,
/// standby) -> waiting -> pending -> (aborting) -> concluded -> null.
struct SynthJob: Sendable {
    enum Kind: String, Sendable, CaseIterable {
        case mirror, commit, stream, backup

        var command: String {
            switch self {
            case .mirror: return "blockdev-mirror"
            case .commit: return "block-commit"
            case .stream: return "block-stream"
            case .backup: return "blockdev-backup"
            }
        }

        /// libvirt's job-name prefix.
        var prefix: String {
            switch self {
            case .mirror: return "copy"
            case .commit: return "commit"
            case .stream: return "pull"
            case .backup: return "backup"
            }
        }
    }

    enum Plan: Sendable { case complete, cancel, fail, pauseOnError }

    let serial: Int
    let id: String
    let kind: Kind
    let plan: Plan
    let disk: Int
    let node: String
    /// The node the job writes to (a mirror's disk pivots to it).
    let target: Int
    var len: Int64
    var offset: Int64 = 0
    let speed: Int64
    /// Bytes copied per second.
    let rate: Int64
    var status = "created"
    let autoFinalize: Bool
    /// Offsets at which the client cancels, or an error strikes.
    let stopAt: Int64
    var errorFired = false
    var cancelRequested = false
    var lastTick: Int64

    var progress: JSONObject {
        synData([
            "type": .string(kind.rawValue), "device": .string(id), "len": .int(len), "offset": .int(offset),
            "speed": .int(speed),
        ])
    }

    /// BlockJobInfo as `query-block-jobs` returns it.
    var info: JSONValue {
        synObj([
            "type": .string(kind.rawValue), "device": .string(id), "len": .int(len), "offset": .int(offset),
            "busy": .bool(status == "running"), "paused": .bool(status == "paused" || status == "standby"),
            "speed": .int(speed), "io-status": .string(errorFired && status == "paused" ? "failed" : "ok"),
            "ready": .bool(status == "ready" || status == "standby"), "status": .string(status),
            "auto-finalize": .bool(autoFinalize), "auto-dismiss": .bool(false),
        ])
    }
}

/// A VNC or SPICE client session (docs/QEMU-FACTS.md: one session keyed by the client's host and port).
struct SynthDisplaySession: Sendable {
    let serial: Int
    let spice: Bool
    /// `server` as in *_CONNECTED and *_DISCONNECTED.
    let server: JSONValue
    /// `client` of *_DISCONNECTED: one per channel (SPICE) or one (VNC, with its SASL name).
    let clients: [JSONValue]
}
