import Foundation
import QMP
import Recording
import Transport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why the recorder's output could not be started, with the path and the system's reason.
public struct CaptureOutputError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let reason: String
    public let errno: Int32
    public var description: String { "\(path): \(reason)" }
}

/// One `.qmprec` file as the recorder writes it: whole lines only, and a file that always
/// ends at its last complete line (docs/FORMAT.md, "Crash safety"): when a write fails
/// part-way (ENOSPC, EIO), the partial line is cut off again with `ftruncate`, so the file
/// stays readable up to the last complete record and nothing torn is left behind.
final class CaptureFile {
    let path: String
    private(set) var fd: Int32
    /// Bytes of complete lines in the file.
    private(set) var size: Int64 = 0
    /// Records (lines after the header) in the file.
    var records = 0
    /// Regular files can be truncated; standard output or a pipe cannot.
    let seekable: Bool
    /// Largest write() issued at once: about 100 ms of what the disk managed last time, so
    /// that a stop never waits long on one write to a slow disk (a pipe is written without
    /// blocking, in pieces of at most a pipe's buffer).
    private(set) var writeCap = 64 << 10
    private var closed = false

    private init(path: String, fd: Int32, seekable: Bool) {
        self.path = path
        self.fd = fd
        self.seekable = seekable
    }

    static func error(_ path: String, _ what: String, _ e: Int32) -> CaptureOutputError {
        CaptureOutputError(path: path, reason: "\(what): \(String(cString: strerror(e)))", errno: e)
    }

    /// Creates `path` (never replacing an existing file unless `replace`) and writes the
    /// header. When even the header cannot be written (a disk already full), the file is
    /// removed again, so that a re-run is not blocked by an empty file.
    static func create(path: String, header: RecordingHeader, replace: Bool) throws(CaptureOutputError) -> CaptureFile {
        if path == "-" {
            let f = CaptureFile(path: path, fd: 1, seekable: false)
            try f.writeHeader(header)
            return f
        }
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (replace ? O_TRUNC : O_EXCL)
        var fd = open(path, flags, 0o644)
        var st = stat()
        if fd < 0 && errno == EEXIST && stat(path, &st) == 0 && (st.st_mode & S_IFMT) != S_IFREG {
            // Not a file (a FIFO, /dev/null): nothing is replaced by writing to it.
            fd = open(path, O_WRONLY | O_CLOEXEC)
        }
        if fd < 0 {
            let e = errno
            if e == EEXIST {
                throw CaptureOutputError(path: path, reason: "exists; a recording is never overwritten silently (choose another name, or --force to replace it)", errno: e)
            }
            throw error(path, "cannot create", e)
        }
        let regular = fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
        let f = CaptureFile(path: path, fd: fd, seekable: regular)
        if !regular { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        do {
            try f.writeHeader(header)
        } catch {
            f.close()
            if regular { unlink(path) }
            throw CaptureOutputError(path: path, reason: error.reason + "; nothing was recorded and the file was removed", errno: error.errno)
        }
        return f
    }

    private func writeHeader(_ header: RecordingHeader) throws(CaptureOutputError) {
        let line = RecordEncoder.headerLine(header)
        let r = line.withUnsafeBytes { write($0, lineEnds: [line.count]) }
        if let e = r.error { throw CaptureFile.error(path, "cannot write the header", e) }
    }

    /// Writes whole lines (`lineEnds`: the offset just past each line in `bytes`). Returns
    /// how many of them are now complete in the file and the error that stopped the rest;
    /// after an error the file is cut back to its last complete line. Past `deadline`
    /// (monotonic ns) it stops at the next line boundary (`outOfTime`): a pipe is written
    /// without blocking, so a reader that stopped reading cannot hold a stop up.
    func write(_ bytes: UnsafeRawBufferPointer, lineEnds: [Int], deadline: () -> Int64 = { .max }) -> (lines: Int, error: Int32?, outOfTime: Bool) {
        var off = 0
        var failure: Int32?
        var outOfTime = false
        var nextLine = 0
        while off < bytes.count {
            while nextLine < lineEnds.count && lineEnds[nextLine] <= off { nextLine += 1 }
            let late = WallClock.monotonicNanos() >= deadline()
            if late && (nextLine == 0 || lineEnds[nextLine - 1] == off) {
                outOfTime = true
                break
            }
            var want = min(bytes.count - off, writeCap)
            if nextLine < lineEnds.count && late {
                want = min(want, lineEnds[nextLine] - off)   // only the rest of a torn line
            }
            let t0 = WallClock.monotonicNanos()
            let n = seekable ? pwrite(fd, bytes.baseAddress! + off, want, off_t(size) + off_t(off))
                             : Glibc.write(fd, bytes.baseAddress! + off, want)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    FDWait.writable(fd, timeoutMs: 50)
                    continue
                }
                failure = errno
                break
            }
            if n == 0 { failure = EIO; break }
            off += n
            if seekable {
                let dt = max(WallClock.monotonicNanos() - t0, 1)
                // Bytes per 100 ms at the speed just seen, within 4 KiB ... 256 KiB.
                writeCap = Int(min(max(Int64(n) * 100_000_000 / dt, 4096), 256 << 10))
            }
        }
        if failure == nil && !outOfTime {
            size += Int64(bytes.count)
            return (lineEnds.count, nil, false)
        }
        // Keep the lines that were written whole; cut a torn one off.
        let kept = lineEnds.firstIndex { $0 > off } ?? lineEnds.count
        let keepBytes = kept == 0 ? 0 : lineEnds[kept - 1]
        if seekable && off > keepBytes { _ = ftruncate(fd, off_t(size) + off_t(keepBytes)) }
        size += Int64(seekable ? keepBytes : off)
        return (kept, failure, outOfTime)
    }

    func sync() -> Int32? {
        guard seekable else { return nil }
        return fsync(fd) == 0 ? nil : errno
    }

    func close() {
        guard !closed else { return }
        closed = true
        if fd > 2 { Glibc.close(fd) }
    }

    deinit { close() }
}
