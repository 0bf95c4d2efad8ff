import QMP
import Recording

/// A type-erased analysis the runner can feed (one box per analysis in a pass).
class AnalysisBox {
    let index: Int
    init(index: Int) { self.index = index }
    func consume(_ input: AnalysisInput) {}
    func finish() -> any AnalysisResult { fatalError("abstract") }
    var interest: Interest { Interest() }
}

final class TypedBox<A: Analysis>: AnalysisBox {
    var analysis: A
    init(_ a: A, index: Int) { analysis = a; super.init(index: index) }
    override func consume(_ input: AnalysisInput) { analysis.consume(input) }
    override func finish() -> any AnalysisResult { analysis.finish() }
    override var interest: Interest { A.interest }
}

/// One pass over a range of a recording, feeding several analyses at once.
///
/// Filtering happens on the index: a record is looked at only when its kind and interned
/// name are of interest to some analysis, so most records cost a couple of array reads.
///
/// Commands are paired with their replies here, once for all analyses, and only for the
/// commands some analysis asked for (`Interest.commands`, `allCommands`): the others are
/// merely counted, from the index, without reading their bytes. A reply is read (its `id`
/// bytes only) when a command of interest is waiting on its connection:
/// - a command with an `id` is answered by the reply that echoes it (QMP-NOTES.md,
///   "Reply": the id is echoed exactly), the oldest such command first;
/// - a command without one is answered in order (QMP-NOTES.md, "Ordering without oob":
///   one request at a time, replies in order per connection): by the reply whose rank
///   among the connection's replies equals the command's rank among its requests (a
///   client line that is not a command counts too: QEMU answers it with an error).
/// A new greeting or a `close` on a connection drops what was waiting there.
struct AnalysisRunner {
    let context: AnalysisContext
    let boxes: [AnalysisBox]

    /// How far apart (receive time) copies of one event on several monitors may arrive.
    static let duplicateWindow: Int64 = 1_000_000_000

    /// A command of interest waiting for its reply.
    struct Waiting {
        var command: PendingCommand
        /// Rank among the requests on its connection (0-based, since the greeting).
        var rank: Int
        /// The analyses that want its reply.
        var mask: UInt64
    }

    /// Per connection: requests and replies seen since the greeting, and what waits.
    struct Connection {
        var requests = 0
        var replies = 0
        var waiting: [Waiting] = []
    }

    func run(progress: ((Int, Int) -> Void)?) {
        let r = context.recording
        let nameCount = r.names.count + 1
        var eventMask = [UInt64](repeating: 0, count: nameCount)
        var commandMask = [UInt64](repeating: 0, count: nameCount)
        var allCommandsMask: UInt64 = 0
        var closeMask: UInt64 = 0
        var anyCommands = false
        for b in boxes {
            let bit = UInt64(1) << UInt64(b.index)
            let it = b.interest
            for e in it.events { if let id = r.nameID(for: e) { eventMask[Int(id)] |= bit } }
            for c in it.commands { if let id = r.nameID(for: c) { commandMask[Int(id)] |= bit }; anyCommands = true }
            if it.allCommands { allCommandsMask |= bit; anyCommands = true }
            if it.closes { closeMask |= bit }
        }
        // Names the index could not intern (more than 65534 distinct) are resolved per record.
        let overflowID = Int(UInt16.max)

        var connections: [Connection] = []
        var slotOf: [UInt32: Int] = [:]
        var lastConn: UInt32 = .max
        var lastSlot = -1
        @inline(__always) func slot(_ conn: UInt32) -> Int {
            if conn == lastConn { return lastSlot }
            let s: Int
            if let found = slotOf[conn] { s = found } else { s = connections.count; slotOf[conn] = s; connections.append(Connection()) }
            lastConn = conn
            lastSlot = s
            return s
        }

        var recent: [(nameID: UInt16, stamp: Int64, connection: UInt32, time: Int64)] = []
        var multiConnection = false
        let total = context.endRecord - context.firstRecord
        var i = context.firstRecord
        let end = context.endRecord

        func deliver(_ mask: UInt64, _ input: AnalysisInput) {
            var m = mask
            while m != 0 {
                let b = m.trailingZeroBitCount
                boxes[b].consume(input)
                m &= m - 1
            }
        }

        /// Ends a connection's QMP session: what waited there will never be answered.
        func drop(_ s: Int, at i: Int, _ conn: UInt32, always: Bool) {
            let dropped = connections[s].waiting
            connections[s] = Connection()
            if closeMask != 0 && always || (!dropped.isEmpty && allCommandsMask != 0) {
                deliver(closeMask | allCommandsMask, .close(record: i, time: r.time(i), connection: conn, unanswered: dropped.map(\.command)))
            }
        }

        while i < end {
            if (i - context.firstRecord) & 0xFFFF == 0 { progress?(i - context.firstRecord, total) }
            let kind = r.kind(i)
            let conn = r.connection(i)
            if conn > 1 && !multiConnection { multiConnection = true }
            switch kind {
            case .event:
                var id = Int(r.nameID(i))
                if id == overflowID, let n = r.name(i) { id = Int(r.nameID(for: n) ?? 0) }
                let mask = id < nameCount ? eventMask[id] : 0
                if mask != 0 {
                    let t = r.time(i)
                    let view = RecordView(recording: r, index: i)
                    if let stamp = view.qemuMicros {
                        // The same event is written to every monitor; analyse it once.
                        if !recent.isEmpty, t - recent[0].time > Self.duplicateWindow { recent.removeAll { t - $0.time > Self.duplicateWindow } }
                        if multiConnection, recent.contains(where: { $0.nameID == UInt16(id) && $0.stamp == stamp && $0.connection != conn }) {
                            i += 1
                            continue
                        }
                        recent.append((UInt16(id), stamp, conn, t))
                    }
                    deliver(mask, .event(EventInput(record: i, time: t, connection: conn, name: r.names[id], view: view)))
                }
            case .command where anyCommands:
                let s = slot(conn)
                let rank = connections[s].requests
                connections[s].requests += 1
                var id = Int(r.nameID(i))
                var overflowName: String?
                if id == overflowID {
                    overflowName = r.name(i) ?? ""
                    id = Int(r.nameID(for: overflowName!) ?? 0)
                }
                let mask = (id < nameCount ? commandMask[id] : 0) | allCommandsMask
                guard mask != 0 else { break }
                let name = overflowName ?? r.names[id]
                let view = RecordView(recording: r, index: i)
                let p = PendingCommand(record: i, time: r.time(i), connection: conn, name: name, idKey: view.idKey())
                connections[s].waiting.append(Waiting(command: p, rank: rank, mask: mask))
                deliver(mask, .command(CommandInput(record: i, time: p.time, connection: conn, name: name, view: view)))
            case .other where anyCommands && r.direction(i) == .client:
                // Not a command, but QEMU answers it (JSON parse error): it takes a rank.
                connections[slot(conn)].requests += 1
            case .return, .error:
                guard anyCommands, r.direction(i) == .qemu else { break }
                let s = slot(conn)
                let rank = connections[s].replies
                connections[s].replies += 1
                guard !connections[s].waiting.isEmpty else { break }
                let view = RecordView(recording: r, index: i)
                let key = view.idKey()
                let at: Int?
                if key != 0 {
                    at = connections[s].waiting.firstIndex { $0.command.idKey == key }
                } else {
                    // In order: this reply answers the command of the same rank; an earlier
                    // rank is a command nobody asked about. Ranks that drifted apart (a reply
                    // the recording missed) fall back to the oldest command without an id.
                    at = connections[s].waiting.firstIndex { $0.command.idKey == 0 && $0.rank <= rank }
                }
                guard let at else { break }
                let w = connections[s].waiting.remove(at: at)
                let cls: String? = kind == .error ? (r.name(i) ?? view.string("error", "class") ?? "") : nil
                deliver(w.mask, .reply(ReplyInput(record: i, time: r.time(i), connection: conn, command: w.command, errorClass: cls, view: view)))
            case .close:
                if anyCommands || closeMask != 0 { drop(slot(conn), at: i, conn, always: true) }
            case .greeting:
                // A new greeting on a connection number starts a new QMP session: nothing
                // sent before it will be answered.
                if anyCommands { drop(slot(conn), at: i, conn, always: false) }
            default:
                break
            }
            i += 1
        }
        progress?(total, total)
    }
}
