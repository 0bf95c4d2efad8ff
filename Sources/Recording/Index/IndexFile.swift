import QMP

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One cached index on disk (docs/INDEX.md gives the layout): a fixed 120-byte head (magic,
/// version, the file's identity, the covered length and its fingerprint, array sizes), the
/// index arrays exactly as `IndexBuilder` holds them (read straight into their storage with
/// `pread`, one copy), then a tail of variable parts (builder state, names, problems,
/// trailer, the `info` summary) and an end magic. Little-endian; a file that does not read
/// back whole is treated as absent.
struct IndexFile {
    static let magic: UInt64 = 0x3158_4449_5250_4D51  // "QMPRIDX1"
    static let endMagic: UInt64 = 0x4558_4449_5250_4D51  // "QMPRIDXE"
    static let version: UInt32 = 1
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
    }

    var head: Head
    var builder: IndexBuilder
    var postings: NamePostings
    var summary: [UInt8]?

    // MARK: Writing

    /// Writes the entry to `path` through a temporary file in the same directory and a
    /// rename, so a reader sees the old entry or the new one, never half of one (two
    /// processes indexing the same file at once both write whole entries; the last rename
    /// wins, and both are right). Returns false when the directory is not writable.
    static func save(_ path: String, identity: FileIdentity, fingerprint: UInt64, builder b: IndexBuilder,
                      postings: NamePostings, summary: [UInt8]?) -> Bool {
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
        func putArray<T>(_ a: [T]) { a.withUnsafeBytes { if $0.count > 0 { put($0) } } }

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
        if let s = summary { tail.bytes.append(contentsOf: s) }
        tail.uint64(endMagic)

        var h = ByteWriter()
        h.uint64(magic); h.uint32(version); h.uint32(0x0102_0304)
        h.uint64(identity.device); h.uint64(identity.inode); h.uint64(identity.size)
        h.int64(identity.modifiedNanos); h.int64(identity.changedNanos)
        h.int(b.completeEnd); h.uint64(fingerprint)
        h.int(b.offsets.count); h.int(postings.starts.count); h.int(postings.records.count)
        h.int(summary?.count ?? -1)
        h.bytes.append(contentsOf: repeatElement(0, count: headBytes - h.bytes.count))
        h.bytes.withUnsafeBytes { put($0) }
        putArray(b.offsets); putArray(b.times); putArray(b.lines); putArray(b.conns)
        putArray(b.nameIDs); putArray(b.kindDir)
        putArray(postings.starts); putArray(postings.records)
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
                        nameSlots: r.int(), postings: r.int(), summaryBytes: r.int())
        guard !r.failed, head.count >= 0, head.covered >= 0, head.nameSlots >= 1, head.postings >= 0,
              head.postings <= head.count, head.count <= Int(UInt32.max) else { return nil }
        return head
    }

    /// The whole entry (head already read and accepted), or nil when it does not read back.
    static func read(_ fd: Int32, head: Head, fileSize: Int) -> IndexFile? {
        var at = headBytes
        var ok = true
        func array<T>(_ n: Int, _: T.Type) -> [T] {
            guard ok, n > 0 else { return [] }
            let bytes = n * MemoryLayout<T>.stride
            return [T](unsafeUninitializedCapacity: n) { buf, count in
                IndexFile.preferHugePages(UnsafeMutableRawPointer(buf.baseAddress!), bytes)
                let got = pread(fd, UnsafeMutableRawPointer(buf.baseAddress!), bytes, off_t(at))
                if got != bytes { ok = false; count = 0; return }
                // Only integer types are stored: any bit pattern is a value.
                count = n
            }.also { at += bytes }
        }
        let n = head.count
        var b = IndexBuilder()
        b.offsets = array(n, UInt64.self)
        b.times = array(n, Int64.self)
        b.lines = array(n, UInt32.self)
        b.conns = array(n, UInt32.self)
        b.nameIDs = array(n, UInt16.self)
        b.kindDir = array(n, UInt8.self)
        let starts = array(head.nameSlots, UInt32.self)
        let records = array(head.postings, UInt32.self)
        guard ok, fileSize > at else { return nil }
        var tailBytes = [UInt8](repeating: 0, count: fileSize - at)
        guard pread(fd, &tailBytes, tailBytes.count, off_t(at)) == tailBytes.count else { return nil }
        var r = ByteReader(tailBytes)
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
              Int(starts.last ?? 0) == records.count else { return nil }
        return IndexFile(head: head, builder: b, postings: NamePostings(starts: starts, records: records), summary: summary)
    }
}

extension IndexFile {
    /// Asks for transparent huge pages under a large array about to be filled: a fresh
    /// process reading a 1,000,000-record index otherwise takes one page fault per 4 KiB
    /// (about 7,700, several milliseconds); only whole 2 MiB pages inside the range count.
    static func preferHugePages(_ p: UnsafeMutableRawPointer, _ n: Int) {
        #if os(Linux)
        let huge = 2 << 20
        let start = (Int(bitPattern: p) + huge - 1) & ~(huge - 1)
        let end = (Int(bitPattern: p) + n) & ~(huge - 1)
        if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_HUGEPAGE) }
        #endif
    }
}

extension Array {
    fileprivate func also(_ f: () -> Void) -> Array { f(); return self }
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
