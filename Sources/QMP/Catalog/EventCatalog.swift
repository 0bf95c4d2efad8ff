/// The events qmpreplay knows: the 26 described by QEMU's qmp-events.txt (the seed
/// documents in `shared/seeds/`), the later changes listed in docs/QEMU-FACTS.md, and the
/// throttled events named there. Field lists follow the documents' "Data:" sections,
/// never their examples, two of which are mislabelled (the older file's STOP example
/// says SHUTDOWN, the newer file's WAKEUP example says WATCHDOG).
///
/// Unknown events are not errors: `entry(for:)` returns `nil` and validation reports
/// them as unknown.
public enum EventCatalog {
    public static func entry(for name: String) -> CatalogEvent? { byName[name] }

    public static var names: [String] { all.map(\.name) }

    /// The events named by the seed documents (the 26 of the newer file; the older file's
    /// ten are a subset).
    public static var seedEventNames: [String] {
        all.filter { $0.sources.contains(.eventsDoc) }.map(\.name)
    }

    public static let byName: [String: CatalogEvent] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    // Building blocks shared by several events.
    private static let family = CatalogMember(
        "family", .string, allowed: ["ipv4", "ipv6"], later: ["unix", "vsock", "unknown"], doc: "address family")
    private static let readWrite = CatalogMember("operation", .string, allowed: ["read", "write"], doc: "I/O operation")
    /// QAPI JobType; the documents list only stream and commit.
    private static let jobType = CatalogMember(
        "type", .string, allowed: ["stream", "commit"],
        later: ["mirror", "backup", "create", "amend", "snapshot-load", "snapshot-save", "snapshot-delete"],
        doc: "job type")
    private static let shutdownReasons = [
        "none", "host-error", "host-qmp-quit", "host-qmp-system-reset", "host-signal", "host-ui",
        "guest-shutdown", "guest-reset", "guest-panic", "subsystem-reset", "snapshot-load",
    ]
    /// SHUTDOWN and RESET gained `guest` in 2.10 and `reason` in 4.0 (docs/QEMU-FACTS.md).
    private static let guestAndReason: [CatalogMember] = [
        CatalogMember("guest", .bool, optional: true, source: .notes, doc: "true if the guest caused it (2.10+)"),
        CatalogMember("reason", .string, optional: true, allowed: shutdownReasons, source: .notes, doc: "cause (4.0+)"),
    ]

    private static func vncServer() -> CatalogMember {
        CatalogMember("server", .object([
            CatalogMember("host", .string, doc: "IP address"),
            CatalogMember("service", .string, doc: "port number"),
            family,
            CatalogMember("auth", .string, optional: true, doc: "authentication method"),
            CatalogMember("websocket", .bool, optional: true, source: .laterQEMU),
        ]), doc: "server information")
    }

    private static func vncClient(tlsNames: Bool) -> CatalogMember {
        var m = [
            CatalogMember("host", .string, doc: "IP address"),
            CatalogMember("service", .string, doc: "port number"),
            family,
            CatalogMember("websocket", .bool, optional: true, source: .laterQEMU),
        ]
        if tlsNames {
            m.append(CatalogMember("x509_dname", .string, optional: true, doc: "TLS dname"))
            m.append(CatalogMember("sasl_username", .string, optional: true, doc: "SASL username"))
        }
        return CatalogMember("client", .object(m), doc: "client information")
    }

    private static func spiceEndpoint(_ name: String, extra: [CatalogMember]) -> CatalogMember {
        CatalogMember(name, .object([
            CatalogMember("host", .string, doc: "IP address"),
            CatalogMember("port", .string, doc: "port number"),
            family,
        ] + extra), doc: "\(name) information")
    }

    private static let blockJobProgress: [CatalogMember] = [
        jobType,
        CatalogMember("device", .string, doc: "device name (the job id in newer QEMU)"),
        CatalogMember("len", .int, doc: "maximum progress value"),
        CatalogMember("offset", .int, doc: "current progress value"),
        CatalogMember("speed", .int, doc: "rate limit, bytes per second"),
    ]

    public static let all: [CatalogEvent] = [
        CatalogEvent(
            "BALLOON_CHANGE", "The guest changed the actual balloon level (same value as query-balloon's actual).",
            members: [CatalogMember("actual", .number, doc: "guest logical memory size in bytes")],
            throttle: Throttle(),
            remarks: ["Emitted when the guest writes a new balloon size, not when the host sets a target; throttled to one per second (docs/QEMU-FACTS.md)."]),
        CatalogEvent(
            "BLOCK_IMAGE_CORRUPTED", "A disk image is being marked corrupt.",
            members: [
                CatalogMember("device", .string, doc: "device name"),
                CatalogMember("msg", .string, doc: "informative message"),
                CatalogMember("offset", .int, optional: true, doc: "access offset, when caused by an image access"),
                CatalogMember("size", .int, optional: true, doc: "access size, when caused by an image access"),
                CatalogMember("node-name", .string, optional: true, source: .laterQEMU),
                CatalogMember("fatal", .bool, optional: true, source: .laterQEMU),
            ]),
        CatalogEvent(
            "BLOCK_IO_ERROR", "A disk I/O error occurred.",
            members: [
                CatalogMember("device", .string, doc: "device name"),
                readWrite,
                CatalogMember("action", .string, allowed: ["ignore", "report", "stop"], doc: "action taken"),
                CatalogMember("qom-path", .string, optional: true, source: .notes, doc: "device path (recent QEMU)"),
                CatalogMember("node-name", .string, optional: true, source: .laterQEMU),
                CatalogMember("nospace", .bool, optional: true, source: .laterQEMU),
                CatalogMember("reason", .string, optional: true, source: .laterQEMU),
            ],
            followUps: [FollowUp(when: ("action", "stop"), then: "STOP", source: .eventsDoc)],
            throttle: Throttle(keyPaths: ["qom-path"], exemptWhen: ["action": "stop"]),
            sources: [.eventsDoc, .olderEventsDoc],
            remarks: ["Throttled per qom-path only in recent QEMU, and never when action is stop (docs/QEMU-FACTS.md)."]),
        CatalogEvent(
            "BLOCK_JOB_CANCELLED", "A block job has been cancelled.", members: blockJobProgress),
        CatalogEvent(
            "BLOCK_JOB_COMPLETED", "A block job has completed.",
            members: blockJobProgress + [
                CatalogMember("error", .string, optional: true, doc: "error message, only present on failure")
            ]),
        CatalogEvent(
            "BLOCK_JOB_ERROR", "A block job encountered an error.",
            members: [
                CatalogMember("device", .string, doc: "device name"),
                readWrite,
                CatalogMember("action", .string, allowed: ["ignore", "report", "stop"], doc: "action taken"),
            ]),
        CatalogEvent(
            "BLOCK_JOB_READY", "A block job is ready to complete.",
            members: [
                CatalogMember("device", .string, doc: "device name"),
                CatalogMember("type", .string, optional: true, allowed: jobType.allowed, later: jobType.laterValues, source: .notes),
                CatalogMember("len", .int, optional: true, source: .notes),
                CatalogMember("offset", .int, optional: true, source: .notes),
                CatalogMember("speed", .int, optional: true, source: .notes),
            ],
            remarks: ["The ready status is always reset by a BLOCK_JOB_ERROR event."]),
        CatalogEvent(
            "BLOCK_JOB_PENDING", "A block job is waiting for finalisation (job transactions).",
            members: [
                CatalogMember("type", .string, allowed: jobType.allowed, later: jobType.laterValues, source: .notes),
                CatalogMember("id", .string, source: .notes, doc: "job id"),
            ],
            sources: [.notes]),
        CatalogEvent(
            "DEVICE_DELETED", "The guest acknowledged a device removal; the id may be reused.",
            members: [
                CatalogMember("device", .string, optional: true, doc: "device name"),
                CatalogMember("path", .string, doc: "device path"),
            ]),
        CatalogEvent(
            "DEVICE_TRAY_MOVED", "The tray of a removable device moved.",
            members: [
                CatalogMember("device", .string, doc: "device name"),
                CatalogMember("tray-open", .bool, doc: "true if the tray has been opened"),
                CatalogMember("id", .string, optional: true, source: .laterQEMU, doc: "qdev id or QOM path"),
            ]),
        CatalogEvent(
            "GUEST_PANICKED", "A guest OS panic was detected.",
            members: [
                CatalogMember("action", .string, allowed: ["pause"], later: ["poweroff", "run"], doc: "action taken"),
                CatalogMember("info", .any, optional: true, source: .laterQEMU),
            ]),
        CatalogEvent(
            "JOB_STATUS_CHANGE", "A job changed status.",
            members: [
                CatalogMember("id", .string, source: .notes, doc: "job id"),
                CatalogMember(
                    "status", .string,
                    allowed: ["created", "running", "paused", "ready", "standby", "waiting", "pending", "aborting", "concluded", "null"],
                    later: ["undefined"], source: .notes, doc: "new status"),
            ],
            sources: [.notes],
            remarks: ["Walks created -> running -> (paused, ready, standby) -> waiting -> pending -> (aborting) -> concluded -> null."]),
        CatalogEvent(
            "NIC_RX_FILTER_CHANGED", "The guest changed a NIC's receive filter; emitted once until query-rx-filter re-arms it.",
            members: [
                CatalogMember("name", .string, optional: true, doc: "net client name (optional per docs/QEMU-FACTS.md)"),
                CatalogMember("path", .string, doc: "device path"),
            ],
            remarks: ["Per-NIC latch: further changes are silent until query-rx-filter (with no name: all NICs) re-arms it (docs/QEMU-FACTS.md)."]),
        CatalogEvent("POWERDOWN", "A guest power-down was requested (system_powerdown).", members: [], sources: [.notes]),
        CatalogEvent(
            "RESET", "The virtual machine was reset.", members: guestAndReason,
            sources: [.eventsDoc, .olderEventsDoc]),
        CatalogEvent("RESUME", "The virtual machine resumed execution.", members: [], sources: [.eventsDoc, .olderEventsDoc]),
        CatalogEvent(
            "RTC_CHANGE", "The guest changed its RTC time.",
            members: [
                CatalogMember("offset", .number, doc: "new guest RTC minus the -rtc base clock, whole seconds"),
                CatalogMember("qom-path", .string, optional: true, source: .notes, doc: "RTC device (7.1+)"),
            ],
            throttle: Throttle(),
            sources: [.eventsDoc, .olderEventsDoc],
            remarks: [
                "The documents differ: the older says offset is the \"delta against the host UTC in seconds\", the newer \"offset between base RTC clock (as specified by -rtc base), and new RTC clock value\". They agree for -rtc base=utc.",
                "The offset is absolute (total so far), not an increment (docs/QEMU-FACTS.md).",
            ]),
        CatalogEvent(
            "SHUTDOWN", "The virtual machine was powered down.", members: guestAndReason,
            followUps: [FollowUp(when: nil, then: "STOP", onlyIf: "-no-shutdown", source: .eventsDoc)],
            sources: [.eventsDoc, .olderEventsDoc]),
        CatalogEvent(
            "SPICE_CONNECTED", "A SPICE client connected.",
            members: [spiceEndpoint("server", extra: []), spiceEndpoint("client", extra: [])]),
        CatalogEvent(
            "SPICE_DISCONNECTED", "A SPICE client disconnected.",
            members: [spiceEndpoint("server", extra: []), spiceEndpoint("client", extra: [])]),
        CatalogEvent(
            "SPICE_INITIALIZED", "A SPICE channel finished its handshake.",
            members: [
                spiceEndpoint("server", extra: [CatalogMember("auth", .string, optional: true, doc: "authentication method")]),
                spiceEndpoint("client", extra: [
                    CatalogMember("connection-id", .int, doc: "spice connection id"),
                    CatalogMember("channel-type", .int, doc: "channel type (1: main)"),
                    CatalogMember("channel-id", .int, doc: "channel id"),
                    CatalogMember("tls", .bool, doc: "whether the channel is encrypted"),
                ]),
            ]),
        CatalogEvent("STOP", "The virtual machine was stopped.", members: [], sources: [.eventsDoc, .olderEventsDoc],
                     remarks: ["The older document's STOP example is labelled SHUTDOWN; the heading is right."]),
        CatalogEvent("SUSPEND", "The guest entered S3.", members: []),
        CatalogEvent("SUSPEND_DISK", "The guest asked to enter S4 (QEMU then shuts down).", members: []),
        CatalogEvent(
            "VNC_CONNECTED", "A VNC client connected (before authentication).",
            members: [vncServer(), vncClient(tlsNames: false)], sources: [.eventsDoc, .olderEventsDoc]),
        CatalogEvent(
            "VNC_DISCONNECTED", "A VNC connection closed.",
            members: [vncServer(), vncClient(tlsNames: true)], sources: [.eventsDoc, .olderEventsDoc]),
        CatalogEvent(
            "VNC_INITIALIZED", "A VNC session became active after authentication.",
            members: [vncServer(), vncClient(tlsNames: true)], sources: [.eventsDoc, .olderEventsDoc]),
        CatalogEvent("WAKEUP", "The guest woke up from S3.", members: [],
                     remarks: ["The newer document's WAKEUP example is labelled WATCHDOG; the heading is right."]),
        CatalogEvent(
            "WATCHDOG", "The watchdog timer expired.",
            members: [
                CatalogMember(
                    "action", .string, allowed: ["reset", "shutdown", "poweroff", "pause", "debug", "none"],
                    later: ["inject-nmi"], doc: "action taken")
            ],
            followUps: [
                FollowUp(when: ("action", "reset"), then: "RESET", source: .eventsDoc),
                FollowUp(when: ("action", "shutdown"), then: "SHUTDOWN", source: .eventsDoc),
                FollowUp(when: ("action", "pause"), then: "STOP", source: .eventsDoc),
            ],
            throttle: Throttle(),
            sources: [.eventsDoc, .olderEventsDoc]),
        // Throttled events named in docs/QEMU-FACTS.md whose members these documents do not describe.
        CatalogEvent("QUORUM_FAILURE", "A quorum block driver failed.", members: nil, throttle: Throttle(), sources: [.notes]),
        CatalogEvent("QUORUM_REPORT_BAD", "A quorum child reported bad data.", members: nil,
                     throttle: Throttle(keyPaths: ["node-name"]), sources: [.notes]),
        CatalogEvent("HV_BALLOON_STATUS_REPORT", "Hyper-V balloon status.", members: nil, throttle: Throttle(), sources: [.notes]),
        CatalogEvent("VSERPORT_CHANGE", "A virtio serial port opened or closed.", members: nil,
                     throttle: Throttle(keyPaths: ["id"]), sources: [.notes]),
        CatalogEvent("MEMORY_DEVICE_SIZE_CHANGE", "A memory device changed size.", members: nil,
                     throttle: Throttle(keyPaths: ["qom-path"]), sources: [.notes]),
    ]
}
