import CZlib
import QMP

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a source could not be read at all.
public struct ImportSourceError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// Reads what `qmpreplay import` converts: a file, `-` (standard input), or anything that
/// can only be read once (a pipe, `/dev/stdin`, `<(...)`).
///
/// The source is opened once and read through that one descriptor: looking at a pipe
/// twice (say, to check for gzip's magic number, then to read it) would consume its first
/// bytes in the first look. Gzip-compressed input is recognised by its magic number in the
/// bytes already read and decompressed in memory.
public enum ImportSource {
    public static func read(_ path: String) throws(ImportSourceError) -> [UInt8] {
        try load(path).bytes
    }

    /// The bytes, and a remark when they are not all there (gzip data cut short).
    public static func load(_ path: String) throws(ImportSourceError) -> (bytes: [UInt8], remark: String?) {
        let raw: [UInt8]
        if path == "-" {
            raw = try readAll(fd: 0, path: "standard input")
        } else {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw ImportSourceError(path: path, reason: String(cString: strerror(errno))) }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw ImportSourceError(path: path, reason: String(cString: strerror(errno))) }
            if (st.st_mode & S_IFMT) == S_IFDIR { throw ImportSourceError(path: path, reason: "is a directory") }
            raw = try readAll(fd: fd, path: path, sizeHint: (st.st_mode & S_IFMT) == S_IFREG ? Int(st.st_size) : 0)
        }
        if raw.count >= 2, raw[0] == 0x1F, raw[1] == 0x8B {
            let (bytes, complete) = try gunzip(raw, path: path == "-" ? "standard input" : path)
            return (bytes, complete ? nil : "the gzip data ends early; importing the \(bytes.count) bytes that decompressed")
        }
        return (raw, nil)
    }

    static func readAll(fd: Int32, path: String, sizeHint: Int = 0) throws(ImportSourceError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(max(sizeHint + 1, 1 << 16))
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { sysRead(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ImportSourceError(path: path, reason: String(cString: strerror(errno)))
            }
            if n == 0 { break }
            out += chunk[0..<n]
        }
        return out
    }

    /// Decompresses gzip data (several members in a row, too). Data cut short yields what
    /// decompressed before the cut.
    static func gunzip(_ input: [UInt8], path: String) throws(ImportSourceError) -> (bytes: [UInt8], complete: Bool) {
        var out: [UInt8] = []
        var failure: String?
        var complete = false
        input.withUnsafeBufferPointer { inBuf in
            var strm = z_stream()
            // 15 + 32: the largest window, gzip or zlib header detected automatically.
            guard inflateInit2_(&strm, 47, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                failure = "cannot start decompressing"
                return
            }
            defer { inflateEnd(&strm) }
            strm.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress)
            strm.avail_in = UInt32(inBuf.count)
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let (rc, produced) = chunk.withUnsafeMutableBufferPointer { c -> (Int32, Int) in
                    strm.next_out = c.baseAddress
                    strm.avail_out = UInt32(c.count)
                    let rc = inflate(&strm, Z_NO_FLUSH)
                    return (rc, c.count - Int(strm.avail_out))
                }
                out += chunk[0..<produced]
                if rc == Z_STREAM_END {
                    if strm.avail_in == 0 { complete = true; return }
                    // Another gzip member follows.
                    guard inflateReset(&strm) == Z_OK else { return }
                    continue
                }
                if rc == Z_BUF_ERROR && strm.avail_in == 0 { return }  // cut short: keep what we have
                if rc != Z_OK {
                    if out.isEmpty { failure = "not valid gzip data" }
                    return
                }
            }
        }
        if let failure { throw ImportSourceError(path: path, reason: failure) }
        return (out, complete)
    }

    /// True when the bytes are a `.qmprec` recording (its header line comes first).
    public static func isRecording(_ b: [UInt8]) -> Bool {
        var end = 0
        while end < b.count, end < 1 << 16, b[end] != 0x0A { end += 1 }
        let first = b[0..<end]
        guard TextBytes.contains(first, "\"qmprec\""),
              let v = try? JSONParser.parse(Array(TextBytes.trim(first))), let o = v.objectValue
        else { return false }
        return o["qmprec"]?.int64Value != nil
    }
}

/// read(2), named apart from `ImportSource.read(_:)`.
private func sysRead(_ fd: Int32, _ buf: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    read(fd, buf, count)
}
