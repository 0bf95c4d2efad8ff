import CZlib

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a recording could not be opened at all (as opposed to bad lines inside it).
public struct RecordingOpenError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// The bytes of a recording file: memory-mapped for `.qmprec` (so opening a large file
/// costs no copy and the kernel pages it in as the index scans), or decompressed into
/// memory for `.qmprec.gz`.
public final class FileBytes: @unchecked Sendable {
    public let base: UnsafeRawPointer?
    public let count: Int
    private let mapped: Bool
    /// Which file on disk these bytes are, for a mapped regular file (what keys its index
    /// in the cache: docs/INDEX.md); `nil` for pipes, `.gz` files and bytes in memory.
    public let identity: FileIdentity?

    public init(path: String) throws(RecordingOpenError) {
        // The path is opened once: a pipe (`-`, /dev/stdin, process substitution) read twice,
        // say to sniff gzip's magic number and then for real, would lose its first bytes.
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RecordingOpenError(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw RecordingOpenError(path: path, reason: String(cString: strerror(errno))) }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw RecordingOpenError(path: path, reason: "is a directory") }
        if (st.st_mode & S_IFMT) != S_IFREG {
            // A pipe or device: read it whole, once; gzip is recognised in memory.
            let (p, n) = FileBytes.readAll(fd)
            if n >= 2, p.load(as: UInt8.self) == 0x1F, p.load(fromByteOffset: 1, as: UInt8.self) == 0x8B,
               let plain = try? ImportSource.gunzip(Array(UnsafeRawBufferPointer(start: p, count: n)), path: path) {
                p.deallocate()
                let q = UnsafeMutableRawPointer.allocate(byteCount: max(plain.bytes.count, 1), alignment: 16)
                plain.bytes.withUnsafeBytes { if let b = $0.baseAddress { q.copyMemory(from: b, byteCount: plain.bytes.count) } }
                base = UnsafeRawPointer(q)
                count = plain.bytes.count
            } else {
                base = UnsafeRawPointer(p)
                count = n
            }
            mapped = false
            identity = nil
            return
        }
        if path.hasSuffix(".gz") || FileBytes.looksGzipped(fd) {
            let (p, n) = try FileBytes.gunzip(path)
            base = UnsafeRawPointer(p)
            count = n
            mapped = false
            identity = nil
            return
        }
        let size = Int(st.st_size)
        if size == 0 {
            base = nil; count = 0; mapped = false; identity = nil
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw RecordingOpenError(path: path, reason: "cannot map: \(String(cString: strerror(errno)))")
        }
        _ = madvise(p, size, MADV_SEQUENTIAL)
        base = UnsafeRawPointer(p)
        count = size
        mapped = true
        identity = FileIdentity(st)
    }

    /// Wraps bytes already in memory (tests, stdin).
    public init(bytes: [UInt8]) {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        bytes.withUnsafeBytes { if let b = $0.baseAddress { p.copyMemory(from: b, byteCount: bytes.count) } }
        base = UnsafeRawPointer(p)
        count = bytes.count
        mapped = false
        identity = nil
    }

    deinit {
        guard let base else { return }
        if mapped {
            munmap(UnsafeMutableRawPointer(mutating: base), count)
        } else {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }

    /// Gives back the resident pages of `range` (rounded inward to whole pages) of a mapped
    /// file: they stay in the page cache and come back, unchanged, on the next touch (the
    /// mapping is private and never written, so nothing is lost). Readers call it for the
    /// bytes they have passed, so that resident memory follows what is being looked at, not
    /// the file's size. Bytes held in memory (`.gz`, pipes) are the only copy: untouched.
    public func release(_ range: Range<Int>) {
        guard mapped, let base else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let from = (max(0, range.lowerBound) + page - 1) / page * page
        let to = min(count, range.upperBound) / page * page
        guard to > from else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + from), to - from, MADV_DONTNEED)
    }

    /// The bytes, valid only while this object is alive: copy with `copyBytes()` when the
    /// `FileBytes` itself is a temporary.
    public var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// A copy of all the bytes (the mapping stays alive for the duration of the copy).
    public func copyBytes() -> [UInt8] {
        withExtendedLifetime(self) { Array(UnsafeRawBufferPointer(start: base, count: count)) }
    }

    public subscript(range: Range<Int>) -> [UInt8] {
        guard let base else { return [] }
        return Array(UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count))
    }

    /// gzip's magic number at the start of a regular file (read in place: the offset stays).
    private static func looksGzipped(_ fd: Int32) -> Bool {
        var magic: (UInt8, UInt8) = (0, 0)
        let n = pread(fd, &magic, 2, 0)
        return n == 2 && magic.0 == 0x1F && magic.1 == 0x8B
    }

    private static func readAll(_ fd: Int32) -> (UnsafeMutableRawPointer, Int) {
        var cap = 1 << 16
        var p = UnsafeMutableRawPointer.allocate(byteCount: cap, alignment: 16)
        var n = 0
        while true {
            if n == cap {
                let q = UnsafeMutableRawPointer.allocate(byteCount: cap * 2, alignment: 16)
                q.copyMemory(from: p, byteCount: n)
                p.deallocate()
                p = q
                cap *= 2
            }
            let r = read(fd, p + n, cap - n)
            if r < 0 && errno == EINTR { continue }
            if r <= 0 { break }
            n += r
        }
        return (p, n)
    }

    /// Decompresses a gzip file. A truncated `.gz` (a recorder killed while compressing)
    /// yields everything that decompressed before the damage.
    private static func gunzip(_ path: String) throws(RecordingOpenError) -> (UnsafeMutableRawPointer, Int) {
        guard let gz = gzopen(path, "rb") else {
            throw RecordingOpenError(path: path, reason: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { gzclose(gz) }
        _ = gzbuffer(gz, 1 << 17)
        var cap = 1 << 20
        var p = UnsafeMutableRawPointer.allocate(byteCount: cap, alignment: 16)
        var n = 0
        while true {
            if cap - n < 1 << 16 {
                let q = UnsafeMutableRawPointer.allocate(byteCount: cap * 2, alignment: 16)
                q.copyMemory(from: p, byteCount: n)
                p.deallocate()
                p = q
                cap *= 2
            }
            let r = gzread(gz, p + n, UInt32(min(cap - n, Int(Int32.max))))
            if r <= 0 { break }
            n += Int(r)
        }
        return (p, n)
    }
}
