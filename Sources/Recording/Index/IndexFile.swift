import QMP

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One cached index on disk (docs/INDEX.md gives the layout): a fixed 120-byte head (magic,
/// version, the file's identity, the covered length and its fingerprint, array sizes), the
/// index columns exactly as the reader uses them (mapped and read in place: `IndexColumns`),
/// then a tail of variable parts (builder state, names, problems, trailer, the `info`
/// summary) and an end magic. Little-endian; a file that does not read back whole is
/// treated as absent.
struct IndexFile {
    static let magic: UInt64 = 0x3158_4449_5250_4D51  // "QMPRIDX1"
    static let endMagic: UInt64 = 0x4558_4449_5250_4D51  // "QMPRIDXE"
    static let version: UInt32 = 3
    static let headBytes = 120

    /// The fixed head: enough to decide whether the rest is worth reading.
    struct Head {
        var identity: FileIdentity
        var covered: Int
        var fingerprint: UInt64
        var count: Int
        var nameSlots: Int
        var postings: Int
        var summaryBytes: Int
        /// Records whose id keys follow the name lists: 0 (not made yet) or `count`.
        var idKeys: Int
        /// Records whose reply partners follow the id keys: 0 (not made yet) or `count`.
        var partners: Int
    }

    var head: Head
    /// The builder's state from the tail (its columns are in `columns`, not in its arrays).
    var builder: IndexBuilder
    var columns: IndexColumns
    var extras: CacheExtras.State

    // MARK: Writing

    /// Writes the entry to `path` through a temporary file in the same directory and a
    /// rename, so a reader sees the old entry or the new one, never half of one (two
    /// processes indexing the same file at once both write whole entries; the last rename
    /// wins, and both are right). Returns false when the directory is not writable.
    static func save(_ path: String, identity: FileIdentity, fingerprint: UInt64, builder b: IndexBuilder,
                      columns c: IndexColumns, extras e: CacheExtras.State) -> Bool {
        let tmp = path + ".tmp.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        var ok = true
        func put(_ p: UnsafeRawBufferPointer) {
            var done = 0
            while ok && done < p.count {
                let r = write(fd, p.baseAddress! + done, p.count - done)
                if r < 0 && errno == EINTR { continue }
                if r <= 0 { ok = false; return }
                done += r
            }
        }
        func putColumn<T>(_ a: UnsafeBufferPointer<T>) { if a.count > 0 { put(UnsafeRawBufferPointer(a)) } }

        var tail = ByteWriter()
        tail.int(b.completeEnd); tail.int(b.completeLines); tail.int(b.lastLine)
        tail.int(b.firstTrailerLine ?? -1); tail.int(b.backwards); tail.int(b.headerLineSeen ? 1 : 0)
        tail.int(b.names.count)
        for n in b.names { tail.string(n) }
        tail.problems(b.problems)
        tail.problems(b.remarks)
        if let t = b.trailer {
            tail.int(1); tail.int64(t.time); tail.int(t.records); tail.string(t.reason); tail.int(t.dropped)
        } else {
            tail.int(0)
        }
        if let s = e.summary { tail.bytes.append(contentsOf: s) }
        tail.uint64(endMagic)

        var h = ByteWriter()
        h.uint64(magic); h.uint32(version); h.uint32(0x0102_0304)
        h.uint64(identity.device); h.uint64(identity.inode); h.uint64(identity.size)
        h.int64(identity.modifiedNanos); h.int64(identity.changedNanos)
        h.int(b.completeEnd); h.uint64(fingerprint)
        h.int(c.count); h.int(c.starts.count); h.int(c.records.count)
        h.int(e.summary?.count ?? -1)
        // Partners are made with the keys (their pass pairs by them): never one without the other.
        let keys = e.idKeys, partners = keys == nil ? nil : e.partners
        h.int(keys?.count ?? 0)
        h.int(partners?.count ?? 0)
        h.bytes.append(contentsOf: repeatElement(0, count: headBytes - h.bytes.count))
        h.bytes.withUnsafeBytes { put($0) }
        putColumn(c.offsets); putColumn(c.times); putColumn(c.lines); putColumn(c.conns)
        putColumn(c.nameIDs); putColumn(c.kindDir)
        func pad(from written: Int, to next: Int) {
            if next > written { [UInt8](repeating: 0, count: next - written).withUnsafeBytes { put($0) } }
        }
        let lists = IndexColumns.listsOffset(from: headBytes, count: c.count)
        pad(from: headBytes + c.count * IndexColumns.bytesPerRecord, to: lists)
        putColumn(c.starts); putColumn(c.records)
        pad(from: lists + 4 * (c.starts.count + c.records.count),
            to: headBytes + IndexColumns.byteSize(from: headBytes, count: c.count, nameSlots: c.starts.count, listed: c.records.count))
        if let k = keys { putColumn(k.keys) }
        if let p = partners { putColumn(p.values) }
        tail.bytes.withUnsafeBytes { put($0) }
        close(fd)
        if ok && rename(tmp, path) == 0 { return true }
        unlink(tmp)
        return false
    }

    // MARK: Reading

    /// The head of the entry at `path`, or nil when there is none or it is not one of ours.
    static func readHead(_ fd: Int32) -> Head? {
        var buf = [UInt8](repeating: 0, count: headBytes)
        guard pread(fd, &buf, headBytes, 0) == headBytes else { return nil }
        var r = ByteReader(buf)
        guard r.uint64() == magic, r.uint32() == version, r.uint32() == 0x0102_0304 else { return nil }
        let id = FileIdentity(device: r.uint64(), inode: r.uint64(), size: r.uint64(),
                              modifiedNanos: r.int64(), changedNanos: r.int64())
        let head = Head(identity: id, covered: r.int(), fingerprint: r.uint64(), count: r.int(),
                        nameSlots: r.int(), postings: r.int(), summaryBytes: r.int(), idKeys: r.int(), partners: r.int())
        guard !r.failed, head.idKeys == 0 || head.idKeys == head.count, head.partners == 0 || (head.partners == head.count && head.idKeys > 0),
              head.count >= 0, head.covered >= 0, head.nameSlots >= 1, head.postings >= 0,
              head.postings <= head.count, head.count <= Int(UInt32.max) else { return nil }
        return head
    }

    /// The whole entry (head already read and accepted), its columns mapped in place, or
    /// nil when it does not read back.
    static func read(_ fd: Int32, head: Head, fileSize: Int) -> IndexFile? {
        let n = head.count
        let keysAt = headBytes + IndexColumns.byteSize(from: headBytes, count: n, nameSlots: head.nameSlots, listed: head.postings)
        let partnersAt = keysAt + 8 * head.idKeys
        let at = partnersAt + 4 * head.partners
        guard fileSize > at, let map = MappedFile(fd: fd, length: fileSize) else { return nil }
        let columns = IndexColumns(mapping: map, at: headBytes, count: n, nameSlots: head.nameSlots, listed: head.postings)
        let idKeys = head.idKeys == 0 ? nil
            : IDKeys(UnsafeBufferPointer(start: (map.base + keysAt).assumingMemoryBound(to: UInt64.self), count: n), owner: map)
        let partners = head.partners == 0 ? nil
            : ReplyPartners(UnsafeBufferPointer(start: (map.base + partnersAt).assumingMemoryBound(to: UInt32.self), count: n), owner: map)
        // The tail is small: read it from the mapping.
        var r = ByteReader(Array(UnsafeRawBufferPointer(start: map.base + at, count: fileSize - at)))
        var b = IndexBuilder()
        b.completeEnd = r.int(); b.completeLines = r.int(); b.lastLine = r.int()
        let ft = r.int()
        b.firstTrailerLine = ft >= 0 ? ft : nil
        b.backwards = r.int(); b.headerLineSeen = r.int() == 1
        let nameCount = r.int()
        guard !r.failed, nameCount >= 1, nameCount < Int(UInt16.max), nameCount + 1 == head.nameSlots else { return nil }
        b.names = [""]
        _ = r.string()  // names[0], "no name"
        for _ in 1..<nameCount { _ = b.nameTable.intern(Array(r.string().utf8), names: &b.names) }
        b.problems = r.problems()
        b.remarks = r.problems()
        if r.int() == 1 {
            b.trailer = RecordingTrailer(time: r.int64(), records: r.int(), reason: r.string(), dropped: r.int())
        }
        var summary: [UInt8]?
        if head.summaryBytes >= 0 { summary = r.take(head.summaryBytes) }
        guard r.uint64() == endMagic, !r.failed, r.atEnd, b.names.count == nameCount,
              columns.starts.first == 0, Int(columns.starts.last ?? 0) == columns.records.count else { return nil }
        for k in 1..<columns.starts.count where columns.starts[k] < columns.starts[k - 1] { return nil }
        return IndexFile(head: head, builder: b, columns: columns, extras: CacheExtras.State(idKeys: idKeys, partners: partners, summary: summary))
    }
}

/// Appends little-endian integers and length-prefixed strings.
struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func uint64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func uint32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func int64(_ v: Int64) { uint64(UInt64(bitPattern: v)) }
    mutating func int(_ v: Int) { int64(Int64(v)) }
    mutating func string(_ s: String) {
        let u = Array(s.utf8)
        int(u.count)
        bytes.append(contentsOf: u)
    }
    mutating func problems(_ ps: [ReadProblem]) {
        int(ps.count)
        for p in ps { int(p.line); int(p.badLine ? 1 : 0); string(p.message); string(p.code) }
    }
}

/// Reads what `ByteWriter` wrote; any read past the end sets `failed` and yields zeros.
struct ByteReader {
    let bytes: [UInt8]
    var at = 0
    var failed = false
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var atEnd: Bool { at == bytes.count }

    mutating func take(_ n: Int) -> [UInt8] {
        guard n >= 0, n <= bytes.count - at else { failed = true; return [] }
        defer { at += n }
        return Array(bytes[at..<(at + n)])
    }
    mutating func uint64() -> UInt64 {
        guard 8 <= bytes.count - at else { failed = true; return 0 }
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(bytes[at + k]) << (8 * k) }
        at += 8
        return v
    }
    mutating func uint32() -> UInt32 {
        guard 4 <= bytes.count - at else { failed = true; return 0 }
        var v: UInt32 = 0
        for k in 0..<4 { v |= UInt32(bytes[at + k]) << (8 * k) }
        at += 4
        return v
    }
    mutating func int64() -> Int64 { Int64(bitPattern: uint64()) }
    mutating func int() -> Int { Int(int64()) }
    mutating func string() -> String { String(decoding: take(int()), as: UTF8.self) }
    mutating func problems() -> [ReadProblem] {
        let n = int()
        guard n >= 0, n <= bytes.count - at else { failed = true; return [] }
        return (0..<n).map { _ in
            let line = int(), bad = int() == 1, message = string()
            return ReadProblem(line: line, message: message, badLine: bad, code: string())
        }
    }
}
