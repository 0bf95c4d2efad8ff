import QMP

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `qmpreplay recover`: a new, valid recording from a damaged one, keeping every intact
/// record and saying what was dropped.
///
/// Which bytes are a record is decided by the reader itself (`Recording`, then
/// `record(at:)`), not by a second copy of its rules: the damaged file is cut into
/// candidate pieces (lines, then each line at NUL runs and carriage returns, neither of
/// which a record line can hold: the writer escapes both), the pieces are read as one
/// recording, and a piece the reader refuses gets a second chance cut at each `{"t":`
/// inside it (garbage glued before a record, two records joined when a torn line was
/// followed by the next write). What is still refused is dropped and noted: in the report
/// and as a `note` record at its place in the output. The output is written beside its
/// final name, re-read and checked (no problem, a trailer counting every record, every
/// record decodes) and only then renamed into place (docs/REPAIR.md).
public enum RecordingRecovery {
    /// Bytes of the damaged file that are not in the output.
    public struct Dropped: Sendable, Hashable {
        /// The line of the damaged file (1-based).
        public var line: Int
        /// Byte offset in the damaged file.
        public var offset: Int
        public var bytes: Int
        public var reason: String
    }

    /// A record time changed to keep the output's times in order.
    public struct TimeChange: Sendable, Hashable {
        public var line: Int
        public var from: Int64
        public var to: Int64
    }

    /// A record kept: where its bytes are in the damaged file, and its time.
    public struct Kept: Sendable, Hashable {
        /// The line of the damaged file (1-based).
        public var line: Int
        /// Its bytes in the damaged file (one record line, without line end).
        public var range: Range<Int>
        /// The time to write: the record's own, or the one it was given to keep order.
        public var time: Int64
    }

    /// What a recovery found, before anything is written. Holds positions, not decoded
    /// records, so that a large file costs little more than its own size to recover.
    public struct Plan: Sendable {
        /// The damaged file's bytes (the kept records are read from them again when written).
        public var bytes: FileBytes
        public var header: RecordingHeader?
        /// The records kept, in file order.
        public var records: [Kept] = []
        public var dropped: [Dropped] = []
        /// Trailer lines found (the output gets one new trailer).
        public var oldTrailers: [RecordingTrailer] = []
        public var crlfLines = 0
        /// Records whose time went backwards, or jumped ahead of the records after them.
        public var adjustedTimes: [TimeChange] = []
        public var droppedBytes: Int { dropped.reduce(0) { $0 + $1.bytes } }
    }

    public struct Result: Sendable {
        public var plan: Plan
        /// Records written, notes about dropped bytes included.
        public var written: Int
        public var notes: Int
        public var redactions: Int
    }

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// A piece of the damaged file that might be a record.
    struct Piece {
        var line: Int
        var range: Range<Int>
    }

    /// Reads `bytes` (the damaged file named `path`) into a plan.
    public static func plan(_ bytes: FileBytes, path: String) -> Plan {
        var plan = Plan(bytes: bytes)
        guard let raw = bytes.base, bytes.count > 0 else { return plan }
        let p = raw.assumingMemoryBound(to: UInt8.self)
        let n = bytes.count
        var pieces: [Piece] = []
        var line = 0, pos = 0
        while pos < n {
            line += 1
            let end = memchr(p + pos, 0x0A, n - pos).map { UnsafeRawPointer($0) - UnsafeRawPointer(p) } ?? n
            var e = end
            if e > pos && p[e - 1] == 0x0D { e -= 1; plan.crlfLines += 1 }
            if line == 1, e - pos > 10, Recording.startsWith(p + pos, e - pos, "{\"qmprec\"") {
                if let v = try? JSONParser.parse(UnsafeBufferPointer(start: p + pos, count: e - pos)), let h = RecordingHeader(json: v) {
                    plan.header = h
                } else {
                    plan.dropped.append(Dropped(line: 1, offset: pos, bytes: end - pos, reason: "damaged header line"))
                }
            } else if e == pos {
                if end < n { plan.dropped.append(Dropped(line: line, offset: pos, bytes: 0, reason: "empty line")) }
            } else {
                // NUL runs and carriage returns separate pieces; NULs are dropped bytes.
                var s = pos, i = pos
                while i <= e {
                    if i == e || p[i] == 0 || p[i] == 0x0D {
                        if i > s { pieces.append(Piece(line: line, range: s..<i)) }
                        if i < e && p[i] == 0 {
                            var j = i
                            while j < e && p[j] == 0 { j += 1 }
                            plan.dropped.append(Dropped(line: line, offset: i, bytes: j - i, reason: "\(j - i) NUL byte\(j - i == 1 ? "" : "s")"))
                            i = j
                            s = j
                            continue
                        }
                        s = i + 1
                    }
                    i += 1
                }
            }
            pos = end + 1
        }
        var kept: [(piece: Int, kept: Kept)] = []
        let refused = read(pieces, from: p, path: path, into: &kept, trailers: &plan.oldTrailers)
        // Second chance: cut each refused piece at every `{"t":` after its start.
        var parts: [Piece] = []
        var partOf: [Int] = []
        for (k, reason) in refused {
            let piece = pieces[k]
            var cuts = [piece.range.lowerBound]
            var i = piece.range.lowerBound + 1
            while i + 5 <= piece.range.upperBound {
                if p[i] == 0x7B && p[i + 1] == 0x22 && p[i + 2] == 0x74 && p[i + 3] == 0x22 && p[i + 4] == 0x3A { cuts.append(i) }
                i += 1
            }
            if cuts.count == 1 {
                plan.dropped.append(Dropped(line: piece.line, offset: piece.range.lowerBound, bytes: piece.range.count, reason: reason))
                continue
            }
            for (c, start) in cuts.enumerated() {
                let end = c + 1 < cuts.count ? cuts[c + 1] : piece.range.upperBound
                parts.append(Piece(line: piece.line, range: start..<end))
                partOf.append(k)
            }
        }
        if !parts.isEmpty {
            var second: [(piece: Int, kept: Kept)] = []
            let refusedParts = read(parts, from: p, path: path, into: &second, trailers: &plan.oldTrailers)
            for s in second { kept.append((partOf[s.piece], s.kept)) }
            for (k, reason) in refusedParts {
                let part = parts[k]
                plan.dropped.append(Dropped(line: part.line, offset: part.range.lowerBound, bytes: part.range.count, reason: reason))
            }
        }
        kept.sort { ($0.piece, $0.kept.range.lowerBound) < ($1.piece, $1.kept.range.lowerBound) }
        plan.records = kept.map(\.kept)
        plan.dropped.sort { ($0.offset, $0.line) < ($1.offset, $1.line) }
        plan.adjustedTimes = settleTimes(&plan.records)
        return plan
    }

    /// Makes times non-decreasing while changing as few as possible: the records on the
    /// longest non-decreasing run of times keep theirs, and each other one (a time
    /// damaged into a jump, or a hand-edited file) takes the time of the kept record before
    /// it. Raising every later record to a damaged time instead would rewrite them all.
    /// Returns the changes (line, old time, new time).
    static func settleTimes(_ records: inout [Kept]) -> [TimeChange] {
        let keep = longestNonDecreasing(records.map(\.time))
        var changes: [TimeChange] = []
        var last: Int64 = 0
        for i in records.indices {
            if keep.contains(i) {
                last = records[i].time
            } else {
                changes.append(TimeChange(line: records[i].line, from: records[i].time, to: last))
                records[i].time = last
            }
        }
        return changes
    }

    /// Indices of one longest non-decreasing subsequence (patience sorting, O(n log n)).
    static func longestNonDecreasing(_ v: [Int64]) -> Set<Int> {
        var tails: [Int] = []          // index of the smallest tail of each length
        var previous = [Int](repeating: -1, count: v.count)
        for i in v.indices {
            // The first tail greater than v[i] (non-decreasing: equal values extend).
            var lo = 0, hi = tails.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if v[tails[mid]] <= v[i] { lo = mid + 1 } else { hi = mid }
            }
            if lo > 0 { previous[i] = tails[lo - 1] }
            if lo == tails.count { tails.append(i) } else { tails[lo] = i }
        }
        var out = Set<Int>()
        var k = tails.last ?? -1
        while k >= 0 { out.insert(k); k = previous[k] }
        return out
    }

    /// Reads `pieces` as one recording (one piece a line): appends what decodes to `kept`
    /// (with the piece's index and start) and returns the refused pieces with the reader's reason.
    static func read(
        _ pieces: [Piece], from p: UnsafePointer<UInt8>, path: String,
        into kept: inout [(piece: Int, kept: Kept)], trailers: inout [RecordingTrailer]
    ) -> [(Int, String)] {
        guard !pieces.isEmpty else { return [] }
        var buffer: [UInt8] = []
        for piece in pieces {
            buffer.append(contentsOf: UnsafeBufferPointer(start: p + piece.range.lowerBound, count: piece.range.count))
            buffer.append(0x0A)
        }
        guard let r = try? Recording(bytes: FileBytes(bytes: buffer), path: path) else {
            return pieces.indices.map { ($0, "unreadable") }
        }
        var reason: [Int: String] = [:]
        for prob in r.problems where prob.badLine && prob.line > 0 { reason[prob.line - 1] = prob.message }
        var isRecord = Set<Int>()
        for i in 0..<r.count {
            let k = r.line(i) - 1
            isRecord.insert(k)
            do {
                let rec = try r.record(at: i)
                // The index clamps times that go backwards; the plan settles them itself.
                kept.append((k, Kept(line: pieces[k].line, range: pieces[k].range, time: rec.envelope["t"]?.int64Value ?? rec.time)))
            } catch {
                reason[k] = error.reason
            }
        }
        // A piece that is neither a record nor refused is a trailer (the reader keeps the last).
        for k in pieces.indices where !isRecord.contains(k) && reason[k] == nil {
            if let t = trailer(of: pieces[k], p) { trailers.append(t) } else { reason[k] = "not a record" }
        }
        return reason.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    static func trailer(of piece: Piece, _ p: UnsafePointer<UInt8>) -> RecordingTrailer? {
        guard let v = try? JSONParser.parse(UnsafeBufferPointer(start: p + piece.range.lowerBound, count: piece.range.count)),
              v["k"]?.stringValue == "end" else { return nil }
        return RecordingTrailer(time: v["t"]?.int64Value ?? 0, records: Int(v["records"]?.int64Value ?? -1),
                                reason: v["reason"]?.stringValue ?? "", dropped: Int(v["dropped"]?.int64Value ?? 0))
    }

    /// The header of the output: the damaged file's, or one made up when it was lost (its
    /// start estimated from the first event's QEMU timestamp), labelled with where it came from.
    static func header(for plan: Plan, records: Recording, source: String) -> RecordingHeader {
        var h: RecordingHeader
        if let old = plan.header {
            h = old
        } else {
            var start: Int64 = 0
            for (i, k) in plan.records.enumerated() where records.kind(i) == .event {
                if let ts = records.eventTimestampMicros(i) {
                    start = max(0, ts - k.time / 1000)
                    break
                }
            }
            h = RecordingHeader(startMicros: start, source: source, mode: .import, labels: [(key: "recovered-header", value: "lost; start estimated from the first event's timestamp")])
        }
        h.labels.append((key: "recovered-from", value: source))
        if let t = plan.oldTrailers.last {
            h.labels.append((key: "recovered-trailer", value: "records=\(t.records) reason=\(t.reason) dropped=\(t.dropped)"))
        }
        return h
    }

    /// Writes the plan to `path` (through a temporary file beside it), re-reads it, and
    /// renames it into place only when it reads back clean with every record.
    public static func write(_ plan: Plan, source: String, to path: String, redact: Bool = true) throws(Failure) -> Result {
        let temp = path == "-" ? "-" : temporaryName(for: path)
        var notes = 0
        // The kept lines, read again as one recording (each was a whole record when planned).
        let records: Recording
        do {
            var buffer: [UInt8] = []
            buffer.reserveCapacity(plan.records.reduce(0) { $0 + $1.range.count + 1 })
            plan.bytes.buffer.withMemoryRebound(to: UInt8.self) { b in
                for k in plan.records {
                    buffer.append(contentsOf: b[k.range])
                    buffer.append(0x0A)
                }
            }
            records = try Recording(bytes: FileBytes(bytes: buffer), path: source)
        } catch {
            throw Failure(description: error.description)
        }
        guard records.count == plan.records.count else {
            throw Failure(description: "\(source): \(plan.records.count) records planned but \(records.count) read again")
        }
        let w: RedactingWriter
        do {
            w = try RedactingWriter(path: temp, header: header(for: plan, records: records, source: source), redact: redact)
        } catch {
            throw Failure(description: "\(path): \(error.reason) (writing its temporary copy \(temp))")
        }
        do {
            var drops = plan.dropped.makeIterator()
            var nextDrop = drops.next()
            var last: Int64 = 0
            func notesBefore(line: Int) throws(RecordingWriteError) {
                while let d = nextDrop, d.line <= line {
                    if d.bytes > 0 {
                        var data = JSONObject()
                        data["recovered_line"] = .int(d.line)
                        data["dropped_bytes"] = .int(d.bytes)
                        try w.append(time: last, connection: 0, .note(text: "recover: dropped \(d.bytes) bytes of line \(d.line) of \(source): \(d.reason)", data: data))
                        notes += 1
                    }
                    nextDrop = drops.next()
                }
            }
            for (i, k) in plan.records.enumerated() {
                try notesBefore(line: k.line - 1)
                let r = try records.record(at: i)
                last = max(last, k.time)
                try w.append(time: last, connection: r.connection, r.body)
                try notesBefore(line: k.line)
            }
            try notesBefore(line: Int.max)
            try w.finish(reason: "recovered")
        } catch {
            w.abandon()
            if temp != "-" { unlink(temp) }
            throw Failure(description: RedactingWriter.describe(error, doing: "recover"))
        }
        let written = w.records
        if temp != "-" {
            if let problem = verify(temp, records: written) {
                unlink(temp)
                throw Failure(description: "the recovered output did not read back clean, so nothing was written: \(problem)")
            }
            if rename(temp, path) != 0 {
                let e = String(cString: strerror(errno))
                unlink(temp)
                throw Failure(description: "\(path): cannot rename \(temp) into place: \(e)")
            }
        }
        return Result(plan: plan, written: written, notes: notes, redactions: w.redactions)
    }

    /// Why `path` is not a clean recording of `records` records, or `nil` when it is: it
    /// opens, the reader reports no problem at all (header, trailer, counts, lines), and
    /// every record decodes.
    public static func verify(_ path: String, records: Int) -> String? {
        let r: Recording
        do { r = try Recording(path: path, options: RecordingOptions(strict: true, requireRecording: true)) } catch { return error.description }
        if let p = r.problems.first { return "\(path): \(p)" }
        guard r.header != nil, let t = r.trailer else { return "\(path): no header or no trailer" }
        guard r.count == records, t.records == records else { return "\(path): \(r.count) records read, \(records) written" }
        for i in 0..<r.count {
            do { _ = try r.record(at: i) } catch { return error.description }
        }
        return nil
    }

    /// `DIR/.NAME.recover-PID`: beside the output, so that the rename cannot cross file systems.
    static func temporaryName(for path: String) -> String {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[...$0]) } ?? ""
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        return "\(dir).\(name).recover-\(getpid())"
    }
}
