import QMP
import Recording

/// A pass over a whole recording that visits only the records its consumers want, the
/// replies those records received, and the greetings and closes, once the recording's
/// reply partners are known (`ReplyPartners`, docs/INDEX.md "Reply partners"). It yields
/// exactly the inputs `InputDriver.step` yields record by record over the whole recording:
/// the rules are the driver's own (`event`, `reply`, `greeting`, `otherLine`); only the
/// bookkeeping that every record feeds (each connection's reply queue, which connections
/// are open) is replaced by what the partners recorded of it. A pass that wants every
/// command (`Interest.allCommands`) reads them all anyway and is not sparse.
struct SparseWalk {
    private let sel: Selection
    private let partners: ReplyPartners
    /// The records to visit, a bit each.
    private var visit: [UInt64]
    /// For a reply to visit, the request it answers (`ReplyPartners.none` for the rest).
    private var requestOf: [UInt32]
    /// For a close, the wanted requests it dropped unanswered, in the order they were sent.
    private var drops: [Int: [Int]] = [:]
    /// The first event from QEMU on a connection other than the first: from there on an
    /// event may be a copy of one delivered on another monitor (`InputDriver.event`).
    private var firstMulti = Int.max
    private var driver = InputDriver()
    /// Records the walk visits.
    private(set) var count = 0

    private static let qemu: UInt8 = 0x40, client: UInt8 = 0x80

    /// The walk for `sel` over `r`, or nil when it cannot be sparse (no partners, every
    /// command wanted, or more names than the index interns).
    init?(_ r: Recording, _ sel: Selection) {
        guard sel.allCommands == 0, r.names.count < InputDriver.overflowID, let p = r.replyPartners, p.count == r.count else { return nil }
        self.sel = sel
        partners = p
        let n = r.count
        visit = [UInt64](repeating: 0, count: (n + 63) >> 6)
        requestOf = [UInt32](repeating: ReplyPartners.none, count: n)
        plan(r, n)
    }

    private mutating func add(_ i: Int) {
        let w = i >> 6, b = UInt64(1) << UInt64(i & 63)
        if visit[w] & b == 0 { visit[w] |= b; count += 1 }
    }

    /// One scan of the index's kind column decides what to visit.
    private mutating func plan(_ r: Recording, _ n: Int) {
        let none = ReplyPartners.none
        let command = RecordKind.command.code | Self.client, other = RecordKind.other.code | Self.client
        let event = RecordKind.event.code | Self.qemu, greeting = RecordKind.greeting.code | Self.qemu
        let ret = RecordKind.return.code | Self.qemu, error = RecordKind.error.code | Self.qemu
        let close = RecordKind.close.code
        let errors = sel.errors != 0, closes = sel.closes != 0
        let kinds = r.kindDirColumn, names = r.nameIDColumn, conns = r.connectionColumn
        let nameCount = min(r.names.count, sel.eventMask.count)
        for i in 0..<n {
            // The columns scanned are given back behind the scan (a recording of any size).
            if i & 0xFFFFF == 0 { r.releaseIndex(below: i) }
            let code = kinds[i]
            switch code {
            case event:
                if firstMulti == .max, conns[i] > 1 { firstMulti = i }
                let id = Int(names[i])
                if id < nameCount, sel.eventMask[id] != 0 { add(i) }
            case command, other:
                // A line that is not a command (`other`) is rare: visited, decided there.
                let id = Int(names[i])
                let wanted = code == other || (id < sel.commandMask.count && sel.commandMask[id] != 0)
                if wanted { add(i) }
                let q = partners[i]
                // A reply or close comes after its request; anything else is a damaged entry
                // (docs/INDEX.md, "Safety"): the request is taken as never answered.
                guard q != none, Int(q) > i, Int(q) < n else { continue }
                let qc = kinds[Int(q)]
                if qc == ret || qc == error {
                    if wanted || (errors && qc == error) {
                        requestOf[Int(q)] = UInt32(truncatingIfNeeded: i)
                        add(Int(q))
                    }
                } else if wanted, qc & 0x0F == close {
                    drops[Int(q), default: []].append(i)
                }
            case error:
                if errors { add(i) }
            case greeting:
                add(i)
            default:
                if closes, code & 0x0F == close { add(i) }
            }
        }
    }

    /// Visits the planned records in order, calling `deliver` as `InputDriver.step` would,
    /// and `passed(i)` every 65,536 records of the recording.
    mutating func run(_ r: Recording, passed: (Int) -> Void, _ deliver: (UInt64, AnalysisInput) -> Void) {
        r.releaseIndex(below: r.count)  // what the plan scanned
        for w in visit.indices {
            if w & 1023 == 0 { passed(w << 6) }
            var bits = visit[w]
            while bits != 0 {
                step(r, w << 6 | bits.trailingZeroBitCount, deliver)
                bits &= bits - 1
            }
        }
    }

    private mutating func step(_ r: Recording, _ i: Int, _ deliver: (UInt64, AnalysisInput) -> Void) {
        let conn = r.connection(i)
        switch r.kind(i) {
        case .event:
            let id = Int(r.nameID(i))
            driver.multiConnection = i >= firstMulti
            driver.event(r, i, id: id, conn: conn, mask: sel.eventMask[id], deliver)
        case .command, .other:
            guard let w = request(r, i) else { return }
            deliver(w.mask, .command(CommandInput(record: i, time: w.command.time, connection: conn, name: w.command.name,
                                                  view: RecordView(recording: r, index: i))))
        case .return, .error:
            let error = r.kind(i) == .error
            let c = requestOf[i]
            let w = c == ReplyPartners.none ? nil : request(r, Int(c), unwanted: true)
            driver.reply(r, i, conn, error: error, waiting: w, errorMask: error ? sel.errors : 0,
                         view: RecordView(recording: r, index: i), deliver)
        case .greeting:
            driver.greeting(r, i, conn, newProcess: partners[i] == 1, sel, deliver)
        case .close:
            let dropped = (drops[i] ?? []).compactMap { request(r, $0)?.command }
            deliver(sel.closes, .close(record: i, time: r.time(i), connection: conn, unanswered: dropped))
        default:
            break
        }
    }

    /// Request `c` as the reply queue held it (`InputDriver.enqueue`): with its consumers
    /// and name when some consumer wants it; nil when none does, unless `unwanted` (then
    /// with no name and no consumer).
    private func request(_ r: Recording, _ c: Int, unwanted: Bool = false) -> InputDriver.Waiting? {
        var name: String, key: IDKey, mask: UInt64
        if r.kind(c) == .other {
            let line = InputDriver.otherLine(r, c)
            name = line.command ?? ""
            key = line.key
            mask = line.command.map { sel.mask(command: $0, in: r) } ?? 0
        } else {
            let id = Int(r.nameID(c))
            name = id < r.names.count ? r.names[id] : ""
            mask = id < sel.commandMask.count ? sel.commandMask[id] : 0
            guard mask != 0 || unwanted else { return nil }
            key = sel.idKeys?[c] ?? RecordView(recording: r, index: c).idKey()
        }
        guard mask != 0 || unwanted else { return nil }
        if mask == 0 { name = "" }
        return InputDriver.Waiting(command: PendingCommand(record: c, time: r.time(c), connection: r.connection(c), name: name, idKey: key), mask: mask)
    }
}
