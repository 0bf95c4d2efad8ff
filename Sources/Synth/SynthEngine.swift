import QMP
import Recording

/// Something that happens at a moment of the simulation. Actions tied to one QEMU process
/// carry its `epoch`; when QEMU exits they are stale and ignored.
enum SynthAction: Sendable {
    /// A QEMU process starts (with `-S`) and the client connects to its monitor.
    case startProcess
    /// The client's periodic poll or control command; always rescheduled.
    case client
    /// The client reconnects after it closed the connection itself (a libvirtd restart).
    case reconnect
    /// A command the client sends in reaction to what it saw.
    case intent(SynthIntent, epoch: Int)
    /// A throttle window of QEMU's monitor ends (docs/QEMU-FACTS.md, "Event throttling").
    case throttle(String, epoch: Int)
    case balloonWrite(epoch: Int)
    /// The guest writes its RTC; `once` is a single write (at boot, or hwclock writing twice) outside the periodic ones.
    case rtcWrite(epoch: Int, once: Bool)
    case rxChange(nic: Int, epoch: Int)
    /// Something the guest does on its own (reboot, watchdog, panic, S3, I/O error ...).
    case guest(epoch: Int)
    case guestDone(SynthGuestFollowUp, epoch: Int)
    case display(epoch: Int)
    case displayEnd(session: Int, epoch: Int)
    case job(serial: Int, epoch: Int)
    case migration(SynthMigrationStep, epoch: Int)
}

/// A time-ordered queue of actions (a binary heap); ties keep insertion order, so the
/// simulation is deterministic.
struct SynthQueue: Sendable {
    struct Item: Sendable {
        var time: Int64
        var seq: UInt64
        var action: SynthAction
    }

    private var heap: [Item] = []
    private var seq: UInt64 = 0

    @inline(__always) private static func less(_ a: Item, _ b: Item) -> Bool {
        a.time < b.time || (a.time == b.time && a.seq < b.seq)
    }

    mutating func push(_ time: Int64, _ action: SynthAction) {
        seq += 1
        heap.append(Item(time: time, seq: seq, action: action))
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard Self.less(heap[i], heap[parent]) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Item? {
        guard !heap.isEmpty else { return nil }
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            let n = heap.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && Self.less(heap[l], heap[m]) { m = l }
                if r < n && Self.less(heap[r], heap[m]) { m = r }
                if m == i { break }
                heap.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}

/// One throttle key's window (monitor/monitor.c): the first event goes out at once and
/// opens a 1 s window; later ones replace each other and the last is sent when the window
/// ends, which opens the next window; an empty window ends the throttling.
struct SynthThrottleWindow: Sendable {
    struct Pending: Sendable {
        var name: String
        var data: JSONObject?
        var created: Int64
    }

    let key: String
    var open = false
    var pending: Pending?
}

/// The simulation behind `Synthesizer`: a libvirt-like client, QEMU's monitor (ordering,
/// throttling, the rx-filter latch) and a guest, advanced action by action. Records are
/// appended to `out` with times that never go back.
struct SynthEngine: Sendable {
    static let second: Int64 = 1_000_000_000

    let profile: SynthProfile
    let startMicros: Int64
    var rng: SplitMix64
    var queue = SynthQueue()
    var out: [SynthIterator.Element] = []
    /// The time of the next record; it only moves forward.
    var now: Int64 = 0

    // The client's monitor connection.
    var connection: UInt32 = 0
    var connected = false
    /// `qmp_capabilities` succeeded: QEMU delivers events (none before, none queued).
    var negotiated = false
    var nextCommandID = 1

    // The QEMU process.
    var epoch = 0
    var qemuAlive = false
    let config: SynthDomainConfig
    var vm: SynthVM
    /// A handful of keys at most: a list is faster than hashing them.
    var throttles: [SynthThrottleWindow] = []

    // Counters that survive QEMU restarts (job ids, client ports).
    var jobSerial = 0
    var sessionSerial = 0
    var pid = 0

    init(seed: UInt64, profile: SynthProfile, startMicros: Int64) {
        self.profile = profile
        self.startMicros = startMicros
        var rng = SplitMix64(seed: seed ^ profile.salt)
        _ = rng.next()
        config = SynthDomainConfig(profile: profile, rng: &rng)
        vm = SynthVM(profile: profile, config: config, rng: &rng)
        pid = 2000 + rng.int(0...60_000)
        let firstPoll = rng.int64(800_000_000...2_500_000_000)
        self.rng = rng
        out.reserveCapacity(64)
        queue.push(0, .startProcess)
        queue.push(firstPoll, .client)
    }

    // MARK: Running

    /// Runs the next action; it may append any number of records (often none).
    mutating func step() {
        guard let item = queue.pop() else {
            // Cannot happen (.client always reschedules itself); keep the stream going anyway.
            queue.push(now + Self.second, .client)
            return
        }
        now = max(now, item.time)
        switch item.action {
        case .startProcess: startProcess()
        case .client: clientTick()
        case .reconnect: reconnect()
        case .intent(let intent, let e):
            if live(e) { perform(intent) }
        case .throttle(let key, let e):
            if live(e) { throttleWindowEnded(key) }
        case .balloonWrite(let e):
            if live(e) { balloonWrite() }
        case .rtcWrite(let e, let once):
            if live(e) { rtcWrite(once: once) }
        case .rxChange(let nic, let e):
            if live(e) { rxChange(nic: nic) }
        case .guest(let e):
            if live(e) { guestActivity() }
        case .guestDone(let f, let e):
            if live(e) { guestFollowUp(f) }
        case .display(let e):
            if live(e) { displayTick() }
        case .displayEnd(let s, let e):
            if live(e) { endDisplaySession(serial: s) }
        case .job(let serial, let e):
            if live(e) { jobTick(serial: serial) }
        case .migration(let step, let e):
            if live(e) { migrationStep(step) }
        }
    }

    @inline(__always) func live(_ e: Int) -> Bool { e == epoch && qemuAlive }

    @inline(__always) mutating func schedule(in delay: Int64, _ action: SynthAction) {
        queue.push(now + max(0, delay), action)
    }

    @inline(__always) mutating func emit(_ body: RecordBody) {
        out.append((time: now, connection: connection, body: body))
    }

    @inline(__always) mutating func advance(_ ns: Int64) { now += max(0, ns) }

    // Random durations.
    @inline(__always) mutating func us(_ lo: Int64, _ hi: Int64) -> Int64 { rng.int64(lo * 1_000...hi * 1_000) }
    @inline(__always) mutating func ms(_ lo: Int64, _ hi: Int64) -> Int64 { rng.int64(lo * 1_000_000...hi * 1_000_000) }
    @inline(__always) mutating func seconds(_ lo: Double, _ hi: Double) -> Int64 {
        rng.int64(Int64(lo * 1e9)...Int64(hi * 1e9))
    }

    /// QEMU to recorder: a message reaches the recorder this long after QEMU wrote it.
    @inline(__always) mutating func transit() -> Int64 { us(15, 120) }

    // MARK: Events

    /// QEMU raises an event now; the recorder gets it after a short transit.
    mutating func raise(_ name: String, _ data: JSONObject? = nil) {
        deliver(name, data, created: now)
    }

    /// Writes an event created at `created` (its timestamp) and delivered now. Events raised
    /// while no client has negotiated are lost (docs/QEMU-FACTS.md, "Wire protocol").
    mutating func deliver(_ name: String, _ data: JSONObject?, created: Int64) {
        advance(transit())
        guard connected && negotiated else { return }
        let micros = startMicros + max(0, created) / 1_000
        emit(.message(from: .qemu, SynthWire.event(name, data, micros: micros)))
    }

    /// A rate-limited event: sent at once when its key's window is closed, otherwise kept
    /// (replacing any kept one) until the window ends, carrying its creation time.
    mutating func raiseThrottled(_ name: String, key: String, _ data: JSONObject?) {
        let i: Int
        if let found = throttles.firstIndex(where: { $0.key == key }) {
            i = found
        } else {
            throttles.append(SynthThrottleWindow(key: key))
            i = throttles.count - 1
        }
        if throttles[i].open {
            throttles[i].pending = .init(name: name, data: data, created: now)
            return
        }
        throttles[i].open = true
        deliver(name, data, created: now)
        schedule(in: Self.second, .throttle(key, epoch: epoch))
    }

    /// Whether an event with this key would go out at once.
    func throttleIsOpen(_ key: String) -> Bool {
        !(throttles.first { $0.key == key }?.open ?? false)
    }

    mutating func throttleWindowEnded(_ key: String) {
        guard let i = throttles.firstIndex(where: { $0.key == key }) else { return }
        if let p = throttles[i].pending {
            throttles[i].pending = nil
            advance(us(50, 2_000))  // the timer callback runs a little late
            deliver(p.name, p.data, created: p.created)
            schedule(in: Self.second, .throttle(key, epoch: epoch))
        } else {
            throttles[i].open = false
        }
    }

    // MARK: Commands

    /// The client sends a command (libvirt ids `libvirt-N`, counted per connection); QEMU
    /// reads and dispatches it a little later.
    @discardableResult
    mutating func send(_ name: String, _ arguments: JSONObject? = nil) -> String {
        let id = "libvirt-\(nextCommandID)"
        nextCommandID += 1
        emit(.message(from: .client, SynthWire.command(name, arguments, id: id)))
        advance(us(30, 250))
        return id
    }

    /// QEMU answers after `work`; by default a fraction of a millisecond, now and then a
    /// few milliseconds more when its main loop was busy.
    mutating func reply(_ value: JSONValue, _ id: String, work: Int64? = nil) {
        advance(work ?? commandWork())
        emit(.message(from: .qemu, SynthWire.reply(value, id: id)))
    }

    mutating func commandWork() -> Int64 {
        rng.chance(0.04) ? ms(1, 25) : us(20, 400)
    }

    mutating func replyEmpty(_ id: String, work: Int64? = nil) {
        reply(.object(JSONObject()), id, work: work)
    }

    mutating func fail(_ errorClass: String, _ desc: String, _ id: String) {
        advance(commandWork())
        emit(.message(from: .qemu, SynthWire.error(errorClass, desc, id: id)))
    }

    // MARK: Connections

    var socketPath: String { "unix:/var/lib/libvirt/qemu/domain-\(epoch)-synth/monitor.sock" }

    /// Opens a monitor connection: greeting, `qmp_capabilities`, then `query-status` as
    /// libvirt does after connecting.
    mutating func connectClient() {
        connection += 1
        connected = true
        negotiated = false
        nextCommandID = 1
        emit(.open(peer: socketPath, info: JSONObject()))
        advance(us(150, 700))
        emit(.message(from: .qemu, SynthWire.greeting))
        advance(us(80, 600))
        let id = send("qmp_capabilities")
        replyEmpty(id)
        negotiated = true
        advance(us(100, 1_500))
        queryStatus()
    }

    /// The client closes its side (libvirtd restarting) and comes back a few seconds later.
    mutating func disconnectClient() {
        guard connected else { return }
        advance(ms(1, 40))
        emit(.close(by: "client", reason: "client closed the connection"))
        connected = false
        negotiated = false
        schedule(in: seconds(1.5, 9), .reconnect)
    }

    mutating func reconnect() {
        guard qemuAlive, !connected else { return }
        connectClient()
    }

    /// QEMU exits: the connection closes from its side and a new process starts later.
    mutating func qemuExited() {
        advance(us(200, 3_000))
        if connected { emit(.close(by: "qemu", reason: "eof")) }
        connected = false
        negotiated = false
        qemuAlive = false
        throttles = []
        schedule(in: seconds(0.8, 4), .startProcess)
    }
}
