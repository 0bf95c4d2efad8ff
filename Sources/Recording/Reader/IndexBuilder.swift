import QMP

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch

/// Builds a `Recording`'s index from its bytes. One builder scans a range of lines; for
/// large files two builders scan the two halves on two threads and `append` merges the
/// second into the first exactly (line numbers shifted, names re-interned). Checks that
/// need the whole file (times going backwards, records after the trailer, header and
/// trailer presence) run once after the merge.
struct IndexBuilder {
    /// The latest record time a reader accepts, in ns (about 31.7 years): 18 digits, as
    /// many as the fast path reads. Later times are damage (a record that claims to be
    /// centuries after its recording started); keeping them would leave no headroom for
    /// the arithmetic on time spans that every reader of the index does.
    static let maxTime: Int64 = 999_999_999_999_999_999

    var header: RecordingHeader?
    var trailer: RecordingTrailer?
    var problems: [ReadProblem] = []
    var names: [String] = [""]
    var offsets: [UInt64] = []
    var times: [Int64] = []
    var lines: [UInt32] = []
    var conns: [UInt32] = []
    var nameIDs: [UInt16] = []
    var kindDir: [UInt8] = []
    /// The id key of every record (`LineIDKey.indexed` for commands and replies, 0 for the
    /// rest), when the scan was asked to read them while each line is at hand (a caller
    /// that pairs replies: docs/INDEX.md, "Reply pairing"); nil otherwise.
    var idKeys: [UInt64]?
    var nameTable = NameTable()
    var firstTrailerLine: Int?
    var lastLine = 0
    /// Remarks about the file as a whole (no header, no trailer, counts), made by `finish`
    /// and made again after an extension; `problems` holds those about single lines.
    var remarks: [ReadProblem] = []
    /// The byte offset just past the last newline-terminated line scanned, and that line's
    /// number: where an extension resumes (a torn last line is scanned again once complete).
    var completeEnd = 0
    var completeLines = 0
    /// Records whose times went backwards (clamped), counted across extensions.
    var backwards = 0
    /// Line 1 starts like a header (`{"qmprec"`), even when it could not be read: a
    /// recording whose header was damaged, not some other file.
    var headerLineSeen = false

    static func build(_ bytes: FileBytes, parallelThreshold: Int, idKeys: Bool = false) -> IndexBuilder {
        var b = IndexBuilder()
        if idKeys { b.idKeys = [] }
        guard let raw = bytes.base, bytes.count > 0 else {
            b.problem(0, "empty file: no header and no records", badLine: false, code: "empty-file")
            return b
        }
        let base = raw.assumingMemoryBound(to: UInt8.self)
        let n = bytes.count
        var mid = n / 2
        if n >= parallelThreshold, let nl = memchr(base + mid, 0x0A, n - mid) {
            mid = UnsafeRawPointer(nl) - UnsafeRawPointer(base) + 1
        } else {
            mid = n
        }
        if mid >= n {
            b.scan(base, from: 0, to: n, lineBase: 0, firstChunk: true, releasing: bytes)
        } else {
            // Both halves at once; the second numbers its lines from 1 and `append` shifts
            // them by the first half's count (no pass over the bytes to count them first:
            // each page is touched once, by the scan that then gives it back).
            let parts = UnsafeMutablePointer<IndexBuilder>.allocate(capacity: 2)
            parts.initialize(repeating: b, count: 2)
            defer { parts.deinitialize(count: 2); parts.deallocate() }
            let split = mid
            let baseAddress = UInt(bitPattern: base)
            let partsAddress = UInt(bitPattern: parts)
            DispatchQueue.concurrentPerform(iterations: 2) { k in
                let p = UnsafePointer<UInt8>(bitPattern: baseAddress)!
                let out = UnsafeMutablePointer<IndexBuilder>(bitPattern: partsAddress)! + k
                if k == 0 {
                    out.pointee.scan(p, from: 0, to: split, lineBase: 0, firstChunk: true, releasing: bytes)
                } else {
                    out.pointee.scan(p, from: split, to: n, lineBase: 0, firstChunk: false, releasing: bytes)
                }
            }
            b = parts[0]
            b.append(parts[1])
        }
        b.finish()
        return b
    }

    /// The id keys the scan read, moved out (the builder's copy is dropped), as the
    /// recording holds them; nil when it read none or the record count does not match.
    mutating func takeIDKeys() -> IDKeys? {
        defer { idKeys = nil }
        guard let k = idKeys, k.count == offsets.count else { return nil }
        return IDKeys(array: k)
    }

    /// Adds the records and findings of the builder that scanned the lines after this one's
    /// (numbering its lines from 1: they are shifted by this one's count).
    mutating func append(_ o: IndexBuilder) {
        let shift = lastLine
        var map = [UInt16](repeating: 0, count: o.names.count)
        for id in 1..<max(1, o.names.count) {
            map[id] = nameTable.intern(Array(o.names[id].utf8), names: &names)
        }
        offsets += o.offsets
        times += o.times
        lines.reserveCapacity(lines.count + o.lines.count)
        for l in o.lines { lines.append(l &+ UInt32(truncatingIfNeeded: shift)) }
        conns += o.conns
        kindDir += o.kindDir
        if let k = o.idKeys, idKeys != nil { idKeys! += k } else { idKeys = nil }
        nameIDs.reserveCapacity(nameIDs.count + o.nameIDs.count)
        for id in o.nameIDs { nameIDs.append(id == UInt16.max ? id : map[Int(id)]) }
        problems += o.problems.map { var p = $0; p.line += shift; return p }
        if let t = o.trailer { trailer = t }
        if firstTrailerLine == nil { firstTrailerLine = o.firstTrailerLine.map { $0 + shift } }
        lastLine = o.lastLine + shift
        if o.completeLines > 0 {
            completeEnd = o.completeEnd
            completeLines = o.completeLines + shift
        }
    }

    /// Indexes the complete lines `bytes` holds past `completeEnd` (the same file, grown).
    /// What was read from an unterminated last line is dropped first and read again, so a
    /// torn line is indexed once it is whole; a line still without newline is left for the
    /// next extension. Only the new records are clamped and checked; the whole-file remarks
    /// are made again.
    mutating func extend(_ bytes: FileBytes) {
        guard let raw = bytes.base else { return }
        let base = raw.assumingMemoryBound(to: UInt8.self)
        let n = bytes.count
        // The keys are read only by a whole scan; the recording reads the grown file's itself.
        idKeys = nil
        // At most the last record lies past `completeEnd` (an unterminated last line).
        var kept = offsets.count
        while kept > 0 && offsets[kept - 1] >= UInt64(completeEnd) { kept -= 1 }
        if kept < offsets.count {
            offsets.removeSubrange(kept...)
            times.removeSubrange(kept...)
            lines.removeSubrange(kept...)
            conns.removeSubrange(kept...)
            nameIDs.removeSubrange(kept...)
            kindDir.removeSubrange(kept...)
        }
        problems.removeAll { $0.line > completeLines }
        if let t = firstTrailerLine, t > completeLines { firstTrailerLine = nil; trailer = nil }
        // Only whole lines: up to the last newline.
        var end = n
        while end > completeEnd && base[end - 1] != 0x0A { end -= 1 }
        if end > completeEnd {
            scan(base, from: completeEnd, to: end, lineBase: completeLines, firstChunk: completeEnd == 0)
        }
        finish(from: kept)
    }

    /// Whole-file checks, after all lines are in (`from`: the first record not checked yet).
    mutating func finish(from start: Int = 0) {
        var lastTime: Int64 = start > 0 ? times[start - 1] : 0
        for i in start..<times.count {
            let t = times[i]
            if t < lastTime {
                if backwards == 0 {
                    problem(Int(lines[i]), "time goes backwards (\(t) ns after \(lastTime) ns); times clamped for seeking", badLine: false, code: "time-backwards")
                }
                backwards += 1
                times[i] = lastTime
            } else {
                lastTime = t
            }
        }
        remarks = []
        func remark(_ line: Int, _ message: String, code: String) {
            remarks.append(ReadProblem(line: line, message: message, badLine: false, code: code))
        }
        if backwards > 1 { remark(0, "time went backwards at \(backwards) records", code: "time-backwards") }
        problems.sort { $0.line < $1.line }
        if header == nil && !problems.contains(where: { $0.line == 1 }) {
            remark(1, "no header line: reading records without metadata", code: "no-header")
        }
        if let t = trailer {
            if let tl = firstTrailerLine {
                let after = lines.reduce(0) { $0 + (Int($1) > tl ? 1 : 0) }
                if after > 0 { remark(0, "\(after) records after the trailer (line \(tl))", code: "after-trailer") }
            }
            if t.records != times.count {
                remark(0, "trailer counts \(t.records) records but \(times.count) were read", code: "trailer-count")
            }
        } else if !times.isEmpty || lastLine > 0 {
            remark(0, "no trailer: the recording did not end cleanly (recorder killed, disk full, or still recording)", code: "no-trailer")
        }
    }

    /// Line problems and whole-file remarks, in line order (whole-file ones last).
    var allProblems: [ReadProblem] {
        (problems + remarks).sorted { ($0.line == 0 ? Int.max : $0.line) < ($1.line == 0 ? Int.max : $1.line) }
    }


    mutating func problem(_ line: Int, _ message: String, badLine: Bool = true, code: String? = nil) {
        problems.append(ReadProblem(line: line, message: message, badLine: badLine, code: code ?? (badLine ? "bad-line" : "file")))
    }

    /// Scans the lines in `from..<to` (line numbers start after `lineBase`). Only the first
    /// chunk can hold the header; only the last can end without a newline.
    /// `releasing`: the mapped file whose pages are given back behind the scan (every
    /// `releaseStep` bytes), so that indexing a large file leaves little of it resident.
    mutating func scan(_ base: UnsafePointer<UInt8>, from: Int, to n: Int, lineBase: Int, firstChunk: Bool,
                       releasing file: FileBytes? = nil) {
        // An estimate, not a count: counting first would touch every page twice. Records are
        // rarely under 128 bytes; capacity reserved and not used is never made resident.
        let expected = offsets.count + (n - from) / 128 + 16
        offsets.reserveCapacity(expected)
        times.reserveCapacity(expected)
        lines.reserveCapacity(expected)
        conns.reserveCapacity(expected)
        nameIDs.reserveCapacity(expected)
        kindDir.reserveCapacity(expected)
        idKeys?.reserveCapacity(expected)

        var pos = from
        var lineNo = lineBase
        var pages = file.map { PassedPages($0, from: from) }
        while pos < n {
            lineNo += 1
            pages?.passed(pos)
            let rest = n - pos
            let nl = memchr(base + pos, 0x0A, rest)
            let end = nl.map { UnsafeRawPointer($0) - UnsafeRawPointer(base) } ?? n
            let complete = nl != nil
            var lineEnd = end
            if lineEnd > pos && base[lineEnd - 1] == 0x0D { lineEnd -= 1 }  // tolerate CRLF files
            if complete {
                completeEnd = end + 1
                completeLines = lineNo
            }

            if firstChunk, lineNo == 1, lineEnd - pos > 10, Recording.startsWith(base + pos, lineEnd - pos, "{\"qmprec\"") {
                headerLineSeen = true
                readHeader(base, pos, lineEnd)
                if !complete { problem(1, "last line has no newline", badLine: false, code: "no-newline") }
                pos = end + 1
                continue
            }
            if lineEnd == pos {
                if complete || (firstChunk && lineNo == 1) { problem(lineNo, "empty line", code: "empty-line") }
                pos = end + 1
                continue
            }
            var entry = Entry()
            var ok = fastScan(base, pos, lineEnd, &entry)
            if ok && !complete {
                // A last line without newline: accept it only if it is whole JSON.
                ok = (try? JSONParser.parse(UnsafeBufferPointer(start: base + pos, count: lineEnd - pos))) != nil
                if !ok {
                    problem(lineNo, "last line is incomplete (\(lineEnd - pos) bytes, torn write?); ignored", code: "torn-line")
                    break
                }
                problem(lineNo, "last line has no newline", badLine: false, code: "no-newline")
            }
            if !ok {
                if !slowScan(base, pos, lineEnd, lineNo: lineNo, complete: complete, &entry) {
                    pos = end + 1
                    continue
                }
            }
            if entry.isTrailer {
                if firstTrailerLine == nil { firstTrailerLine = lineNo }
                pos = end + 1
                continue
            }
            offsets.append(UInt64(pos))
            times.append(entry.time)
            lines.append(UInt32(truncatingIfNeeded: lineNo))
            conns.append(entry.connection)
            nameIDs.append(entry.nameID)
            kindDir.append(entry.kindDir)
            if idKeys != nil {
                // The line is in cache now: its end is read here rather than by a later pass.
                idKeys!.append(LineIDKey.isKeyed(entry.kindDir) ? LineIDKey.indexed(UnsafeBufferPointer(start: base + pos, count: end - pos)) : 0)
            }
            pos = end + 1
        }
        lastLine = lineNo
    }

    struct Entry {
        var time: Int64 = 0
        var connection: UInt32 = 0
        var kindDir: UInt8 = 0
        var nameID: UInt16 = 0
        var isTrailer = false
    }

    mutating func readHeader(_ base: UnsafePointer<UInt8>, _ start: Int, _ end: Int) {
        do {
            let v = try JSONParser.parse(UnsafeBufferPointer(start: base + start, count: end - start))
            if let h = RecordingHeader(json: v) {
                header = h
                if h.version > RecordingHeader.currentVersion {
                    problem(1, "format version \(h.version) is newer than this reader's \(RecordingHeader.currentVersion); reading what it understands", badLine: false, code: "newer-version")
                }
            } else {
                problem(1, "header is not a qmprec header", code: "bad-header")
            }
        } catch {
            problem(1, "header is not valid JSON: \(error)", code: "bad-header")
        }
    }

    /// Reads the envelope the writer produces: `{"t":N,"c":N[,"from":"qemu|client"],"k":"kind"[,"n":"name"]...}`.
    /// Returns false for anything else (the slow path then decides).
    @inline(__always)
    mutating func fastScan(_ p: UnsafePointer<UInt8>, _ s: Int, _ e: Int, _ out: inout Entry) -> Bool {
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

    mutating func readTrailer(_ p: UnsafePointer<UInt8>, _ s: Int, _ e: Int, _ out: inout Entry) -> Bool {
        guard let v = try? JSONParser.parse(UnsafeBufferPointer(start: p + s, count: e - s)) else { return false }
        out.isTrailer = true
        trailer = RecordingTrailer(
            time: v["t"]?.int64Value ?? 0, records: Int(v["records"]?.int64Value ?? -1),
            reason: v["reason"]?.stringValue ?? "", dropped: Int(v["dropped"]?.int64Value ?? 0))
        return true
    }

    /// Any record line in another shape (hand-edited, reordered by a tool): parse it whole.
    mutating func slowScan(
        _ p: UnsafePointer<UInt8>, _ s: Int, _ e: Int, lineNo: Int, complete: Bool, _ out: inout Entry
    ) -> Bool {
        let v: JSONValue
        do {
            v = try JSONParser.parse(UnsafeBufferPointer(start: p + s, count: e - s))
        } catch {
            problem(lineNo, complete ? "not valid JSON (\(error)); skipped" : "last line is incomplete (\(e - s) bytes, torn write?); ignored", code: complete ? "not-json" : "torn-line")
            return false
        }
        guard let o = v.objectValue else {
            problem(lineNo, "a record must be a JSON object, found \(v.typeName); skipped")
            return false
        }
        if o["qmprec"] != nil {
            problem(lineNo, "a header line in the middle of the recording; skipped", code: "header-in-middle")
            return false
        }
        guard let t = o["t"]?.int64Value else {
            problem(lineNo, "record has no integer time \"t\"; skipped")
            return false
        }
        guard t <= IndexBuilder.maxTime else {
            problem(lineNo, "record time \"t\" \(t) ns is more than 31 years after the start; skipped")
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

}
