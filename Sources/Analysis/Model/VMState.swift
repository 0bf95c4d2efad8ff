/// What the VM looked like after some record of a recording: the shell's `state` command.
///
/// Every member is derived from the records up to and including that record by the rules
/// in `StateTracker` (docs/QEMU-FACTS.md is the source of each fact). Times are record times,
/// nanoseconds since the recording's start (the recorder's monotonic clock, not QEMU's
/// event timestamps); record numbers are the `#N` of the time syntax.
///
/// VM-scoped members (run state, balloon, RTC, NICs, block jobs, display clients, last
/// reset) describe the current QEMU process: when a new process is detected (a greeting
/// after QEMU closed every connection), they start over.
public struct VMState: Sendable, Equatable {
    /// QEMU's run state, simplified. `query-status` reports many more values; they are
    /// mapped onto these and the raw value is kept in `runStateCause` and `lastStatus`.
    public enum RunState: String, Sendable, Equatable, CaseIterable {
        /// Nothing in the recording has said so yet.
        case unknown
        case running
        /// Stopped: `stop`, an I/O error with werror=stop, WATCHDOG pause, prelaunch,
        /// migration, debug, ... (`runStateCause` says which).
        case paused
        /// The guest is in S3 (SUSPEND; WAKEUP leaves it).
        case suspended
        /// SHUTDOWN was seen (QEMU exits, or stays stopped under `-no-shutdown`).
        case shutdown
        /// GUEST_PANICKED with action pause or poweroff: QEMU's `guest-panicked` run state.
        case panicked
    }

    /// A value seen at some record.
    public struct Stamp: Sendable, Equatable, Hashable {
        /// Record number.
        public var record: Int
        /// Record time, ns since the start.
        public var time: Int64
        public init(record: Int, time: Int64) { self.record = record; self.time = time }
    }

    /// The guest's logical memory size (`BALLOON_CHANGE` `data.actual` or `query-balloon`'s `actual`).
    public struct Balloon: Sendable, Equatable {
        /// Bytes: RAM minus ballooned pages (docs/QEMU-FACTS.md, "BALLOON_CHANGE").
        public var actual: Int64
        public var record: Int
        public var time: Int64
        /// `BALLOON_CHANGE` or `query-balloon`: where the value came from.
        public var source: String
        public init(actual: Int64, record: Int, time: Int64, source: String) {
            self.actual = actual; self.record = record; self.time = time; self.source = source
        }
    }

    /// The host's last `balloon {"value": N}` request (a target, not what the guest did).
    public struct BalloonTarget: Sendable, Equatable {
        /// Requested logical size, bytes.
        public var value: Int64
        /// The command's record.
        public var record: Int
        public var time: Int64
        /// `true` when QEMU answered `{}`, `false` on an error reply, `nil` before the reply.
        public var accepted: Bool?
        public init(value: Int64, record: Int, time: Int64, accepted: Bool? = nil) {
            self.value = value; self.record = record; self.time = time; self.accepted = accepted
        }
    }

    /// The guest RTC's offset from its base clock (RTC_CHANGE `data.offset`: absolute, whole seconds).
    public struct RTCOffset: Sendable, Equatable {
        /// Seconds; the total so far, not an increment.
        public var offset: Int64
        public var record: Int
        public var time: Int64
        public init(offset: Int64, record: Int, time: Int64) { self.offset = offset; self.record = record; self.time = time }
    }

    /// The last RESET: it does not change the run state by itself (see `StateTracker`).
    public struct Reset: Sendable, Equatable {
        /// `data.reason` (QEMU 4.0+), nil when absent.
        public var reason: String?
        /// `data.guest` (QEMU 2.10+): the guest asked for it.
        public var guest: Bool?
        public var record: Int
        public var time: Int64
        public init(reason: String?, guest: Bool?, record: Int, time: Int64) {
            self.reason = reason; self.guest = guest; self.record = record; self.time = time
        }
    }

    /// The last `query-status` answer, raw.
    public struct StatusReport: Sendable, Equatable {
        /// `status`: running, paused, io-error, prelaunch, ... as QEMU said it.
        public var status: String
        /// `running`.
        public var running: Bool?
        /// The reply's record.
        public var record: Int
        public var time: Int64
        public init(status: String, running: Bool?, record: Int, time: Int64) {
            self.status = status; self.running = running; self.record = record; self.time = time
        }
    }

    /// One NIC's NIC_RX_FILTER_CHANGED latch (docs/QEMU-FACTS.md): armed at device creation; an
    /// event disarms it; a successful `query-rx-filter` naming it, or naming none, re-arms it.
    public struct NICLatch: Sendable, Equatable {
        /// `data.name` of its events or the name of a named query; nil for a NIC known only by path.
        public var name: String?
        /// `data.path` (QOM path) of its last event.
        public var path: String?
        /// Whether QEMU would send the next filter change.
        public var armed: Bool
        /// The last NIC_RX_FILTER_CHANGED for it.
        public var lastEvent: Stamp?
        /// The last `query-rx-filter` command that re-armed it (it counts once its reply is a success).
        public var lastRearm: Stamp?
        /// Events for it in this QEMU process.
        public var events: Int
        /// Events that arrived while the latch was disarmed: some unrecorded client queried
        /// it, or the latch failed.
        public var eventsWhileDisarmed: Int
        public init(name: String?, path: String?, armed: Bool = true, lastEvent: Stamp? = nil, lastRearm: Stamp? = nil,
                    events: Int = 0, eventsWhileDisarmed: Int = 0) {
            self.name = name; self.path = path; self.armed = armed; self.lastEvent = lastEvent; self.lastRearm = lastRearm
            self.events = events; self.eventsWhileDisarmed = eventsWhileDisarmed
        }
    }

    /// A block job (docs/QEMU-FACTS.md, "Block jobs").
    public struct BlockJob: Sendable, Equatable {
        /// How a finished job ended.
        public enum Outcome: String, Sendable, Equatable {
            /// BLOCK_JOB_COMPLETED without `error`, or concluded without aborting.
            case completed
            /// BLOCK_JOB_CANCELLED.
            case cancelled
            /// BLOCK_JOB_COMPLETED with `error`.
            case failed
            /// Concluded after `aborting` with no BLOCK_JOB_* event saying why.
            case aborted
        }
        /// The job id (`JOB_STATUS_CHANGE` `id`, BLOCK_JOB_* `device`/`id`).
        public var id: String
        /// mirror, commit, stream, backup, ... when an event or query said it.
        public var type: String?
        /// The last JOB_STATUS_CHANGE status (created, running, paused, ready, standby,
        /// waiting, pending, aborting, concluded, null), or `query-block-jobs`' status.
        public var status: String?
        /// Progress from the last BLOCK_JOB_* event or `query-block-jobs` reply.
        public var offset: Int64?
        public var len: Int64?
        /// Bytes per second, 0 for unlimited.
        public var speed: Int64?
        /// BLOCK_JOB_READY seen (a mirror can be completed).
        public var ready: Bool
        /// Reached concluded/null, or an outcome event arrived.
        public var finished: Bool
        public var outcome: Outcome?
        /// COMPLETED's `error`, or the last BLOCK_JOB_ERROR (`operation`, `action`).
        public var error: String?
        /// The event (or `query-block-jobs`) that last changed it.
        public var lastEvent: String
        public var lastRecord: Int
        public var lastTime: Int64
        /// The record where it first appeared.
        public var firstRecord: Int
        public init(id: String, type: String? = nil, status: String? = nil, offset: Int64? = nil, len: Int64? = nil,
                    speed: Int64? = nil, ready: Bool = false, finished: Bool = false, outcome: Outcome? = nil,
                    error: String? = nil, lastEvent: String, lastRecord: Int, lastTime: Int64, firstRecord: Int) {
            self.id = id; self.type = type; self.status = status; self.offset = offset; self.len = len; self.speed = speed
            self.ready = ready; self.finished = finished; self.outcome = outcome; self.error = error
            self.lastEvent = lastEvent; self.lastRecord = lastRecord; self.lastTime = lastTime; self.firstRecord = firstRecord
        }
    }

    /// A VNC or SPICE client session (one per client host and port; a SPICE client has one
    /// per channel). Removed when it disconnects.
    public struct DisplayClient: Sendable, Equatable {
        public enum Phase: String, Sendable, Equatable {
            /// *_CONNECTED: the socket is up, not yet authenticated.
            case connected
            /// *_INITIALIZED: authenticated and running.
            case initialized
        }
        /// `vnc` or `spice`.
        public var proto: String
        /// `client.host`.
        public var host: String
        /// `client.service` (VNC) or `client.port` (SPICE).
        public var service: String
        public var phase: Phase
        /// When it entered `phase`.
        public var since: Int64
        public var record: Int
        /// The CONNECTED event (nil when the recording saw only INITIALIZED).
        public var connected: Stamp?
        /// `server.auth` (VNC: none, vnc, sasl, ...; SPICE: none, spice).
        public var auth: String?
        /// `sasl_username` or `x509_dname` of VNC_INITIALIZED.
        public var user: String?
        /// SPICE `channel-type`/`channel-id`, e.g. `1/0`.
        public var channel: String?
        public init(proto: String, host: String, service: String, phase: Phase, since: Int64, record: Int,
                    connected: Stamp? = nil, auth: String? = nil, user: String? = nil, channel: String? = nil) {
            self.proto = proto; self.host = host; self.service = service; self.phase = phase; self.since = since
            self.record = record; self.connected = connected; self.auth = auth; self.user = user; self.channel = channel
        }
    }

    /// The last error reply and the command it answered (paired by `ReplyMatcher`).
    public struct LastError: Sendable, Equatable {
        /// `error.class` (GenericError, DeviceNotActive, ...).
        public var errorClass: String
        public var desc: String
        /// The command's name; nil when the request was not a command or no request matched.
        public var command: String?
        /// The command's record.
        public var commandRecord: Int?
        /// The error reply's record.
        public var record: Int
        public var time: Int64
        public var connection: UInt32
        public init(errorClass: String, desc: String, command: String?, commandRecord: Int?, record: Int, time: Int64,
                    connection: UInt32) {
            self.errorClass = errorClass; self.desc = desc; self.command = command; self.commandRecord = commandRecord
            self.record = record; self.time = time; self.connection = connection
        }
    }

    /// Current run state.
    public var runState: RunState = .unknown
    /// Record time (ns) when it entered that state; nil while unknown.
    public var runStateSince: Int64?
    /// The record that put it there.
    public var runStateRecord: Int?
    /// Why, in words: `stop command (#12)`, `BLOCK_IO_ERROR on drive-virtio-disk0 (action stop)`,
    /// `WATCHDOG pause`, `guest panic`, `SHUTDOWN reason host-qmp-quit`, `query-status says paused (reason: io-error)`.
    public var runStateCause: String?
    /// The last `query-status` reply (raw status, whether or not it changed `runState`).
    public var lastStatus: StatusReport?
    /// The last RESET event.
    public var lastReset: Reset?
    /// Last BALLOON_CHANGE or successful `query-balloon`.
    public var balloon: Balloon?
    /// Last host `balloon {"value": N}` command.
    public var balloonTarget: BalloonTarget?
    /// RTC offsets per `qom-path` (`""` when the event has none, before QEMU 7.1).
    public var rtcOffsets: [String: RTCOffset] = [:]
    /// rx-filter latches, keyed by NIC name when known, else by QOM path.
    public var nics: [String: NICLatch] = [:]
    /// Block jobs by id; finished ones stay (with their outcome) until 8 newer ones finished.
    public var blockJobs: [String: BlockJob] = [:]
    /// Connected VNC/SPICE clients, keyed `vnc 127.0.0.1:5901` / `spice [::1]:40001`.
    public var displayClients: [String: DisplayClient] = [:]
    /// Last error reply, with the command it answered.
    public var lastError: LastError?
    /// QEMU's version from the greeting or a `query-version` reply (`7.2.0`).
    public var qemuVersion: String?
    /// Connections open at this point (opened, or seen carrying messages, and not closed).
    public var connections: Set<UInt32> = []
    /// The greeting that started the current QEMU process, when the recording shows QEMU
    /// exiting and a new one starting (nil for the first process).
    public var processStart: Int?
    /// The record that explains the current run state (a command, a trigger event, the
    /// event itself); `runStateCause` is its description.
    public var runStateCauseRecord: Int?
    /// Live migration as the source saw it (`migrate`, MIGRATION events, `query-migrate`).
    public var migration: Migration?
    /// `device_del` requests the guest has not completed (no DEVICE_DELETED yet), by device id.
    public var pendingUnplugs: [String: Stamp] = [:]
    /// SHUTDOWN was seen in this QEMU process (so QEMU closing its monitor was an orderly exit).
    public var shutdownSeen = false

    /// A migration (docs/QEMU-FACTS.md, "Migration").
    public struct Migration: Sendable, Equatable {
        /// The last MIGRATION `status` (setup, active, device, completed, failed, cancelled, ...),
        /// or `requested` between a successful `migrate` and the first status.
        public var status: String
        /// The `migrate` command (nil when only events were seen).
        public var command: Stamp?
        /// When `status` was seen.
        public var record: Int
        public var time: Int64
        /// Whether the status is one in which QEMU may still stop the source for switch-over.
        public var inProgress: Bool { !["completed", "failed", "cancelled", "none"].contains(status) }
        public init(status: String, command: Stamp?, record: Int, time: Int64) {
            self.status = status; self.command = command; self.record = record; self.time = time
        }
    }

    public init() {}
}
