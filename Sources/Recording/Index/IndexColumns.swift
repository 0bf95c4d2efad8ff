#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The index as a reader uses it: flat per-record columns and the name lists, read in
/// place. Either they are the arrays an `IndexBuilder` made (kept alive by this value), or
/// they lie in a mapped cache entry (docs/INDEX.md), so that opening an indexed recording
/// copies nothing and touches only the pages of the columns a command reads: `info` reads
/// none of them, `cat --event` one name's list and its records' offsets.
struct IndexColumns: @unchecked Sendable {
    let offsets: UnsafeBufferPointer<UInt64>
    let times: UnsafeBufferPointer<Int64>
    let lines: UnsafeBufferPointer<UInt32>
    let conns: UnsafeBufferPointer<UInt32>
    let nameIDs: UnsafeBufferPointer<UInt16>
    let kindDir: UnsafeBufferPointer<UInt8>
    /// `records[starts[id]..<starts[id + 1]]` are the records named by `id`.
    let starts: UnsafeBufferPointer<UInt32>
    let records: UnsafeBufferPointer<UInt32>
    /// What keeps the memory above alive: the builder's arrays, or the mapping.
    let owner: AnyObject

    var count: Int { times.count }

    /// The columns of `b` and the name lists `postings`; the arrays are kept, never copied
    /// (they are immutable from here on, so their storage does not move).
    init(builder b: IndexBuilder, postings: NamePostings) {
        let keep = ArrayStorage(b, postings)
        owner = keep
        offsets = keep.offsets.withUnsafeBufferPointer { $0 }
        times = keep.times.withUnsafeBufferPointer { $0 }
        lines = keep.lines.withUnsafeBufferPointer { $0 }
        conns = keep.conns.withUnsafeBufferPointer { $0 }
        nameIDs = keep.nameIDs.withUnsafeBufferPointer { $0 }
        kindDir = keep.kindDir.withUnsafeBufferPointer { $0 }
        starts = keep.starts.withUnsafeBufferPointer { $0 }
        records = keep.records.withUnsafeBufferPointer { $0 }
    }

    /// Columns laid out in `mapping` from byte `at` (the entry layout of docs/INDEX.md):
    /// `count` records, `nameSlots` list starts, `listed` list entries.
    init(mapping: MappedFile, at start: Int, count n: Int, nameSlots m: Int, listed p: Int) {
        owner = mapping
        var at = start
        func column<T>(_ k: Int, _: T.Type) -> UnsafeBufferPointer<T> {
            defer { at += k * MemoryLayout<T>.stride }
            return UnsafeBufferPointer(start: (mapping.base + at).assumingMemoryBound(to: T.self), count: k)
        }
        offsets = column(n, UInt64.self)
        times = column(n, Int64.self)
        lines = column(n, UInt32.self)
        conns = column(n, UInt32.self)
        nameIDs = column(n, UInt16.self)
        kindDir = column(n, UInt8.self)
        at = IndexColumns.listsOffset(from: start, count: n)
        starts = column(m, UInt32.self)
        records = column(p, UInt32.self)
    }

    /// Bytes of the per-record columns for one record (offset, time, line, connection, name
    /// id, kind and direction).
    /// Gives back the mapped pages of every column's first `n` records (`MappedFile.release`).
    func release(below n: Int) {
        guard let map = owner as? MappedFile else { return }
        map.release(offsets, below: n); map.release(times, below: n); map.release(lines, below: n)
        map.release(conns, below: n); map.release(nameIDs, below: n); map.release(kindDir, below: n)
    }

    static let bytesPerRecord = 8 + 8 + 4 + 4 + 2 + 1

    /// Where the name lists start in an entry whose columns start at `start` (on an 8-byte
    /// boundary: the byte-wide column before them ends anywhere).
    static func listsOffset(from start: Int, count n: Int) -> Int { aligned(start + n * bytesPerRecord) }

    /// Bytes the columns take in an entry starting at `start` (up to the id keys, when the
    /// entry has them, or the tail): both start on an 8-byte boundary.
    static func byteSize(from start: Int, count n: Int, nameSlots m: Int, listed p: Int) -> Int {
        aligned(listsOffset(from: start, count: n) + 4 * (m + p)) - start
    }

    static func aligned(_ at: Int) -> Int { (at + 7) & ~7 }

    /// The records named by `id`, in order (empty for an id the lists do not know).
    func list(_ id: UInt16) -> RecordList {
        let k = Int(id)
        guard k + 1 < starts.count else { return RecordList(UnsafeBufferPointer(start: nil, count: 0), owner: owner) }
        let from = Int(starts[k]), to = Int(starts[k + 1])
        return RecordList(UnsafeBufferPointer(rebasing: records[from..<to]), owner: owner)
    }

    /// The columns as a builder's arrays, for extending the index of a grown file.
    func restore(into b: inout IndexBuilder) {
        guard b.offsets.count != count else { return }
        b.offsets = Array(offsets); b.times = Array(times); b.lines = Array(lines)
        b.conns = Array(conns); b.nameIDs = Array(nameIDs); b.kindDir = Array(kindDir)
    }

    /// A builder's arrays and the name lists, held for the columns that point into them.
    private final class ArrayStorage {
        let offsets: [UInt64], times: [Int64], lines: [UInt32], conns: [UInt32]
        let nameIDs: [UInt16], kindDir: [UInt8], starts: [UInt32], records: [UInt32]
        init(_ b: IndexBuilder, _ p: NamePostings) {
            offsets = b.offsets; times = b.times; lines = b.lines; conns = b.conns
            nameIDs = b.nameIDs; kindDir = b.kindDir; starts = p.starts; records = p.records
        }
    }
}

/// A whole cache entry in memory, read-only: mapped when large (its columns are then read
/// in place, page by page as used), read into a buffer when small (a map and its unmapping
/// cost more than reading a few pages: a fleet opens thousands of small recordings).
/// Entries are replaced by rename and removed by unlink, never truncated in place, so a
/// mapping stays valid for as long as it is held.
final class MappedFile: @unchecked Sendable {
    let base: UnsafeRawPointer
    let length: Int
    private let mapped: Bool

    /// Entries smaller than this are read rather than mapped.
    static let readBelow = 1 << 20

    init?(fd: Int32, length: Int) {
        guard length > 0 else { return nil }
        if length < MappedFile.readBelow {
            let buf = UnsafeMutableRawPointer.allocate(byteCount: length, alignment: 16)
            var done = 0
            while done < length {
                let r = pread(fd, buf + done, length - done, off_t(done))
                if r < 0 && errno == EINTR { continue }
                if r <= 0 { buf.deallocate(); return nil }
                done += r
            }
            base = UnsafeRawPointer(buf)
            mapped = false
        } else {
            guard let p = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else { return nil }
            base = UnsafeRawPointer(p)
            mapped = true
        }
        self.length = length
    }

    /// Gives back the resident pages of `column`'s first `n` elements (whole pages inside
    /// them), when `column` lies in this mapping: they come back from the page cache, the
    /// same, if read again (the mapping is private and never written). A pass calls it for
    /// the records it has passed, so that what the index holds resident follows the pass,
    /// not the recording's size. Nothing for an entry read into memory.
    func release<T>(_ column: UnsafeBufferPointer<T>, below n: Int) {
        guard mapped, let start = column.baseAddress, n > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let from = UnsafeRawPointer(start) - base
        guard from >= 0, from < length else { return }
        let lo = (from + page - 1) / page * page
        let hi = min(length, from + min(n, column.count) * MemoryLayout<T>.stride) / page * page
        if hi > lo { _ = madvise(UnsafeMutableRawPointer(mutating: base + lo), hi - lo, MADV_DONTNEED) }
    }

    deinit {
        if mapped {
            munmap(UnsafeMutableRawPointer(mutating: base), length)
        } else {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }
}
