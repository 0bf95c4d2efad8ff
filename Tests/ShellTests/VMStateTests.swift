import QMP
import Recording
import Shell
import Testing

import TestSupport
import Synth
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Building recordings in memory

/// Record lines for hand-made recordings. Times are ns since the start; an event's QEMU
/// timestamp is its record time unless given (µs since the start).
private struct Script {
    static let startSeconds: Int64 = 1_763_632_800
    var lines: [String] = []
    /// The index the next record will have.
    var next: Int { lines.count }

    @discardableResult
    mutating func add(_ line: String) -> Int {
        lines.append(line)
        return lines.count - 1
    }

    @discardableResult
    mutating func open(_ t: Int64, c: Int = 1) -> Int {
        add(#"{"t":\#(t),"c":\#(c),"k":"open","peer":"unix:/run/qmp.sock"}"#)
    }

    @discardableResult
    mutating func close(_ t: Int64, c: Int = 1, by: String = "qemu") -> Int {
        add(#"{"t":\#(t),"c":\#(c),"k":"close","by":"\#(by)","reason":"eof"}"#)
    }

    @discardableResult
    mutating func greeting(_ t: Int64, c: Int = 1, version: (Int, Int, Int) = (7, 2, 0)) -> Int {
        add(#"{"t":\#(t),"c":\#(c),"from":"qemu","k":"greeting","eol":"\r\n","msg":{"QMP": {"version": {"qemu": {"micro": \#(version.2), "minor": \#(version.1), "major": \#(version.0)}, "package": ""}, "capabilities": ["oob"]}}}"#)
    }

    @discardableResult
    mutating func command(_ t: Int64, _ name: String, id: Int?, c: Int = 1, args: String? = nil) -> Int {
        var msg = #"{"execute":"\#(name)""#
        if let args { msg += #","arguments":\#(args)"# }
        if let id { msg += #","id":\#(id)"# }
        msg += "}"
        return add(#"{"t":\#(t),"c":\#(c),"from":"client","k":"command","n":"\#(name)","eol":"\n","msg":\#(msg)}"#)
    }

    @discardableResult
    mutating func reply(_ t: Int64, _ value: String = "{}", id: Int?, c: Int = 1) -> Int {
        let idPart = id.map { #", "id": \#($0)"# } ?? ""
        return add(#"{"t":\#(t),"c":\#(c),"from":"qemu","k":"return","eol":"\r\n","msg":{"return": \#(value)\#(idPart)}}"#)
    }

    @discardableResult
    mutating func error(_ t: Int64, _ cls: String, _ desc: String, id: Int?, c: Int = 1) -> Int {
        let idPart = id.map { #", "id": \#($0)"# } ?? ""
        return add(#"{"t":\#(t),"c":\#(c),"from":"qemu","k":"error","n":"\#(cls)","eol":"\r\n","msg":{"error": {"class": "\#(cls)", "desc": "\#(desc)"}\#(idPart)}}"#)
    }

    @discardableResult
    mutating func event(_ t: Int64, _ name: String, _ data: String? = nil, c: Int = 1, stampMicros: Int64? = nil) -> Int {
        let us = stampMicros ?? t / 1_000
        let sec = Script.startSeconds + us / 1_000_000
        var msg = #"{"timestamp": {"seconds": \#(sec), "microseconds": \#(us % 1_000_000)}, "event": "\#(name)""#
        if let data { msg += #", "data": \#(data)"# }
        msg += "}"
        return add(#"{"t":\#(t),"c":\#(c),"from":"qemu","k":"event","n":"\#(name)","eol":"\r\n","msg":\#(msg)}"#)
    }

    /// Open, greeting and negotiation on connection `c` at time `t` (4 records).
    mutating func connect(_ t: Int64, c: Int = 1, id: Int = 1) {
        open(t, c: c)
        greeting(t + 1_000, c: c)
        command(t + 2_000, "qmp_capabilities", id: id, c: c)
        reply(t + 3_000, id: id, c: c)
    }

    var recording: Recording {
        let header = #"{"qmprec":1,"start_us":1763632800000000,"source":"x","mode":"synthetic"}"#
        let text = ([header] + lines).joined(separator: "\n") + "\n"
        return try! Recording(bytes: FileBytes(bytes: Array(text.utf8)), path: "mem")
    }

    /// The states after every record, from a tracker with tiny checkpoints and one without.
    func states() -> [VMState] {
        let r = recording
        let a = StateTracker(recording: r, checkpointInterval: 3)
        let b = StateTracker(recording: r, checkpointInterval: Int.max)
        let all = (0..<r.count).map { b.state(at: $0) }
        for i in (0..<r.count).reversed() {
            #expect(a.state(at: i) == all[i], "checkpointed state differs at #\(i)")
        }
        return all
    }

    func final() -> VMState { states().last! }
}

private let ms: Int64 = 1_000_000
private let sec: Int64 = 1_000_000_000

// MARK: - Run state

@Test func stopCommandExplainsSTOPAndContExplainsRESUME() {
    var s = Script()
    s.connect(0)
    s.command(10 * ms, "query-status", id: 2)
    let qs = s.reply(11 * ms, #"{"status": "running", "singlestep": false, "running": true}"#, id: 2)
    let stop = s.command(1 * sec, "stop", id: 3)
    let stopEvent = s.event(1 * sec + 300_000, "STOP")
    s.reply(1 * sec + 400_000, id: 3)
    let cont = s.command(5 * sec, "cont", id: 4)
    let resume = s.event(5 * sec + 200_000, "RESUME")
    s.reply(5 * sec + 300_000, id: 4)
    let st = s.states()

    #expect(st[qs - 1].runState == .unknown)
    #expect(st[qs].runState == .running)
    #expect(st[qs].runStateCause == "query-status says running")
    #expect(st[qs].lastStatus == VMState.StatusReport(status: "running", running: true, record: qs, time: 11 * ms))
    #expect(st[stopEvent].runState == .paused)
    #expect(st[stopEvent].runStateSince == 1 * sec + 300_000)
    #expect(st[stopEvent].runStateRecord == stopEvent)
    #expect(st[stopEvent].runStateCause == "stop command")
    #expect(st[stopEvent].runStateCauseRecord == stop)
    #expect(st[resume].runState == .running)
    #expect(st[resume].runStateRecord == resume)
    #expect(st[resume].runStateCause == "cont command")
    #expect(st[resume].runStateCauseRecord == cont)
    #expect(st.last!.runStateCause == "cont command")
    #expect(st.last!.runStateCauseRecord == cont)
}

@Test func blockIOErrorWithActionStopExplainsSTOP() {
    var s = Script()
    s.connect(0)
    s.event(1 * sec, "BLOCK_IO_ERROR", #"{"device": "drive-virtio-disk0", "operation": "write", "action": "stop", "nospace": false, "reason": "Input/output error"}"#)
    let stop1 = s.event(1 * sec + 160_000, "STOP")
    s.event(2 * sec, "RESUME")
    // action report: not a cause of a later STOP.
    s.event(3 * sec, "BLOCK_IO_ERROR", #"{"device": "drive-virtio-disk1", "operation": "read", "action": "report", "nospace": false}"#)
    let stop2 = s.event(3 * sec + 100_000, "STOP")
    s.event(4 * sec, "RESUME")
    // action stop, but the STOP comes more than 1 s later (by QEMU's timestamps).
    s.event(5 * sec, "BLOCK_IO_ERROR", #"{"device": "", "qom-path": "/machine/peripheral/disk1/virtio-backend", "node-name": "n1", "operation": "write", "action": "stop", "nospace": true}"#)
    let stop3 = s.event(6 * sec + 500 * ms, "STOP")
    s.event(7 * sec, "RESUME")
    // An empty device names the disk by its qom-path.
    s.event(8 * sec, "BLOCK_IO_ERROR", #"{"device": "", "qom-path": "/machine/peripheral/disk1/virtio-backend", "node-name": "n1", "operation": "write", "action": "stop", "nospace": true}"#)
    let stop4 = s.event(8 * sec + 1 * ms, "STOP")
    let st = s.states()

    #expect(st[stop1].runState == .paused)
    #expect(st[stop1].runStateCause == "BLOCK_IO_ERROR on drive-virtio-disk0 (write)")
    #expect(st[stop1].runStateRecord == stop1)
    #expect(st[stop2].runStateCause == "STOP event (no command or trigger seen)")
    #expect(st[stop3].runStateCause == "STOP event (no command or trigger seen)")
    #expect(st[stop4].runStateCause == "BLOCK_IO_ERROR on /machine/peripheral/disk1/virtio-backend (write, no space)")
}

@Test func watchdogPauseExplainsSTOPAndAgreeingQueryStatusKeepsIt() {
    var s = Script()
    s.connect(0)
    s.event(1 * sec, "WATCHDOG", #"{"action": "pause"}"#)
    let stop = s.event(1 * sec + 500_000, "STOP")
    s.command(2 * sec, "query-status", id: 2)
    let qs = s.reply(2 * sec + 100_000, #"{"status": "watchdog", "singlestep": false, "running": false}"#, id: 2)
    s.event(3 * sec, "WATCHDOG", #"{"action": "reset"}"#)
    let reset = s.event(3 * sec + 1 * ms, "RESET", #"{"guest": true, "reason": "guest-reset"}"#)
    let st = s.states()

    #expect(st[stop].runState == .paused)
    #expect(st[stop].runStateCause == "WATCHDOG (action pause)")
    // query-status agrees (watchdog is a paused state): the explanation and time stay.
    #expect(st[qs].runStateCause == "WATCHDOG (action pause)")
    #expect(st[qs].runStateRecord == stop)
    #expect(st[qs].lastStatus?.status == "watchdog")
    #expect(st[qs].lastStatus?.running == false)
    // RESET of a paused guest: still paused, reset recorded.
    #expect(st[reset].runState == .paused)
    #expect(st[reset].lastReset == VMState.Reset(reason: "guest-reset", guest: true, record: reset, time: 3 * sec + 1 * ms))
}

@Test func guestPanicIsPanickedAndItsSTOPKeepsIt() {
    var s = Script()
    s.connect(0)
    s.event(10 * ms, "RESUME")
    let panic = s.event(1 * sec, "GUEST_PANICKED", #"{"action": "pause", "info": {"type": "hyper-v", "arg1": 126, "arg2": 0, "arg3": 0, "arg4": 0, "arg5": 0}}"#)
    let stop = s.event(1 * sec + 300_000, "STOP")
    s.command(2 * sec, "cont", id: 2)
    let refused = s.error(2 * sec + 100_000, "GenericError", "Resetting the Virtual Machine is required", id: 2)
    s.command(3 * sec, "system_reset", id: 3)
    s.reply(3 * sec + 100_000, id: 3)
    let reset = s.event(3 * sec + 200_000, "RESET", #"{"guest": false, "reason": "host-qmp-system-reset"}"#)
    let cont = s.command(3 * sec + 10 * ms, "cont", id: 4)
    let resume = s.event(3 * sec + 11 * ms, "RESUME")
    s.reply(3 * sec + 12 * ms, id: 4)
    let st = s.states()

    #expect(st[panic].runState == .panicked)
    #expect(st[panic].runStateCause == "guest panic (GUEST_PANICKED action pause), hyper-v info")
    #expect(st[stop].runState == .panicked)
    #expect(st[stop].runStateRecord == panic)
    #expect(st[refused].runState == .panicked)
    #expect(st[refused].lastError?.command == "cont")
    #expect(st[reset].runState == .paused)
    #expect(st[reset].runStateCause == "RESET after panicked (QEMU goes to prelaunch)")
    #expect(st[resume].runState == .running)
    #expect(st[resume].runStateCause == "cont command")
    #expect(st[resume].runStateCauseRecord == cont)
}

@Test func shutdownWithReasonAndNoShutdownSTOP() {
    var s = Script()
    s.connect(0)
    s.event(10 * ms, "RESUME")
    let shutdown = s.event(1 * sec, "SHUTDOWN", #"{"guest": true, "reason": "guest-shutdown"}"#)
    let stop = s.event(1 * sec + 400_000, "STOP")
    s.command(2 * sec, "query-status", id: 2)
    let qs = s.reply(2 * sec + 100_000, #"{"status": "shutdown", "singlestep": false, "running": false}"#, id: 2)
    s.command(3 * sec, "quit", id: 3)
    s.reply(3 * sec + 100_000, id: 3)
    let quit = s.event(3 * sec + 200_000, "SHUTDOWN", #"{"guest": false, "reason": "host-qmp-quit"}"#)
    let closed = s.close(3 * sec + 300_000)
    let st = s.states()

    #expect(st[shutdown].runState == .shutdown)
    #expect(st[shutdown].runStateCause == "SHUTDOWN reason guest-shutdown (guest)")
    #expect(st[stop].runState == .shutdown)
    #expect(st[stop].runStateRecord == shutdown)
    #expect(st[stop].runStateCause == "SHUTDOWN reason guest-shutdown (guest); then STOP: -no-shutdown, QEMU stays up")
    #expect(st[qs].runStateRecord == shutdown)
    #expect(st[quit].runState == .shutdown)
    #expect(st[quit].runStateCause == "SHUTDOWN reason host-qmp-quit")
    #expect(st[quit].runStateRecord == quit)
    #expect(st[closed].connections.isEmpty)
    #expect(st[closed - 1].connections == [1])
}

@Test func suspendAndWakeup() {
    var s = Script()
    s.connect(0)
    s.event(10 * ms, "RESUME")
    let suspend = s.event(1 * sec, "SUSPEND")
    let wake = s.command(2 * sec, "system_wakeup", id: 2)
    let wakeup = s.event(2 * sec + 100_000, "WAKEUP")
    s.reply(2 * sec + 200_000, id: 2)
    s.event(3 * sec, "SUSPEND")
    let wakeup2 = s.event(4 * sec, "WAKEUP")
    let st = s.states()
    #expect(st[suspend].runState == .suspended)
    #expect(st[suspend].runStateCause == "guest suspended (S3)")
    #expect(st[wakeup].runState == .running)
    #expect(st[wakeup].runStateCause == "WAKEUP after system_wakeup")
    #expect(st[wakeup].runStateCauseRecord == wake)
    #expect(st[wakeup2].runStateCause == "guest woke up (WAKEUP)")
}

@Test func queryStatusValuesAreMapped() {
    let cases: [(String, Bool, VMState.RunState, String)] = [
        ("running", true, .running, "query-status says running"),
        ("paused", false, .paused, "query-status says paused"),
        ("io-error", false, .paused, "query-status says paused (reason: io-error)"),
        ("prelaunch", false, .paused, "query-status says paused (reason: prelaunch)"),
        ("inmigrate", false, .paused, "query-status says paused (reason: inmigrate)"),
        ("postmigrate", false, .paused, "query-status says paused (reason: postmigrate)"),
        ("finish-migrate", false, .paused, "query-status says paused (reason: finish-migrate)"),
        ("internal-error", false, .paused, "query-status says paused (reason: internal-error)"),
        ("suspended", false, .suspended, "query-status says suspended"),
        ("shutdown", false, .shutdown, "query-status says shutdown"),
        ("guest-panicked", false, .panicked, "query-status says panicked (reason: guest-panicked)"),
        ("some-new-state", true, .running, "query-status says running (reason: some-new-state)"),
    ]
    for (status, running, expected, cause) in cases {
        var s = Script()
        s.connect(0)
        s.command(1 * sec, "query-status", id: 2)
        let r = s.reply(1 * sec + 1 * ms, #"{"status": "\#(status)", "singlestep": false, "running": \#(running)}"#, id: 2)
        let st = s.final()
        #expect(st.runState == expected, "\(status)")
        #expect(st.runStateCause == cause, "\(status)")
        #expect(st.runStateRecord == r)
        #expect(st.lastStatus?.status == status)
    }
    // A disagreeing answer corrects the state.
    var s = Script()
    s.connect(0)
    s.event(10 * ms, "RESUME")
    s.command(1 * sec, "query-status", id: 2)
    s.reply(1 * sec + 1 * ms, #"{"status": "paused", "singlestep": false, "running": false}"#, id: 2)
    #expect(s.final().runState == .paused)
    #expect(s.final().runStateCause == "query-status says paused")
}

@Test func resetLeavesRunStateAndIsRecorded() {
    var s = Script()
    s.connect(0)
    let resume = s.event(10 * ms, "RESUME")
    let reset = s.event(1 * sec, "RESET", #"{"guest": true, "reason": "guest-reset"}"#)
    let old = s.event(2 * sec, "RESET")
    let st = s.states()
    #expect(st[reset].runState == .running)
    #expect(st[reset].runStateRecord == resume)
    #expect(st[reset].lastReset == VMState.Reset(reason: "guest-reset", guest: true, record: reset, time: 1 * sec))
    #expect(st[old].lastReset == VMState.Reset(reason: nil, guest: nil, record: old, time: 2 * sec))
}

// MARK: - Balloon and RTC

@Test func balloonFromEventsQueriesAndTarget() {
    var s = Script()
    s.connect(0)
    let target = s.command(1 * sec, "balloon", id: 2, args: #"{"value": 2147483648}"#)
    let pending = target
    let ok = s.reply(1 * sec + 1 * ms, id: 2)
    let change = s.event(2 * sec, "BALLOON_CHANGE", #"{"actual": 3221225472}"#)
    s.command(3 * sec, "query-balloon", id: 3)
    let query = s.reply(3 * sec + 1 * ms, #"{"actual": 2147483648}"#, id: 3)
    let bad = s.command(4 * sec, "balloon", id: 4, args: #"{"value": 1073741824}"#)
    let refused = s.error(4 * sec + 1 * ms, "DeviceNotActive", "No balloon device has been activated", id: 4)
    s.command(5 * sec, "query-balloon", id: 5)
    s.error(5 * sec + 1 * ms, "DeviceNotActive", "No balloon device has been activated", id: 5)
    let st = s.states()

    #expect(st[pending].balloonTarget == VMState.BalloonTarget(value: 2147483648, record: target, time: 1 * sec, accepted: nil))
    #expect(st[ok].balloonTarget?.accepted == true)
    #expect(st[ok].balloon == nil)
    #expect(st[change].balloon == VMState.Balloon(actual: 3221225472, record: change, time: 2 * sec, source: "BALLOON_CHANGE"))
    #expect(st[query].balloon == VMState.Balloon(actual: 2147483648, record: query, time: 3 * sec + 1 * ms, source: "query-balloon"))
    #expect(st[refused].balloonTarget == VMState.BalloonTarget(value: 1073741824, record: bad, time: 4 * sec, accepted: false))
    #expect(st[refused].lastError?.command == "balloon")
    // A failed query leaves the last value.
    #expect(st.last!.balloon?.record == query)
    #expect(st.last!.lastError?.command == "query-balloon")
}

@Test func rtcOffsetsAreAbsoluteAndPerQOMPath() {
    var s = Script()
    s.connect(0)
    s.event(1 * sec, "RTC_CHANGE", #"{"offset": 20, "qom-path": "/machine/unattached/device[8]"}"#)
    let second = s.event(3 * sec, "RTC_CHANGE", #"{"offset": 40, "qom-path": "/machine/unattached/device[8]"}"#)
    let pl031 = s.event(5 * sec, "RTC_CHANGE", #"{"offset": -1, "qom-path": "/machine/unattached/device[3]"}"#)
    let old = s.event(7 * sec, "RTC_CHANGE", #"{"offset": 3600}"#)
    let st = s.final()
    #expect(st.rtcOffsets == [
        "/machine/unattached/device[8]": VMState.RTCOffset(offset: 40, record: second, time: 3 * sec),
        "/machine/unattached/device[3]": VMState.RTCOffset(offset: -1, record: pl031, time: 5 * sec),
        "": VMState.RTCOffset(offset: 3600, record: old, time: 7 * sec),
    ])
}

// MARK: - rx-filter latch

@Test func rxFilterLatchNamedUnnamedAndFailedQueries() {
    var s = Script()
    s.connect(0)
    let e0 = s.event(1 * sec, "NIC_RX_FILTER_CHANGED", #"{"name": "net0", "path": "/machine/peripheral/net0/virtio-backend"}"#)
    let e1 = s.event(1 * sec + 5 * ms, "NIC_RX_FILTER_CHANGED", #"{"name": "net1", "path": "/machine/peripheral/net1/virtio-backend"}"#)
    // A second event for net0 with no query in between: something unrecorded re-armed it.
    let e0b = s.event(2 * sec, "NIC_RX_FILTER_CHANGED", #"{"name": "net0", "path": "/machine/peripheral/net0/virtio-backend"}"#)
    // Named query for net0: only net0 re-armed, and only once the reply is a success.
    let q0 = s.command(3 * sec, "query-rx-filter", id: 2, args: #"{"name": "net0"}"#)
    let r0 = s.reply(3 * sec + 1 * ms, #"[{"name": "net0", "promiscuous": false}]"#, id: 2)
    // A failed query re-arms nothing.
    s.command(4 * sec, "query-rx-filter", id: 3, args: #"{"name": "net1"}"#)
    let failed = s.error(4 * sec + 1 * ms, "GenericError", "invalid net client name: net1", id: 3)
    // A guest reboot does not re-arm.
    let reset = s.event(5 * sec, "RESET", #"{"guest": true, "reason": "guest-reset"}"#)
    // Unnamed query: every NIC.
    s.command(6 * sec, "query-rx-filter", id: 4)
    let all = s.reply(6 * sec + 1 * ms, #"[{"name": "net0"}, {"name": "net1"}]"#, id: 4)
    let e1b = s.event(7 * sec, "NIC_RX_FILTER_CHANGED", #"{"name": "net1", "path": "/machine/peripheral/net1/virtio-backend"}"#)
    // A NIC without an id is known by its path.
    let anon = s.event(8 * sec, "NIC_RX_FILTER_CHANGED", #"{"path": "/machine/peripheral-anon/device[2]/virtio-backend"}"#)
    let anon2 = s.event(9 * sec, "NIC_RX_FILTER_CHANGED", #"{"path": "/machine/peripheral-anon/device[2]/virtio-backend"}"#)
    let st = s.states()

    #expect(st[e0 - 1].nics.isEmpty)
    #expect(st[e0].nics["net0"] == VMState.NICLatch(
        name: "net0", path: "/machine/peripheral/net0/virtio-backend", armed: false,
        lastEvent: .init(record: e0, time: 1 * sec), events: 1))
    #expect(st[e1].nics["net1"]?.armed == false)
    #expect(st[e0b].nics["net0"]?.eventsWhileDisarmed == 1)
    #expect(st[e0b].nics["net0"]?.events == 2)
    #expect(st[q0].nics["net0"]?.armed == false)
    #expect(st[r0].nics["net0"]?.armed == true)
    #expect(st[r0].nics["net0"]?.lastRearm == VMState.Stamp(record: q0, time: 3 * sec))
    #expect(st[r0].nics["net1"]?.armed == false)
    #expect(st[failed].nics["net1"]?.armed == false)
    #expect(st[failed].nics["net1"]?.lastRearm == nil)
    #expect(st[failed].lastError?.command == "query-rx-filter")
    #expect(st[reset].nics["net1"]?.armed == false)
    #expect(st[all].nics["net0"]?.armed == true)
    #expect(st[all].nics["net1"]?.armed == true)
    #expect(st[all].nics["net1"]?.lastRearm?.record == all - 1)
    #expect(st[e1b].nics["net1"] == VMState.NICLatch(
        name: "net1", path: "/machine/peripheral/net1/virtio-backend", armed: false,
        lastEvent: .init(record: e1b, time: 7 * sec), lastRearm: .init(record: all - 1, time: 6 * sec), events: 2))
    let path = "/machine/peripheral-anon/device[2]/virtio-backend"
    #expect(st[anon].nics[path] == VMState.NICLatch(name: nil, path: path, armed: false, lastEvent: .init(record: anon, time: 8 * sec), events: 1))
    #expect(st[anon2].nics[path]?.eventsWhileDisarmed == 1)
    #expect(st[anon2].nics.count == 3)
}

@Test func rxFilterRepliesArePairedPerConnection() {
    var s = Script()
    s.connect(0, c: 1)
    s.connect(10 * ms, c: 2)
    // The same NIC event reaches both monitors: applied once.
    s.event(1 * sec, "NIC_RX_FILTER_CHANGED", #"{"name": "net0", "path": "/p0"}"#, c: 1, stampMicros: 1_000_000)
    s.event(1 * sec + 1 * ms, "NIC_RX_FILTER_CHANGED", #"{"name": "net0", "path": "/p0"}"#, c: 2, stampMicros: 1_000_000)
    s.event(1 * sec + 2 * ms, "NIC_RX_FILTER_CHANGED", #"{"name": "net1", "path": "/p1"}"#, c: 1, stampMicros: 1_001_000)
    s.event(1 * sec + 3 * ms, "NIC_RX_FILTER_CHANGED", #"{"name": "net1", "path": "/p1"}"#, c: 2, stampMicros: 1_001_000)
    // Both clients use id 7: c1 asks about net0 (and fails), c2 about net1 (and succeeds).
    s.command(2 * sec, "query-rx-filter", id: 7, c: 1, args: #"{"name": "net0"}"#)
    s.command(2 * sec + 1 * ms, "query-rx-filter", id: 7, c: 2, args: #"{"name": "net1"}"#)
    let ok = s.reply(2 * sec + 2 * ms, #"[{"name": "net1"}]"#, id: 7, c: 2)
    let bad = s.error(2 * sec + 3 * ms, "GenericError", "net client(net0) isn't a NIC", id: 7, c: 1)
    let st = s.states()
    #expect(st[ok - 3].nics["net0"]?.events == 1)
    #expect(st[ok - 3].nics["net0"]?.eventsWhileDisarmed == 0)
    #expect(st[ok - 3].nics["net1"]?.events == 1)
    #expect(st[ok].nics["net1"]?.armed == true)
    #expect(st[ok].nics["net0"]?.armed == false)
    #expect(st[bad].nics["net0"]?.armed == false)
    #expect(st[bad].lastError?.connection == 1)
    #expect(st[bad].lastError?.commandRecord == ok - 2)
}

// MARK: - Duplicates across connections

@Test func eventsOnSeveralConnectionsAreAppliedOnce() {
    var s = Script()
    s.connect(0, c: 1)
    s.connect(10 * ms, c: 2)
    s.event(20 * ms, "RESUME", c: 1, stampMicros: 20_000)
    s.event(20 * ms + 100_000, "RESUME", c: 2, stampMicros: 20_000)
    // c2 sends stop; QEMU delivers STOP to c1 first, then to c2, then replies on c2.
    let stop = s.command(1 * sec, "stop", id: 9, c: 2)
    let first = s.event(1 * sec + 200_000, "STOP", c: 1, stampMicros: 1_000_150)
    s.event(1 * sec + 300_000, "STOP", c: 2, stampMicros: 1_000_150)
    s.reply(1 * sec + 400_000, id: 9, c: 2)
    // One balloon change seen on both, then a real second change with the same value.
    let b1 = s.event(2 * sec, "BALLOON_CHANGE", #"{"actual": 1073741824}"#, c: 1, stampMicros: 2_000_000)
    s.event(2 * sec + 1 * ms, "BALLOON_CHANGE", #"{"actual": 1073741824}"#, c: 2, stampMicros: 2_000_000)
    let b2 = s.event(3 * sec, "BALLOON_CHANGE", #"{"actual": 1073741824}"#, c: 2, stampMicros: 3_000_000)
    // Jobs: the same status change twice is one.
    s.event(4 * sec, "JOB_STATUS_CHANGE", #"{"id": "j1", "status": "created"}"#, c: 1, stampMicros: 4_000_000)
    let j = s.event(4 * sec + 1 * ms, "JOB_STATUS_CHANGE", #"{"id": "j1", "status": "created"}"#, c: 2, stampMicros: 4_000_000)
    let st = s.states()
    #expect(st[first].runState == .paused)
    #expect(st[first].runStateCause == "stop command")
    #expect(st[first].runStateCauseRecord == stop)
    #expect(st[first + 1].runStateRecord == first)
    #expect(st[first + 2].runStateRecord == first)
    #expect(st[b1 + 1].balloon?.record == b1)
    #expect(st[b2].balloon?.record == b2)
    #expect(st[j].blockJobs["j1"]?.lastRecord == j - 1)
    #expect(st[j].connections == [1, 2])
}

// MARK: - Block jobs

@Test func blockJobLifecycleWithCancellationAndErrors() {
    var s = Script()
    s.connect(0)
    let start = s.command(1 * sec, "blockdev-mirror", id: 2, args: #"{"job-id": "copy-vda", "device": "n1", "target": "n4", "sync": "full"}"#)
    let created = s.event(1 * sec + 1 * ms, "JOB_STATUS_CHANGE", #"{"id": "copy-vda", "status": "created"}"#)
    s.event(1 * sec + 2 * ms, "JOB_STATUS_CHANGE", #"{"id": "copy-vda", "status": "running"}"#)
    s.reply(1 * sec + 3 * ms, id: 2)
    s.command(2 * sec, "query-block-jobs", id: 3)
    let q = s.reply(2 * sec + 1 * ms, #"[{"type": "mirror", "device": "copy-vda", "len": 1000, "offset": 250, "busy": true, "paused": false, "speed": 0, "io-status": "ok", "ready": false, "status": "running", "auto-finalize": true, "auto-dismiss": false}]"#, id: 3)
    s.event(3 * sec, "JOB_STATUS_CHANGE", #"{"id": "copy-vda", "status": "ready"}"#)
    let ready = s.event(3 * sec + 1 * ms, "BLOCK_JOB_READY", #"{"type": "mirror", "device": "copy-vda", "len": 1000, "offset": 1000, "speed": 0}"#)
    s.command(4 * sec, "block-job-cancel", id: 4, args: #"{"device": "copy-vda"}"#)
    s.reply(4 * sec + 1 * ms, id: 4)
    let aborting = s.event(4 * sec + 2 * ms, "JOB_STATUS_CHANGE", #"{"id": "copy-vda", "status": "aborting"}"#)
    let cancelled = s.event(4 * sec + 3 * ms, "BLOCK_JOB_CANCELLED", #"{"type": "mirror", "device": "copy-vda", "len": 1024, "offset": 1024, "speed": 0}"#)
    s.event(4 * sec + 4 * ms, "JOB_STATUS_CHANGE", #"{"id": "copy-vda", "status": "concluded"}"#)
    let dismissed = s.event(4 * sec + 5 * ms, "JOB_STATUS_CHANGE", #"{"id": "copy-vda", "status": "null"}"#)
    // A commit that fails.
    s.event(5 * sec, "JOB_STATUS_CHANGE", #"{"id": "commit-vdb", "status": "created"}"#)
    s.event(5 * sec + 1 * ms, "JOB_STATUS_CHANGE", #"{"id": "commit-vdb", "status": "running"}"#)
    let jobError = s.event(6 * sec, "BLOCK_JOB_ERROR", #"{"device": "commit-vdb", "operation": "read", "action": "report"}"#)
    s.event(6 * sec + 1 * ms, "JOB_STATUS_CHANGE", #"{"id": "commit-vdb", "status": "aborting"}"#)
    s.event(6 * sec + 2 * ms, "BLOCK_JOB_COMPLETED", #"{"type": "commit", "device": "commit-vdb", "len": 500, "offset": 120, "speed": 52428800, "error": "Input/output error"}"#)
    s.event(6 * sec + 3 * ms, "JOB_STATUS_CHANGE", #"{"id": "commit-vdb", "status": "concluded"}"#)
    // A backup that completes (auto-finalize off: PENDING first).
    s.event(7 * sec, "JOB_STATUS_CHANGE", #"{"id": "backup-vda", "status": "created"}"#)
    s.event(7 * sec + 1 * ms, "JOB_STATUS_CHANGE", #"{"id": "backup-vda", "status": "running"}"#)
    s.event(8 * sec, "JOB_STATUS_CHANGE", #"{"id": "backup-vda", "status": "waiting"}"#)
    s.event(8 * sec + 1 * ms, "JOB_STATUS_CHANGE", #"{"id": "backup-vda", "status": "pending"}"#)
    let pending = s.event(8 * sec + 2 * ms, "BLOCK_JOB_PENDING", #"{"type": "backup", "id": "backup-vda"}"#)
    s.event(8 * sec + 3 * ms, "BLOCK_JOB_COMPLETED", #"{"type": "backup", "device": "backup-vda", "len": 64, "offset": 64, "speed": 0}"#)
    let done = s.event(8 * sec + 4 * ms, "JOB_STATUS_CHANGE", #"{"id": "backup-vda", "status": "concluded"}"#)
    let st = s.states()

    #expect(st[start].blockJobs.isEmpty)
    #expect(st[created].blockJobs["copy-vda"] == VMState.BlockJob(
        id: "copy-vda", status: "created", lastEvent: "JOB_STATUS_CHANGE", lastRecord: created, lastTime: 1 * sec + 1 * ms,
        firstRecord: created))
    #expect(st[q].blockJobs["copy-vda"] == VMState.BlockJob(
        id: "copy-vda", type: "mirror", status: "running", offset: 250, len: 1000, speed: 0, lastEvent: "query-block-jobs",
        lastRecord: q, lastTime: 2 * sec + 1 * ms, firstRecord: created))
    #expect(st[ready].blockJobs["copy-vda"]?.ready == true)
    #expect(st[ready].blockJobs["copy-vda"]?.status == "ready")
    #expect(st[ready].blockJobs["copy-vda"]?.offset == 1000)
    #expect(st[aborting].blockJobs["copy-vda"]?.finished == false)
    #expect(st[cancelled].blockJobs["copy-vda"]?.finished == true)
    #expect(st[cancelled].blockJobs["copy-vda"]?.outcome == .cancelled)
    #expect(st[dismissed].blockJobs["copy-vda"] == VMState.BlockJob(
        id: "copy-vda", type: "mirror", status: "null", offset: 1024, len: 1024, speed: 0, ready: true, finished: true,
        outcome: .cancelled, lastEvent: "JOB_STATUS_CHANGE", lastRecord: dismissed, lastTime: 4 * sec + 5 * ms,
        firstRecord: created))
    #expect(st[jobError].blockJobs["commit-vdb"]?.error == "read error (action report)")
    #expect(st[jobError].blockJobs["commit-vdb"]?.finished == false)
    let failed = st[done].blockJobs["commit-vdb"]
    #expect(failed?.outcome == .failed)
    #expect(failed?.error == "Input/output error")
    #expect(failed?.status == "concluded")
    #expect(failed?.speed == 52428800)
    #expect(st[pending].blockJobs["backup-vda"]?.type == "backup")
    #expect(st[pending].blockJobs["backup-vda"]?.finished == false)
    #expect(st[done].blockJobs["backup-vda"]?.outcome == .completed)
    #expect(st[done].blockJobs["backup-vda"]?.finished == true)
    #expect(st[done].blockJobs.count == 3)
}

@Test func finishedJobsAreForgottenAfterEightNewerOnes() {
    var s = Script()
    s.connect(0)
    for k in 0..<12 {
        let t = Int64(k + 1) * sec
        s.event(t, "JOB_STATUS_CHANGE", #"{"id": "job\#(k)", "status": "created"}"#)
        s.event(t + 1 * ms, "BLOCK_JOB_COMPLETED", #"{"type": "stream", "device": "job\#(k)", "len": 1, "offset": 1, "speed": 0}"#)
    }
    s.event(20 * sec, "JOB_STATUS_CHANGE", #"{"id": "live", "status": "running"}"#)
    let st = s.final()
    #expect(Set(st.blockJobs.keys) == Set((4..<12).map { "job\($0)" } + ["live"]))
}

// MARK: - VNC and SPICE

@Test func vncAndSpiceSessions() {
    var s = Script()
    s.connect(0)
    let server = #"{"host": "127.0.0.1", "service": "5900", "family": "ipv4", "websocket": false, "auth": "sasl"}"#
    let client = #"{"host": "192.168.122.31", "service": "33270", "family": "ipv4", "websocket": false}"#
    let connected = s.event(1 * sec, "VNC_CONNECTED", #"{"server": \#(server), "client": \#(client)}"#)
    let initialized = s.event(1 * sec + 200 * ms, "VNC_INITIALIZED", #"{"server": \#(server), "client": {"host": "192.168.122.31", "service": "33270", "family": "ipv4", "websocket": false, "sasl_username": "alice"}}"#)
    let spice = s.event(2 * sec, "SPICE_CONNECTED", #"{"server": {"host": "::1", "port": "5901", "family": "ipv6"}, "client": {"host": "::1", "port": "40001", "family": "ipv6"}}"#)
    let spiceInit = s.event(2 * sec + 5 * ms, "SPICE_INITIALIZED", #"{"server": {"host": "::1", "port": "5901", "family": "ipv6", "auth": "spice"}, "client": {"host": "::1", "port": "40001", "family": "ipv6", "connection-id": 7, "channel-type": 1, "channel-id": 0, "tls": true}}"#)
    let gone = s.event(3 * sec, "VNC_DISCONNECTED", #"{"server": \#(server), "client": \#(client)}"#)
    let spiceGone = s.event(4 * sec, "SPICE_DISCONNECTED", #"{"server": {"host": "::1", "port": "5901", "family": "ipv6"}, "client": {"host": "::1", "port": "40001", "family": "ipv6"}}"#)
    let st = s.states()
    let vnc = "vnc 192.168.122.31:33270"
    #expect(st[connected].displayClients[vnc] == VMState.DisplayClient(
        proto: "vnc", host: "192.168.122.31", service: "33270", phase: .connected, since: 1 * sec, record: connected,
        connected: .init(record: connected, time: 1 * sec), auth: "sasl"))
    #expect(st[initialized].displayClients[vnc] == VMState.DisplayClient(
        proto: "vnc", host: "192.168.122.31", service: "33270", phase: .initialized, since: 1 * sec + 200 * ms,
        record: initialized, connected: .init(record: connected, time: 1 * sec), auth: "sasl", user: "alice"))
    #expect(st[spice].displayClients["spice [::1]:40001"]?.phase == .connected)
    #expect(st[spiceInit].displayClients["spice [::1]:40001"] == VMState.DisplayClient(
        proto: "spice", host: "::1", service: "40001", phase: .initialized, since: 2 * sec + 5 * ms, record: spiceInit,
        connected: .init(record: spice, time: 2 * sec), auth: "spice", channel: "1/0"))
    #expect(st[gone].displayClients[vnc] == nil)
    #expect(st[gone].displayClients.count == 1)
    #expect(st[spiceGone].displayClients.isEmpty)
}

// MARK: - Errors, connections, processes

@Test func lastErrorIsMatchedToItsCommand() {
    var s = Script()
    s.connect(0)
    let a = s.command(1 * sec, "query-cpus-fast", id: 10)
    let b = s.command(1 * sec + 1 * ms, "device_del", id: 11, args: #"{"id": "disk2"}"#)
    let err = s.error(1 * sec + 2 * ms, "DeviceNotFound", "Device 'disk2' not found", id: 11)
    s.reply(1 * sec + 3 * ms, "[]", id: 10)
    let garbage = s.add(#"{"t":2000000000,"c":1,"from":"client","k":"other","text":"garbage here\n"}"#)
    let parse = s.error(2 * sec + 1 * ms, "GenericError", "JSON parse error, invalid keyword 'garbage'", id: nil)
    let unknown = s.error(3 * sec, "GenericError", "stray", id: 99)
    let st = s.states()
    #expect(a < b)
    #expect(st[err].lastError == VMState.LastError(
        errorClass: "DeviceNotFound", desc: "Device 'disk2' not found", command: "device_del", commandRecord: b, record: err,
        time: 1 * sec + 2 * ms, connection: 1))
    #expect(st[parse].lastError?.command == nil)
    #expect(st[parse].lastError?.commandRecord == garbage)
    #expect(st[unknown].lastError?.commandRecord == nil)
    #expect(st[unknown].lastError?.desc == "stray")
}

@Test func connectionsAndQEMUVersion() {
    var s = Script()
    s.open(0, c: 1)
    let greeting = s.greeting(1_000, c: 1, version: (8, 1, 2))
    let o2 = s.open(1 * sec, c: 2)
    let close1 = s.close(2 * sec, c: 1, by: "client")
    let st = s.states()
    #expect(st[0].connections == [1])
    #expect(st[0].qemuVersion == nil)
    #expect(st[greeting].qemuVersion == "8.1.2")
    #expect(st[o2].connections == [1, 2])
    #expect(st[close1].connections == [2])
    #expect(st[close1].processStart == nil)
}

@Test func aNewQEMUProcessStartsOver() {
    var s = Script()
    s.connect(0)
    s.event(10 * ms, "RESUME")
    s.event(1 * sec, "NIC_RX_FILTER_CHANGED", #"{"name": "net0", "path": "/p0"}"#)
    s.event(1 * sec + 1 * ms, "JOB_STATUS_CHANGE", #"{"id": "j", "status": "running"}"#)
    s.command(2 * sec, "query-balloon", id: 2)
    s.error(2 * sec + 1 * ms, "DeviceNotActive", "No balloon device has been activated", id: 2)
    s.event(3 * sec, "SHUTDOWN", #"{"guest": false, "reason": "host-signal"}"#)
    s.close(3 * sec + 1 * ms, c: 1, by: "qemu")
    s.open(5 * sec, c: 2)
    let greeting = s.greeting(5 * sec + 1 * ms, c: 2, version: (7, 2, 1))
    let e = s.event(6 * sec, "NIC_RX_FILTER_CHANGED", #"{"name": "net0", "path": "/p0"}"#, c: 2)
    let st = s.states()
    let fresh = st[greeting]
    #expect(fresh.runState == .unknown)
    #expect(fresh.runStateCause == "new QEMU process (greeting #\(greeting))")
    #expect(fresh.processStart == greeting)
    #expect(fresh.nics.isEmpty)
    #expect(fresh.blockJobs.isEmpty)
    #expect(fresh.qemuVersion == "7.2.1")
    #expect(fresh.lastError?.errorClass == "DeviceNotActive")
    #expect(fresh.connections == [2])
    // The new NIC starts armed: its first event is not "while disarmed".
    #expect(st[e].nics["net0"]?.eventsWhileDisarmed == 0)

    // A client that reconnects to the same QEMU does not start a new process.
    var r = Script()
    r.connect(0)
    r.event(1 * sec, "NIC_RX_FILTER_CHANGED", #"{"name": "net0", "path": "/p0"}"#)
    r.close(2 * sec, c: 1, by: "client")
    r.connect(3 * sec, c: 2)
    r.event(4 * sec, "NIC_RX_FILTER_CHANGED", #"{"name": "net0", "path": "/p0"}"#, c: 2)
    #expect(r.final().processStart == nil)
    #expect(r.final().nics["net0"]?.eventsWhileDisarmed == 1)
}

@Test func unusualRecordLayoutsAreRead() {
    var s = Script()
    s.connect(0)
    // Members reordered (a file rewritten by jq -c).
    let reordered = s.add(#"{"msg":{"timestamp":{"seconds":1763632801,"microseconds":0},"event":"BALLOON_CHANGE","data":{"actual":1024}},"t":1000000000,"c":1,"from":"qemu","k":"event","n":"BALLOON_CHANGE"}"#)
    // Pretty JSON kept in `text`, with a compact `msg`.
    let pretty = s.add(#"{"t":2000000000,"c":1,"from":"qemu","k":"event","n":"RTC_CHANGE","text":"{\n  \"timestamp\": {\"seconds\": 1763632802, \"microseconds\": 0},\n  \"event\": \"RTC_CHANGE\",\n  \"data\": {\"offset\": 7}\n}\r\n","msg":{"timestamp":{"seconds":1763632802,"microseconds":0},"event":"RTC_CHANGE","data":{"offset":7}}}"#)
    // Only base64: {"timestamp":{"seconds":1763632840,"microseconds":0},"event":"RTC_CHANGE","data":{"offset":-5}}
    let b64 = s.add(#"{"t":3000000000,"c":1,"from":"qemu","k":"event","n":"RTC_CHANGE","b64":"eyJ0aW1lc3RhbXAiOnsic2Vjb25kcyI6MTc2MzYzMjg0MCwibWljcm9zZWNvbmRzIjowfSwiZXZlbnQiOiJSVENfQ0hBTkdFIiwiZGF0YSI6eyJvZmZzZXQiOi01fX0NCg=="}"#)
    // A member after `msg` that a later writer might add.
    let after = s.add(#"{"t":4000000000,"c":1,"from":"qemu","k":"event","n":"RTC_CHANGE","msg":{"timestamp": {"seconds": 1763632804, "microseconds": 0}, "event": "RTC_CHANGE", "data": {"offset": 9, "qom-path": "/rtc"}},"x":{"y":{}}}"#)
    // Escapes and non-ASCII text in strings.
    let escaped = s.event(5 * sec, "NIC_RX_FILTER_CHANGED", #"{"name": "n\u00e9t\"0", "path": "/p\/0"}"#)
    // Ids of any JSON type, echoed exactly.
    let objectID = s.add(#"{"t":6000000000,"c":1,"from":"client","k":"command","n":"device_del","msg":{"execute": "device_del", "arguments": {"id": "x"}, "id": {"a": [1, 2.5, null], "b": "q\"uote"}}}"#)
    s.add(#"{"t":6000000001,"c":1,"from":"client","k":"command","n":"query-balloon","msg":{"execute": "query-balloon", "id": "__qmp#00001"}}"#)
    let err = s.add(#"{"t":6100000000,"c":1,"from":"qemu","k":"error","n":"DeviceNotFound","msg":{"error": {"class": "DeviceNotFound", "desc": "Device 'x' not found"}, "id": {"b": "q\"uote", "a": [1, 2.5, null]}}}"#)
    let answer = s.add(#"{"t":6200000000,"c":1,"from":"qemu","k":"return","msg":{"return": {"actual": 4096}, "id": "__qmp#00001"}}"#)
    let st = s.states()
    #expect(st[reordered].balloon?.actual == 1024)
    #expect(st[pretty].rtcOffsets[""]?.offset == 7)
    #expect(st[b64].rtcOffsets[""]?.offset == -5)
    #expect(st[after].rtcOffsets["/rtc"]?.offset == 9)
    #expect(st[escaped].nics["n\u{e9}t\"0"]?.path == "/p/0")
    #expect(st[err].lastError?.command == "device_del")
    #expect(st[err].lastError?.commandRecord == objectID)
    #expect(st[answer].balloon == VMState.Balloon(actual: 4096, record: answer, time: 6_200_000_000, source: "query-balloon"))
}

@Test func renderNamesEachFact() {
    var s = Script()
    s.connect(0)
    s.event(1 * sec, "BLOCK_IO_ERROR", #"{"device": "ide0-hd1", "operation": "write", "action": "stop", "nospace": false}"#)
    let stop = s.event(1 * sec + 1 * ms, "STOP")
    s.event(2 * sec, "BALLOON_CHANGE", #"{"actual": 2147483648}"#)
    s.event(3 * sec, "NIC_RX_FILTER_CHANGED", #"{"name": "net0", "path": "/p0"}"#)
    let r = s.recording
    let tracker = StateTracker(recording: r)
    let last = r.count - 1
    let lines = tracker.render(tracker.state(at: last), at: last)
    #expect(lines.first == "at          #\(last) +00:00:03.000")
    #expect(lines.contains("run state   paused since +00:00:01.001 (#\(stop)): BLOCK_IO_ERROR on ide0-hd1 (write) (#\(stop - 1))"))
    #expect(lines.contains("balloon     2.00 GiB (2147483648) at +00:00:02.000 (#\(stop + 1), BALLOON_CHANGE)"))
    #expect(lines.contains { $0.hasPrefix("nic         net0 disarmed, last event +00:00:03.000") })
    #expect(lines.contains("qemu        7.2.0"))
    #expect(lines.last == "connections c1")
    #expect(tracker.render(VMState(), at: -1).contains("run state   unknown"))
}

@Test func indexesOutsideTheRecording() {
    var s = Script()
    s.connect(0)
    s.event(10 * ms, "RESUME")
    let r = s.recording
    let t = StateTracker(recording: r)
    #expect(t.state(at: -1) == VMState())
    #expect(t.state(at: r.count + 10) == t.state(at: r.count - 1))
    #expect(t.state(at: r.count - 1).runState == .running)
}

// MARK: - Checkpoints

private func temporaryPath(_ name: String) -> String {
    var template = Array("/tmp/qmpreplay-vmstate-XXXXXX".utf8CString)
    let dir = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    return String(cString: dir!) + "/" + name
}

@Test func checkpointsGiveTheSameStatesAsAStraightReplay() throws {
    let path = temporaryPath("mixed.qmprec")
    defer {
        unlink(path)
        rmdir(String(path.dropLast("/mixed.qmprec".count)))
    }
    try Synthesizer(seed: 3, profile: .mixed).write(records: 30_000, to: path)
    let recording = try Recording(path: path)
    #expect(recording.count == 30_000)

    var rng = SplitMix64(seed: 42)
    let indices = (0..<200).map { _ in Int.random(in: 0..<recording.count, using: &rng) }
    // The reference: one replay from the start, without checkpoints, in record order.
    let straight = StateTracker(recording: recording, checkpointInterval: Int.max)
    var expected: [Int: VMState] = [:]
    for i in indices.sorted() { expected[i] = straight.state(at: i) }
    #expect(straight.checkpointCount == 1)

    for interval in [4096, 777] {
        let tracker = StateTracker(recording: recording, checkpointInterval: interval)
        for i in indices {  // random order
            let got = tracker.state(at: i)
            #expect(got == expected[i], "interval \(interval), record #\(i)")
        }
        #expect(tracker.checkpointCount == (indices.max()! + 1) / interval + 1)
    }

    // The synthetic session exercises the state: something of every kind shows up.
    let final = straight.state(at: recording.count - 1)
    #expect(final.runState != .unknown)
    #expect(final.qemuVersion == "7.2.0")
    #expect(!final.nics.isEmpty)
}

@Test func syntheticSessionsHaveConsistentLatches() throws {
    // In the rx-filter profile QEMU's latch is simulated exactly and every re-arming
    // query is recorded, so no event may arrive while a latch is disarmed.
    let path = temporaryPath("rx.qmprec")
    defer {
        unlink(path)
        rmdir(String(path.dropLast("/rx.qmprec".count)))
    }
    try Synthesizer(seed: 11, profile: .rxFilter).write(records: 20_000, to: path)
    let recording = try Recording(path: path)
    let tracker = StateTracker(recording: recording)
    var events = 0
    for i in stride(from: 0, to: recording.count, by: 997) {
        let st = tracker.state(at: i)
        for (_, n) in st.nics {
            #expect(n.eventsWhileDisarmed == 0)
            events += n.events
        }
    }
    #expect(events > 0)
}

// MARK: - The project's recordings

private func projectRecording(_ name: String) throws -> Recording {
    try Recording(path: PackageRoot.recording(name))
}

@Test func lifecycleRecording() throws {
    let r = try projectRecording("lifecycle.qmprec")
    let t = StateTracker(recording: r)
    // #7 stop, #8 STOP, #13 BLOCK_IO_ERROR, #14 STOP, #17 RESET, #19 query-balloon reply, #22 SHUTDOWN.
    #expect(r.name(8) == "STOP" && r.name(14) == "STOP" && r.name(22) == "SHUTDOWN")
    #expect(t.state(at: 6).runState == .running)
    #expect(t.state(at: 8).runState == .paused)
    #expect(t.state(at: 8).runStateCause == "stop command")
    #expect(t.state(at: 8).runStateCauseRecord == 7)
    #expect(t.state(at: 11).runState == .running)
    #expect(t.state(at: 11).runStateCause == "cont command")
    #expect(t.state(at: 11).runStateCauseRecord == 10)
    #expect(t.state(at: 14).runStateCause == "BLOCK_IO_ERROR on drive-virtio-disk0 (write)")
    let end = t.state(at: r.count - 1)
    #expect(end.runState == .shutdown)
    #expect(end.runStateCause == "SHUTDOWN reason host-qmp-quit")
    #expect(end.runStateRecord == 22)
    #expect(end.lastReset?.reason == "host-qmp-system-reset")
    #expect(end.lastReset?.guest == false)
    #expect(end.balloon == VMState.Balloon(actual: 2147483648, record: 19, time: r.time(19), source: "query-balloon"))
    #expect(end.qemuVersion == "7.2.0")
    #expect(end.connections == [1])
    #expect(end.lastError == nil)
}

@Test func rxFilterRecording() throws {
    let r = try projectRecording("rx-filter.qmprec")
    let t = StateTracker(recording: r)
    let mid = t.state(at: 8)
    #expect(mid.nics["net0"]?.armed == false)
    #expect(mid.nics["net1"]?.armed == false)
    #expect(mid.nics["net0"]?.eventsWhileDisarmed == 1)
    let end = t.state(at: r.count - 1)
    #expect(end.nics["net0"] == VMState.NICLatch(
        name: "net0", path: "/machine/peripheral/net0/virtio-backend", armed: true,
        lastEvent: .init(record: 7, time: r.time(7)), lastRearm: .init(record: 11, time: r.time(11)), events: 2,
        eventsWhileDisarmed: 1))
    #expect(end.nics["net1"] == VMState.NICLatch(
        name: "net1", path: "/machine/peripheral/net1/virtio-backend", armed: true,
        lastEvent: .init(record: 8, time: r.time(8)), lastRearm: .init(record: 13, time: r.time(13)), events: 1))
    #expect(end.balloon?.actual == 2147483648)
    #expect(end.balloon?.source == "BALLOON_CHANGE")
    #expect(end.balloonTarget == VMState.BalloonTarget(value: 2147483648, record: 4, time: r.time(4), accepted: true))
    #expect(end.rtcOffsets == ["/machine/unattached/device[8]": VMState.RTCOffset(offset: 2, record: 16, time: r.time(16))])
}

@Test func capsRecording() throws {
    let r = try projectRecording("caps.qmprec")
    let end = StateTracker(recording: r).state(at: r.count - 1)
    #expect(end.qemuVersion == "7.2.0")
    #expect(end.runState == .paused)
    #expect(end.runStateCause == "query-status says paused (reason: prelaunch)")
    #expect(end.lastError?.errorClass == "DeviceNotActive")
    #expect(end.lastError?.command == "query-balloon")
    #expect(end.balloon == nil)
}

@Test func syntheticMixedRecording() throws {
    let r = try projectRecording("synthetic-mixed.qmprec")
    let a = StateTracker(recording: r, checkpointInterval: 64)
    let b = StateTracker(recording: r, checkpointInterval: Int.max)
    for i in stride(from: r.count - 1, through: 0, by: -7) {
        #expect(a.state(at: i) == b.state(at: i), "#\(i)")
    }
    #expect(a.state(at: r.count - 1).qemuVersion == "7.2.0")
}
