import QMP

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Something wrong with a recording file, with the line it is on (1-based).
public struct ReadProblem: Sendable, Hashable, CustomStringConvertible {
    public var line: Int
    public var message: String
    /// A bad line (skipped) as opposed to a remark about the file as a whole.
    public var badLine: Bool
    public var description: String { line > 0 ? "line \(line): \(message)" : message }
}

public struct RecordingOptions: Sendable {
    /// Any bad line (unparseable, torn tail, blank) is an error instead of a warning.
    public var strict = false
    public init(strict: Bool = false) { self.strict = strict }
}

/// An opened, indexed recording.
///
/// Opening maps the file and builds an index in one pass over the bytes: for each record
/// its byte offset, time, line, connection, kind, direction and name (event, command or
/// error class), 27 bytes per record held in flat arrays. The index reads the envelope
/// members that the writer always puts first (`t`, `c`, `from`, `k`, `n`) directly from
/// the bytes without parsing the message; lines in any other shape take a slower path
/// through the JSON parser. Messages are parsed only when a record is decoded with
/// `record(at:)`. Any record can then be reached by number in O(1) and by time in O(log n).
///
/// Lenient by default: bad lines are reported in `problems` (with line number and
/// reason) and skipped, and every good record is kept. A torn last line or a missing
/// trailer is a warning, never a failure to open.
public final class Recording: @unchecked Sendable {
    public let path: String
    public let bytes: FileBytes
    public private(set) var header: RecordingHeader?
    public private(set) var trailer: RecordingTrailer?
    public private(set) var problems: [ReadProblem] = []
    /// Distinct record names (events, commands, error classes); index 0 is "no name".
    public private(set) var names: [String] = [""]

    // The index, as parallel arrays (struct of arrays keeps binary search on times tight).
    private var offsets: [UInt64] = []
    private var times: [Int64] = []
    private var lines: [UInt32] = []
    private var conns: [UInt32] = []
    private var nameIDs: [UInt16] = []
    private var kindDir: [UInt8] = []

    private var nameTable = NameTable()

    public var count: Int { times.count }
    public var isEmpty: Bool { times.isEmpty }

    /// Bytes of index held per record (for the benchmark and `info --json`).
    public static let indexBytesPerRecord = MemoryLayout<UInt64>.size + MemoryLayout<Int64>.size
        + MemoryLayout<UInt32>.size * 2 + MemoryLayout<UInt16>.size + MemoryLayout<UInt8>.size

    public convenience init(path: String, options: RecordingOptions = RecordingOptions()) throws(RecordingOpenError) {
        let bytes = try FileBytes(path: path)
        try self.init(bytes: bytes, path: path, options: options)
    }

    public init(bytes: FileBytes, path: String, options: RecordingOptions = RecordingOptions()) throws(RecordingOpenError) {
        self.path = path
        self.bytes = bytes
        buildIndex()
        if options.strict, let bad = problems.first(where: { $0.badLine }) {
            throw RecordingOpenError(path: path, reason: "line \(bad.line): \(bad.message) (--strict)")
        }
    }

    // MARK: Index accessors (O(1))

    public func time(_ i: Int) -> Int64 { times[i] }
    public func line(_ i: Int) -> Int { Int(lines[i]) }
    public func connection(_ i: Int) -> UInt32 { conns[i] }
    public func offset(_ i: Int) -> Int { Int(offsets[i]) }
    public func kind(_ i: Int) -> RecordKind { RecordKind.byCode[Int(kindDir[i] & 0x0F)] }
    public func direction(_ i: Int) -> Direction? {
        switch kindDir[i] & 0xC0 {
        case 0x40: return .qemu
        case 0x80: return .client
        default: return nil
        }
    }
    public func nameID(_ i: Int) -> UInt16 { nameIDs[i] }
    /// The event name, command name or error class of record `i` (from the index).
    public func name(_ i: Int) -> String? {
        let id = Int(nameIDs[i])
        if id == 0 { return nil }
        if id == Int(UInt16.max) { return try? record(at: i).name }
        return names[id]
    }
    public func nameID(for name: String) -> UInt16? { nameTable.lookup(Array(name.utf8)) }

    /// Time of the last record (the recording's duration), or the trailer's when later.
    public var duration: Int64 { max(times.last ?? 0, trailer?.time ?? 0) }

    /// The first record at or after `time` (ns since start); `count` when none.
    public func firstIndex(atOrAfter time: Int64) -> Int {
        var lo = 0, hi = times.count
        times.withUnsafeBufferPointer { t in
            while lo < hi {
                let mid = (lo + hi) >> 1
                if t[mid] < time { lo = mid + 1 } else { hi = mid }
            }
        }
        return lo
    }

    /// The last record at or before `time`; `nil` when none.
    public func lastIndex(atOrBefore time: Int64) -> Int? {
        let i = firstIndex(atOrAfter: time &+ 1)
        return i > 0 ? i - 1 : nil
    }

    /// The record line's bytes (without its newline).
    public func lineBytes(_ i: Int) -> UnsafeBufferPointer<UInt8> {
        let start = Int(offsets[i])
        guard let base = bytes.base?.assumingMemoryBound(to: UInt8.self) else { return UnsafeBufferPointer(start: nil, count: 0) }
        let remaining = bytes.count - start
        var len = remaining
        if let nl = memchr(base + start, 0x0A, remaining) {
            len = UnsafeRawPointer(nl) - UnsafeRawPointer(base + start)
        }
        return UnsafeBufferPointer(start: base + start, count: len)
    }

    public func lineText(_ i: Int) -> String { String(decoding: lineBytes(i), as: UTF8.self) }

    // MARK: Building the index

    private func problem(_ line: Int, _ message: String, badLine: Bool = true) {
        problems.append(ReadProblem(line: line, message: message, badLine: badLine))
    }

    private func buildIndex() {
        guard let raw = bytes.base, bytes.count > 0 else {
            problem(0, "empty file: no header and no records", badLine: false)
            return
        }
        let base = raw.assumingMemoryBound(to: UInt8.self)
        let n = bytes.count
        let expected = Recording.countLines(base, n)
        offsets.reserveCapacity(expected)
        times.reserveCapacity(expected)
        lines.reserveCapacity(expected)
        conns.reserveCapacity(expected)
        nameIDs.reserveCapacity(expected)
        kindDir.reserveCapacity(expected)

        var pos = 0
        var lineNo = 0
        var lastTime: Int64 = 0
        var backwards = 0
        var afterTrailer = 0
        while pos < n {
            lineNo += 1
            let rest = n - pos
            let nl = memchr(base + pos, 0x0A, rest)
            let end = nl.map { UnsafeRawPointer($0) - UnsafeRawPointer(base) } ?? n
            let complete = nl != nil
            var lineEnd = end
            if lineEnd > pos && base[lineEnd - 1] == 0x0D { lineEnd -= 1 }  // tolerate CRLF files

            if lineNo == 1, lineEnd - pos > 10, startsWith(base + pos, lineEnd - pos, "{\"qmprec\"") {
                readHeader(base, pos, lineEnd)
                pos = end + 1
                continue
            }
            if lineEnd == pos {
                if complete || lineNo == 1 { problem(lineNo, "empty line") }
                pos = end + 1
                continue
            }
            var entry = Entry()
            var ok = fastScan(base, pos, lineEnd, &entry)
            if ok && !complete {
                // A last line without newline: accept it only if it is whole JSON.
                ok = (try? JSONParser.parse(UnsafeBufferPointer(start: base + pos, count: lineEnd - pos))) != nil
                if !ok {
                    problem(lineNo, "last line is incomplete (\(lineEnd - pos) bytes, torn write?); ignored")
                    break
                }
                problem(lineNo, "last line has no newline", badLine: false)
            }
            if !ok {
                if !slowScan(base, pos, lineEnd, lineNo: lineNo, complete: complete, &entry) {
                    pos = end + 1
                    continue
                }
            }
            if entry.isTrailer {
                pos = end + 1
                continue
            }
            if trailer != nil { afterTrailer += 1 }
            if entry.time < lastTime {
                if backwards == 0 {
                    problem(lineNo, "time goes backwards (\(entry.time) ns after \(lastTime) ns); times clamped for seeking", badLine: false)
                }
                backwards += 1
                entry.time = lastTime
            }
            lastTime = entry.time
            offsets.append(UInt64(pos))
            times.append(entry.time)
            lines.append(UInt32(truncatingIfNeeded: lineNo))
            conns.append(entry.connection)
            nameIDs.append(entry.nameID)
            kindDir.append(entry.kindDir)
            pos = end + 1
        }
        if backwards > 1 { problem(0, "time went backwards at \(backwards) records", badLine: false) }
        if header == nil && !problems.contains(where: { $0.line == 1 }) {
            problem(1, "no header line: reading records without metadata", badLine: false)
        }
        if let t = trailer {
            if afterTrailer > 0 { problem(0, "\(afterTrailer) records after the trailer", badLine: false) }
            if t.records != count {
                problem(0, "trailer counts \(t.records) records but \(count) were read", badLine: false)
            }
        } else {
            problem(0, "no trailer: the recording did not end cleanly (recorder killed, disk full, or still recording)", badLine: false)
        }
    }

    private struct Entry {
        var time: Int64 = 0
        var connection: UInt32 = 0
        var kindDir: UInt8 = 0
        var nameID: UInt16 = 0
        var isTrailer = false
    }

    private func readHeader(_ base: UnsafePointer<UInt8>, _ start: Int, _ end: Int) {
        do {
            let v = try JSONParser.parse(UnsafeBufferPointer(start: base + start, count: end - start))
            if let h = RecordingHeader(json: v) {
                header = h
                if h.version > RecordingHeader.currentVersion {
                    problem(1, "format version \(h.version) is newer than this reader's \(RecordingHeader.currentVersion); reading what it understands", badLine: false)
                }
            } else {
                problem(1, "header is not a qmprec header")
            }
        } catch {
            problem(1, "header is not valid JSON: \(error)")
        }
    }

    /// Reads the envelope the writer produces: `{"t":N,"c":N[,"from":"qemu|client"],"k":"kind"[,"n":"name"]...}`.
    /// Returns false for anything else (the slow path then decides).
    @inline(__always)
    private func fastScan(_ p: UnsafePointer<UInt8>, _ s: Int, _ e: Int, _ out: inout Entry) -> Bool {
        guard e - s >= 16, p[s] == 0x7B, p[s + 1] == 0x22, p[s + 2] == 0x74, p[s + 3] == 0x22, p[s + 4] == 0x3A,
              p[e - 1] == 0x7D
        else { return false }
        var i = s + 5
        var t: Int64 = 0
        let digitsStart = i
        while i < e, p[i] &- 0x30 < 10 {
            t = t &* 10 &+ Int64(p[i] &- 0x30)
            i += 1
        }
        guard i > digitsStart, i - digitsStart < 19 else { return false }
        out.time = t
        // ,"c":N
        if i + 5 < e, p[i] == 0x2C, p[i + 1] == 0x22, p[i + 2] == 0x63, p[i + 3] == 0x22, p[i + 4] == 0x3A {
            i += 5
            var c: UInt64 = 0
            let cs = i
            while i < e, p[i] &- 0x30 < 10 {
                c = c &* 10 &+ UInt64(p[i] &- 0x30)
                i += 1
            }
            guard i > cs, c <= UInt64(UInt32.max) else { return false }
            out.connection = UInt32(c)
        }
        var dir: UInt8 = 0
        // ,"from":"qemu" | ,"from":"client"
        if i + 9 < e, p[i] == 0x2C, p[i + 1] == 0x22, p[i + 2] == 0x66, p[i + 3] == 0x72, p[i + 4] == 0x6F,
           p[i + 5] == 0x6D, p[i + 6] == 0x22, p[i + 7] == 0x3A, p[i + 8] == 0x22 {
            i += 9
            if e - i > 5, p[i] == 0x71, p[i + 1] == 0x65, p[i + 2] == 0x6D, p[i + 3] == 0x75, p[i + 4] == 0x22 {
                dir = 0x40; i += 5
            } else if e - i > 7, p[i] == 0x63, p[i + 1] == 0x6C, p[i + 2] == 0x69, p[i + 3] == 0x65, p[i + 4] == 0x6E,
                      p[i + 5] == 0x74, p[i + 6] == 0x22 {
                dir = 0x80; i += 7
            } else {
                return false
            }
        }
        // ,"k":"kind"
        guard i + 6 < e, p[i] == 0x2C, p[i + 1] == 0x22, p[i + 2] == 0x6B, p[i + 3] == 0x22, p[i + 4] == 0x3A,
              p[i + 5] == 0x22
        else { return false }
        i += 6
        let ks = i
        while i < e, p[i] != 0x22, p[i] != 0x5C { i += 1 }
        guard i < e, p[i] == 0x22 else { return false }
        guard let code = Recording.kindCode(p + ks, i - ks) else { return false }
        i += 1
        if code == Recording.trailerCode {
            return readTrailer(p, s, e, &out)
        }
        let kind = RecordKind.byCode[Int(code)]
        if kind.isMessage && dir == 0 { return false }
        out.kindDir = code | dir
        // ,"n":"name"
        if i + 6 < e, p[i] == 0x2C, p[i + 1] == 0x22, p[i + 2] == 0x6E, p[i + 3] == 0x22, p[i + 4] == 0x3A,
           p[i + 5] == 0x22 {
            i += 6
            let ns = i
            while i < e, p[i] != 0x22, p[i] != 0x5C { i += 1 }
            guard i < e, p[i] == 0x22 else { return false }
            out.nameID = nameTable.intern(UnsafeBufferPointer(start: p + ns, count: i - ns), names: &names)
        } else if code == 1 || code == 3 || code == 4 {
            // A command, error or event without "n": let the slow path take the name from msg.
            return false
        }
        return true
    }

    private func readTrailer(_ p: UnsafePointer<UInt8>, _ s: Int, _ e: Int, _ out: inout Entry) -> Bool {
        guard let v = try? JSONParser.parse(UnsafeBufferPointer(start: p + s, count: e - s)) else { return false }
        out.isTrailer = true
        trailer = RecordingTrailer(
            time: v["t"]?.int64Value ?? 0, records: Int(v["records"]?.int64Value ?? -1),
            reason: v["reason"]?.stringValue ?? "", dropped: Int(v["dropped"]?.int64Value ?? 0))
        return true
    }

    /// Any record line in another shape (hand-edited, reordered by a tool): parse it whole.
    private func slowScan(
        _ p: UnsafePointer<UInt8>, _ s: Int, _ e: Int, lineNo: Int, complete: Bool, _ out: inout Entry
    ) -> Bool {
        let v: JSONValue
        do {
            v = try JSONParser.parse(UnsafeBufferPointer(start: p + s, count: e - s))
        } catch {
            problem(lineNo, complete ? "not valid JSON (\(error)); skipped" : "last line is incomplete (\(e - s) bytes, torn write?); ignored")
            return false
        }
        guard let o = v.objectValue else {
            problem(lineNo, "a record must be a JSON object, found \(v.typeName); skipped")
            return false
        }
        if o["qmprec"] != nil {
            problem(lineNo, "a header line in the middle of the recording; skipped")
            return false
        }
        guard let t = o["t"]?.int64Value else {
            problem(lineNo, "record has no integer time \"t\"; skipped")
            return false
        }
        out.time = t
        if let c = o["c"]?.int64Value {
            guard c >= 0 && c <= Int64(UInt32.max) else {
                problem(lineNo, "connection number \"c\" \(c) out of range; skipped")
                return false
            }
            out.connection = UInt32(c)
        }
        let k = o["k"]?.stringValue
        if k == "end" {
            out.isTrailer = true
            trailer = RecordingTrailer(
                time: t, records: Int(o["records"]?.int64Value ?? -1), reason: o["reason"]?.stringValue ?? "",
                dropped: Int(o["dropped"]?.int64Value ?? 0))
            return true
        }
        var dir: UInt8 = 0
        switch o["from"]?.stringValue {
        case "qemu": dir = 0x40
        case "client": dir = 0x80
        case nil: break
        case let other?:
            problem(lineNo, "unknown direction \"from\": \"\(other)\"; skipped")
            return false
        }
        var kind: RecordKind?
        if let k { kind = RecordKind(rawValue: k) }
        var name = o["n"]?.stringValue
        if kind == nil || (kind!.isMessage && name == nil) {
            // Derive from the message when the envelope does not say.
            if let msg = o["msg"] {
                let body = QMPMessage.classify(msg)
                let m = QMPMessage(json: msg, bytes: [], payload: 0..<0)
                if kind == nil { kind = RecordKind(m.kind) }
                if case .other = body {} else if name == nil { name = m.name }
            }
        }
        guard let kind else {
            problem(lineNo, k.map { "unknown record kind \"\($0)\"; skipped" } ?? "record has no kind \"k\" and no message; skipped")
            return false
        }
        if kind.isMessage {
            guard dir != 0 else {
                problem(lineNo, "message record without direction \"from\"; skipped")
                return false
            }
            guard o["msg"] != nil || o["text"] != nil || o["b64"] != nil else {
                problem(lineNo, "message record without \"msg\", \"text\" or \"b64\"; skipped")
                return false
            }
        }
        out.kindDir = kind.code | dir
        if let name {
            out.nameID = nameTable.intern(Array(name.utf8), names: &names)
        }
        return true
    }

    static let trailerCode: UInt8 = 0x0F

    @inline(__always)
    static func kindCode(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt8? {
        func eq(_ s: StaticString) -> Bool {
            s.utf8CodeUnitCount == n && memcmp(p, s.utf8Start, n) == 0
        }
        switch (n, p[0]) {
        case (5, 0x65): return eq("event") ? 4 : (eq("error") ? 3 : nil)
        case (7, 0x63): return eq("command") ? 1 : nil
        case (6, 0x72): return eq("return") ? 2 : nil
        case (8, 0x67): return eq("greeting") ? 0 : nil
        case (5, 0x6F): return eq("other") ? 5 : nil
        case (4, 0x6F): return eq("open") ? 6 : nil
        case (5, 0x63): return eq("close") ? 7 : nil
        case (4, 0x6E): return eq("note") ? 8 : nil
        case (3, 0x65): return eq("end") ? trailerCode : nil
        default: return nil
        }
    }

    private static func countLines(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        var count = 0
        var pos = 0
        while pos < n, let nl = memchr(p + pos, 0x0A, n - pos) {
            count += 1
            pos = UnsafeRawPointer(nl) - UnsafeRawPointer(p) + 1
        }
        return count + 1
    }

    private func startsWith(_ p: UnsafePointer<UInt8>, _ n: Int, _ s: StaticString) -> Bool {
        n >= s.utf8CodeUnitCount && memcmp(p, s.utf8Start, s.utf8CodeUnitCount) == 0
    }
}

/// Interns record names (a few dozen distinct ones in practice) without building a
/// String per record: open addressing on an FNV-1a hash of the bytes.
struct NameTable {
    private var slots = [Int32](repeating: -1, count: 256)
    private var hashes = [UInt64](repeating: 0, count: 256)
    private var keys: [[UInt8]] = [[]]
    private var used = 0

    private static func hash(_ b: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for c in b { h = (h ^ UInt64(c)) &* 0x100_0000_01b3 }
        return h
    }

    mutating func intern(_ b: [UInt8], names: inout [String]) -> UInt16 {
        b.withUnsafeBufferPointer { intern($0, names: &names) }
    }

    mutating func intern(_ b: UnsafeBufferPointer<UInt8>, names: inout [String]) -> UInt16 {
        let h = NameTable.hash(b)
        var i = Int(h & UInt64(slots.count - 1))
        while true {
            let s = slots[i]
            if s < 0 { break }
            if hashes[i] == h, keys[Int(s)].count == b.count,
               (b.count == 0 || keys[Int(s)].withUnsafeBufferPointer({ memcmp($0.baseAddress!, b.baseAddress!, b.count) == 0 })) {
                return UInt16(s)
            }
            i = (i + 1) & (slots.count - 1)
        }
        guard keys.count < Int(UInt16.max) else { return UInt16.max }
        let id = keys.count
        keys.append(Array(b))
        names.append(String(decoding: b, as: UTF8.self))
        slots[i] = Int32(id)
        hashes[i] = h
        used += 1
        if used * 2 > slots.count { grow() }
        return UInt16(id)
    }

    func lookup(_ b: [UInt8]) -> UInt16? {
        b.withUnsafeBufferPointer { buf in
            let h = NameTable.hash(buf)
            var i = Int(h & UInt64(slots.count - 1))
            while slots[i] >= 0 {
                let s = Int(slots[i])
                if hashes[i] == h, keys[s] == b { return UInt16(s) }
                i = (i + 1) & (slots.count - 1)
            }
            return nil
        }
    }

    private mutating func grow() {
        let newSize = slots.count * 2
        var ns = [Int32](repeating: -1, count: newSize)
        var nh = [UInt64](repeating: 0, count: newSize)
        for (i, s) in slots.enumerated() where s >= 0 {
            var j = Int(hashes[i] & UInt64(newSize - 1))
            while ns[j] >= 0 { j = (j + 1) & (newSize - 1) }
            ns[j] = s
            nh[j] = hashes[i]
        }
        slots = ns
        hashes = nh
    }
}
