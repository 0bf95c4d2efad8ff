import QMP
import Recording

/// The one model of the VM that both the shell's `state` and the analyses fold: small
/// reducers over the inputs `InputDriver` makes of the records (events, commands paired
/// with their replies, closes, greetings), each rule in one place with the QEMU fact
/// behind it in docs/QEMU-FACTS.md.
///
/// `state` is what the VM looked like after the last input. `apply` also returns the
/// incidents that input revealed (a guest panic, an I/O error the guest saw, QEMU gone
/// without SHUTDOWN, ...); `finish` returns those only the end of the recording reveals
/// (an unplug never completed, a follow-up that never came). A value type: the shell keeps
/// copies as checkpoints.
///
/// Example: `var m = VMModel(); for input in inputs { incidents += m.apply(input) }`.
public struct VMModel: Sendable {
    /// What the model reads.
    public static let interest = Interest(
        events: ["STOP", "RESUME", "SUSPEND", "SUSPEND_DISK", "WAKEUP", "SHUTDOWN", "RESET", "POWERDOWN", "GUEST_PANICKED",
                 "GUEST_CRASHLOADED", "WATCHDOG", "BLOCK_IO_ERROR", "BALLOON_CHANGE", "RTC_CHANGE", "NIC_RX_FILTER_CHANGED",
                 "JOB_STATUS_CHANGE", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_ERROR", "BLOCK_JOB_READY",
                 "BLOCK_JOB_PENDING", "VNC_CONNECTED", "VNC_INITIALIZED", "VNC_DISCONNECTED", "SPICE_CONNECTED",
                 "SPICE_INITIALIZED", "SPICE_DISCONNECTED", "MIGRATION", "DEVICE_DELETED", "DEVICE_UNPLUG_GUEST_ERROR"],
        commands: ["stop", "cont", "migrate", "migrate_cancel", "system_wakeup", "system_reset", "balloon", "query-status",
                   "query-balloon", "query-rx-filter", "query-block-jobs", "query-version", "query-migrate", "device_del"],
        closes: true, errorReplies: true)

    /// Keeps `state.connections` equal to the driver's view (which also sees `open` records).
    mutating func syncConnections(_ open: Set<UInt32>) {
        if state.connections != open { state.connections = open }
        lastConnection = .max
    }

    /// A STOP is explained by a trigger event this close before it: QEMU timestamps (µs)
    /// when both carry one, else receive times (ns). docs/QEMU-FACTS.md, "Run states": QEMU
    /// stops the VM in the same main-loop turn that raised the trigger.
    static let triggerWindowMicros: Int64 = 1_000_000
    static let triggerWindowReceive: Int64 = 2_000_000_000
    /// A documented follow-up may be this late; missing ones closer to the end are not reported.
    static let followUpGrace: Int64 = 1_000_000_000
    /// A `system_reset` explains a RESET this long after the command (the reset runs in the
    /// main loop after the reply).
    static let resetRequestWindow: Int64 = 2_000_000_000
    /// RESETs this close together are one reboot (Linux tries several reset methods in a row).
    static let rebootCluster: Int64 = 500_000_000
    /// Guest reboots this many, each within `rebootLoopGap` of the previous, are a reboot loop.
    static let rebootLoopCount = 3
    static let rebootLoopGap: Int64 = 300_000_000_000
    /// Added to a shutdown's cause when the STOP after it shows QEMU stayed up.
    static let noShutdown = "; then STOP: -no-shutdown, QEMU stays up"
    /// Finished block jobs kept in `state` for display.
    static let finishedJobsKept = 8

    /// A command that changes the run state, not yet answered.
    struct RunCommand: Sendable, Equatable {
        var name: String
        var record: Int
        var time: Int64
        var connection: UInt32
    }

    /// An event that explains a STOP (or SHUTDOWN) following it.
    struct Trigger: Sendable, Equatable {
        enum Kind: Sendable, Equatable { case ioError, watchdog, panic, shutdown }
        var kind: Kind
        var text: String
        var record: Int
        var time: Int64
        var stamp: Int64?
    }

    /// A documented follow-up event not seen yet.
    struct Expectation: Sendable, Equatable {
        var trigger: String
        var detail: String
        var expected: String
        var record: Int
        var time: Int64
    }

    public private(set) var state = VMState()
    /// Whether the last NIC_RX_FILTER_CHANGED found its NIC's latch armed (false: an
    /// unrecorded client re-armed it, or the dedup failed).
    public private(set) var lastRxEventFoundArmed = true
    /// The recording the inputs come from (to read a close's `by`, a query's arguments).
    var recording: Recording?
    var runCommands: [RunCommand] = []
    var trigger: Trigger?
    var expectations: [Expectation] = []
    var lastSystemReset: (record: Int, time: Int64)?
    /// Guest-initiated reboots of this process: the record and time of each (first RESET of a cluster).
    var reboots: [(record: Int, time: Int64)] = []
    var lastGuestReset: Int64?
    var rebootLoopReported = false
    /// The connection last added to `state.connections` (most inputs come on the same one).
    var lastConnection: UInt32 = .max

    @inline(__always) mutating func touch(_ c: UInt32) {
        if c != lastConnection {
            state.connections.insert(c)
            lastConnection = c
        }
    }

    public init(recording: Recording? = nil) { self.recording = recording }

    /// Whether the VM is paused for a reason that a person should look at (an error, a panic, a watchdog).
    public var isFaultPause: Bool { Self.isFault(state.runStateCause ?? "") }

    static func isFault(_ cause: String) -> Bool {
        ["BLOCK_IO_ERROR", "WATCHDOG", "guest panic", "query-status says paused (reason: io-error)",
         "query-status says paused (reason: watchdog)", "query-status says panicked", "query-status says paused (reason: internal-error)"]
            .contains { cause.hasPrefix($0) }
    }

    /// `a - b`, saturating: a recording may hold any times (a damaged or hostile file must not
    /// trap), and a difference that does not fit is as far as it can be.
    @inline(__always) func gap(_ a: Int64, _ b: Int64) -> Int64 {
        let (d, overflow) = a.subtractingReportingOverflow(b)
        return overflow ? (a > b ? .max : .min) : d
    }

    // MARK: Applying one input

    @discardableResult
    public mutating func apply(_ input: AnalysisInput) -> [Incident] {
        var out: [Incident] = []
        switch input {
        case .event(let e):
            event(e, &out)
        case .command(let c):
            command(c)
        case .reply(let r):
            reply(r)
        case .close(let record, let time, let connection, let unanswered):
            close(record, time, connection, unanswered, &out)
        case .greeting(let record, let time, let connection, let newProcess):
            touch(connection)
            if newProcess { self.newProcess(record, time, &out) }
            if let r = recording, let m = try? r.record(at: record).message, case .greeting(let g) = m.body, let v = g.version {
                state.qemuVersion = v.description
            }
        }
        return out
    }

    /// What only the end of the recording (at `end`, ns) reveals.
    public func finish(end: Int64, record: Int) -> [Incident] {
        var out: [Incident] = []
        for x in expectations where gap(end, x.time) > Self.followUpGrace {
            out.append(Incident(.warning, "missing-follow-up", subject: "\(x.trigger) (\(x.detail)) → \(x.expected)",
                                "\(x.trigger) (\(x.detail)) is documented to be followed by \(x.expected), which never came",
                                records: [x.record], time: x.time, weight: 1))
        }
        openAtEnd(end: end, endedBy: nil, &out)
        return out
    }

    /// Things still open when the process or the recording ended.
    private func openAtEnd(end: Int64, endedBy: Int?, _ out: inout [Incident]) {
        let why = endedBy.map { "QEMU exited (#\($0)) first" } ?? "by the end of the recording"
        for (id, s) in state.pendingUnplugs.sorted(by: { $0.value.record < $1.value.record })
        where endedBy != nil || gap(end, s.time) > Self.followUpGrace {
            out.append(Incident(.warning, "unplug-incomplete", subject: "device_del \(id)",
                                "device_del \(id) (#\(s.record)): the guest never released the device (no DEVICE_DELETED \(why))",
                                records: [s.record], time: s.time, end: end, weight: Double(gap(end, s.time)) / 1e9))
        }
        if state.runState == .suspended, let since = state.runStateSince, let r = state.runStateRecord {
            out.append(Incident(.warning, "suspended-no-wakeup", subject: "SUSPEND without WAKEUP",
                                "guest suspended (S3) at #\(r) and never woke up (no WAKEUP \(why))",
                                records: [r], time: since, end: end, weight: Double(gap(end, since)) / 1e9))
        }
    }

    // MARK: Process and connections

    private mutating func newProcess(_ record: Int, _ time: Int64, _ out: inout [Incident]) {
        if !state.shutdownSeen {
            out.append(Incident(.error, "qemu-gone", subject: "QEMU ended without SHUTDOWN",
                                "a new QEMU process greeted (#\(record)) without the previous one sending SHUTDOWN: it was killed or crashed",
                                records: [record], time: time, weight: 10))
        }
        openAtEnd(end: time, endedBy: record, &out)
        var s = VMState()
        s.runStateSince = time
        s.runStateRecord = record
        s.runStateCauseRecord = record
        s.runStateCause = "new QEMU process (greeting #\(record))"
        s.lastError = state.lastError
        s.qemuVersion = state.qemuVersion
        s.connections = state.connections
        s.processStart = record
        state = s
        runCommands = []
        trigger = nil
        expectations = []
        lastSystemReset = nil
        reboots = []
        lastGuestReset = nil
        rebootLoopReported = false
    }

    private mutating func close(_ record: Int, _ time: Int64, _ connection: UInt32, _ unanswered: [PendingCommand],
                                _ out: inout [Incident]) {
        state.connections.remove(connection)
        lastConnection = .max
        runCommands.removeAll { $0.connection == connection }
        // Only QEMU's side closing says anything about QEMU (the recorder stopping does not).
        guard let by = closedBy(record), by == "qemu" else { return }
        for p in unanswered {
            out.append(Incident(.warning, "unanswered", subject: p.name,
                                "\(p.name) (#\(p.record)) was never answered: QEMU closed the connection (#\(record))",
                                records: [p.record, record], time: p.time, end: time, weight: Double(gap(time, p.time)) / 1e9))
        }
        if state.connections.isEmpty && !state.shutdownSeen {
            out.append(Incident(.error, "qemu-gone", subject: "QEMU ended without SHUTDOWN",
                                "QEMU closed its monitor (#\(record)) without sending SHUTDOWN: it was killed or crashed"
                                    + (state.runState == .unknown ? "" : " (the VM was \(state.runState.rawValue))"),
                                records: [record], time: time, weight: 10))
            // Reported once per process.
            state.shutdownSeen = true
        }
    }

    /// Who closed a connection: `qemu`, `client`, `recorder` (docs/FORMAT.md).
    private func closedBy(_ record: Int) -> String? {
        guard let r = recording, let rec = try? r.record(at: record), case .close(let by, _) = rec.body else { return nil }
        return by
    }

    // MARK: Commands and replies

    private mutating func command(_ c: CommandInput) {
        touch(c.connection)
        switch c.name {
        case "stop", "cont", "migrate", "system_wakeup":
            runCommands.append(RunCommand(name: c.name, record: c.record, time: c.time, connection: c.connection))
            if runCommands.count > 64 { runCommands.removeFirst(runCommands.count - 64) }
        case "system_reset":
            lastSystemReset = (c.record, c.time)
        case "balloon":
            if let v = c.view.int("arguments", "value") {
                state.balloonTarget = VMState.BalloonTarget(value: v, record: c.record, time: c.time)
            }
        case "device_del":
            // docs/QEMU-FACTS.md, "Hotplug": the reply comes at once; DEVICE_DELETED when the guest lets go.
            if let id = c.view.string("arguments", "id") {
                state.pendingUnplugs[id] = VMState.Stamp(record: c.record, time: c.time)
            }
        default:
            break
        }
    }

    private mutating func reply(_ r: ReplyInput) {
        touch(r.connection)
        let p = r.command
        if let k = runCommands.firstIndex(where: { $0.record == p.record }) {
            let cmd = runCommands.remove(at: k)
            if cmd.name == "migrate", !r.isError {
                state.migration = VMState.Migration(status: "requested", command: VMState.Stamp(record: cmd.record, time: cmd.time),
                                                     record: r.record, time: r.time)
            }
        }
        if r.isError {
            let known = !p.name.isEmpty
            state.lastError = VMState.LastError(errorClass: r.errorClass ?? "", desc: r.errorDesc ?? "", command: known ? p.name : nil,
                                                commandRecord: p.record >= 0 ? p.record : nil, record: r.record, time: r.time, connection: r.connection)
            if state.balloonTarget?.record == p.record { state.balloonTarget?.accepted = false }
            if p.name == "device_del" {
                for (id, s) in state.pendingUnplugs where s.record == p.record { state.pendingUnplugs[id] = nil }
            }
            return
        }
        switch p.name {
        case "query-status":
            guard let ret = r.view.object("return"), let status = ret.string("status") else { return }
            queryStatus(status: status, running: ret.bool("running"), r.record, r.time)
        case "query-balloon":
            if let actual = r.view.int("return", "actual") {
                state.balloon = VMState.Balloon(actual: actual, record: r.record, time: r.time, source: "query-balloon")
            }
        case "balloon":
            if state.balloonTarget?.record == p.record { state.balloonTarget?.accepted = true }
        case "query-rx-filter":
            rearm(name: commandArgumentName(p), VMState.Stamp(record: p.record, time: p.time))
        case "query-block-jobs":
            if let jobs = r.view.value("return")?.arrayValue { queryBlockJobs(jobs, r.record, r.time) }
        case "query-version":
            if let q = r.view.object("return", "qemu"), let major = q.int("major"), let minor = q.int("minor"), let micro = q.int("micro") {
                state.qemuVersion = "\(major).\(minor).\(micro)"
            }
        case "query-migrate":
            if let status = r.view.string("return", "status"), status != "none" {
                migrationStatus(status, r.record, r.time)
            }
        default:
            break
        }
    }

    /// The `name` argument of a `query-rx-filter` command (nil: every NIC).
    private func commandArgumentName(_ p: PendingCommand) -> String? {
        guard let rec = recording else { return nil }
        return RecordView(recording: rec, index: p.record).string("arguments", "name")
    }

    // MARK: Run state

    private mutating func setRun(_ r: VMState.RunState, _ cause: String, causeRecord: Int?, _ i: Int, _ t: Int64) {
        state.runState = r
        state.runStateSince = t
        state.runStateRecord = i
        state.runStateCause = cause
        state.runStateCauseRecord = causeRecord ?? i
    }

    /// The outstanding run-state command named one of `names`, preferring connection `c`.
    private func runCommand(_ names: [String], _ c: UInt32) -> RunCommand? {
        runCommands.last { names.contains($0.name) && $0.connection == c } ?? runCommands.last { names.contains($0.name) }
    }

    /// `query-status`: QEMU's RunState (qapi/run-state.json; docs/QEMU-FACTS.md, "Run states")
    /// mapped onto `VMState.RunState`.
    public static func runState(status: String, running: Bool?) -> VMState.RunState {
        switch status {
        case "running": return .running
        case "suspended": return .suspended
        case "shutdown": return .shutdown
        case "guest-panicked": return .panicked
        case "paused", "inmigrate", "postmigrate", "prelaunch", "finish-migrate", "restore-vm", "save-vm", "watchdog",
             "io-error", "internal-error", "debug", "colo":
            return .paused
        default:
            if let running { return running ? .running : .paused }
            return .unknown
        }
    }

    private mutating func queryStatus(status: String, running: Bool?, _ i: Int, _ t: Int64) {
        state.lastStatus = VMState.StatusReport(status: status, running: running, record: i, time: t)
        let r = Self.runState(status: status, running: running)
        // An answer that agrees keeps the better explanation (and time) already known.
        guard r != state.runState || state.runState == .unknown else { return }
        let cause = "query-status says \(r.rawValue)" + (status == r.rawValue ? "" : " (reason: \(status))")
        setRun(r, cause, causeRecord: i, i, t)
    }

    private func withinTriggerWindow(_ trig: Trigger, stamp: Int64?, time: Int64) -> Bool {
        if let a = trig.stamp, let b = stamp {
            let g = gap(b, a)
            return g <= Self.triggerWindowMicros && g >= -Self.triggerWindowMicros
        }
        return gap(time, trig.time) <= Self.triggerWindowReceive
    }

    private mutating func expect(_ trigger: String, _ detail: String, _ expected: String, _ e: EventInput) {
        expectations.append(Expectation(trigger: trigger, detail: detail, expected: expected, record: e.record, time: e.time))
    }

    private mutating func met(_ event: String) {
        if let k = expectations.firstIndex(where: { $0.expected == event }) { expectations.remove(at: k) }
    }

    private mutating func migrationStatus(_ status: String, _ i: Int, _ t: Int64) {
        let command = state.migration?.command
        state.migration = VMState.Migration(status: status, command: command, record: i, time: t)
    }

    // MARK: Events

    private mutating func event(_ e: EventInput, _ out: inout [Incident]) {
        let i = e.record, t = e.time, c = e.connection
        touch(c)
        let data = e.view.object("data")
        func str(_ k: StaticString) -> String? { data?.string(k) }
        let stamp = e.qemuMicros

        switch e.name {
        case "STOP":
            met("STOP")
            if state.runState == .shutdown {
                // -no-shutdown: QEMU stays up, stopped, in its shutdown state.
                if let cause = state.runStateCause, !cause.hasSuffix(Self.noShutdown) { state.runStateCause = cause + Self.noShutdown }
            } else if state.runState == .panicked {
                // QEMU stops a panicked guest in its guest-panicked state (GUEST_PANICKED came first).
            } else if let cmd = runCommand(["stop"], c) {
                setRun(.paused, "stop command", causeRecord: cmd.record, i, t)
            } else if let m = state.migration, m.inProgress {
                // docs/QEMU-FACTS.md, "Migration": the source stops itself for the switch-over.
                setRun(.paused, "migration switch-over", causeRecord: m.command?.record ?? m.record, i, t)
            } else if let cmd = runCommand(["migrate"], c) {
                setRun(.paused, "migration switch-over", causeRecord: cmd.record, i, t)
            } else if let trig = trigger, withinTriggerWindow(trig, stamp: stamp, time: t) {
                switch trig.kind {
                case .ioError, .watchdog:
                    setRun(.paused, trig.text, causeRecord: trig.record, i, t)
                case .panic:
                    setRun(.panicked, trig.text, causeRecord: trig.record, i, t)
                case .shutdown:
                    setRun(.shutdown, trig.text, causeRecord: trig.record, i, t)
                }
            } else {
                setRun(.paused, "STOP event (no command or trigger seen)", causeRecord: i, i, t)
            }
            trigger = nil
        case "RESUME":
            if let cmd = runCommand(["cont"], c) {
                setRun(.running, "cont command", causeRecord: cmd.record, i, t)
            } else if let m = state.migration, ["failed", "cancelled", "cancelling"].contains(m.status) || m.inProgress {
                setRun(.running, "migration \(m.status == "requested" ? "ended" : m.status): source resumed", causeRecord: m.record, i, t)
            } else {
                setRun(.running, "RESUME event", causeRecord: i, i, t)
            }
            trigger = nil
        case "SUSPEND":
            setRun(.suspended, "guest suspended (S3)", causeRecord: i, i, t)
        case "SUSPEND_DISK":
            break
        case "WAKEUP":
            if let cmd = runCommand(["system_wakeup"], c) {
                setRun(.running, "WAKEUP after system_wakeup", causeRecord: cmd.record, i, t)
            } else {
                setRun(.running, "guest woke up (WAKEUP)", causeRecord: i, i, t)
            }
        case "SHUTDOWN":
            met("SHUTDOWN")
            state.shutdownSeen = true
            var text = "SHUTDOWN"
            if let reason = str("reason") { text += " reason \(reason)" }
            if data?.bool("guest") == true { text += " (guest)" }
            var causeRecord = i
            // A panic with action poweroff is followed by SHUTDOWN guest-panic (docs/QEMU-FACTS.md,
            // "GUEST_PANICKED and GUEST_CRASHLOADED"); no watchdog action is followed by SHUTDOWN.
            if let trig = trigger, trig.kind == .panic, withinTriggerWindow(trig, stamp: stamp, time: t) {
                text = trig.text + " → " + text
                causeRecord = trig.record
            }
            setRun(.shutdown, text, causeRecord: causeRecord, i, t)
            trigger = Trigger(kind: .shutdown, text: text, record: causeRecord, time: t, stamp: stamp)
        case "RESET":
            met("RESET")
            let reason = str("reason"), guest = data?.bool("guest")
            state.lastReset = VMState.Reset(reason: reason, guest: guest, record: i, time: t)
            let byCommand = reason == "host-qmp-system-reset"
                || (reason == nil && guest != true && lastSystemReset.map { gap(t, $0.time) <= Self.resetRequestWindow } == true)
            let byWatchdog = trigger?.kind == .watchdog && withinTriggerWindow(trigger!, stamp: stamp, time: t)
            if !byCommand && !byWatchdog && reason != "subsystem-reset" && reason != "snapshot-load" {
                guestReset(e, reason: reason, &out)
            }
            // What a SHUTDOWN or panic left behind does not explain a STOP after the reset.
            if trigger?.kind == .shutdown || trigger?.kind == .panic { trigger = nil }
            // A reset of a guest that is not running leaves QEMU in prelaunch (docs/QEMU-FACTS.md,
            // "Run states"); after a shutdown or panic that is what lets `cont` work again.
            if state.runState == .shutdown || state.runState == .panicked {
                setRun(.paused, "RESET after \(state.runState.rawValue) (QEMU goes to prelaunch)", causeRecord: i, i, t)
            }
        case "POWERDOWN":
            met("POWERDOWN")
        case "GUEST_PANICKED", "GUEST_CRASHLOADED":
            let action = str("action") ?? "pause"
            var text = "guest panic (\(e.name) action \(action))"
            if let info = data?.string("info", "type") { text += ", \(info) info" }
            let what: String
            switch action {
            case "run": what = "QEMU let it run on (panic action none)"
            case "poweroff": what = "QEMU powered it off"
            default: what = "QEMU paused it"
            }
            out.append(Incident(.error, "guest-panic", subject: "guest panic, action \(action)",
                                "the guest kernel panicked (\(e.name), action \(action)): \(what)",
                                records: [i], time: t, weight: 10))
            if action != "run" && e.name == "GUEST_PANICKED" {
                setRun(.panicked, text, causeRecord: i, i, t)
                trigger = Trigger(kind: .panic, text: text, record: i, time: t, stamp: stamp)
            }
        case "WATCHDOG":
            let action = str("action") ?? "?"
            trigger = Trigger(kind: .watchdog, text: "WATCHDOG (action \(action))", record: i, time: t, stamp: stamp)
            out.append(Incident(.error, "watchdog", subject: "WATCHDOG action \(action)",
                                "the guest's watchdog expired (WATCHDOG action \(action)): the guest stopped feeding it, so it hung or is overloaded",
                                records: [i], time: t, weight: 8))
            // docs/QEMU-FACTS.md, "WATCHDOG actions": what each action is followed by (`shutdown`
            // presses the power button; `poweroff` exits QEMU at once, with no event).
            switch action {
            case "reset": expect("WATCHDOG", "action reset", "RESET", e)
            case "shutdown": expect("WATCHDOG", "action shutdown", "POWERDOWN", e)
            case "poweroff": state.shutdownSeen = true
            case "pause": if state.runState != .paused { expect("WATCHDOG", "action pause", "STOP", e) }
            default: break
            }
        case "BLOCK_IO_ERROR":
            let action = str("action") ?? "?"
            let dev = [str("device"), str("qom-path"), str("node-name")].compactMap { $0 }.first { !$0.isEmpty } ?? "?"
            let op = str("operation") ?? "?"
            let nospace = data?.bool("nospace") == true
            let detail = "\(op)\(nospace ? ", no space" : "")"
            switch action {
            case "stop":
                trigger = Trigger(kind: .ioError, text: "BLOCK_IO_ERROR on \(dev) (\(detail))", record: i, time: t, stamp: stamp)
                // Already paused: QEMU emits no second STOP.
                if state.runState != .paused { expect("BLOCK_IO_ERROR", "on \(dev), action stop", "STOP", e) }
            case "report":
                // docs/QEMU-FACTS.md, "BLOCK_IO_ERROR": the error went to the guest.
                out.append(Incident(.error, "io-error-reported", subject: "BLOCK_IO_ERROR report on \(dev)",
                                    "the guest got an I/O error from \(dev) (\(detail)): BLOCK_IO_ERROR action report",
                                    records: [i], time: t, weight: 5))
            case "ignore":
                out.append(Incident(.warning, "io-error-ignored", subject: "BLOCK_IO_ERROR ignore on \(dev)",
                                    "an I/O error on \(dev) (\(detail)) was hidden from the guest: BLOCK_IO_ERROR action ignore",
                                    records: [i], time: t, weight: 2))
            default:
                break
            }
        case "BALLOON_CHANGE":
            if let actual = data?.int("actual") {
                state.balloon = VMState.Balloon(actual: actual, record: i, time: t, source: "BALLOON_CHANGE")
            }
        case "RTC_CHANGE":
            if let offset = data?.int("offset") {
                state.rtcOffsets[str("qom-path") ?? ""] = VMState.RTCOffset(offset: offset, record: i, time: t)
            }
        case "NIC_RX_FILTER_CHANGED":
            rxFilterChanged(name: str("name"), path: str("path"), i, t)
        case "JOB_STATUS_CHANGE", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_ERROR", "BLOCK_JOB_READY", "BLOCK_JOB_PENDING":
            if let data { blockJobEvent(e.name, data, i, t) }
        case "VNC_CONNECTED", "VNC_INITIALIZED", "VNC_DISCONNECTED", "SPICE_CONNECTED", "SPICE_INITIALIZED", "SPICE_DISCONNECTED":
            if let data { displayEvent(e.name, data, i, t) }
        case "MIGRATION":
            if let status = str("status") {
                migrationStatus(status, i, t)
                if status == "failed" {
                    out.append(Incident(.error, "migration-failed", subject: "migration failed",
                                        "live migration failed (MIGRATION status failed)" + (state.migration?.command.map { ", migrate #\($0.record)" } ?? ""),
                                        records: [state.migration?.command?.record, i].compactMap { $0 }, time: t, weight: 6))
                }
                if status == "completed", state.runState == .paused {
                    state.runStateCause = "migration completed: the source stays paused (postmigrate)"
                }
            }
        case "DEVICE_DELETED":
            if let id = str("device") { state.pendingUnplugs[id] = nil }
        case "DEVICE_UNPLUG_GUEST_ERROR":
            let dev = str("device") ?? str("path") ?? "?"
            out.append(Incident(.error, "unplug-refused", subject: "unplug of \(dev)",
                                "the guest refused to release \(dev) (DEVICE_UNPLUG_GUEST_ERROR)", records: [i], time: t, weight: 4))
        default:
            break
        }
    }

    private mutating func guestReset(_ e: EventInput, reason: String?, _ out: inout [Incident]) {
        let t = e.time
        defer { lastGuestReset = t }
        if let last = lastGuestReset, gap(t, last) <= Self.rebootCluster { return }
        out.append(Incident(.warning, "guest-reset", subject: "RESET not requested by a command",
                            "the VM reset without a system_reset command (RESET\(reason.map { " reason \($0)" } ?? ""))",
                            records: [e.record], time: t, weight: 1))
        if let prev = reboots.last, gap(t, prev.time) > Self.rebootLoopGap { reboots.removeAll() }
        reboots.append((e.record, t))
        if reboots.count >= Self.rebootLoopCount {
            let first = reboots[0]
            out.append(Incident(.error, "reboot-loop", subject: "reboot loop",
                                "reboot loop: the guest reset itself \(reboots.count) times in \(DurationFormat.short(gap(t, first.time))), each within \(DurationFormat.short(Self.rebootLoopGap)) of the previous",
                                records: reboots.map(\.record), time: first.time, end: t, weight: Double(gap(t, first.time)) / 1e9 + 10))
        }
    }

    // MARK: rx-filter latch (docs/QEMU-FACTS.md, "NIC_RX_FILTER_CHANGED")

    /// The key of a NIC: its name when known, else its QOM path.
    public func nicKey(name: String?, path: String?) -> String {
        if let name, !name.isEmpty { return name }
        if let path {
            if let k = state.nics.first(where: { $0.value.path == path })?.key { return k }
            return path
        }
        return "?"
    }

    private mutating func rxFilterChanged(name: String?, path: String?, _ i: Int, _ t: Int64) {
        let key = nicKey(name: name, path: path)
        var n = state.nics[key] ?? VMState.NICLatch(name: name, path: path)
        if name != nil { n.name = name }
        if path != nil { n.path = path }
        if !n.armed { n.eventsWhileDisarmed += 1 }
        lastRxEventFoundArmed = n.armed
        n.armed = false
        n.events += 1
        n.lastEvent = VMState.Stamp(record: i, time: t)
        state.nics[key] = n
    }

    /// A successful `query-rx-filter`: with a name only that NIC, without one every NIC.
    private mutating func rearm(name: String?, _ query: VMState.Stamp) {
        if let name {
            var n = state.nics[name] ?? VMState.NICLatch(name: name, path: nil)
            n.armed = true
            n.lastRearm = query
            state.nics[name] = n
        } else {
            for k in state.nics.keys {
                state.nics[k]!.armed = true
                state.nics[k]!.lastRearm = query
            }
        }
    }

    // MARK: Block jobs (docs/QEMU-FACTS.md, "Block jobs")

    /// Whether an event for a job id that already finished starts a new job with the same id
    /// (ids are unique only among existing jobs, so a dismissed job's id can be reused).
    public static func startsNewJob(previousFinished: Bool, event: String, status: String?) -> Bool {
        guard previousFinished else { return false }
        if event == "JOB_STATUS_CHANGE" { return status == "created" || status == "running" || status == "undefined" }
        return event == "BLOCK_JOB_READY" || event == "BLOCK_JOB_ERROR"
    }

    private mutating func blockJobEvent(_ name: String, _ data: RecordView, _ i: Int, _ t: Int64) {
        let id: String?
        if name == "JOB_STATUS_CHANGE" || name == "BLOCK_JOB_PENDING" {
            id = data.string("id") ?? data.string("device")
        } else {
            id = data.string("device") ?? data.string("id")
        }
        guard let id else { return }
        let status = name == "JOB_STATUS_CHANGE" ? data.string("status") : nil
        var j = state.blockJobs[id] ?? VMState.BlockJob(id: id, lastEvent: "", lastRecord: i, lastTime: t, firstRecord: i)
        if Self.startsNewJob(previousFinished: j.finished, event: name, status: status) {
            j = VMState.BlockJob(id: id, lastEvent: "", lastRecord: i, lastTime: t, firstRecord: i)
        }
        func progress() {
            if let v = data.string("type") { j.type = v }
            if let v = data.int("len") { j.len = v }
            if let v = data.int("offset") { j.offset = v }
            if let v = data.int("speed") { j.speed = v }
        }
        switch name {
        case "JOB_STATUS_CHANGE":
            guard let status else { return }
            let previous = j.status
            j.status = status
            if status == "concluded" {
                j.finished = true
                if j.outcome == nil { j.outcome = previous == "aborting" ? .aborted : .completed }
            } else if status == "null" {
                j.finished = true
            }
        case "BLOCK_JOB_COMPLETED":
            progress()
            j.finished = true
            if let err = data.string("error") {
                j.outcome = .failed
                j.error = err
            } else {
                j.outcome = .completed
            }
        case "BLOCK_JOB_CANCELLED":
            progress()
            j.finished = true
            j.outcome = .cancelled
        case "BLOCK_JOB_ERROR":
            j.error = "\(data.string("operation") ?? "?") error (action \(data.string("action") ?? "?"))"
        case "BLOCK_JOB_READY":
            progress()
            j.ready = true
        case "BLOCK_JOB_PENDING":
            if let v = data.string("type") { j.type = v }
        default:
            return
        }
        j.lastEvent = name
        j.lastRecord = i
        j.lastTime = t
        state.blockJobs[id] = j
        if j.finished { pruneFinishedJobs() }
    }

    private mutating func queryBlockJobs(_ jobs: [JSONValue], _ i: Int, _ t: Int64) {
        for info in jobs {
            guard let id = info["device"]?.stringValue ?? info["id"]?.stringValue else { continue }
            let status = info["status"]?.stringValue
            var j = state.blockJobs[id] ?? VMState.BlockJob(id: id, lastEvent: "", lastRecord: i, lastTime: t, firstRecord: i)
            if j.finished, let s = status, !["concluded", "null", "aborting", "pending", "waiting"].contains(s) {
                j = VMState.BlockJob(id: id, lastEvent: "", lastRecord: i, lastTime: t, firstRecord: i)
            }
            if let v = info["type"]?.stringValue { j.type = v }
            if let v = info["len"]?.int64Value { j.len = v }
            if let v = info["offset"]?.int64Value { j.offset = v }
            if let v = info["speed"]?.int64Value { j.speed = v }
            if let s = status { j.status = s }
            if info["ready"]?.boolValue == true { j.ready = true }
            j.lastEvent = "query-block-jobs"
            j.lastRecord = i
            j.lastTime = t
            state.blockJobs[id] = j
        }
    }

    private mutating func pruneFinishedJobs() {
        while state.blockJobs.values.reduce(0, { $0 + ($1.finished ? 1 : 0) }) > Self.finishedJobsKept {
            guard let oldest = state.blockJobs.values.filter(\.finished).min(by: { $0.lastRecord < $1.lastRecord }) else { return }
            state.blockJobs[oldest.id] = nil
        }
    }

    // MARK: VNC and SPICE

    public static func displayKey(proto: String, host: String, service: String) -> String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "\(proto) \(h):\(service)"
    }

    private mutating func displayEvent(_ name: String, _ data: RecordView, _ i: Int, _ t: Int64) {
        guard let client = data.object("client") else { return }
        let spice = name.hasPrefix("SPICE")
        let proto = spice ? "spice" : "vnc"
        let host = client.string("host") ?? "?"
        let service = client.string("service") ?? client.string("port") ?? "?"
        let key = Self.displayKey(proto: proto, host: host, service: service)
        let auth = data.string("server", "auth")
        switch name {
        case "VNC_CONNECTED", "SPICE_CONNECTED":
            state.displayClients[key] = VMState.DisplayClient(
                proto: proto, host: host, service: service, phase: .connected, since: t, record: i,
                connected: VMState.Stamp(record: i, time: t), auth: auth)
        case "VNC_INITIALIZED", "SPICE_INITIALIZED":
            var d = state.displayClients[key]
                ?? VMState.DisplayClient(proto: proto, host: host, service: service, phase: .initialized, since: t, record: i)
            d.phase = .initialized
            d.since = t
            d.record = i
            if let auth { d.auth = auth }
            if let u = client.string("sasl_username") ?? client.string("x509_dname") { d.user = u }
            if let type = client.int("channel-type") { d.channel = "\(type)/\(client.int("channel-id") ?? 0)" }
            state.displayClients[key] = d
        default:
            state.displayClients[key] = nil
        }
    }
}
