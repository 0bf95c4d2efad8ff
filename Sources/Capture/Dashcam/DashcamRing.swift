/// The dashcam's memory (`record --ring`): the last window of encoded records, bounded by
/// time and by bytes, plus what a recording must begin with that may have scrolled out:
/// each open connection's `open` record, QEMU's greeting and the negotiation
/// (`qmp_capabilities` and its reply), and the commands whose replies are still in the
/// window (so that no reply in a written file answers nothing). A pure value: the recorder's disk thread feeds it
/// records in order; a trigger takes a `snapshot`, which is a complete recording's body.
///
/// Example: with `RingBound(nanoseconds: 60_000_000_000)`, after records at t = 0 s ... 600 s
/// the window holds those at t >= 540 s; a snapshot is the connection's open, greeting and
/// negotiation (t ~ 0), then the window.
public struct DashcamRing: Sendable {
    /// What kind of record an entry is, as the ring treats it.
    public enum Role: Sendable, Equatable {
        /// Any record that only belongs to the window.
        case plain
        /// A record every later recording of its connection needs (open, greeting, negotiation).
        case context
        /// The close of a connection: its context is no longer needed.
        case close
        /// A client's command: kept past the window while its reply is in it.
        case command
        /// QEMU's reply to a command.
        case reply
    }

    /// One encoded record (a whole line of the file).
    public struct Entry: Sendable, Equatable {
        public var bytes: [UInt8]
        public var time: Int64
        public var connection: UInt32
        public var role: Role
        /// Order of arrival (assigned by the ring).
        public fileprivate(set) var seq: UInt64 = 0

        public init(bytes: [UInt8], time: Int64, connection: UInt32, role: Role = .plain) {
            self.bytes = bytes; self.time = time; self.connection = connection; self.role = role
        }
    }

    /// A snapshot: the records to write, and what scrolled out before the window.
    public struct Snapshot: Sendable {
        /// Context records that scrolled out of the window, and commands whose replies are in
        /// it, in arrival order.
        public var context: [Entry]
        /// The window, in arrival order.
        public var window: [Entry]
        /// Both: what a recording written now holds.
        public var entries: [Entry] { context + window }
        /// Time of the window's first record (nil: the window is empty).
        public var windowStart: Int64?
        /// Records that scrolled out of the window since the ring started (context kept aside).
        public var evicted: Int
    }

    public let bound: RingBound
    /// Entries are this much larger in memory than their bytes (the struct, the array's
    /// slot): counted in `memoryBytes`, so that the byte bound also holds for many small records.
    public static let entryOverhead = 64

    private var items: [Entry] = []
    private var head = 0
    private var nextSeq: UInt64 = 0
    /// Bytes of the window's records, with the per-record overhead (what the size bound limits).
    public private(set) var windowBytes = 0
    /// Per open connection, its context records (copies; they may also still be in the window).
    private var context: [UInt32: [Entry]] = [:]
    private var contextBytes = 0
    /// Per connection, commands that scrolled out before their replies did (QEMU answers a
    /// connection's commands in order: docs/QEMU-FACTS.md, "Ordering without oob"); at most
    /// `pinnedLimit` each, the oldest dropped first.
    private var pinned: [UInt32: [Entry]] = [:]
    private var pinnedBytes = 0
    static let pinnedLimit = 16
    public private(set) var evicted = 0

    public init(bound: RingBound) { self.bound = bound }

    /// Records in the window.
    public var count: Int { items.count - head }
    /// Memory the ring holds: records and context, with the per-record overhead.
    public var memoryBytes: Int {
        windowBytes + contextBytes + pinnedBytes
            + (context.values.reduce(0) { $0 + $1.count } + pinned.values.reduce(0) { $0 + $1.count }) * Self.entryOverhead
    }
    /// Time of the oldest record in the window.
    public var windowStart: Int64? { count > 0 ? items[head].time : nil }

    /// Adds a record (records come in time order) and lets the oldest scroll out: those more
    /// than the time bound older than this one, then the oldest while the bytes exceed the
    /// size bound (the newest record is always kept).
    public mutating func append(_ entry: Entry) {
        var e = entry
        e.seq = nextSeq
        nextSeq += 1
        switch e.role {
        case .context:
            context[e.connection, default: []].append(e)
            contextBytes += e.bytes.count
        case .close:
            if let gone = context.removeValue(forKey: e.connection) { contextBytes -= gone.reduce(0) { $0 + $1.bytes.count } }
            if let gone = pinned.removeValue(forKey: e.connection) { pinnedBytes -= gone.reduce(0) { $0 + $1.bytes.count } }
        case .plain, .command, .reply:
            break
        }
        items.append(e)
        windowBytes += e.bytes.count + Self.entryOverhead
        if let ns = bound.nanoseconds {
            let oldest = e.time - ns
            while count > 1 && items[head].time < oldest { evictOldest() }
        }
        if let max = bound.bytes {
            while count > 1 && windowBytes > max { evictOldest() }
        }
    }

    private mutating func evictOldest() {
        let e = items[head]
        windowBytes -= e.bytes.count + Self.entryOverhead
        switch e.role {
        case .command:
            var list = pinned[e.connection, default: []]
            list.append(e)
            pinnedBytes += e.bytes.count
            if list.count > Self.pinnedLimit { pinnedBytes -= list.removeFirst().bytes.count }
            pinned[e.connection] = list
        case .reply:
            if var list = pinned[e.connection], !list.isEmpty {
                pinnedBytes -= list.removeFirst().bytes.count
                pinned[e.connection] = list.isEmpty ? nil : list
            }
        default:
            break
        }
        items[head].bytes = []
        head += 1
        evicted += 1
        // Compact once the dead front is as large as the live part (amortised O(1)).
        if head > 1024 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
    }

    /// What a recording written now must hold: the context records that scrolled out
    /// (those older than the window's first record), then the whole window.
    public func snapshot() -> Snapshot {
        let first = count > 0 ? items[head].seq : nextSeq
        let kept = (context.values.joined().filter { $0.seq < first } + pinned.values.joined()).sorted { $0.seq < $1.seq }
        return Snapshot(context: kept, window: Array(items[head...]), windowStart: windowStart, evicted: evicted)
    }
}

/// How much the dashcam keeps: a time window, a byte size, or both (whichever is reached
/// first lets records scroll out). `record --ring 10m`, `--ring 64M`.
public struct RingBound: Sendable, Equatable {
    public var nanoseconds: Int64?
    public var bytes: Int?

    public init(nanoseconds: Int64? = nil, bytes: Int? = nil) {
        self.nanoseconds = nanoseconds; self.bytes = bytes
    }
}
