import Foundation
import Logging
import QMP
import Recording

import Transport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Options shared by both recorder modes.
public struct CaptureOptions: Sendable {
    public var output: String
    /// With `fsync`, the file is synced this often (ns).
    public var flushInterval: Int64 = 100_000_000
    public var fsync = false
    /// Start a new numbered file before one would grow past this many bytes (0: never).
    public var rotateBytes: Int64 = 0
    public var redact = true
    /// Bytes of records that may wait for the disk; beyond it whole records are dropped
    /// (and the span they covered is noted), so a slow disk never slows the traffic.
    public var queueLimitBytes = 64 << 20
    /// Replace an existing output file and its part files (`record --force`).
    public var replaceExisting = false
    /// How long `finish` may take to write what is still queued (ns); the rest is noted
    /// as a span that was not recorded, so a stop is prompt even on a very slow disk.
    public var stopBudget: Int64 = 1_500_000_000
    /// How often a failed output is tried again (ns).
    public var retryInterval: Int64 = 1_000_000_000
    /// Sees every recorded message (`record --verbose` prints them).
    public var observer: (any CaptureObserver)?
    /// Dashcam mode (`record --ring`): records go to a bounded ring in memory, and each
    /// trigger writes an incident file into `ring.directory` (`output` is not written).
    public var ring: DashcamOptions?

    public init(output: String) { self.output = output }
}

/// Sees every message as it is recorded: redacted, as the file holds it, on the sink's
/// encoder thread (so it never delays the traffic). `record --verbose` prints each one as
/// `<<< [c1] {"return": {}}`.
public protocol CaptureObserver: Sendable {
    func recorded(_ message: QMPMessage, from direction: Direction, connection: UInt32)
}

/// One file written: its path and size.
public struct CapturePart: Sendable, Hashable {
    public var path: String
    public var bytes: Int64
}

/// Counters for the status line and the summary (`CaptureSink.currentStats`).
public struct CaptureStats: Sendable {
    /// Records written, in all files.
    public var records = 0
    public var events = 0
    /// Bytes written, in all files.
    public var bytes: Int64 = 0
    /// Records that were not written (dropped because the disk was too slow, lost to a
    /// write error, or still queued when a stop ran out of time).
    public var lostRecords = 0
    /// Messages among them, and their bytes as they crossed the socket.
    public var lostMessages = 0
    public var lostBytes: Int64 = 0
    /// Spans of lost records (each is noted in the file when it can still be written).
    public var gaps = 0
    /// Gap notes that could not be written (the file was failing when they were due).
    public var unnotedGaps = 0
    public var redactions = 0
    /// The files written so far, the current one last.
    public var parts: [CapturePart] = []
    /// The last output error (ENOSPC, EIO...), and how often the output failed.
    public var outputError: String?
    public var outputFailures = 0
    /// Whether the output is failing right now.
    public var outputFailing = false
    /// Connections QEMU closed without a SHUTDOWN first (killed, crashed).
    public var qemuLost = 0
    /// Dashcam mode: records and memory in the ring now, the most it held, incident files written.
    public var ringRecords = 0
    public var ringBytes = 0
    public var ringPeakBytes = 0
    public var incidents = 0

    public var files: Int { max(parts.count, 1) }
    public var incomplete: Bool { lostRecords > 0 || outputFailures > 0 }
}

/// How `finish` went.
public struct CaptureEnd: Sendable {
    /// The trailer is in the file (the recording ended cleanly, whatever it lost before).
    public var trailerWritten: Bool
    /// Why the end could not be written, if so.
    public var error: String?
}

/// Receives raw traffic from the socket loops and records it on two threads of its own.
///
/// The socket loops only append chunks with their receive time to a queue (never touching
/// the disk). The encoder thread frames each connection's byte streams (`QMPFramer`),
/// redacts, and encodes whole records, each stamped with the time its last byte was
/// received; it hands them to the disk thread through a second queue bounded by
/// `queueLimitBytes`. When the disk cannot keep up, whole records are dropped there and
/// the span they covered (first and last receive time, records, messages, bytes) is
/// noted where they would have been. The disk thread writes whole lines within about a
/// millisecond; a write error (ENOSPC, EIO) cuts the file back to its last complete line,
/// and what follows is counted as a lost span, retried every `retryInterval` and noted as
/// soon as the file takes writes again. `finish` is bounded by `stopBudget`.
///
/// What the user should hear about (the output failed, works again, part files removed or
/// skipped) goes to the `Logger`. Shared state lives in three `Mutex`es (`Guarded`: the input queue,
/// the output queue, the counters); a worker with nothing to do sleeps on a `WorkerWakeup`.
/// The rest belongs to one thread: framing and redaction to the encoder, the file to the disk
/// thread.
public final class CaptureSink: @unchecked Sendable {
    /// A span of traffic that was not recorded.
    struct Gap: Sendable {
        var from: Int64
        var to: Int64
        var records = 0
        var messages = 0
        var bytes: Int64 = 0
        var cause: String
        /// A span cut from a byte stream: its bytes, counted in messages by lines when the
        /// span ends (`streamEnded`), since a message may straddle two of its pieces.
        var lines = LostLines()

        init(at t: Int64, cause: String) { from = t; to = t; self.cause = cause }

        /// `g` follows this span in the same stream.
        mutating func add(_ g: Gap) {
            from = min(from, g.from); to = max(to, g.to)
            records += g.records; messages += g.messages; bytes += g.bytes
            lines.append(g.lines)
        }

        /// A stream's span is complete: its messages are its lines with content, each a
        /// record that is missing.
        func streamEnded() -> Gap {
            var g = self
            g.messages = lines.messages
            g.records = g.messages
            return g
        }

        var body: RecordBody {
            let text = "not recorded (\(cause)): \(messages) messages (\(bytes) bytes) received between "
                + "\(DurationFormat.short(from)) and \(DurationFormat.short(to))"
            return .note(text: text, data: JSONObject([
                "gap_from": .int(from), "gap_to": .int(to), "gap_records": .int(records),
                "gap_messages": .int(messages), "gap_bytes": .int(bytes), "cause": .string(cause),
            ]))
        }
    }

    enum Item: Sendable {
        case data(Int64, UInt32, Direction, [UInt8])
        case open(Int64, UInt32, String, JSONObject)
        case close(Int64, UInt32, String, String)
        /// QEMU closed (or reset) a connection: the reason depends on whether a SHUTDOWN came.
        case qemuGone(Int64, UInt32, String?, String)
        case note(Int64, UInt32, String, JSONObject)
        /// Chunks of one stream were dropped before framing (the encoder fell behind).
        case chunkGap(UInt32, Direction, Gap)
        /// Dashcam mode: a trigger from outside the traffic (a signal, the control socket).
        case trigger(Int64, IncidentTrigger)
    }

    /// One encoded record on its way to the disk.
    struct Line: Sendable {
        enum Kind: Sendable { case message, event, open, close, note }
        var bytes: [UInt8]
        var time: Int64
        var kind: Kind
        var conn: UInt32
        /// The message's bytes on the wire (0 for other records).
        var wire: Int
        /// The gap this note describes, so that a lost note's counts are not lost with it.
        var gap: Gap?
        /// Dashcam mode: how the ring keeps the record, and the trigger it fires.
        var role: DashcamRing.Role = .plain
        var trigger: IncidentTrigger?
        /// A message record holding blanks only: the line end of a message recorded earlier
        /// that came alone when its stream ended (the framer records a message at its
        /// closing brace). It keeps the stream's bytes whole but is no message, so a lost
        /// one adds its bytes to a span and nothing to the span's messages.
        var blank = false

        var essential: Bool { kind != .message && kind != .event }
        /// The messages this record stands for (in a span that lost it).
        var messages: Int { essential || blank ? 0 : 1 }
    }

    /// Socket side -> encoder.
    struct Input {
        var queue: [Item] = []
        var bytes = 0
        var chunkGaps: [UInt64: Gap] = [:]
        var stopping = false
        var finishReason = ""
        var finishTime: Int64 = 0
        var stopDeadline: Int64 = .max
        var encoderAsleep = false
    }

    /// Encoder -> disk thread, and the end of it all for `finish`.
    struct Output {
        var queue = LineQueue()
        var bytes = 0
        var dropGap: Gap?
        var encoderDone = false
        var diskDone = false
        var diskDeadline: Int64 = .max
        /// Time of the last record queued for the disk (notes about spans are never earlier).
        var lastQueuedTime: Int64 = 0
        var end = CaptureEnd(trailerWritten: false, error: nil)
        var diskAsleep = false
        var finisherAsleep = false

        mutating func append(_ line: Line) {
            lastQueuedTime = max(lastQueuedTime, line.time)
            queue.append(line)
            bytes += line.bytes.count
        }

        /// Whether the disk thread sleeps (and must be signalled); clears the mark.
        mutating func takeDiskSleeper() -> Bool {
            defer { diskAsleep = false }
            return diskAsleep
        }
    }

    let options: CaptureOptions
    let header: RecordingHeader
    let logger: Logger
    private let input = Guarded(Input())
    private let output = Guarded(Output())
    let stats = Guarded(CaptureStats())
    private let encoderWake = WorkerWakeup()
    private let diskWake = WorkerWakeup()
    private let finishWake = WorkerWakeup()
    private let inLimit: Int

    // Encoder thread state.
    private var framers: [UInt64: QMPFramer] = [:]
    private var resync: [UInt64: Gap] = [:]
    private var lastNewline: [UInt64: Bool] = [:]
    private var sawShutdown: Set<UInt32> = []
    private var redactor: Redactor
    private var encodedTime: Int64 = 0
    /// Connections whose `qmp_capabilities` reply is still to come (dashcam context).
    private var negotiating: Set<UInt32> = []

    // Disk thread state.
    /// The output; in dashcam mode the incident file being written (nil between incidents).
    var file: CaptureFile!
    /// Dashcam mode: the ring and the incident under way.
    var dashcam: DashcamState?
    private var part = 0
    private var openConnections: Set<UInt32> = []
    var failed: (errno: Int32, gap: Gap?)?
    private var lastRetry: Int64 = 0
    private var lastSync: Int64 = 0
    var writtenTime: Int64 = 0
    var partLost = 0

    private var threads: [JoinableThread] = []

    /// Creates the output (with its header) and starts the encoder and disk threads.
    /// `logger` hears what the user should know while recording (the output failed, works
    /// again, part files were removed or skipped).
    public init(header: RecordingHeader, options: CaptureOptions, logger: Logger = Logger(label: "qmpreplay.capture")) throws(CaptureOutputError) {
        self.header = header
        self.options = options
        self.logger = logger
        self.redactor = Redactor(enabled: options.redact)
        inLimit = max(options.queueLimitBytes, 16 << 20)
        var removed: [String] = []
        if let ring = options.ring {
            dashcam = DashcamState(ring: DashcamRing(bound: ring.bound))
            do {
                try FileManager.default.createDirectory(atPath: ring.directory, withIntermediateDirectories: true)
            } catch {
                throw CaptureOutputError(path: ring.directory, reason: "cannot create the incident directory: \(error.localizedDescription)", errno: EIO)
            }
            threads.append(JoinableThread { [unowned self] in self.encoderLoop() })
            threads.append(JoinableThread { [unowned self] in self.diskLoop() })
            return
        }
        if options.rotateBytes > 0 && options.output != "-" {
            let existing = CaptureSink.existingParts(options.output)
            if !existing.isEmpty {
                guard options.replaceExisting else {
                    throw CaptureOutputError(
                        path: options.output,
                        reason: "part files of an earlier recording exist (\(existing.map { ($0 as NSString).lastPathComponent }.joined(separator: ", "))); "
                            + "--rotate never overwrites them: move them away, choose another name, or --force to replace them",
                        errno: EEXIST)
                }
                for p in existing where unlink(p) == 0 { removed.append(p) }
            }
        }
        file = try CaptureFile.create(path: options.output, header: header, replace: options.replaceExisting)
        let size = file.size
        stats.withLock { s in
            s.parts = [CapturePart(path: options.output, bytes: size)]
            s.bytes = size
        }
        if !removed.isEmpty { logger.info("--force: removed \(removed.count) part files of an earlier recording (\(removed.joined(separator: ", ")))") }
        threads.append(JoinableThread { [unowned self] in self.encoderLoop() })
        threads.append(JoinableThread { [unowned self] in self.diskLoop() })
    }

    /// The current statistics (thread-safe).
    public var currentStats: CaptureStats { stats.withLock { $0 } }

    /// Bytes waiting in the sink's two queues (a feeder that must not outrun the encoder,
    /// such as `bench ring`, waits while it is large).
    public var queuedBytes: Int { input.withLock { $0.bytes } + output.withLock { $0.bytes } }

    /// Whether `finish` has begun (tests wait for it before letting a held encoder go on).
    var isStopping: Bool { input.withLock { $0.stopping } }

    /// The output error while the output is failing (`nil` when it works).
    public var failure: String? {
        stats.withLock { $0.outputFailing ? $0.outputError : nil }
    }

    // MARK: Input (the recorders' event loop)

    /// Bytes received on connection `conn` from `dir` at `time` (ns since the start): queued,
    /// never waited for.
    public func data(_ time: Int64, _ conn: UInt32, _ dir: Direction, _ bytes: [UInt8]) {
        let limit = inLimit
        let wake = input.withLock { s -> Bool in
            guard !s.stopping else { return false }
            let k = CaptureSink.key(conn, dir)
            if s.bytes + bytes.count > limit {
                var g = s.chunkGaps[k] ?? Gap(at: time, cause: "the recorder fell behind the traffic")
                g.to = time
                g.bytes += Int64(bytes.count)
                g.lines.scan(bytes)
                s.chunkGaps[k] = g
                return false
            }
            if let g = s.chunkGaps.removeValue(forKey: k) { s.queue.append(.chunkGap(conn, dir, g)) }
            s.queue.append(.data(time, conn, dir, bytes))
            s.bytes += bytes.count
            return Self.takeEncoderSleeper(&s)
        }
        if wake { encoderWake.signal() }
    }

    private static func takeEncoderSleeper(_ s: inout Input) -> Bool {
        defer { s.encoderAsleep = false }
        return s.encoderAsleep
    }

    public func open(_ time: Int64, _ conn: UInt32, peer: String, info: JSONObject = JSONObject()) {
        enqueue(.open(time, conn, peer, info))
    }

    public func close(_ time: Int64, _ conn: UInt32, by: String, reason: String) {
        enqueue(.close(time, conn, by, reason), closing: conn)
    }

    /// QEMU closed connection `conn` (`error`: the socket error, `nil` for EOF). The close
    /// record says whether a SHUTDOWN came first (a clean end) or not (QEMU was lost);
    /// `then` is appended (what the recorder did about it).
    public func qemuClosed(_ time: Int64, _ conn: UInt32, error: String?, then: String) {
        enqueue(.qemuGone(time, conn, error, then), closing: conn)
    }

    public func note(_ time: Int64, _ conn: UInt32 = 0, _ text: String, _ data: JSONObject = JSONObject()) {
        enqueue(.note(time, conn, text, data))
    }

    /// Dashcam mode: writes an incident file now (a signal, the control socket asked). The
    /// file holds a note saying so at `time`.
    public func trigger(_ time: Int64, _ trigger: IncidentTrigger) {
        enqueue(.trigger(time, trigger))
    }

    private func enqueue(_ item: Item, closing: UInt32? = nil) {
        let wake = input.withLock { s -> Bool in
            guard !s.stopping else { return false }
            if let c = closing {
                for dir in Direction.allCases {
                    if let g = s.chunkGaps.removeValue(forKey: CaptureSink.key(c, dir)) { s.queue.append(.chunkGap(c, dir, g)) }
                }
            }
            s.queue.append(item)
            s.bytes += 64
            return Self.takeEncoderSleeper(&s)
        }
        if wake { encoderWake.signal() }
    }

    /// Writes what is queued (for at most `stopBudget`; the rest is noted as a span that
    /// was not recorded), the trailer, and stops the threads.
    @discardableResult
    public func finish(reason: String, time: Int64) -> CaptureEnd {
        let budget = options.stopBudget
        let (deadline, wakeEncoder) = input.withLock { s -> (Int64, Bool) in
            if !s.stopping {
                s.stopping = true
                s.finishReason = reason
                s.finishTime = time
                s.stopDeadline = WallClock.monotonicNanos() + budget
                for (k, g) in s.chunkGaps { s.queue.append(.chunkGap(UInt32(k >> 1), k & 1 == 0 ? .qemu : .client, g)) }
                s.chunkGaps.removeAll()
            }
            return (s.stopDeadline, Self.takeEncoderSleeper(&s))
        }
        if wakeEncoder { encoderWake.signal() }
        // The disk thread gives up on the queue at the deadline; a write that hangs in the
        // kernel beyond it is not waited for much longer.
        let hardLimit = deadline + 1_000_000_000
        if output.withLock({ s in s.diskDeadline = deadline; return s.takeDiskSleeper() }) { diskWake.signal() }
        while true {
            let (done, end) = output.withLock { s -> (Bool, CaptureEnd) in
                if !s.diskDone { s.finisherAsleep = true }
                return (s.diskDone, s.end)
            }
            if done {
                for t in threads { t.join() }
                threads.removeAll()
                return end
            }
            let left = hardLimit - WallClock.monotonicNanos()
            if left <= 0 { break }
            finishWake.wait(nanoseconds: min(left, 100_000_000))
        }
        for t in threads { t.detach() }
        threads.removeAll()
        return CaptureEnd(trailerWritten: false, error: "\(options.output): a write to the file did not return within the stop time limit; the file ends without a trailer")
    }

    // MARK: Encoder thread

    static func key(_ conn: UInt32, _ dir: Direction) -> UInt64 { UInt64(conn) << 1 | (dir == .qemu ? 0 : 1) }

    private func encoderLoop() {
        var items: [Item] = []
        while true {
            let taken = input.withLock { s -> (done: Bool, deadline: Int64)? in
                if s.queue.isEmpty && !s.stopping {
                    s.encoderAsleep = true
                    return nil
                }
                swap(&items, &s.queue)
                s.bytes = 0
                return (s.stopping, s.stopDeadline)
            }
            guard let (done, batchDeadline) = taken else {
                encoderWake.wait()
                continue
            }
            var deadline = batchDeadline
            for item in items {
                // A batch taken before the stop began can be long (up to the input queue's
                // limit): the deadline is looked at for each chunk, so that past it the rest is
                // only counted, which the disk thread waits for before the trailer.
                if deadline == .max, case .data = item { deadline = input.withLock { $0.stopDeadline } }
                if WallClock.monotonicNanos() > deadline, case .data(let t, let c, let d, let b) = item {
                    // Out of time: what was not even framed yet is counted (lines as
                    // messages: QEMU writes one per line, `LostLines`), not recorded.
                    var g = Gap(at: t, cause: "the recorder was stopped before it was written")
                    g.bytes = Int64(b.count)
                    g.lines.scan(b)
                    gapInStream(CaptureSink.key(c, d), g)
                    continue
                }
                process(item)
            }
            items.removeAll(keepingCapacity: true)
            if done {
                if !input.withLock({ $0.queue.isEmpty }) { continue }
                flushFramers()
                let wake = output.withLock { s -> Bool in
                    if let g = s.dropGap {
                        s.append(Self.noteLine(g))
                        s.dropGap = nil
                    }
                    s.encoderDone = true
                    return s.takeDiskSleeper()
                }
                if wake { diskWake.signal() }
                return
            }
        }
    }

    private func process(_ item: Item) {
        switch item {
        case .data(let t, let conn, let dir, let bytes):
            let k = CaptureSink.key(conn, dir)
            var f = framers[k] ?? QMPFramer()
            var frames = f.push(bytes)
            // A read that ends right after a complete message means the message is complete:
            // record it now rather than waiting for a terminator that may never come.
            frames += f.drain()
            framers[k] = f
            for frame in frames { frameArrived(frame, time: t, conn: conn, dir: dir) }
        case .open(let t, let conn, let peer, let info):
            sawShutdown.remove(conn)
            negotiating.remove(conn)
            push(.open(peer: peer, info: info), time: t, conn: conn, kind: .open, role: .context)
        case .close(let t, let conn, let by, let reason):
            endStreams(conn, time: t)
            push(.close(by: by, reason: reason), time: t, conn: conn, kind: .close, role: .close)
        case .qemuGone(let t, let conn, let error, let then):
            endStreams(conn, time: t)
            let reason: String
            if let error {
                reason = "upstream lost: \(error)"
            } else if sawShutdown.contains(conn) {
                reason = "eof: QEMU closed the connection after SHUTDOWN"
            } else {
                reason = "upstream lost: QEMU closed the connection without SHUTDOWN"
            }
            if reason.hasPrefix("upstream lost") { stats.withLock { $0.qemuLost += 1 } }
            sawShutdown.remove(conn)
            push(.close(by: "qemu", reason: then.isEmpty ? reason : "\(reason); \(then)"), time: t, conn: conn, kind: .close, role: .close)
        case .note(let t, let conn, let text, let data):
            push(.note(text: text, data: data), time: t, conn: conn, kind: .note)
        case .chunkGap(let conn, let dir, let g):
            gapInStream(CaptureSink.key(conn, dir), g)
        case .trigger(let t, let trig):
            let data = JSONObject(["trigger": .object(trig.json)])
            push(.note(text: "dashcam triggered by \(trig.summary): \(trig.detail)", data: data), time: t, conn: 0, kind: .note, trigger: trig)
        }
    }

    /// Bytes of a stream were dropped: the message they cut is dropped whole, and frames
    /// are skipped until a message starts at the beginning of a line again (where QEMU
    /// starts every message), so that no half message is recorded as garbage.
    ///
    /// The span's pieces are joined in stream order (what was skipped before, the framer's
    /// unfinished message, then the dropped bytes) and counted by lines (`LostLines`): a
    /// message the framer holds in part and the dropped chunk ends is one message, and the
    /// line end of a message already recorded is none. (Counting the framer's piece as a
    /// message and the dropped chunk's line ends as more counted that message twice.)
    private func gapInStream(_ k: UInt64, _ g: Gap) {
        var gap = resync[k] ?? Gap(at: g.from, cause: g.cause)
        if var f = framers.removeValue(forKey: k) {
            for frame in f.finish() { gap.bytes += Int64(frame.bytes.count); gap.lines.scan(frame.bytes) }
        }
        gap.add(g)
        resync[k] = gap
        lastNewline[k] = false
    }

    private func frameArrived(_ frame: Frame, time: Int64, conn: UInt32, dir: Direction) {
        let k = CaptureSink.key(conn, dir)
        let startsLine = (lastNewline[k] ?? true) || frame.bytes[..<frame.payload.lowerBound].contains(0x0A)
        lastNewline[k] = frame.bytes.last == 0x0A
        if var g = resync[k] {
            if !(frame.kind == .json && startsLine) {
                // Skipped, not recorded: counted by lines with the rest of the span (the
                // rest of a cut message can frame as several pieces but is one message).
                g.to = time
                g.bytes += Int64(frame.bytes.count)
                g.lines.scan(frame.bytes)
                resync[k] = g
                return
            }
            resync[k] = nil
            pushGap(g, conn: conn)
        }
        record(frame.message(), time: time, conn: conn, dir: dir)
    }

    private func endStreams(_ conn: UInt32, time: Int64) {
        for dir in Direction.allCases {
            let k = CaptureSink.key(conn, dir)
            if var f = framers.removeValue(forKey: k) {
                for frame in f.finish() { frameArrived(frame, time: time, conn: conn, dir: dir) }
            }
            if let g = resync.removeValue(forKey: k) { pushGap(g, conn: conn) }
            lastNewline[k] = nil
        }
        redactor.closed(connection: conn)
    }

    private func flushFramers() {
        for k in Set(framers.keys).union(resync.keys).sorted() {
            let conn = UInt32(k >> 1)
            let dir: Direction = k & 1 == 0 ? .qemu : .client
            if var f = framers.removeValue(forKey: k) {
                for frame in f.finish() { frameArrived(frame, time: encodedTime, conn: conn, dir: dir) }
            }
            if let g = resync.removeValue(forKey: k) { pushGap(g, conn: conn) }
        }
    }

    private func record(_ m: QMPMessage, time: Int64, conn: UInt32, dir: Direction) {
        let before = redactor.redactions
        let out = redactor.process(m, from: dir, connection: conn)
        if dir == .qemu, case .event(let e) = out.body, e.name == "SHUTDOWN" { sawShutdown.insert(conn) }
        options.observer?.recorded(out, from: dir, connection: conn)
        if redactor.redactions != before {
            let added = redactor.redactions - before
            stats.withLock { $0.redactions += added }
        }
        push(.message(from: dir, out), time: time, conn: conn, kind: out.kind == .event ? .event : .message, wire: out.bytes.count,
             blank: out.payload.isEmpty, role: options.ring == nil ? .plain : contextRole(out, dir, conn))
    }

    /// Dashcam mode: whether a recording of connection `conn` needs this message however long
    /// ago it came (QEMU's greeting, the client's `qmp_capabilities` and its reply), or while
    /// its reply is kept (any other command).
    private func contextRole(_ m: QMPMessage, _ dir: Direction, _ conn: UInt32) -> DashcamRing.Role {
        switch (dir, m.kind) {
        case (.qemu, .greeting):
            return .context
        case (.client, .command) where m.name == "qmp_capabilities":
            negotiating.insert(conn)
            return .context
        case (.client, .command):
            return .command
        case (.qemu, .return), (.qemu, .error):
            return negotiating.remove(conn) != nil ? .context : .reply
        default:
            return .plain
        }
    }

    /// Notes a stream's span that ended (the stream resynchronised, closed, or the recorder stopped).
    private func pushGap(_ span: Gap, conn: UInt32) {
        let g = span.streamEnded()
        stats.withLock { s in
            s.lostRecords += g.records
            s.lostMessages += g.messages
            s.lostBytes += g.bytes
        }
        let wake = output.withLock { s -> Bool in
            var line = Self.noteLine(g)
            line.conn = conn
            line.time = max(g.from, s.lastQueuedTime)
            line.bytes = RecordEncoder.encode(time: line.time, connection: conn, body: g.body)
            s.append(line)
            return s.takeDiskSleeper()
        }
        if wake { diskWake.signal() }
    }

    private static func noteLine(_ g: Gap) -> Line {
        Line(bytes: RecordEncoder.encode(time: g.from, connection: 0, body: g.body), time: g.from, kind: .note, conn: 0, wire: 0, gap: g)
    }

    /// Encodes a record and queues it for the disk, or counts it in the current drop span
    /// when the queue is full (whole records only; open/close/notes are never dropped).
    private func push(_ body: RecordBody, time: Int64, conn: UInt32, kind: Line.Kind, wire: Int = 0, blank: Bool = false,
                      role: DashcamRing.Role = .plain, trigger: IncidentTrigger? = nil) {
        encodedTime = max(encodedTime, time)
        let t = encodedTime
        let essential = kind != .message && kind != .event
        let limit = options.queueLimitBytes
        let dropped = output.withLock { s -> Bool in
            guard !essential && s.bytes + wire + 64 > limit else { return false }
            var g = s.dropGap ?? Gap(at: t, cause: "the disk could not keep up")
            g.to = t
            g.records += 1
            // A blank record (a late line end alone) is no message: counting it made the
            // slow-disk test find 3001 of 3000 when the stream's last chunk was a line end.
            g.messages += blank ? 0 : 1
            g.bytes += Int64(wire)
            s.dropGap = g
            return true
        }
        if dropped {
            stats.withLock { s in
                s.lostRecords += 1
                s.lostMessages += blank ? 0 : 1
                s.lostBytes += Int64(wire)
            }
            return
        }
        // Encoded outside the lock: the disk thread takes records meanwhile, so the queue
        // only shrinks; the drop span is this thread's alone.
        var line = Line(bytes: RecordEncoder.encode(time: t, connection: conn, body: body), time: t, kind: kind, conn: conn, wire: wire, gap: nil,
                        role: role, trigger: trigger, blank: blank)
        if line.trigger == nil, let detector = options.ring?.detector {
            line.trigger = detector.observe(line: line.bytes, kind: body.kind, connection: conn, time: t)
        }
        let wake = output.withLock { s -> Bool in
            if let g = s.dropGap {
                s.append(Self.noteLine(g))
                s.dropGap = nil
            }
            s.append(line)
            return s.takeDiskSleeper()
        }
        if wake { diskWake.signal() }
    }

    // MARK: Disk thread

    /// Records waiting for the disk, taken from the front without moving the rest.
    struct LineQueue {
        private var items: [Line] = []
        private var head = 0

        var isEmpty: Bool { head == items.count }
        var count: Int { items.count - head }
        subscript(i: Int) -> Line { items[head + i] }

        mutating func append(_ l: Line) { items.append(l) }

        mutating func take(_ n: Int) -> [Line] {
            let out = Array(items[head..<(head + n)])
            head += n
            if head == items.count {
                items.removeAll(keepingCapacity: true)
                head = 0
            } else if head > 4096 && head * 2 > items.count {
                items.removeFirst(head)
                head = 0
            }
            return out
        }

        mutating func takeAll() -> [Line] { take(count) }
    }

    /// Records reach the kernel within about this long of being encoded (one write per
    /// millisecond at most, however busy the traffic): a recorder killed with SIGKILL loses
    /// about a millisecond of traffic, and a flood costs no write per message.
    static let promptWriteNanos: Int64 = 1_000_000

    private func diskLoop() {
        var lastWrite: Int64 = 0
        while true {
            // Sleep until records come (or a retry or the stop deadline is due).
            while true {
                let now = WallClock.monotonicNanos()
                var wait = options.flushInterval
                if failed != nil { wait = min(wait, max(lastRetry + options.retryInterval - now, 1_000_000)) }
                let sleep = output.withLock { s -> Int64? in
                    guard s.queue.isEmpty && !s.encoderDone && now < s.diskDeadline else { return nil }
                    s.diskAsleep = true
                    return s.diskDeadline == .max ? wait : min(wait, max(s.diskDeadline - now, 1_000_000))
                }
                guard let sleep else { break }
                diskWake.wait(nanoseconds: sleep)
                output.withLock { $0.diskAsleep = false }
                // An incident's post-trigger window ends on the clock, traffic or not.
                if dashcam?.incident != nil { break }
                if failed != nil && WallClock.monotonicNanos() - lastRetry >= options.retryInterval { break }
            }
            // At most one write per millisecond while records flow.
            let flowing = output.withLock { !$0.encoderDone && $0.diskDeadline == .max && !$0.queue.isEmpty }
            let sinceWrite = WallClock.monotonicNanos() - lastWrite
            if flowing && sinceWrite < CaptureSink.promptWriteNanos {
                usleep(UInt32((CaptureSink.promptWriteNanos - sinceWrite) / 1000))
            }
            let now = WallClock.monotonicNanos()
            let takeAll = failed != nil
            let cap = 4 * (file?.writeCap ?? 64 << 10)
            let (lines, outOfTime, done) = output.withLock { s -> ([Line], Bool, Bool) in
                let outOfTime = now >= s.diskDeadline
                let lines: [Line]
                if outOfTime || takeAll {
                    lines = s.queue.takeAll()
                    s.bytes = 0
                } else {
                    // Take what fits in a few writes, so that the deadline is checked often.
                    var n = 0, size = 0
                    while n < s.queue.count && (n == 0 || size < cap) { size += s.queue[n].bytes.count; n += 1 }
                    lines = s.queue.take(n)
                    s.bytes -= size
                }
                return (lines, outOfTime, s.encoderDone && s.queue.isEmpty)
            }

            if outOfTime {
                finishAfterDeadline(lines + awaitEncoder())
                return
            }
            if dashcam != nil {
                dashcamTake(lines, now: options.ring!.now())
            } else if failed != nil {
                lose(lines)
                if now - lastRetry >= options.retryInterval { retry() }
            } else if !lines.isEmpty {
                let left = write(lines, deadline: currentDeadline)
                lastWrite = WallClock.monotonicNanos()
                if !left.isEmpty {
                    finishAfterDeadline(left + awaitEncoder())
                    return
                }
            }
            if options.fsync && failed == nil && file != nil && now - lastSync >= options.flushInterval {
                lastSync = now
                if let e = file.sync() { fail(e, what: "fsync failed", lost: []) }
            }
            if done {
                writeEnd()
                return
            }
        }
    }

    /// How long past the stop deadline the disk thread waits for the encoder to finish.
    static let encoderGraceNanos: Int64 = 500_000_000

    /// The stop ran out of time: waits for the encoder to finish (past the deadline it only
    /// counts what it has not framed, quickly) and returns everything queued. Without the
    /// wait, the notes of spans it counted after the deadline, and records it queued, were
    /// left in the queue after the trailer: neither written nor counted anywhere. An encoder
    /// that does not finish within `encoderGraceNanos` (an observer that blocks) is not
    /// waited for longer, so the stop stays bounded.
    private func awaitEncoder() -> [Line] {
        let limit = output.withLock { $0.diskDeadline } + CaptureSink.encoderGraceNanos
        while true {
            let now = WallClock.monotonicNanos()
            let waiting = output.withLock { s -> Bool in
                guard !s.encoderDone && now < limit else { return false }
                s.diskAsleep = true
                return true
            }
            guard waiting else { break }
            diskWake.wait(nanoseconds: min(limit - now, 10_000_000))
            output.withLock { $0.diskAsleep = false }
        }
        return output.withLock { s -> [Line] in
            s.bytes = 0
            return s.queue.takeAll()
        }
    }

    /// The stop deadline as `finish` sets it (read while a write is under way).
    private func currentDeadline() -> Int64 {
        output.withLock { $0.diskDeadline }
    }

    /// Writes lines in batches of whole lines, rotating before a record that would take
    /// the file past `--rotate` (sizes are checked per record). Returns the lines left
    /// unwritten because `deadline` passed (a stop ran out of time).
    @discardableResult
    func write(_ lines: [Line], deadline: @escaping () -> Int64 = { .max }) -> [Line] {
        var batch: [UInt8] = []
        var ends: [Int] = []
        var batchLines: [Line] = []
        /// nil: written; else the lines of the batch that were not (out of time), or [] on an error.
        func flushBatch() -> [Line]? {
            guard !batchLines.isEmpty else { return nil }
            let r = batch.withUnsafeBytes { file.write($0, lineEnds: ends, deadline: deadline) }
            accountWritten(Array(batchLines[..<r.lines]))
            if let e = r.error {
                fail(e, what: "write failed", lost: Array(batchLines[r.lines...]))
                return []
            }
            if r.outOfTime { return Array(batchLines[r.lines...]) }
            batch.removeAll(keepingCapacity: true)
            ends.removeAll(keepingCapacity: true)
            batchLines.removeAll(keepingCapacity: true)
            return nil
        }
        for (i, line) in lines.enumerated() {
            if options.rotateBytes > 0 && options.output != "-" && file.records + batchLines.count > 0
                && file.size + Int64(batch.count + line.bytes.count) + 256 > options.rotateBytes {
                if let left = flushBatch() {
                    if failed != nil { lose(Array(lines[i...])); return [] }
                    return left + lines[i...]
                }
                rotate()
                if failed != nil { lose(Array(lines[i...])); return [] }
            }
            if !batch.isEmpty && batch.count + line.bytes.count > file.writeCap {
                if let left = flushBatch() {
                    if failed != nil { lose(Array(lines[i...])); return [] }
                    return left + lines[i...]
                }
            }
            batch += line.bytes
            ends.append(batch.count)
            batchLines.append(line)
        }
        if let left = flushBatch(), failed == nil { return left }
        return []
    }

    private func accountWritten(_ lines: [Line]) {
        guard !lines.isEmpty else { return }
        file.records += lines.count
        for l in lines {
            writtenTime = max(writtenTime, l.time)
            switch l.kind {
            case .open: openConnections.insert(l.conn)
            case .close: openConnections.remove(l.conn)
            default: break
            }
        }
        let events = lines.reduce(0) { $0 + ($1.kind == .event ? 1 : 0) }
        let gaps = lines.filter { $0.gap != nil }
        partLost += gaps.reduce(0) { $0 + $1.gap!.records }
        let (path, size) = (file.path, file.size)
        stats.withLock { s in
            s.records += lines.count
            s.events += events
            s.gaps += gaps.count
            Self.updateSizes(&s, path, size)
        }
    }

    /// The current part's size into the counters.
    static func updateSizes(_ s: inout CaptureStats, _ path: String, _ size: Int64) {
        if s.parts.isEmpty { s.parts = [CapturePart(path: path, bytes: 0)] }
        s.parts[s.parts.count - 1].bytes = size
        s.bytes = s.parts.reduce(0) { $0 + $1.bytes }
    }

    /// The output failed: what was not written is the start of a lost span.
    private func fail(_ e: Int32, what: String, lost: [Line]) {
        let text = "\(file.path): \(what): \(String(cString: strerror(e)))"
        if failed == nil {
            failed = (e, nil)
            lastRetry = WallClock.monotonicNanos()
            let (path, size) = (file.path, file.size)
            stats.withLock { s in
                s.outputFailures += 1
                s.outputError = text
                s.outputFailing = true
                Self.updateSizes(&s, path, size)
            }
            logger.warning("\(text): the file ends at its last complete record; what cannot be written is counted and noted as soon as the file takes writes again (tried every \(DurationFormat.short(options.retryInterval)))")
        }
        lose(lost)
    }

    /// Lines that will not be written: counted into the failure's span.
    func lose(_ lines: [Line]) {
        guard !lines.isEmpty else { return }
        var g = failed?.gap ?? Gap(at: lines[0].gap?.from ?? lines[0].time, cause: "output failed: \(String(cString: strerror(failed?.errno ?? EIO)))")
        var records = 0, messages = 0, bytes: Int64 = 0
        for l in lines {
            if let inner = l.gap {
                // A note about an earlier span: its records are now in this one (already counted).
                g.from = min(g.from, inner.from)
                g.to = max(g.to, inner.to)
                g.records += inner.records
                g.messages += inner.messages
                g.bytes += inner.bytes
                partLost += inner.records
                continue
            }
            g.to = max(g.to, l.time)
            records += 1
            messages += l.messages
            bytes += Int64(l.wire)
            if l.kind == .open { openConnections.insert(l.conn) }
            if l.kind == .close { openConnections.remove(l.conn) }
        }
        g.records += records
        g.messages += messages
        g.bytes += bytes
        partLost += records
        stats.withLock { s in
            s.lostRecords += records
            s.lostMessages += messages
            s.lostBytes += bytes
        }
        if failed != nil {
            failed!.gap = g
        }
    }

    /// Tries the failed output again by writing the note about what was lost.
    private func retry() {
        lastRetry = WallClock.monotonicNanos()
        guard let f = failed else { return }
        guard let g = f.gap else {
            // Nothing lost yet: the output may simply work again.
            failed = nil
            stats.withLock { $0.outputFailing = false }
            return
        }
        let note = RecordEncoder.encode(time: max(g.from, writtenTime), connection: 0, body: g.body)
        let r = note.withUnsafeBytes { file.write($0, lineEnds: [note.count]) }
        guard r.error == nil && r.lines == 1 else { return }
        file.records += 1
        failed = nil
        let (path, size) = (file.path, file.size)
        stats.withLock { s in
            s.records += 1
            s.gaps += 1
            s.outputFailing = false
            Self.updateSizes(&s, path, size)
        }
        logger.info("\(file.path): the output works again; \(g.messages) messages (\(g.bytes) bytes) received while it failed are noted as not recorded")
    }

    private func rotate() {
        part += 1
        var n = part
        var next = CaptureSink.partPath(options.output, n)
        var h = header
        var created: CaptureFile?
        var skipped: [String] = []
        while created == nil {
            h = header
            h.labels.append((key: "part", value: String(n)))
            h.labels.append((key: "previous", value: file.path))
            do {
                created = try CaptureFile.create(path: next, header: h, replace: false)
            } catch {
                if error.errno == EEXIST && n < part + 1000 {
                    skipped.append(next)
                    n += 1
                    next = CaptureSink.partPath(options.output, n)
                    continue
                }
                part -= 1
                fail(error.errno, what: "cannot start the next part \(next)", lost: [])
                return
            }
        }
        let nf = created!
        part = n
        let trailer = RecordEncoder.trailerLine(RecordingTrailer(time: writtenTime, records: file.records, reason: "rotated to \(next)", dropped: partLost))
        let r = trailer.withUnsafeBytes { file.write($0, lineEnds: [trailer.count]) }
        let previous = file.path
        let previousComplete = r.error == nil
        file.close()
        let (path, size, nextSize) = (file.path, file.size, nf.size)
        stats.withLock { s in
            Self.updateSizes(&s, path, size)
            s.parts.append(CapturePart(path: next, bytes: nextSize))
            s.bytes = s.parts.reduce(0) { $0 + $1.bytes }
        }
        if !skipped.isEmpty { logger.warning("--rotate: \(skipped.joined(separator: ", ")) already existed and was left alone; continuing in \(next)") }
        file = nf
        partLost = 0
        var data = JSONObject(["continued_from": .string(previous), "open_connections": .array(openConnections.sorted().map { .int(Int64($0)) })])
        if !skipped.isEmpty { data["skipped_existing"] = .array(skipped.map { .string($0) }) }
        if !previousComplete { data["previous_lacks_trailer"] = .bool(true) }
        var text = "continued from \(previous); open connections go on, so earlier commands and their replies may be in the previous part"
        if !skipped.isEmpty { text += "; \(skipped.joined(separator: ", ")) already existed and was left alone" }
        let note = RecordEncoder.encode(time: writtenTime, connection: 0, body: .note(text: text, data: data))
        write([Line(bytes: note, time: writtenTime, kind: .note, conn: 0, wire: 0, gap: nil)])
    }

    /// The stop ran out of time: what is still queued becomes one span; notes and the
    /// trailer are still written.
    private func finishAfterDeadline(_ queued: [Line]) {
        if dashcam != nil {
            dashcamTake(queued, now: options.ring!.now())
            output.withLock { $0.encoderDone = true }
            writeEnd()
            return
        }
        if failed != nil {
            lose(queued)
        } else {
            var g = Gap(at: queued.first?.time ?? writtenTime, cause: "the recorder was stopped before it was written")
            var keep: [Line] = []
            for l in queued {
                if let inner = l.gap { keep.append(Line(bytes: l.bytes, time: l.time, kind: .note, conn: l.conn, wire: 0, gap: inner)); continue }
                if l.essential { keep.append(l); continue }
                g.to = l.time
                g.records += 1
                g.messages += l.messages
                g.bytes += Int64(l.wire)
            }
            if g.records > 0 {
                stats.withLock { s in
                    s.lostRecords += g.records
                    s.lostMessages += g.messages
                    s.lostBytes += g.bytes
                }
                let t = max(g.from, writtenTime)
                keep.insert(Line(bytes: RecordEncoder.encode(time: t, connection: 0, body: g.body), time: t, kind: .note, conn: 0, wire: 0, gap: g), at: 0)
            }
            write(keep)
        }
        // The encoder may still be working: whatever it adds now is not waited for.
        output.withLock { $0.encoderDone = true }
        writeEnd()
    }

    /// The last lines: the note about a span still failing (if the file takes it) and the trailer.
    private func writeEnd() {
        if dashcam != nil && file == nil {
            // Dashcam mode between incidents: the ring is dropped, nothing to end.
            let wake = output.withLock { s -> Bool in
                s.end = CaptureEnd(trailerWritten: true, error: nil)
                s.diskDone = true
                defer { s.finisherAsleep = false }
                return s.finisherAsleep
            }
            if wake { finishWake.signal() }
            return
        }
        if failed != nil { retry() }
        var result = CaptureEnd(trailerWritten: false, error: nil)
        if let f = failed {
            if f.gap != nil { stats.withLock { $0.unnotedGaps += 1 } }
            result.error = "\(file.path): \(String(cString: strerror(f.errno))); the file ends at its last complete record, without a trailer"
        } else {
            let (finishReason, finishTime) = input.withLock { ($0.finishReason, $0.finishTime) }
            let trailer = RecordEncoder.trailerLine(RecordingTrailer(time: max(finishTime, writtenTime), records: file.records, reason: finishReason, dropped: partLost))
            let r = trailer.withUnsafeBytes { file.write($0, lineEnds: [trailer.count]) }
            if let e = r.error {
                result.error = "\(file.path): cannot write the trailer: \(String(cString: strerror(e))); the file ends at its last complete record"
                let error = result.error
                stats.withLock { s in
                    s.outputFailures += 1
                    s.outputError = error
                }
            } else {
                result.trailerWritten = true
            }
            if options.fsync { _ = file.sync() }
        }
        file.close()
        let (path, size) = (file.path, file.size)
        stats.withLock { Self.updateSizes(&$0, path, size) }
        let wake = output.withLock { s -> Bool in
            s.end = result
            s.diskDone = true
            defer { s.finisherAsleep = false }
            return s.finisherAsleep
        }
        if wake { finishWake.signal() }
    }

    // MARK: Files

    /// `x.qmprec` -> `x.1.qmprec`, `x.2.qmprec`, ...
    public static func partPath(_ path: String, _ n: Int) -> String {
        for ext in [".qmprec.gz", ".qmprec"] where path.hasSuffix(ext) {
            return String(path.dropLast(ext.count)) + ".\(n)" + ext
        }
        return path + ".\(n)"
    }

    /// Part files of `path` that exist (`x.N.qmprec` for any N), in number order.
    static func existingParts(_ path: String) -> [String] {
        let dir = (path as NSString).deletingLastPathComponent
        let base = (path as NSString).lastPathComponent
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir.isEmpty ? "." : dir) else { return [] }
        var found: [(Int, String)] = []
        for name in names {
            // The name must be partPath(base, N) for a number N.
            guard let n = CaptureSink.partNumber(name, of: base) else { continue }
            found.append((n, dir.isEmpty ? name : (dir as NSString).appendingPathComponent(name)))
        }
        return found.sorted { $0.0 < $1.0 }.map(\.1)
    }

    static func partNumber(_ name: String, of base: String) -> Int? {
        let probe = partPath(base, 0)  // "x.0.qmprec"
        guard let zero = probe.range(of: ".0", options: .backwards) else { return nil }
        let prefix = String(probe[..<zero.lowerBound]) + "."
        let suffix = String(probe[zero.upperBound...])
        guard name.hasPrefix(prefix), name.hasSuffix(suffix), name.count > prefix.count + suffix.count else { return nil }
        let digits = name.dropFirst(prefix.count).dropLast(suffix.count)
        guard digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber), let n = Int(digits), n > 0 else { return nil }
        return n
    }
}
