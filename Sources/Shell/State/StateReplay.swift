import QMP
import Recording

/// The event and command names the state tracker acts on; everything else is `.none`
/// and skipped without decoding (commands are still paired with their replies).
enum StateName: UInt8, Sendable {
    case none = 0
    // Events.
    case STOP, RESUME, SUSPEND, WAKEUP, SHUTDOWN, RESET, GUEST_PANICKED, WATCHDOG, BLOCK_IO_ERROR
    case BALLOON_CHANGE, RTC_CHANGE, NIC_RX_FILTER_CHANGED
    case JOB_STATUS_CHANGE, BLOCK_JOB_COMPLETED, BLOCK_JOB_CANCELLED, BLOCK_JOB_ERROR, BLOCK_JOB_READY, BLOCK_JOB_PENDING
    case VNC_CONNECTED, VNC_INITIALIZED, VNC_DISCONNECTED, SPICE_CONNECTED, SPICE_INITIALIZED, SPICE_DISCONNECTED
    // Commands.
    case stop, cont, migrate, systemWakeup, balloon, queryStatus, queryBalloon, queryRxFilter, queryBlockJobs, queryVersion

    static let byName: [String: StateName] = {
        var d: [String: StateName] = [:]
        let events: [StateName] = [
            .STOP, .RESUME, .SUSPEND, .WAKEUP, .SHUTDOWN, .RESET, .GUEST_PANICKED, .WATCHDOG, .BLOCK_IO_ERROR,
            .BALLOON_CHANGE, .RTC_CHANGE, .NIC_RX_FILTER_CHANGED, .JOB_STATUS_CHANGE, .BLOCK_JOB_COMPLETED,
            .BLOCK_JOB_CANCELLED, .BLOCK_JOB_ERROR, .BLOCK_JOB_READY, .BLOCK_JOB_PENDING, .VNC_CONNECTED,
            .VNC_INITIALIZED, .VNC_DISCONNECTED, .SPICE_CONNECTED, .SPICE_INITIALIZED, .SPICE_DISCONNECTED,
        ]
        for e in events { d["\(e)"] = e }
        d["stop"] = .stop
        d["cont"] = .cont
        d["migrate"] = .migrate
        d["system_wakeup"] = .systemWakeup
        d["balloon"] = .balloon
        d["query-status"] = .queryStatus
        d["query-balloon"] = .queryBalloon
        d["query-rx-filter"] = .queryRxFilter
        d["query-block-jobs"] = .queryBlockJobs
        d["query-version"] = .queryVersion
        return d
    }()

    var isEvent: Bool { rawValue >= StateName.STOP.rawValue && rawValue <= StateName.SPICE_DISCONNECTED.rawValue }
    var isCommand: Bool { rawValue >= StateName.stop.rawValue }
    /// Commands whose arguments the tracker reads.
    var needsArguments: Bool { self == .balloon || self == .queryRxFilter }
    /// Commands that change the run state; kept outstanding to explain STOP/RESUME/WAKEUP.
    var isRunCommand: Bool { self == .stop || self == .cont || self == .migrate || self == .systemWakeup }
}

/// What the tracker knows about a recording that never changes: the recording and the
/// name code of each interned record name.
struct StateEnv {
    let recording: Recording
    let codes: [StateName]

    init(recording: Recording) {
        self.recording = recording
        codes = recording.names.map { StateName.byName[$0] ?? .none }
    }

    @inline(__always) func code(_ i: Int) -> StateName {
        let id = Int(recording.nameID(i))
        if id < codes.count { return codes[id] }
        // Names beyond the index's table (more than 65,534 distinct ones) are looked up by decoding.
        guard let name = recording.name(i) else { return .none }
        return StateName.byName[name] ?? .none
    }

    @inline(__always) func name(_ i: Int) -> String? {
        let id = Int(recording.nameID(i))
        if id == 0 { return nil }
        if id < recording.names.count { return recording.names[id] }
        return recording.name(i)
    }
}

/// Everything replaying needs besides the recording: the visible `VMState` and the
/// bookkeeping that explains the next records (outstanding commands, recent events for
/// de-duplication, the event that may explain the next STOP). A checkpoint is one of these.
struct StateReplay {
    /// A command that changes the run state, not yet answered.
    struct RunCommand: Equatable {
        var code: StateName
        var name: String
        var record: Int
        var connection: UInt32
    }

    /// An event that explains a STOP following it within 1 s.
    struct Trigger: Equatable {
        enum Kind: Equatable { case ioError, watchdog, panic, shutdown }
        var kind: Kind
        var text: String
        var record: Int
        var time: Int64
        /// QEMU's timestamp, µs since the epoch.
        var stamp: Int64?
    }

    /// An applied event, remembered for a short while to recognise the same event delivered
    /// on another connection (QEMU sends every event to every monitor).
    struct RecentEvent {
        var code: StateName
        var stamp: Int64
        var data: JSONObject?
        var time: Int64
    }

    /// Same event on several connections: same name, timestamp and data, received within this (ns).
    static let dedupWindow: Int64 = 2_000_000_000
    /// A STOP explained by an event before it at most this far (QEMU timestamps, µs; else record times).
    static let triggerWindowMicros: Int64 = 1_000_000
    /// Finished block jobs kept for display.
    static let finishedJobsKept = 8
    /// Outstanding requests above which the oldest are forgotten (a client whose replies
    /// were not recorded must not make checkpoints grow without bound).
    static let pendingLimit = 1_024
    static let pendingKeptPerConnection = 64

    var state = VMState()
    var matcher = ReplyMatcher()
    var pendingCount = 0
    var runCommands: [RunCommand] = []
    var recent: [RecentEvent] = []
    var trigger: Trigger?
    /// QEMU closed the last open connection: the next greeting is a new process.
    var qemuGone = false
    var seenGreeting = false
    /// The connection of the last message, known to be in `state.connections`.
    var lastTouched: UInt32 = 0

    // MARK: Applying one record

    mutating func apply(_ i: Int, _ env: StateEnv) {
        let rec = env.recording
        let c = rec.connection(i)
        switch rec.kind(i) {
        case .open:
            touch(c)
        case .close:
            close(i, c, env)
        case .note:
            break
        case .greeting:
            guard rec.direction(i) == .qemu else { return }
            touch(c)
            greeting(i, c, env)
        case .command:
            guard rec.direction(i) == .client else { return }
            touch(c)
            command(i, c, env)
        case .other:
            guard rec.direction(i) == .client else { return }
            touch(c)
            otherInput(i, c, env)
        case .return:
            guard rec.direction(i) == .qemu else { return }
            touch(c)
            returnReply(i, c, env)
        case .error:
            guard rec.direction(i) == .qemu else { return }
            touch(c)
            errorReply(i, c, env)
        case .event:
            guard rec.direction(i) == .qemu else { return }
            touch(c)
            let code = env.code(i)
            guard code.isEvent else { return }
            event(code, i, c, env)
        }
    }

    @inline(__always) private mutating func touch(_ c: UInt32) {
        if c != 0 && c != lastTouched {
            state.connections.insert(c)
            lastTouched = c
        }
    }

    // MARK: Connections

    private mutating func close(_ i: Int, _ c: UInt32, _ env: StateEnv) {
        var by = ""
        if let r = try? env.recording.record(at: i), case .close(let b, _) = r.body { by = b }
        state.connections.remove(c)
        lastTouched = 0
        pendingCount -= matcher.close(connection: c).count
        runCommands.removeAll { $0.connection == c }
        // QEMU closes its monitors when it exits.
        if by == "qemu" && state.connections.isEmpty { qemuGone = true }
    }

    private mutating func greeting(_ i: Int, _ c: UInt32, _ env: StateEnv) {
        let t = env.recording.time(i)
        if seenGreeting && qemuGone && state.connections.subtracting([c]).isEmpty {
            newProcess(i, t)
        }
        seenGreeting = true
        qemuGone = false
        if let json = messageJSON(i, env), case .greeting(let g) = QMPMessage.classify(json), let v = g.version {
            state.qemuVersion = v.description
        }
    }

    /// QEMU exited and a new process greets: its devices, jobs and clients are new.
    private mutating func newProcess(_ i: Int, _ t: Int64) {
        var s = VMState()
        s.runStateSince = t
        s.runStateRecord = i
        s.runStateCause = "new QEMU process (greeting #\(i))"
        s.lastError = state.lastError
        s.qemuVersion = state.qemuVersion
        s.connections = state.connections
        s.processStart = i
        state = s
        trigger = nil
        recent.removeAll()
    }

    // MARK: Commands and replies

    private mutating func command(_ i: Int, _ c: UInt32, _ env: StateEnv) {
        let code = env.code(i)
        let t = env.recording.time(i)
        var id: JSONValue?
        var args: JSONObject?
        let line = env.recording.lineBytes(i)
        if let msg = StateScan.messageRange(line) {
            var idRange: Range<Int>?
            var argRange: Range<Int>?
            _ = StateScan.forEachMember(line, msg) { k, v in
                if StateScan.equals(line, k, "id") {
                    idRange = v
                } else if StateScan.equals(line, k, "arguments") {
                    argRange = v
                }
            }
            if let r = idRange { id = StateScan.quickValue(line, r) }
            if code.needsArguments, let r = argRange { args = StateScan.parse(line, r)?.objectValue }
        } else if let json = messageJSON(i, env) {
            id = json["id"]
            if code.needsArguments { args = json["arguments"]?.objectValue }
        }
        let name = env.name(i) ?? ""
        matcher.sent(.init(record: i, time: t, name: name, id: id, arguments: args), connection: c)
        pendingCount += 1
        if pendingCount > Self.pendingLimit { trimPending() }
        if code.isRunCommand {
            runCommands.append(RunCommand(code: code, name: name, record: i, connection: c))
        }
        if code == .balloon, let v = args?["value"]?.int64Value {
            state.balloonTarget = VMState.BalloonTarget(value: v, record: i, time: t)
        }
    }

    /// Input that is not a command: QEMU answers it with an error (with its id when it had one).
    private mutating func otherInput(_ i: Int, _ c: UInt32, _ env: StateEnv) {
        let json = messageJSON(i, env)
        let id = json?.objectValue?["id"]
        matcher.sent(.init(record: i, time: env.recording.time(i), name: nil, id: id, arguments: nil), connection: c)
        pendingCount += 1
        if pendingCount > Self.pendingLimit { trimPending() }
    }

    /// Keeps only the newest outstanding requests of each connection.
    private mutating func trimPending() {
        var byConnection: [UInt32: [ReplyMatcher.Pending]] = [:]
        for (c, p) in matcher.outstanding { byConnection[c, default: []].append(p) }
        var m = ReplyMatcher()
        var n = 0
        for c in byConnection.keys.sorted() {
            for p in byConnection[c]!.suffix(Self.pendingKeptPerConnection) {
                m.sent(p, connection: c)
                n += 1
            }
        }
        matcher = m
        pendingCount = n
        runCommands.removeAll { r in !(byConnection[r.connection]?.suffix(Self.pendingKeptPerConnection).contains { $0.record == r.record } ?? false) }
    }

    private mutating func answered(_ id: JSONValue?, _ c: UInt32) -> ReplyMatcher.Pending? {
        guard let p = matcher.reply(id: id, connection: c) else { return nil }
        pendingCount -= 1
        if !runCommands.isEmpty, let k = runCommands.firstIndex(where: { $0.record == p.record }) {
            runCommands.remove(at: k)
        }
        return p
    }

    private mutating func returnReply(_ i: Int, _ c: UInt32, _ env: StateEnv) {
        let line = env.recording.lineBytes(i)
        var id: JSONValue?
        var value: JSONValue?
        var valueRange: Range<Int>?
        var fromJSON = false
        var scanned = false
        let msg = StateScan.messageRange(line)
        func scan() {
            guard !scanned, let msg else { return }
            scanned = true
            var idRange: Range<Int>?
            _ = StateScan.forEachMember(line, msg) { k, v in
                if StateScan.equals(line, k, "id") {
                    idRange = v
                } else if StateScan.equals(line, k, "return") {
                    valueRange = v
                }
            }
            if let r = idRange { id = StateScan.quickValue(line, r) }
        }
        if let msg {
            if let r = StateScan.trailingID(line, msg) {
                id = StateScan.quickValue(line, r)
            } else {
                scan()
            }
        } else if let json = messageJSON(i, env) {
            id = json["id"]
            value = json["return"]
            fromJSON = true
        }
        guard let p = answered(id, c) else { return }
        guard p.name != nil else { return }
        let code = env.code(p.record)
        guard code.isCommand else { return }
        func returned() -> JSONValue? {
            if fromJSON { return value }
            scan()
            return valueRange.flatMap { StateScan.parse(line, $0) }
        }
        let t = env.recording.time(i)
        switch code {
        case .queryStatus:
            guard let v = returned(), let status = v["status"]?.stringValue else { return }
            queryStatus(status: status, running: v["running"]?.boolValue, i, t)
        case .queryBalloon:
            if let actual = returned()?["actual"]?.int64Value {
                state.balloon = VMState.Balloon(actual: actual, record: i, time: t, source: "query-balloon")
            }
        case .balloon:
            if state.balloonTarget?.record == p.record { state.balloonTarget?.accepted = true }
        case .queryRxFilter:
            rearm(name: p.arguments?["name"]?.stringValue, VMState.Stamp(record: p.record, time: p.time))
        case .queryBlockJobs:
            if let jobs = returned()?.arrayValue { queryBlockJobs(jobs, i, t) }
        case .queryVersion:
            if let q = returned()?["qemu"], let major = q["major"]?.int64Value, let minor = q["minor"]?.int64Value,
               let micro = q["micro"]?.int64Value {
                state.qemuVersion = "\(major).\(minor).\(micro)"
            }
        default:
            break
        }
    }

    private mutating func errorReply(_ i: Int, _ c: UInt32, _ env: StateEnv) {
        guard let json = messageJSON(i, env), case .error(let e) = QMPMessage.classify(json) else { return }
        let p = answered(e.id, c)
        if let p, state.balloonTarget?.record == p.record { state.balloonTarget?.accepted = false }
        state.lastError = VMState.LastError(
            errorClass: e.errorClass, desc: e.desc, command: p?.name, commandRecord: p?.record, record: i,
            time: env.recording.time(i), connection: c)
    }

    /// The message of record `i` as JSON: its `msg` member, else the decoded record.
    private func messageJSON(_ i: Int, _ env: StateEnv) -> JSONValue? {
        let line = env.recording.lineBytes(i)
        if let r = StateScan.messageRange(line) {
            if let v = StateScan.parse(line, r) { return v }
            if let exact = StateScan.exactValue(line, r), let v = StateScan.parse(line, exact) { return v }
        }
        return (try? env.recording.record(at: i))?.message?.json
    }

    /// An event's QEMU timestamp (µs since the epoch) and data, reading only those members.
    private func eventParts(_ i: Int, _ env: StateEnv) -> (stamp: Int64?, data: JSONObject?)? {
        let line = env.recording.lineBytes(i)
        if let msg = StateScan.messageRange(line) {
            var tsRange: Range<Int>?
            var dataRange: Range<Int>?
            var isEvent = false
            let ok = StateScan.forEachMember(line, msg) { k, v in
                if StateScan.equals(line, k, "timestamp") {
                    tsRange = v
                } else if StateScan.equals(line, k, "data") {
                    dataRange = v
                } else if StateScan.equals(line, k, "event") {
                    isEvent = true
                }
            }
            if ok && isEvent {
                var stamp: Int64?
                if let ts = tsRange {
                    var sec: Int64?
                    var us: Int64?
                    _ = StateScan.forEachMember(line, ts) { k, v in
                        if StateScan.equals(line, k, "seconds") {
                            sec = StateScan.integer(line, v)
                        } else if StateScan.equals(line, k, "microseconds") {
                            us = StateScan.integer(line, v)
                        }
                    }
                    if let sec, let us { stamp = sec &* 1_000_000 &+ us }
                }
                var data: JSONObject?
                if let d = dataRange {
                    guard let v = StateScan.parse(line, d) else { return nil }
                    data = v.objectValue
                }
                if tsRange == nil || stamp != nil { return (stamp, data) }
            }
        }
        // Anything unusual (negative seconds, escapes in keys...): decode in full.
        guard let json = messageJSON(i, env), case .event(let e) = QMPMessage.classify(json) else { return nil }
        return (e.timestamp?.totalMicroseconds, e.data)
    }

    // MARK: Run state

    private mutating func setRun(_ r: VMState.RunState, _ cause: String, _ i: Int, _ t: Int64) {
        state.runState = r
        state.runStateSince = t
        state.runStateRecord = i
        state.runStateCause = cause
    }

    /// The outstanding run-state command of one of `codes`, preferring connection `c`.
    private func runCommand(_ codes: [StateName], _ c: UInt32) -> RunCommand? {
        runCommands.last { codes.contains($0.code) && $0.connection == c } ?? runCommands.last { codes.contains($0.code) }
    }

    /// `query-status`: QEMU's RunState (qapi/run-state.json) mapped onto `VMState.RunState`.
    static func runState(status: String, running: Bool?) -> VMState.RunState {
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
        setRun(r, cause, i, t)
    }

    private func withinTriggerWindow(_ trig: Trigger, stamp: Int64?, time: Int64) -> Bool {
        if let a = trig.stamp, let b = stamp { return b - a <= Self.triggerWindowMicros && b >= a - Self.triggerWindowMicros }
        return time - trig.time <= Self.triggerWindowMicros * 1_000
    }

    // MARK: Events

    private mutating func event(_ code: StateName, _ i: Int, _ c: UInt32, _ env: StateEnv) {
        guard let (stamp, data) = eventParts(i, env) else { return }
        let t = env.recording.time(i)
        if let stamp {
            // The same event delivered to several monitors is applied once.
            if !recent.isEmpty {
                recent.removeAll { t - $0.time > Self.dedupWindow }
                if recent.contains(where: { $0.code == code && $0.stamp == stamp && $0.data == data }) { return }
            }
            recent.append(RecentEvent(code: code, stamp: stamp, data: data, time: t))
            if recent.count > 64 { recent.removeFirst(recent.count - 64) }
        }
        func str(_ k: String) -> String? { data?[k]?.stringValue }

        switch code {
        case .STOP:
            if let cmd = runCommand([.stop, .migrate], c) {
                setRun(.paused, "\(cmd.name) command (#\(cmd.record))", i, t)
            } else if let trig = trigger, withinTriggerWindow(trig, stamp: stamp, time: t) {
                switch trig.kind {
                case .ioError, .watchdog:
                    setRun(.paused, trig.text, i, t)
                case .panic:
                    // QEMU stops a panicked guest in its guest-panicked state.
                    if state.runState != .panicked { setRun(.panicked, trig.text, trig.record, trig.time) }
                case .shutdown:
                    // -no-shutdown: QEMU stays, stopped, in its shutdown state.
                    if state.runState != .shutdown { setRun(.shutdown, trig.text, trig.record, trig.time) }
                    state.runStateCause = (state.runStateCause ?? trig.text) + "; STOP (#\(i)): -no-shutdown, QEMU stays up"
                }
            } else {
                setRun(.paused, "STOP event", i, t)
            }
            trigger = nil
        case .RESUME:
            if let cmd = runCommand([.cont], c) {
                setRun(.running, "cont command (#\(cmd.record))", i, t)
            } else {
                setRun(.running, "RESUME event", i, t)
            }
            trigger = nil
        case .SUSPEND:
            setRun(.suspended, "SUSPEND (guest entered S3)", i, t)
        case .WAKEUP:
            if let cmd = runCommand([.systemWakeup], c) {
                setRun(.running, "WAKEUP after system_wakeup (#\(cmd.record))", i, t)
            } else {
                setRun(.running, "WAKEUP event", i, t)
            }
        case .SHUTDOWN:
            var text = "SHUTDOWN"
            if let reason = str("reason") { text += " reason \(reason)" }
            if data?["guest"]?.boolValue == true { text += " (guest)" }
            setRun(.shutdown, text, i, t)
            trigger = Trigger(kind: .shutdown, text: text, record: i, time: t, stamp: stamp)
        case .RESET:
            state.lastReset = VMState.Reset(reason: str("reason"), guest: data?["guest"]?.boolValue, record: i, time: t)
            // What a SHUTDOWN or panic left behind does not explain a STOP after the reset.
            if trigger?.kind == .shutdown || trigger?.kind == .panic { trigger = nil }
            // A reset of a guest that is not running leaves QEMU in prelaunch (system/runstate.c,
            // main_loop_should_exit); after a shutdown or panic that is what lets `cont` work again.
            if state.runState == .shutdown || state.runState == .panicked {
                setRun(.paused, "RESET after \(state.runState.rawValue) (QEMU goes to prelaunch)", i, t)
            }
        case .GUEST_PANICKED:
            let action = str("action") ?? "pause"
            var text = "guest panic (GUEST_PANICKED action \(action))"
            if let info = data?["info"]?["type"]?.stringValue { text += ", \(info) info" }
            if action != "run" {
                setRun(.panicked, text, i, t)
                trigger = Trigger(kind: .panic, text: text, record: i, time: t, stamp: stamp)
            }
        case .WATCHDOG:
            if str("action") == "pause" {
                trigger = Trigger(kind: .watchdog, text: "WATCHDOG pause", record: i, time: t, stamp: stamp)
            }
        case .BLOCK_IO_ERROR:
            if str("action") == "stop" {
                let dev = [str("device"), str("qom-path"), str("node-name")].compactMap { $0 }.first { !$0.isEmpty } ?? "?"
                trigger = Trigger(
                    kind: .ioError, text: "BLOCK_IO_ERROR on \(dev) (action stop)", record: i, time: t, stamp: stamp)
            }
        case .BALLOON_CHANGE:
            if let actual = data?["actual"]?.int64Value {
                state.balloon = VMState.Balloon(actual: actual, record: i, time: t, source: "BALLOON_CHANGE")
            }
        case .RTC_CHANGE:
            if let offset = data?["offset"]?.int64Value {
                state.rtcOffsets[str("qom-path") ?? ""] = VMState.RTCOffset(offset: offset, record: i, time: t)
            }
        case .NIC_RX_FILTER_CHANGED:
            rxFilterChanged(name: str("name"), path: str("path"), i, t)
        case .JOB_STATUS_CHANGE, .BLOCK_JOB_COMPLETED, .BLOCK_JOB_CANCELLED, .BLOCK_JOB_ERROR, .BLOCK_JOB_READY,
             .BLOCK_JOB_PENDING:
            blockJobEvent(code, data, i, t)
        case .VNC_CONNECTED, .VNC_INITIALIZED, .VNC_DISCONNECTED, .SPICE_CONNECTED, .SPICE_INITIALIZED,
             .SPICE_DISCONNECTED:
            displayEvent(code, data, i, t)
        default:
            break
        }
    }

    // MARK: rx-filter latch

    /// The key of a NIC: its name when known, else its QOM path.
    private func nicKey(name: String?, path: String?) -> String {
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
        n.armed = false
        n.events += 1
        n.lastEvent = VMState.Stamp(record: i, time: t)
        state.nics[key] = n
    }

    /// A successful `query-rx-filter` (`query` is the command): with a name only that NIC,
    /// without one every NIC.
    private mutating func rearm(name: String?, _ query: VMState.Stamp) {
        let stamp = query
        if let name {
            var n = state.nics[name] ?? VMState.NICLatch(name: name, path: nil)
            n.armed = true
            n.lastRearm = stamp
            state.nics[name] = n
        } else {
            for k in state.nics.keys {
                state.nics[k]!.armed = true
                state.nics[k]!.lastRearm = stamp
            }
        }
    }

    // MARK: Block jobs

    private mutating func blockJobEvent(_ code: StateName, _ data: JSONObject?, _ i: Int, _ t: Int64) {
        guard let data else { return }
        let id: String?
        if code == .JOB_STATUS_CHANGE || code == .BLOCK_JOB_PENDING {
            id = data["id"]?.stringValue ?? data["device"]?.stringValue
        } else {
            id = data["device"]?.stringValue ?? data["id"]?.stringValue
        }
        guard let id else { return }
        var j = state.blockJobs[id] ?? VMState.BlockJob(id: id, lastEvent: "", lastRecord: i, lastTime: t, firstRecord: i)
        func progress() {
            if let v = data["type"]?.stringValue { j.type = v }
            if let v = data["len"]?.int64Value { j.len = v }
            if let v = data["offset"]?.int64Value { j.offset = v }
            if let v = data["speed"]?.int64Value { j.speed = v }
        }
        switch code {
        case .JOB_STATUS_CHANGE:
            guard let status = data["status"]?.stringValue else { return }
            if status == "created" && j.finished {
                j = VMState.BlockJob(id: id, lastEvent: "", lastRecord: i, lastTime: t, firstRecord: i)
            }
            let previous = j.status
            j.status = status
            if status == "concluded" {
                j.finished = true
                if j.outcome == nil { j.outcome = previous == "aborting" ? .aborted : .completed }
            } else if status == "null" {
                j.finished = true
            }
        case .BLOCK_JOB_COMPLETED:
            progress()
            j.finished = true
            if let err = data["error"]?.stringValue {
                j.outcome = .failed
                j.error = err
            } else {
                j.outcome = .completed
            }
        case .BLOCK_JOB_CANCELLED:
            progress()
            j.finished = true
            j.outcome = .cancelled
        case .BLOCK_JOB_ERROR:
            let op = data["operation"]?.stringValue ?? "?"
            let action = data["action"]?.stringValue ?? "?"
            j.error = "\(op) error (action \(action))"
        case .BLOCK_JOB_READY:
            progress()
            j.ready = true
        case .BLOCK_JOB_PENDING:
            if let v = data["type"]?.stringValue { j.type = v }
        default:
            return
        }
        j.lastEvent = "\(code)"
        j.lastRecord = i
        j.lastTime = t
        state.blockJobs[id] = j
        if j.finished { pruneFinishedJobs() }
    }

    private mutating func queryBlockJobs(_ jobs: [JSONValue], _ i: Int, _ t: Int64) {
        for info in jobs {
            guard let id = info["device"]?.stringValue ?? info["id"]?.stringValue else { continue }
            let status = info["status"]?.stringValue
            var j = state.blockJobs[id]
                ?? VMState.BlockJob(id: id, lastEvent: "", lastRecord: i, lastTime: t, firstRecord: i)
            if j.finished, let s = status, !["concluded", "null", "aborting", "pending", "waiting"].contains(s) {
                // Same id, a new job.
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
            guard let oldest = state.blockJobs.values.filter(\.finished).min(by: { $0.lastRecord < $1.lastRecord })
            else { return }
            state.blockJobs[oldest.id] = nil
        }
    }

    // MARK: VNC and SPICE

    static func displayKey(proto: String, host: String, service: String) -> String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "\(proto) \(h):\(service)"
    }

    private mutating func displayEvent(_ code: StateName, _ data: JSONObject?, _ i: Int, _ t: Int64) {
        guard let client = data?["client"] else { return }
        let spice = code == .SPICE_CONNECTED || code == .SPICE_INITIALIZED || code == .SPICE_DISCONNECTED
        let proto = spice ? "spice" : "vnc"
        let host = client["host"]?.stringValue ?? "?"
        let service = client["service"]?.stringValue ?? client["port"]?.stringValue ?? "?"
        let key = Self.displayKey(proto: proto, host: host, service: service)
        let auth = data?["server"]?["auth"]?.stringValue
        switch code {
        case .VNC_CONNECTED, .SPICE_CONNECTED:
            state.displayClients[key] = VMState.DisplayClient(
                proto: proto, host: host, service: service, phase: .connected, since: t, record: i,
                connected: VMState.Stamp(record: i, time: t), auth: auth)
        case .VNC_INITIALIZED, .SPICE_INITIALIZED:
            var d = state.displayClients[key]
                ?? VMState.DisplayClient(proto: proto, host: host, service: service, phase: .initialized, since: t, record: i)
            d.phase = .initialized
            d.since = t
            d.record = i
            if let auth { d.auth = auth }
            if let u = client["sasl_username"]?.stringValue ?? client["x509_dname"]?.stringValue { d.user = u }
            if let type = client["channel-type"]?.int64Value {
                d.channel = "\(type)/\(client["channel-id"]?.int64Value ?? 0)"
            }
            state.displayClients[key] = d
        default:
            state.displayClients[key] = nil
        }
    }
}
