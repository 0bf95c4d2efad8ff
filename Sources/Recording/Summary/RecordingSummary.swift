import QMP

/// What `qmpreplay info` reports about a recording, computed from the index plus one
/// targeted read of each event's QEMU timestamp (no full message parsing).
public struct RecordingSummary: Sendable {
    public struct Connection: Sendable {
        public var number: UInt32
        public var peer: String?
        public var openedAt: Int64?
        public var closedAt: Int64?
        public var closedBy: String?
        public var closeReason: String?
        public var records = 0
        public var firstTime: Int64 = 0
        public var lastTime: Int64 = 0
    }

    public struct Skew: Sendable {
        /// Events whose QEMU timestamp was read.
        public var events: Int
        public var firstQEMUMicros: Int64
        public var lastQEMUMicros: Int64
        /// Receive time of the same events, ns since start.
        public var firstReceive: Int64
        public var lastReceive: Int64
        /// QEMU timestamp minus receive wall-clock time, in µs.
        public var minMicros: Int64
        public var medianMicros: Int64
        public var maxMicros: Int64
    }

    public var path: String
    public var fileBytes: Int
    public var header: RecordingHeader?
    public var trailer: RecordingTrailer?
    public var records: Int
    public var duration: Int64
    public var byDirection: [(String, Int)]
    public var byKind: [(String, Int)]
    public var events: [(String, Int)]
    public var commands: [(String, Int)]
    public var errors: [(String, Int)]
    public var connections: [Connection]
    public var skew: Skew?
    public var problems: [ReadProblem]
    /// The schema validation would use, when the caller asked (`info` does: it costs a parse).
    public var schema: SchemaChoice?

    /// What the index alone says; the counts, connections and timestamps are left empty.
    init(indexOf r: Recording) {
        path = r.path
        fileBytes = r.bytes.count
        header = r.header
        trailer = r.trailer
        records = r.count
        duration = r.duration
        problems = r.problems
        byDirection = []
        byKind = []
        events = []
        commands = []
        errors = []
        connections = []
    }

    public init(_ r: Recording) {
        self.init(indexOf: r)

        var kindCounts = [Int](repeating: 0, count: RecordKind.byCode.count)
        var qemu = 0, client = 0
        // Counters indexed by name id: no hashing per record.
        var eventCounts = [Int](repeating: 0, count: r.names.count + 1)
        var commandCounts = eventCounts, errorCounts = eventCounts
        var conns: [UInt32: Connection] = [:]
        var opens: [Int] = [], closes: [Int] = []
        var skews: [Int64] = []
        var firstQ: Int64 = .max, lastQ: Int64 = .min, firstR: Int64 = 0, lastR: Int64 = 0
        let startMicros = r.header?.startMicros
        // Per-connection tallies are flushed when the connection changes (runs are long).
        var runConn: UInt32 = 0, runCount = 0, runFirst: Int64 = 0, runLast: Int64 = 0
        func flushRun() {
            guard runCount > 0, runConn != 0 else { return }
            if conns[runConn] == nil { conns[runConn] = Connection(number: runConn, firstTime: runFirst) }
            conns[runConn]!.records += runCount
            conns[runConn]!.lastTime = runLast
        }
        var pages = PassedPages(r.bytes)
        for i in 0..<r.count {
            if i & 0xFFFF == 0 { pages.passed(r.offset(i)) }
            let k = r.kind(i)
            kindCounts[Int(k.code)] += 1
            switch r.direction(i) {
            case .qemu?: qemu += 1
            case .client?: client += 1
            case nil: break
            }
            let nid = min(Int(r.nameID(i)), r.names.count)
            switch k {
            case .event:
                eventCounts[nid] += 1
                if let start = startMicros, let q = r.eventTimestampMicros(i) {
                    let recv = start.addingSaturating(r.time(i) / 1000)
                    skews.append(q.subtractingSaturating(recv))
                    if skews.count == 1 { firstQ = q; firstR = r.time(i) }
                    firstQ = min(firstQ, q)
                    lastQ = max(lastQ, q)
                    lastR = r.time(i)
                }
            case .command: commandCounts[nid] += 1
            case .error: errorCounts[nid] += 1
            case .open: opens.append(i)
            case .close: closes.append(i)
            default: break
            }
            let c = r.connection(i)
            if c != runConn {
                flushRun()
                runConn = c; runCount = 0; runFirst = r.time(i)
            }
            runCount += 1
            runLast = r.time(i)
        }
        flushRun()
        // Opens and closes lie all over the file: each decode maps the pages around it.
        pages = PassedPages(r.bytes)
        for i in opens {
            pages.passed(r.offset(i))
            let c = r.connection(i)
            conns[c]?.openedAt = r.time(i)
            if case .open(let peer, _)? = try? r.record(at: i).body { conns[c]?.peer = peer }
        }
        pages = PassedPages(r.bytes)
        for i in closes {
            pages.passed(r.offset(i))
            let c = r.connection(i)
            conns[c]?.closedAt = r.time(i)
            if case .close(let by, let reason)? = try? r.record(at: i).body {
                conns[c]?.closedBy = by
                conns[c]?.closeReason = reason
            }
        }
        connections = conns.values.sorted { $0.number < $1.number }
        byDirection = [("qemu", qemu), ("client", client)]
        byKind = RecordKind.byCode.map { ($0.rawValue, kindCounts[Int($0.code)]) }.filter { $0.1 > 0 }
        func named(_ d: [Int]) -> [(String, Int)] {
            d.indices.filter { d[$0] > 0 }
                .map { (($0 != 0 && $0 < r.names.count) ? r.names[$0] : "(unnamed)", d[$0]) }
                .sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
        }
        events = named(eventCounts)
        commands = named(commandCounts)
        errors = named(errorCounts)
        if !skews.isEmpty {
            skews.sort()
            skew = Skew(
                events: skews.count, firstQEMUMicros: firstQ, lastQEMUMicros: lastQ, firstReceive: firstR,
                lastReceive: lastR, minMicros: skews.first!, medianMicros: skews[skews.count / 2], maxMicros: skews.last!)
        }
    }

    /// The `--json` form (docs/JSON.md, "info").
    public var json: JSONValue {
        var o = JSONObject()
        o["file"] = .string(path)
        o["bytes"] = .int(fileBytes)
        if let h = header { o["header"] = h.json } else { o["header"] = .null }
        o["records"] = .int(records)
        o["duration_ns"] = .int(duration)
        o["by_direction"] = counts(byDirection)
        o["by_kind"] = counts(byKind)
        o["events"] = counts(events)
        o["commands"] = counts(commands)
        o["errors"] = counts(errors)
        o["connections"] = .array(connections.map { c in
            var x = JSONObject()
            x["connection"] = .int(Int64(c.number))
            x["peer"] = c.peer.map(JSONValue.string) ?? .null
            x["records"] = .int(c.records)
            x["first_ns"] = .int(c.firstTime)
            x["last_ns"] = .int(c.lastTime)
            x["opened_ns"] = c.openedAt.map { .int($0) } ?? .null
            x["closed_ns"] = c.closedAt.map { .int($0) } ?? .null
            x["closed_by"] = c.closedBy.map(JSONValue.string) ?? .null
            x["close_reason"] = c.closeReason.map(JSONValue.string) ?? .null
            return .object(x)
        })
        if let s = skew {
            var x = JSONObject()
            x["events"] = .int(s.events)
            x["qemu_first_us"] = .int(s.firstQEMUMicros)
            x["qemu_last_us"] = .int(s.lastQEMUMicros)
            x["qemu_span_us"] = .int(s.lastQEMUMicros.subtractingSaturating(s.firstQEMUMicros))
            x["receive_span_us"] = .int((s.lastReceive - s.firstReceive) / 1000)
            x["skew_min_us"] = .int(s.minMicros)
            x["skew_median_us"] = .int(s.medianMicros)
            x["skew_max_us"] = .int(s.maxMicros)
            o["qemu_timestamps"] = .object(x)
        } else {
            o["qemu_timestamps"] = .null
        }
        if let t = trailer {
            o["trailer"] = .object(JSONObject([
                "records": .int(t.records), "reason": .string(t.reason), "dropped": .int(t.dropped), "t": .int(t.time),
            ]))
        } else {
            o["trailer"] = .null
        }
        o["warnings"] = .array(problems.map { p in
            .object(JSONObject(["line": .int(p.line), "message": .string(p.message), "bad_line": .bool(p.badLine)]))
        })
        o["index_bytes_per_record"] = .int(Recording.indexBytesPerRecord)
        if let schema { o["schema"] = schema.json }
        return .object(o)
    }

    private func counts(_ list: [(String, Int)]) -> JSONValue {
        .object(JSONObject(list.map { .init(key: $0.0, value: .int($0.1)) }))
    }
}
