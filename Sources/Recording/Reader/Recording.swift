import QMP

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Something wrong with a recording file, with the line it is on (1-based).
public struct ReadProblem: Sendable, Hashable, CustomStringConvertible {
    public var line: Int
    public var message: String
    /// A bad line (skipped) as opposed to a remark about the file as a whole.
    public var badLine: Bool
    /// A stable identifier for scripts and `doctor` (`torn-line`, `no-trailer`...).
    public var code: String
    public var description: String { line > 0 ? "line \(line): \(message)" : message }
}

public struct RecordingOptions: Sendable {
    /// Any bad line (unparseable, torn tail, blank) is an error instead of a warning.
    public var strict = false
    /// A file that is not a recording at all (`notARecording`) fails to open, in one
    /// message, instead of opening as a recording with no records. The command line sets it.
    public var requireRecording = false
    /// Where to keep and find the persistent index (docs/INDEX.md); nil: index in memory
    /// only. The command line sets it unless `--no-cache` or `QMPREPLAY_NO_CACHE=1`.
    public var indexCache: IndexCache?
    /// The caller will pair replies (`Recording.idKeys()`): the id keys are made at open, and
    /// a fresh cache entry is written once, with them, instead of once without and again.
    public var pairsReplies = false
    /// With `pairsReplies`, for a caller that will pass over the whole recording sparsely:
    /// makes the reply partners (docs/INDEX.md, "Reply partners") from the id keys, at open,
    /// when the cached entry has none, so that a fresh entry is written once with both.
    public var replyPartners: (@Sendable (Recording, IDKeys) -> ReplyPartners)?
    public init(strict: Bool = false, requireRecording: Bool = false, indexCache: IndexCache? = nil, pairsReplies: Bool = false,
                replyPartners: (@Sendable (Recording, IDKeys) -> ReplyPartners)? = nil) {
        self.strict = strict
        self.requireRecording = requireRecording
        self.indexCache = indexCache
        self.pairsReplies = pairsReplies
        self.replyPartners = replyPartners
    }
}

/// An opened, indexed recording.
///
/// Opening maps the file and builds an index in one pass over the bytes: for each record
/// its byte offset, time, line, connection, kind, direction and name (event, command or
/// error class), 27 bytes per record held in flat arrays. The index reads the envelope
/// members that the writer always puts first (`t`, `c`, `from`, `k`, `n`) directly from
/// the bytes without parsing the message; lines in any other shape take a slower path
/// through the JSON parser. Messages are parsed only when a record is decoded with
/// `record(at:)`. Any record can then be reached by number in O(1) and by time in O(log n).
///
/// Lenient by default: bad lines are reported in `problems` (with line number and
/// reason) and skipped, and every good record is kept. A torn last line or a missing
/// trailer is a warning, never a failure to open.
public final class Recording: @unchecked Sendable {
    public let path: String
    public let bytes: FileBytes
    public let header: RecordingHeader?
    public let trailer: RecordingTrailer?
    public let problems: [ReadProblem]
    /// Set when the file is not a recording at all (empty, binary, plain JSON, QMP text,
    /// a log...): no header line, no record line, no trailer. `nil` for every recording,
    /// however damaged. Decided once, when the file is opened.
    public let notARecording: NotARecording?
    /// Distinct record names (events, commands, error classes); index 0 is "no name".
    public let names: [String]
    /// The line the (first) trailer is on, when there is one.
    public let trailerLine: Int?
    /// The number of lines in the file (a last line without newline counts).
    public let lineCount: Int

    // The index, as parallel columns (struct of arrays keeps binary search on times tight),
    // read in place from a mapped cache entry or from the builder's arrays; the name lists
    // give each name's records in order (selection proportional to the answer).
    private let columns: IndexColumns
    private let offsets: UnsafeBufferPointer<UInt64>
    private let times: UnsafeBufferPointer<Int64>
    private let lines: UnsafeBufferPointer<UInt32>
    private let conns: UnsafeBufferPointer<UInt32>
    private let nameIDs: UnsafeBufferPointer<UInt16>
    private let kindDir: UnsafeBufferPointer<UInt8>
    /// What this recording's cached index entry holds beyond the columns, made on demand.
    private let extras: CacheExtras
    private let nameTable: NameTable
    /// The builder's state, kept so that `extended()` resumes where it stopped (its arrays
    /// are empty when the columns came from the cache: `IndexColumns.restore`).
    private let builder: IndexBuilder
    /// The cache this recording's index came from or went to, and how (nil: not cached).
    public let indexCache: IndexCache?
    public let cacheOutcome: IndexCache.Outcome?
    /// The `info` summary stored with the cached index (JSON bytes), when there is one.
    public var cachedSummary: [UInt8]? { extras.withLock { $0.summary } }

    /// How far a reader of a mapped file gets before it gives back the pages it passed
    /// (`FileBytes.release`).
    public static let releaseStep = 8 << 20

    /// Files larger than this are indexed by two threads (one per half), merged exactly.
    nonisolated(unsafe) static var parallelThreshold = 16 << 20

    public var count: Int { times.count }
    public var isEmpty: Bool { times.isEmpty }

    /// Bytes of index held per record (for the benchmark and `info --json`).
    public static let indexBytesPerRecord = IndexColumns.bytesPerRecord

    public convenience init(path: String, options: RecordingOptions = RecordingOptions()) throws(RecordingOpenError) {
        let bytes = try FileBytes(path: path)
        try self.init(bytes: bytes, path: path, options: options)
    }

    /// Indexes `bytes`, through `options.indexCache` when the bytes are a mapped file.
    public convenience init(bytes: FileBytes, path: String, options: RecordingOptions = RecordingOptions()) throws(RecordingOpenError) {
        if let cache = options.indexCache, let id = bytes.identity {
            let o = cache.index(bytes, identity: id, parallelThreshold: Recording.parallelThreshold, idKeys: options.pairsReplies)
            try self.init(bytes: bytes, path: path, builder: o.builder, columns: o.columns, cache: cache,
                          outcome: o.outcome, extras: o.extras, options: options)
            if options.pairsReplies { pairingExtras(options, store: o.outcome != .hit) }
            return
        }
        var b = IndexBuilder.build(bytes, parallelThreshold: Recording.parallelThreshold, idKeys: options.pairsReplies)
        let keys = b.takeIDKeys()
        try self.init(bytes: bytes, path: path, builder: b, extras: CacheExtras.State(idKeys: keys), options: options)
        if options.pairsReplies { pairingExtras(options, store: false) }
    }

    private init(bytes: FileBytes, path: String, builder b: IndexBuilder, columns: IndexColumns? = nil, cache: IndexCache? = nil,
                 outcome: IndexCache.Outcome? = nil, extras: CacheExtras.State = CacheExtras.State(),
                 options: RecordingOptions) throws(RecordingOpenError) {
        self.path = path
        self.bytes = bytes
        builder = b
        let c = columns ?? IndexColumns(builder: b, postings: NamePostings(nameIDs: b.nameIDs, nameCount: b.names.count))
        self.columns = c
        indexCache = cache
        cacheOutcome = outcome
        self.extras = CacheExtras(extras)
        header = b.header
        trailer = b.trailer
        problems = b.allProblems
        names = b.names
        offsets = c.offsets
        times = c.times
        lines = c.lines
        conns = c.conns
        nameIDs = c.nameIDs
        kindDir = c.kindDir
        nameTable = b.nameTable
        trailerLine = b.firstTrailerLine
        lineCount = b.lastLine
        if b.header == nil && c.times.isEmpty && b.trailer == nil && !b.headerLineSeen {
            notARecording = NotARecording.classify(bytes)
        } else {
            notARecording = nil
        }
        if options.requireRecording, let n = notARecording {
            throw RecordingOpenError(path: path, reason: n.message(path: path))
        }
        if options.strict, let bad = problems.first(where: { $0.badLine }) {
            throw RecordingOpenError(path: path, reason: "line \(bad.line): \(bad.message) (--strict)")
        }
    }

    // MARK: Growing files

    /// The recording as its file is now, when another writer (`record`, the live shell's
    /// recorder) appended to it since this one was opened: the same records, numbered the
    /// same, plus those of the complete lines added since (a line still being written is
    /// left for the next call; the trailer appears once written). Returns `self` when the
    /// file did not grow. Only the new bytes are scanned; the index itself is copied (27
    /// bytes a record, a memcpy) because a `Recording` never changes once made, so readers
    /// holding this one are not disturbed. A file that shrank or was replaced is opened
    /// afresh. `.gz` files are read whole, never extended.
    public func extended(options: RecordingOptions = RecordingOptions()) throws(RecordingOpenError) -> Recording {
        var st = stat()
        guard stat(path, &st) == 0 else { throw RecordingOpenError(path: path, reason: String(cString: strerror(errno))) }
        let size = Int(st.st_size)
        if size == bytes.count || (st.st_mode & S_IFMT) != S_IFREG { return self }
        let grown = try FileBytes(path: path)
        guard grown.count > bytes.count, !path.hasSuffix(".gz"), Recording.samePrefix(bytes, grown, from: builder.completeEnd) else {
            return try Recording(bytes: grown, path: path, options: options)
        }
        var b = builder
        columns.restore(into: &b)
        b.extend(grown)
        return try Recording(bytes: grown, path: path, builder: b, options: options)
    }

    /// Whether the bytes already indexed are still there (the file was appended to, not
    /// rewritten): the last 64 indexed bytes are compared, a cheap guard against a
    /// recorder that replaced the file with `--force`.
    private static func samePrefix(_ old: FileBytes, _ new: FileBytes, from end: Int) -> Bool {
        guard end > 0, let a = old.base, let b = new.base else { return true }
        let n = min(64, end)
        return memcmp(a + (end - n), b + (end - n), n) == 0
    }

    /// Bytes indexed so far: the end of the last complete line.
    public var indexedBytes: Int { builder.completeEnd }

    // MARK: The persistent index

    /// Stores `summary` (the `info` JSON, docs/INDEX.md) with this recording's cached index,
    /// so that the next `info` reads it instead of the file. False when not cached.
    @discardableResult
    public func storeSummary(_ summary: [UInt8]) -> Bool {
        extras.withLock { e in
            e.summary = summary
            return storeExtras(e)
        }
    }

    /// The key of every command's and reply's `id` (docs/INDEX.md, "Reply pairing"): from the
    /// cached index, else made by one pass over the commands and replies and stored there.
    public func idKeys() -> IDKeys {
        extras.withLock { e in
            if let k = e.idKeys { return k }
            let k = IDKeys.compute(self)
            e.idKeys = k
            storeExtras(e)
            return k
        }
    }

    /// Gives back the resident pages of the cached index (its columns, id keys and reply
    /// partners, when mapped) that hold records before `record`: a pass calls it behind
    /// itself, as it calls `PassedPages` for the file, so that a recording of any size is
    /// walked with a bounded part of its index resident (docs/INDEX.md, "Memory").
    public func releaseIndex(below record: Int) {
        columns.release(below: record)
        let (keys, partners) = extras.withLock { ($0.idKeys, $0.partners) }
        if let keys, let map = keys.owner as? MappedFile { map.release(keys.keys, below: record) }
        if let partners, let map = partners.owner as? MappedFile { map.release(partners.values, below: record) }
    }

    /// What pairing replies decided for each record (`ReplyPartners`), when the cached index
    /// holds it (or it was stored in this process): nil until a pass over the whole recording
    /// made it (`storeReplyPartners`).
    public var replyPartners: ReplyPartners? { extras.withLock { $0.partners } }

    /// Keeps `partners` (one per record, made with `idKeys()`) with this recording's cached
    /// index, and for this process. False when not cached.
    @discardableResult
    public func storeReplyPartners(_ partners: ReplyPartners) -> Bool {
        guard partners.count == count else { return false }
        return extras.withLock { e in
            e.partners = partners
            return storeExtras(e)
        }
    }

    /// Opened for pairing replies: the id keys (read by the index scan, or from the entry,
    /// else made now) and the reply partners when the caller makes them, then one write of
    /// the entry when it is new (`store`) or gained something.
    private func pairingExtras(_ options: RecordingOptions, store: Bool) {
        extras.withLock { e in
            var changed = store
            if e.idKeys == nil { e.idKeys = IDKeys.compute(self); changed = true }
            if e.partners == nil, let make = options.replyPartners, let keys = e.idKeys {
                e.partners = make(self, keys)
                changed = true
            }
            if changed { storeExtras(e) }
        }
    }

    @discardableResult
    private func storeExtras(_ e: CacheExtras.State) -> Bool {
        guard let cache = indexCache, let id = bytes.identity else { return false }
        return cache.store(builder, columns: columns, extras: e, bytes: bytes, identity: id)
    }

    /// The records named `name` (event, command or error class), in order, without looking
    /// at the others; nil only when the name table overflowed (more than 65,534 distinct
    /// names) and the caller must scan.
    /// The records whose name id is `id`, in order (records whose name overflowed the
    /// table, id 65535, are not listed: `records(named:)` says when that can happen).
    public func records(nameID id: UInt16) -> RecordList { columns.list(id) }

    public func records(named name: String) -> RecordList? {
        guard names.count < Int(UInt16.max) else { return nil }
        guard let id = nameID(for: name) else { return columns.list(UInt16.max) }
        return columns.list(id)
    }

    // MARK: Index accessors (O(1))

    public func time(_ i: Int) -> Int64 { times[i] }
    public func line(_ i: Int) -> Int { Int(lines[i]) }
    public func connection(_ i: Int) -> UInt32 { conns[i] }
    public func offset(_ i: Int) -> Int { Int(offsets[i]) }
    public func kind(_ i: Int) -> RecordKind {
        let c = Int(kindDir[i] & 0x0F)
        return c < RecordKind.byCode.count ? RecordKind.byCode[c] : .note  // a damaged entry: a record nothing reads
    }
    public func direction(_ i: Int) -> Direction? {
        switch kindDir[i] & 0xC0 {
        case 0x40: return .qemu
        case 0x80: return .client
        default: return nil
        }
    }
    public func nameID(_ i: Int) -> UInt16 { nameIDs[i] }
    /// Kind and direction of record `i` as the index codes them (`RecordKind.code` | 0x40
    /// from QEMU | 0x80 from the client): one byte, for passes that test many records.
    public func kindDirCode(_ i: Int) -> UInt8 { kindDir[i] }
    /// The columns of `kindDirCode`, `nameID` and `connection` whole, for a pass that tests
    /// every record (valid while this recording is).
    public var kindDirColumn: UnsafeBufferPointer<UInt8> { kindDir }
    public var nameIDColumn: UnsafeBufferPointer<UInt16> { nameIDs }
    public var connectionColumn: UnsafeBufferPointer<UInt32> { conns }
    /// The event name, command name or error class of record `i` (from the index).
    public func name(_ i: Int) -> String? {
        let id = Int(nameIDs[i])
        if id == 0 { return nil }
        if id == Int(UInt16.max) { return try? record(at: i).name }
        return id < names.count ? names[id] : nil
    }
    public func nameID(for name: String) -> UInt16? { nameTable.lookup(Array(name.utf8)) }

    /// Time of the last record (the recording's duration), or the trailer's when later.
    public var duration: Int64 { max(times.last ?? 0, trailer?.time ?? 0) }

    /// The first record at or after `time` (ns since start); `count` when none.
    public func firstIndex(atOrAfter time: Int64) -> Int {
        var lo = 0, hi = times.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if times[mid] < time { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// The last record at or before `time`; `nil` when none.
    public func lastIndex(atOrBefore time: Int64) -> Int? {
        let i = firstIndex(atOrAfter: time &+ 1)
        return i > 0 ? i - 1 : nil
    }

    /// The record line's bytes (without its newline).
    public func lineBytes(_ i: Int) -> UnsafeBufferPointer<UInt8> {
        let start = Int(offsets[i])
        // A damaged cache entry must not make a read run off the file.
        guard let base = bytes.base?.assumingMemoryBound(to: UInt8.self), start < bytes.count else {
            return UnsafeBufferPointer(start: nil, count: 0)
        }
        // The next record on the very next line: this line ends just before it (no search).
        if i + 1 < offsets.count, lines[i + 1] == lines[i] &+ 1, Int(offsets[i + 1]) > start, Int(offsets[i + 1]) <= bytes.count {
            return UnsafeBufferPointer(start: base + start, count: Int(offsets[i + 1]) - 1 - start)
        }
        let remaining = bytes.count - start
        var len = remaining
        if let nl = memchr(base + start, 0x0A, remaining) {
            len = UnsafeRawPointer(nl) - UnsafeRawPointer(base + start)
        }
        return UnsafeBufferPointer(start: base + start, count: len)
    }

    public func lineText(_ i: Int) -> String { String(decoding: lineBytes(i), as: UTF8.self) }

    static let trailerCode: UInt8 = 0x0F

    @inline(__always)
    static func kindCode(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt8? {
        func eq(_ s: StaticString) -> Bool {
            s.utf8CodeUnitCount == n && memcmp(p, s.utf8Start, n) == 0
        }
        switch (n, p[0]) {
        case (5, 0x65): return eq("event") ? 4 : (eq("error") ? 3 : nil)
        case (7, 0x63): return eq("command") ? 1 : nil
        case (6, 0x72): return eq("return") ? 2 : nil
        case (8, 0x67): return eq("greeting") ? 0 : nil
        case (5, 0x6F): return eq("other") ? 5 : nil
        case (4, 0x6F): return eq("open") ? 6 : nil
        case (5, 0x63): return eq("close") ? 7 : nil
        case (4, 0x6E): return eq("note") ? 8 : nil
        case (3, 0x65): return eq("end") ? trailerCode : nil
        default: return nil
        }
    }

    static func countLines(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        var count = 0
        var pos = 0
        while pos < n, let nl = memchr(p + pos, 0x0A, n - pos) {
            count += 1
            pos = UnsafeRawPointer(nl) - UnsafeRawPointer(p) + 1
        }
        return count + 1
    }

    static func startsWith(_ p: UnsafePointer<UInt8>, _ n: Int, _ s: StaticString) -> Bool {
        n >= s.utf8CodeUnitCount && memcmp(p, s.utf8Start, s.utf8CodeUnitCount) == 0
    }
}

/// Interns record names (a few dozen distinct ones in practice) without building a
/// String per record: open addressing on an FNV-1a hash of the bytes.
struct NameTable {
    private var slots = [Int32](repeating: -1, count: 256)
    private var hashes = [UInt64](repeating: 0, count: 256)
    private var keys: [[UInt8]] = [[]]
    private var used = 0

    private static func hash(_ b: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for c in b { h = (h ^ UInt64(c)) &* 0x100_0000_01b3 }
        return h
    }

    mutating func intern(_ b: [UInt8], names: inout [String]) -> UInt16 {
        b.withUnsafeBufferPointer { intern($0, names: &names) }
    }

    mutating func intern(_ b: UnsafeBufferPointer<UInt8>, names: inout [String]) -> UInt16 {
        let h = NameTable.hash(b)
        var i = Int(h & UInt64(slots.count - 1))
        while true {
            let s = slots[i]
            if s < 0 { break }
            if hashes[i] == h, keys[Int(s)].count == b.count,
               (b.count == 0 || keys[Int(s)].withUnsafeBufferPointer({ memcmp($0.baseAddress!, b.baseAddress!, b.count) == 0 })) {
                return UInt16(s)
            }
            i = (i + 1) & (slots.count - 1)
        }
        guard keys.count < Int(UInt16.max) else { return UInt16.max }
        let id = keys.count
        keys.append(Array(b))
        names.append(String(decoding: b, as: UTF8.self))
        slots[i] = Int32(id)
        hashes[i] = h
        used += 1
        if used * 2 > slots.count { grow() }
        return UInt16(id)
    }

    func lookup(_ b: [UInt8]) -> UInt16? {
        b.withUnsafeBufferPointer { buf in
            let h = NameTable.hash(buf)
            var i = Int(h & UInt64(slots.count - 1))
            while slots[i] >= 0 {
                let s = Int(slots[i])
                if hashes[i] == h, keys[s] == b { return UInt16(s) }
                i = (i + 1) & (slots.count - 1)
            }
            return nil
        }
    }

    private mutating func grow() {
        let newSize = slots.count * 2
        var ns = [Int32](repeating: -1, count: newSize)
        var nh = [UInt64](repeating: 0, count: newSize)
        for (i, s) in slots.enumerated() where s >= 0 {
            var j = Int(hashes[i] & UInt64(newSize - 1))
            while ns[j] >= 0 { j = (j + 1) & (newSize - 1) }
            ns[j] = s
            nh[j] = hashes[i]
        }
        slots = ns
        hashes = nh
    }
}
