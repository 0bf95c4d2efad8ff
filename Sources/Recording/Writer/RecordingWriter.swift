import QMP

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why writing a recording failed, with the path and the system's reason.
public struct RecordingWriteError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let reason: String
    public let errno: Int32
    public var description: String { "\(path): \(reason)" }
}

/// Appends records to a `.qmprec` file.
///
/// The file is written append-only, whole lines at a time, so a process killed at any
/// byte leaves every complete line readable (docs/FORMAT.md, "Crash safety"). Lines are
/// buffered and written by `flush()` (the recorder flushes at least every 100 ms);
/// `finish(reason:)` writes the trailer. A write error (ENOSPC, EIO) is thrown, naming
/// the file, and the recording stays readable up to the last complete line.
public final class RecordingWriter {
    public let path: String
    public let header: RecordingHeader
    public private(set) var records = 0
    public private(set) var bytesWritten: Int64 = 0
    public private(set) var lastTime: Int64 = 0
    public var fsyncOnFlush = false

    private var fd: Int32
    private var buffer: [UInt8] = []
    private let bufferLimit: Int
    private var finished = false

    /// Creates (or truncates) `path` and writes the header line. `path` `-` means standard output.
    public init(path: String, header: RecordingHeader, bufferLimit: Int = 1 << 20) throws(RecordingWriteError) {
        self.path = path
        self.header = header
        self.bufferLimit = bufferLimit
        if path == "-" {
            fd = 1
        } else {
            fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            if fd < 0 { throw RecordingWriter.error(path, "cannot create", errno) }
        }
        buffer.reserveCapacity(min(bufferLimit, 1 << 16) * 2)
        buffer.append(contentsOf: RecordEncoder.headerLine(header))
        try flush()
    }

    deinit {
        if !finished && fd > 2 { _ = try? flush(); close(fd) }
    }

    /// Adds one record. Times must not go backwards; an earlier time is raised to the last one.
    public func append(time: Int64, connection: UInt32, _ body: RecordBody) throws(RecordingWriteError) {
        let t = max(time, lastTime)
        lastTime = t
        RecordEncoder.encode(time: t, connection: connection, body: body, into: &buffer)
        records += 1
        if buffer.count >= bufferLimit { try flush() }
    }

    public func message(time: Int64, connection: UInt32, from: Direction, _ m: QMPMessage) throws(RecordingWriteError) {
        try append(time: time, connection: connection, .message(from: from, m))
    }

    /// Writes buffered lines to the file (and fsyncs when `sync`, by default `fsyncOnFlush`).
    public func flush(sync: Bool? = nil) throws(RecordingWriteError) {
        guard !buffer.isEmpty else { return }
        var offset = 0
        let total = buffer.count
        let failure: Int32? = buffer.withUnsafeBytes { raw -> Int32? in
            while offset < total {
                let n = write(fd, raw.baseAddress! + offset, total - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                offset += n
            }
            return nil
        }
        bytesWritten += Int64(offset)
        if let e = failure {
            // Keep what was not written out of the file: a partial line would be torn anyway.
            buffer.removeFirst(offset)
            throw RecordingWriter.error(path, "write failed", e)
        }
        buffer.removeAll(keepingCapacity: true)
        if (sync ?? fsyncOnFlush) && fd > 2 && fsync(fd) != 0 {
            throw RecordingWriter.error(path, "fsync failed", errno)
        }
    }

    /// Writes the trailer and closes the file.
    public func finish(reason: String, dropped: Int = 0, time: Int64? = nil) throws(RecordingWriteError) {
        guard !finished else { return }
        finished = true
        let trailer = RecordingTrailer(time: max(time ?? lastTime, lastTime), records: records, reason: reason, dropped: dropped)
        buffer.append(contentsOf: RecordEncoder.trailerLine(trailer))
        defer { if fd > 2 { close(fd) } }
        try flush()
    }

    /// Closes without a trailer (tests use it to simulate a crash).
    public func abandon() {
        finished = true
        _ = try? flush()
        if fd > 2 { close(fd) }
    }

    static func error(_ path: String, _ what: String, _ e: Int32) -> RecordingWriteError {
        let msg = String(cString: strerror(e))
        return RecordingWriteError(path: path, reason: "\(what): \(msg)", errno: e)
    }
}
