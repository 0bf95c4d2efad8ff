import Foundation
import QMP
import Recording

/// Options shared by both recorder modes.
public struct CaptureOptions: Sendable {
    public var output: String
    /// Records are flushed to the file at least this often (ns).
    public var flushInterval: Int64 = 100_000_000
    public var fsync = false
    /// Start a new numbered file when one grows past this many bytes (0: never).
    public var rotateBytes: Int64 = 0
    public var redact = true
    /// Bytes the queue between the sockets and the disk may hold before chunks are dropped.
    public var queueLimitBytes = 64 << 20
    /// Called (on the writer thread) with every recorded message, for `--verbose`.
    public var onMessage: (@Sendable (Direction, UInt32, QMPMessage) -> Void)?

    public init(output: String) { self.output = output }
}

/// Counters the status line shows. Read under the sink's lock.
public struct CaptureStats: Sendable {
    public var records = 0
    public var events = 0
    public var bytes: Int64 = 0
    public var droppedChunks = 0
    public var droppedBytes = 0
    public var redactions = 0
    public var files = 1
}

/// Receives raw traffic from the socket loops and records it on its own thread.
///
/// The loops only append chunks to a bounded queue (never touching the disk), so a slow
/// disk cannot slow the traffic: when the queue is full a chunk is dropped and counted,
/// and a note in the recording says how much was lost. The writer thread frames each
/// connection's byte streams (`QMPFramer`), redacts, encodes and writes, flushing at least
/// every `flushInterval`.
public final class CaptureSink: @unchecked Sendable {
    enum Item {
        case data(Int64, UInt32, Direction, [UInt8])
        case open(Int64, UInt32, String, JSONObject)
        case close(Int64, UInt32, String, String)
        case note(Int64, UInt32, String, JSONObject)
    }

    private let options: CaptureOptions
    private var header: RecordingHeader
    private let cond = NSCondition()
    private var queue: [Item] = []
    private var queuedBytes = 0
    private var stopping = false
    private var stopped = false
    private var finishReason = ""
    private var pendingDropNote: (chunks: Int, bytes: Int) = (0, 0)
    private var stats = CaptureStats()
    private var failureError: RecordingWriteError?
    private var thread: Thread?

    // Writer-thread state.
    private var writer: RecordingWriter?
    private var framers: [UInt64: QMPFramer] = [:]
    private var redactor: Redactor
    private var part = 0
    private var lastFlush: Int64 = 0
    private var lastTime: Int64 = 0

    public init(header: RecordingHeader, options: CaptureOptions) throws(RecordingWriteError) {
        self.header = header
        self.options = options
        self.redactor = Redactor(enabled: options.redact)
        let w = try RecordingWriter(path: options.output, header: header)
        w.fsyncOnFlush = options.fsync
        writer = w
        let t = Thread { [unowned self] in self.run() }
        t.name = "qmpreplay-writer"
        thread = t
        t.start()
    }

    /// The current statistics (thread-safe).
    public var currentStats: CaptureStats {
        cond.lock(); defer { cond.unlock() }
        return stats
    }

    /// The write error that stopped recording, if any.
    public var failure: RecordingWriteError? {
        cond.lock(); defer { cond.unlock() }
        return failureError
    }

    public func data(_ time: Int64, _ conn: UInt32, _ dir: Direction, _ bytes: [UInt8]) {
        enqueue(.data(time, conn, dir, bytes), size: bytes.count)
    }

    public func open(_ time: Int64, _ conn: UInt32, peer: String, info: JSONObject = JSONObject()) {
        enqueue(.open(time, conn, peer, info), size: 64, essential: true)
    }

    public func close(_ time: Int64, _ conn: UInt32, by: String, reason: String) {
        enqueue(.close(time, conn, by, reason), size: 64, essential: true)
    }

    public func note(_ time: Int64, _ conn: UInt32 = 0, _ text: String, _ data: JSONObject = JSONObject()) {
        enqueue(.note(time, conn, text, data), size: 64, essential: true)
    }

    private func enqueue(_ item: Item, size: Int, essential: Bool = false) {
        cond.lock()
        defer { cond.unlock() }
        guard !stopped else { return }
        if !essential && queuedBytes + size > options.queueLimitBytes {
            stats.droppedChunks += 1
            stats.droppedBytes += size
            pendingDropNote.chunks += 1
            pendingDropNote.bytes += size
            return
        }
        queue.append(item)
        queuedBytes += size
        cond.signal()
    }

    /// Drains the queue, writes the trailer and stops the writer thread.
    /// Returns the write error, if recording failed.
    @discardableResult
    public func finish(reason: String, time: Int64) -> RecordingWriteError? {
        cond.lock()
        stopping = true
        finishReason = reason
        lastTime = max(lastTime, time)
        cond.signal()
        while !stopped { cond.wait() }
        let e = failureError
        cond.unlock()
        return e
    }

    // MARK: Writer thread

    /// Records reach the kernel at most this long after the writer encoded them (one write
    /// per millisecond at most, however busy the traffic): a recorder killed with SIGKILL
    /// loses about a millisecond of traffic, and a flood costs no write per message.
    static let promptWriteNanos: Int64 = 1_000_000

    private func run() {
        var lastFlushWall = WallClock.monotonicNanos()
        var lastWrite = lastFlushWall
        var dirty = false
        while true {
            cond.lock()
            while queue.isEmpty && !stopping {
                let wait = dirty ? CaptureSink.promptWriteNanos : options.flushInterval
                let deadline = Date(timeIntervalSinceNow: Double(wait) / 1e9)
                if !cond.wait(until: deadline) { break }
            }
            let items = queue
            queue.removeAll(keepingCapacity: true)
            queuedBytes = 0
            let drops = pendingDropNote
            pendingDropNote = (0, 0)
            let done = stopping
            let failed = failureError != nil
            cond.unlock()

            if !failed {
                do {
                    if drops.chunks > 0 {
                        try write(time: lastTime, conn: 0, .note(
                            text: "the disk could not keep up: \(drops.chunks) chunks (\(drops.bytes) bytes) of traffic were forwarded but not recorded",
                            data: JSONObject(["dropped_chunks": .int(drops.chunks), "dropped_bytes": .int(drops.bytes)])))
                    }
                    for item in items { try process(item) }
                    if !items.isEmpty { dirty = true }
                    let now = WallClock.monotonicNanos()
                    if done || now - lastFlushWall >= options.flushInterval {
                        try writer?.flush()
                        lastFlushWall = now
                        lastWrite = now
                        dirty = false
                        try rotateIfNeeded()
                    } else if dirty && (items.isEmpty || now - lastWrite >= CaptureSink.promptWriteNanos) {
                        // Hand records to the kernel within about a millisecond (when traffic
                        // pauses, or every millisecond while it flows), so that a recorder killed
                        // with SIGKILL loses only that much, not a flush interval of forwarded
                        // traffic. The interval still paces fsync (--fsync) and file rotation.
                        try writer?.flush(sync: false)
                        lastWrite = now
                        dirty = false
                    }
                    if done {
                        try flushFramers()
                        let s = currentDropped()
                        try writer?.finish(reason: finishReason, dropped: s, time: lastTime)
                    }
                } catch {
                    cond.lock()
                    failureError = error
                    cond.unlock()
                    writer?.abandon()
                }
            }
            if done {
                cond.lock()
                stopped = true
                cond.broadcast()
                cond.unlock()
                return
            }
        }
    }

    private func currentDropped() -> Int {
        cond.lock(); defer { cond.unlock() }
        return stats.droppedChunks
    }

    private func key(_ conn: UInt32, _ dir: Direction) -> UInt64 { UInt64(conn) << 1 | (dir == .qemu ? 0 : 1) }

    private func process(_ item: Item) throws(RecordingWriteError) {
        switch item {
        case .data(let t, let conn, let dir, let bytes):
            lastTime = max(lastTime, t)
            var f = framers[key(conn, dir)] ?? QMPFramer()
            var frames = f.push(bytes)
            // A read that ends right after a complete message means the message is complete:
            // record it now rather than waiting for a terminator that may never come.
            frames += f.drain()
            framers[key(conn, dir)] = f
            for frame in frames { try record(frame.message(), time: t, conn: conn, dir: dir) }
        case .open(let t, let conn, let peer, let info):
            lastTime = max(lastTime, t)
            try write(time: t, conn: conn, .open(peer: peer, info: info))
        case .close(let t, let conn, let by, let reason):
            lastTime = max(lastTime, t)
            for dir in Direction.allCases {
                if var f = framers.removeValue(forKey: key(conn, dir)) {
                    for frame in f.finish() { try record(frame.message(), time: t, conn: conn, dir: dir) }
                }
            }
            redactor.closed(connection: conn)
            try write(time: t, conn: conn, .close(by: by, reason: reason))
        case .note(let t, let conn, let text, let data):
            lastTime = max(lastTime, t)
            try write(time: t, conn: conn, .note(text: text, data: data))
        }
    }

    private func flushFramers() throws(RecordingWriteError) {
        for (k, var f) in framers {
            let conn = UInt32(k >> 1)
            let dir: Direction = k & 1 == 0 ? .qemu : .client
            for frame in f.finish() { try record(frame.message(), time: lastTime, conn: conn, dir: dir) }
        }
        framers.removeAll()
    }

    private func record(_ m: QMPMessage, time: Int64, conn: UInt32, dir: Direction) throws(RecordingWriteError) {
        let before = redactor.redactions
        let out = redactor.process(m, from: dir, connection: conn)
        try write(time: time, conn: conn, .message(from: dir, out))
        options.onMessage?(dir, conn, out)
        cond.lock()
        if out.kind == .event { stats.events += 1 }
        stats.redactions += redactor.redactions - before
        cond.unlock()
    }

    private func write(time: Int64, conn: UInt32, _ body: RecordBody) throws(RecordingWriteError) {
        guard let w = writer else { return }
        try w.append(time: time, connection: conn, body)
        cond.lock()
        stats.records += 1
        stats.bytes = w.bytesWritten
        cond.unlock()
    }

    private func rotateIfNeeded() throws(RecordingWriteError) {
        guard options.rotateBytes > 0, let w = writer, w.bytesWritten >= options.rotateBytes else { return }
        part += 1
        let next = CaptureSink.partPath(options.output, part)
        try w.finish(reason: "rotated to \(next)", time: lastTime)
        var h = header
        h.labels.append((key: "part", value: String(part)))
        h.labels.append((key: "previous", value: part == 1 ? options.output : CaptureSink.partPath(options.output, part - 1)))
        let nw = try RecordingWriter(path: next, header: h)
        nw.fsyncOnFlush = options.fsync
        writer = nw
        cond.lock()
        stats.files += 1
        cond.unlock()
        try write(time: lastTime, conn: 0, .note(text: "continued from the previous file; open connections go on", data: JSONObject()))
    }

    /// `x.qmprec` -> `x.1.qmprec`, `x.2.qmprec`, ...
    public static func partPath(_ path: String, _ n: Int) -> String {
        for ext in [".qmprec.gz", ".qmprec"] where path.hasSuffix(ext) {
            return String(path.dropLast(ext.count)) + ".\(n)" + ext
        }
        return path + ".\(n)"
    }
}
