import QMP
import Recording

/// Which records are wanted, by interned name id: a bit per consumer (an analysis, or the
/// VM model). Built once per pass from the consumers' `Interest`s.
struct Selection: Sendable {
    var eventMask: [UInt64]
    var commandMask: [UInt64]
    var allCommands: UInt64 = 0
    var closes: UInt64 = 0
    var errors: UInt64 = 0
    var anyCommands = false
    /// The recording's id keys (docs/INDEX.md, "Reply pairing"), when the pass pairs
    /// replies: then no command or reply nobody wants is read. Nil: each is read.
    var idKeys: IDKeys?

    init(recording r: Recording, interests: [(bit: UInt64, interest: Interest)]) {
        let n = r.names.count + 1
        eventMask = [UInt64](repeating: 0, count: n)
        commandMask = [UInt64](repeating: 0, count: n)
        for (bit, it) in interests {
            for e in it.events { if let id = r.nameID(for: e) { eventMask[Int(id)] |= bit } }
            for c in it.commands { if let id = r.nameID(for: c) { commandMask[Int(id)] |= bit }; anyCommands = true }
            if it.allCommands { allCommands |= bit; anyCommands = true }
            if it.closes { closes |= bit }
            if it.errorReplies { errors |= bit; anyCommands = true }
        }
    }

    /// The consumers of a command named `name` (looked up by name: for lines the index did
    /// not name).
    func mask(command name: String, in r: Recording) -> UInt64 {
        var mask = allCommands
        if let id = r.nameID(for: name), Int(id) < commandMask.count { mask |= commandMask[Int(id)] }
        return mask
    }
}

/// Turns records, in order, into what the analyses and the VM model consume (`AnalysisInput`):
/// the one place where replies are paired with commands (`ReplyQueue`: by id value, per
/// connection), where the copies of one event delivered to several monitors are recognised,
/// and where a new QEMU process is detected. The analyses' runner and the shell's state
/// tracker both drive records through it, so they cannot disagree on these rules.
///
/// A value type: the shell keeps copies of it as checkpoints.
struct InputDriver: Sendable {
    /// A command waiting for its reply, with the consumers that want the reply.
    struct Waiting: Equatable, Sendable {
        var command: PendingCommand
        var mask: UInt64
    }

    struct Connection: Equatable, Sendable {
        var queue = ReplyQueue<Waiting>()
        var greeted = false
        var isOpen = false
    }

    /// An event recently delivered, to recognise its copy on another monitor.
    struct Recent: Equatable, Sendable {
        var nameID: UInt16
        var stamp: Int64
        var connection: UInt32
        var time: Int64
    }

    /// docs/QEMU-FACTS.md, "Wire protocol": QEMU writes each event to every monitor at once;
    /// the same name and QEMU timestamp on another connection within this window is a copy.
    static let duplicateWindow: Int64 = 1_000_000_000
    /// Outstanding requests kept per connection (a client whose replies were not recorded
    /// must not make memory, and the shell's checkpoints, grow without bound).
    static let pendingKept = 1_024

    /// Per connection number, a slot in `conns` (a dictionary lookup only when the
    /// connection changes from one record to the next).
    private var slotOf: [UInt32: Int] = [:]
    private var conns: [Connection] = []
    private var numbers: [UInt32] = []
    private var lastConn: UInt32 = .max
    private var lastSlot = 0
    private var recent: [Recent] = []
    var multiConnection = false
    /// Connections open (greeted or carrying messages, not closed), and a counter that
    /// changes whenever the set does.
    private(set) var open: Set<UInt32> = []
    private(set) var openVersion = 0
    /// QEMU closed its last open connection: the next greeting is a new process.
    private var qemuGone = false
    /// When set, what pairing decides is written there (`ReplyPartners`); a pass over the
    /// whole recording sets it to make them.
    var partners: PartnerSink?

    @inline(__always) private mutating func slot(_ c: UInt32) -> Int {
        if c == lastConn { return lastSlot }
        let s: Int
        if let found = slotOf[c] {
            s = found
        } else {
            s = conns.count
            slotOf[c] = s
            conns.append(Connection())
            numbers.append(c)
        }
        lastConn = c
        lastSlot = s
        return s
    }

    /// Marks connection slot `s` open (`c` its number).
    @inline(__always) private mutating func touch(_ s: Int, _ c: UInt32) {
        if !conns[s].isOpen {
            conns[s].isOpen = true
            open.insert(c)
            openVersion &+= 1
        }
    }

    /// Names the index could not intern (more than 65534 distinct) are resolved per record.
    static let overflowID = Int(UInt16.max)

    @inline(__always) private func nameID(_ r: Recording, _ i: Int) -> (Int, String?) {
        var id = Int(r.nameID(i))
        var overflow: String?
        if id == Self.overflowID {
            overflow = r.name(i) ?? ""
            id = Int(r.nameID(for: overflow!) ?? 0)
        }
        return (id, overflow)
    }

    /// Applies record `i`; calls `deliver(mask, input)` for what it yields (at most a few inputs).
    mutating func step(_ r: Recording, _ i: Int, _ sel: Selection, _ deliver: (UInt64, AnalysisInput) -> Void) {
        let kind = r.kind(i)
        let conn = r.connection(i)
        switch kind {
        case .event:
            guard r.direction(i) == .qemu else { return }
            if conn > 1 { multiConnection = true }
            touch(slot(conn), conn)
            let (id, _) = nameID(r, i)
            let mask = id < sel.eventMask.count ? sel.eventMask[id] : 0
            guard mask != 0 else { return }
            event(r, i, id: id, conn: conn, mask: mask, deliver)
        case .command:
            guard sel.anyCommands, r.direction(i) == .client else { return }
            let (id, overflow) = nameID(r, i)
            let mask = (id < sel.commandMask.count ? sel.commandMask[id] : 0) | sel.allCommands
            if mask == 0, let key = sel.idKeys?[i] {
                // A command no consumer wants: only its place in the reply queue matters.
                enqueue(i, r.time(i), conn, name: "", key: key, mask: 0)
                return
            }
            let view = RecordView(recording: r, index: i)
            let name = overflow ?? (id < r.names.count ? r.names[id] : "")
            command(r, i, conn, name: name, key: sel.idKeys?[i] ?? view.idKey(), mask: mask, view: view, deliver)
        case .other:
            guard sel.anyCommands, r.direction(i) == .client else { return }
            let line = Self.otherLine(r, i)
            if let name = line.command {
                command(r, i, conn, name: name, key: line.key, mask: sel.mask(command: name, in: r), view: RecordView(recording: r, index: i), deliver)
            } else {
                let sl = slot(conn)
                touch(sl, conn)
                conns[sl].queue.sent(
                    line.key, Waiting(command: PendingCommand(record: i, time: r.time(i), connection: conn, name: "", idKey: line.key), mask: 0))
            }
        case .return, .error:
            guard sel.anyCommands, r.direction(i) == .qemu else { return }
            let sl = slot(conn)
            touch(sl, conn)
            let errorMask = kind == .error ? sel.errors : 0
            guard !conns[sl].queue.isEmpty || errorMask != 0 else { return }
            let view = RecordView(recording: r, index: i)
            let w = conns[sl].queue.isEmpty ? nil : conns[sl].queue.reply(sel.idKeys?[i] ?? view.idKey())
            if let w, let p = partners { p.values[w.command.record] = UInt32(truncatingIfNeeded: i) }
            reply(r, i, conn, error: kind == .error, waiting: w, errorMask: errorMask, view: view, deliver)
        case .close:
            let sl = slot(conn)
            if open.remove(conn) != nil { openVersion &+= 1 }
            var by = ""
            if let rec = try? r.record(at: i), case .close(let b, _) = rec.body { by = b }
            if by == "qemu" && open.isEmpty { qemuGone = true }
            let dropped = conns[sl].queue.outstanding
            if let p = partners { for w in dropped { p.values[w.command.record] = UInt32(truncatingIfNeeded: i) } }
            conns[sl] = Connection()
            let mask = sel.closes | (dropped.isEmpty ? 0 : sel.allCommands)
            if mask != 0 {
                deliver(mask, .close(record: i, time: r.time(i), connection: conn, unanswered: dropped.compactMap { (w: Waiting) -> PendingCommand? in w.command.name.isEmpty ? nil : w.command }))
            }
        case .greeting:
            guard r.direction(i) == .qemu else { return }
            let sl = slot(conn)
            let c = conns[sl]
            // A second greeting on one connection, or one after QEMU closed every connection,
            // is a new QEMU process (docs/QEMU-FACTS.md, "Wire protocol"): nothing sent
            // before it will be answered, and everything VM-scoped starts over.
            let newProcess = c.greeted || (qemuGone && open.subtracting([conn]).isEmpty)
            qemuGone = false
            conns[sl] = Connection(queue: ReplyQueue(), greeted: true, isOpen: c.isOpen)
            touch(sl, conn)
            if newProcess, let p = partners { p.values[i] = 1 }
            greeting(r, i, conn, newProcess: newProcess, sel, deliver)
        case .open:
            touch(slot(conn), conn)
        default:
            break
        }
    }

    /// An event some consumer wants (`mask`), unless it is the copy of one just delivered
    /// on another monitor.
    mutating func event(_ r: Recording, _ i: Int, id: Int, conn: UInt32, mask: UInt64, _ deliver: (UInt64, AnalysisInput) -> Void) {
        let t = r.time(i)
        let view = RecordView(recording: r, index: i)
        if let stamp = view.qemuMicros {
            if !recent.isEmpty, t - recent[0].time > Self.duplicateWindow { recent.removeAll { t - $0.time > Self.duplicateWindow } }
            if multiConnection, recent.contains(where: { $0.nameID == UInt16(truncatingIfNeeded: id) && $0.stamp == stamp && $0.connection != conn }) {
                return
            }
            recent.append(Recent(nameID: UInt16(truncatingIfNeeded: id), stamp: stamp, connection: conn, time: t))
        }
        deliver(mask, .event(EventInput(record: i, time: t, connection: conn, name: r.names[id], view: view)))
    }

    /// A client line that the index could not read as a command: QEMU answers whatever it
    /// read (an error for what is not a command), in order; and it executes what its parser
    /// accepts beyond strict JSON (single quotes). Its command name, when it is one, and the
    /// key its reply will carry.
    static func otherLine(_ r: Recording, _ i: Int) -> (command: String?, key: IDKey) {
        let rec = try? r.record(at: i)
        if let m = rec?.message, case .command(let c) = m.body { return (c.name, IDKey(value: c.id)) }
        return (nil, IDKey(value: rec?.message?.json?["id"]))
    }

    /// Delivers reply `i` (an error when `error`) to the consumers of the command it answers
    /// (`waiting`, nil when it answers none) and to those of every error reply.
    func reply(_ r: Recording, _ i: Int, _ conn: UInt32, error: Bool, waiting w: Waiting?, errorMask: UInt64, view: RecordView,
                       _ deliver: (UInt64, AnalysisInput) -> Void) {
        let mask = (w?.mask ?? 0) | errorMask
        guard mask != 0 else { return }
        let command = w?.command ?? PendingCommand(record: -1, time: r.time(i), connection: conn, name: "", idKey: .none)
        let cls: String? = error ? (r.name(i) ?? view.string("error", "class") ?? "") : nil
        deliver(mask, .reply(ReplyInput(record: i, time: r.time(i), connection: conn, command: command, errorClass: cls, view: view)))
    }

    mutating func greeting(_ r: Recording, _ i: Int, _ conn: UInt32, newProcess: Bool, _ sel: Selection,
                                   _ deliver: (UInt64, AnalysisInput) -> Void) {
        if newProcess { recent.removeAll() }
        if sel.closes != 0 {
            deliver(sel.closes, .greeting(record: i, time: r.time(i), connection: conn, newProcess: newProcess))
        }
    }

    /// Puts a command in its connection's reply queue (its name kept only when wanted).
    private mutating func enqueue(_ i: Int, _ time: Int64, _ conn: UInt32, name: String, key: IDKey, mask: UInt64) {
        let sl = slot(conn)
        touch(sl, conn)
        let p = PendingCommand(record: i, time: time, connection: conn, name: mask == 0 ? "" : name, idKey: key)
        conns[sl].queue.sent(key, Waiting(command: p, mask: mask))
        if conns[sl].queue.count > Self.pendingKept { conns[sl].queue.keepNewest(Self.pendingKept) }
    }

    private mutating func command(_ r: Recording, _ i: Int, _ conn: UInt32, name: String, key: IDKey, mask: UInt64, view: RecordView,
                                  _ deliver: (UInt64, AnalysisInput) -> Void) {
        let time = r.time(i)
        enqueue(i, time, conn, name: name, key: key, mask: mask)
        if mask != 0 { deliver(mask, .command(CommandInput(record: i, time: time, connection: conn, name: name, view: view))) }
    }

    /// The reply partners of the whole recording `r` (docs/INDEX.md, "Reply partners"): one
    /// pass that only pairs, delivering nothing, for a caller about to walk sparsely.
    @Sendable static func replyPartners(_ r: Recording, _ keys: IDKeys) -> ReplyPartners {
        var sel = Selection(recording: r, interests: [])
        sel.anyCommands = true
        sel.idKeys = keys
        var driver = InputDriver()
        let sink = PartnerSink(count: r.count)
        driver.partners = sink
        var pages = PassedPages(r.bytes)
        for i in 0..<r.count {
            if i & 0xFFFF == 0 { pages.passed(r.offset(i)) }
            driver.step(r, i, sel) { _, _ in }
        }
        return ReplyPartners(array: sink.values)
    }

    /// Commands outstanding on every connection, oldest first per connection.
    var outstanding: [PendingCommand] {
        conns.indices.sorted { numbers[$0] < numbers[$1] }.flatMap { conns[$0].queue.outstanding.map(\.command) }.filter { !$0.name.isEmpty }
    }
}

/// Where a pass writes the reply partners it finds (`ReplyPartners`): one value per record.
final class PartnerSink: @unchecked Sendable {
    var values: [UInt32]
    init(count: Int) { values = [UInt32](repeating: ReplyPartners.none, count: count) }
}

/// What the VM model reads of a recording, built once per recording (the shell's state
/// tracker keeps one).
public final class ModelSelection: Sendable {
    let selection: Selection
    public init(recording: Recording) {
        selection = Selection(recording: recording, interests: [(1, VMModel.interest)])
    }
}

/// The VM model driven record by record, with the driver's bookkeeping: what the shell's
/// `state` replays, and keeps copies of as checkpoints.
///
/// Example: `var f = ModelFold(recording: r); for i in 0..<r.count { f.apply(i, sel) }; f.model.state`.
public struct ModelFold: Sendable {
    var driver = InputDriver()
    public private(set) var model: VMModel
    private var syncedVersion = 0

    public init(recording: Recording) { model = VMModel(recording: recording) }

    /// Reads from `recording` from now on: the same file grown (`Recording.extended()`),
    /// whose records keep their numbers, so the fold goes on where it stopped.
    public mutating func rebind(to recording: Recording) { model.recording = recording }

    /// Applies record `i` (records must come in order).
    public mutating func apply(_ i: Int, _ selection: ModelSelection) {
        Self.step(&driver, &model, i, selection.selection)
        if driver.openVersion != syncedVersion {
            model.syncConnections(driver.open)
            syncedVersion = driver.openVersion
        }
    }

    /// The driver and the model as two separate `inout`s, so the model can be mutated from
    /// the delivery closure without copying either.
    private static func step(_ d: inout InputDriver, _ m: inout VMModel, _ i: Int, _ sel: Selection) {
        guard let r = m.recording else { return }
        d.step(r, i, sel) { _, input in m.apply(input) }
    }
}
