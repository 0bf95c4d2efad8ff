import QMP

/// `qmpreplay merge`: recordings of the same VM from different sources (a proxy capture and
/// a libvirt-log import, two monitors of one QEMU, both QEMUs of a migration) as one
/// timeline, each source's connections renumbered apart, each source's records in their
/// own order.
///
/// Receive clocks differ between sources (another host, another recorder, a log's
/// millisecond stamps), QEMU's event timestamps do not: QEMU stamps an event once and sends
/// the same object to every monitor (docs/QEMU-FACTS.md, "Event timestamps"). So each source
/// after the first is shifted by one constant onto the first one's receive clock, chosen
/// in this order:
///
/// 1. **shared events**: events both hold (same name, same timestamp to the microsecond,
///    each once on each side); the shift is the median of their receive-time differences,
///    and the spread of those differences says how well it fits;
/// 2. **event timestamps**: no event in common (two QEMUs of a migration): each source's
///    receive clock is tied to its QEMU's clock by the median of (receive - timestamp) over
///    its events, and the QEMUs' clocks (host wall clocks) are taken as one;
/// 3. **wall clock**: no events at all: the headers' start times, as recorded.
///
/// A constant shift keeps each source's order; the merge is stable (equal times keep the
/// sources' order), so every source's records come out in their recorded order.
public enum RecordingMerge {
    public enum Method: String, Sendable {
        case reference = "reference"
        case sharedEvents = "shared-events"
        case eventTimestamps = "event-timestamps"
        case wallClock = "wall-clock"
    }

    /// How one source was put on the first one's clock.
    public struct Alignment: Sendable, Hashable {
        public var method: Method
        /// Added to the source's receive times (ns since the epoch).
        public var shift: Int64
        /// Events the shift rests on: shared ones, or the source's own.
        public var events: Int
        /// Smallest and largest residual (ns) of those events after the shift: how far apart
        /// the clocks stay. 0...0 for the reference and the wall clock.
        public var residualMin: Int64
        public var residualMax: Int64
        public var spread: Int64 { residualMax - residualMin }
    }

    public struct Result: Sendable {
        public var alignments: [Alignment]
        public var records: Int
        /// `(source, old connection, new connection)`, in the output's order.
        public var connections: [(source: Int, old: UInt32, new: UInt32)]
        public var redactions: Int
    }

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Receive time of record `i` in ns since the epoch.
    static func absolute(_ r: Recording, _ i: Int) -> Int64 {
        (r.header?.startMicros ?? 0) &* 1000 &+ r.time(i)
    }

    /// The events of `r` with a timestamp: key (name, µs) -> receive time; keys seen twice are dropped.
    static func events(_ r: Recording) -> [String: Int64] {
        var out: [String: Int64] = [:]
        var twice = Set<String>()
        for i in 0..<r.count where r.kind(i) == .event {
            guard let ts = r.eventTimestampMicros(i), let name = r.name(i) else { continue }
            let key = "\(name)@\(ts)"
            if out[key] != nil { twice.insert(key) }
            out[key] = absolute(r, i)
        }
        for k in twice { out[k] = nil }
        return out
    }

    /// Median of (receive - QEMU timestamp) over a source's events, with the values.
    static func clockOffsets(_ r: Recording) -> [Int64] {
        var out: [Int64] = []
        for i in 0..<r.count where r.kind(i) == .event {
            if let ts = r.eventTimestampMicros(i) { out.append(absolute(r, i) - ts * 1000) }
        }
        return out.sorted()
    }

    static func median(_ sorted: [Int64]) -> Int64 { sorted[sorted.count / 2] }

    /// The shift of every source onto the first one's receive clock.
    public static func align(_ sources: [Recording]) -> [Alignment] {
        guard let reference = sources.first else { return [] }
        var out = [Alignment(method: .reference, shift: 0, events: 0, residualMin: 0, residualMax: 0)]
        let refEvents = events(reference)
        let refOffsets = clockOffsets(reference)
        for r in sources.dropFirst() {
            let mine = events(r)
            let diffs = mine.compactMap { key, t in refEvents[key].map { $0 - t } }.sorted()
            if !diffs.isEmpty {
                let shift = median(diffs)
                out.append(Alignment(method: .sharedEvents, shift: shift, events: diffs.count,
                                     residualMin: diffs.first! - shift, residualMax: diffs.last! - shift))
                continue
            }
            let offsets = clockOffsets(r)
            if !offsets.isEmpty && !refOffsets.isEmpty {
                let own = median(offsets)
                out.append(Alignment(method: .eventTimestamps, shift: median(refOffsets) - own, events: offsets.count,
                                     residualMin: offsets.first! - own, residualMax: offsets.last! - own))
                continue
            }
            out.append(Alignment(method: .wallClock, shift: 0, events: 0, residualMin: 0, residualMax: 0))
        }
        return out
    }

    /// Writes the merged timeline of `sources` (opened from `paths`) to `path`.
    public static func write(
        _ sources: [Recording], alignments: [Alignment], to path: String, force: Bool, redact: Bool = true
    ) throws(Failure) -> Result {
        guard sources.count == alignments.count, let first = sources.first else { throw Failure(description: "nothing to merge") }
        for s in sources where s.path == path { throw Failure(description: "refusing to overwrite \(path), one of the recordings being merged") }
        do { try OutputGuard.check(path, force: force) } catch { throw Failure(description: error.description) }

        // Connections renumbered apart, in source order then first appearance.
        var connections: [(source: Int, old: UInt32, new: UInt32)] = []
        var map: [[UInt32: UInt32]] = Array(repeating: [:], count: sources.count)
        for (k, r) in sources.enumerated() {
            for i in 0..<r.count {
                let c = r.connection(i)
                if c != 0 && map[k][c] == nil {
                    let n = UInt32(connections.count + 1)
                    map[k][c] = n
                    connections.append((k, c, n))
                }
            }
        }
        // The output starts at the earliest aligned record.
        var start = Int64.max
        for (k, r) in sources.enumerated() where r.count > 0 { start = min(start, absolute(r, 0) + alignments[k].shift) }
        if start == .max { start = (first.header?.startMicros ?? 0) * 1000 }
        start = start / 1000 * 1000

        var header = first.header ?? RecordingHeader(startMicros: 0, source: first.path, mode: .import)
        header.startMicros = start / 1000
        header.source = sources.map(\.path).joined(separator: " + ")
        header.mode = .import
        header.qemuVersion = sources.lazy.compactMap { $0.header?.qemuVersion }.first
        header.redacted = sources.allSatisfy { $0.header?.redacted ?? false }
        header.labels = [(key: "merged-from", value: sources.map(\.path).joined(separator: ", "))]

        do {
            let w = try RedactingWriter(path: path, header: header, redact: redact)
            for (k, r) in sources.enumerated() {
                let a = alignments[k]
                var data = JSONObject()
                data["merge_source"] = .int(k + 1)
                data["path"] = .string(r.path)
                data["mode"] = .string(r.header?.mode.rawValue ?? "unknown")
                data["method"] = .string(a.method.rawValue)
                data["shift_ns"] = .int(a.shift)
                data["events"] = .int(a.events)
                data["spread_ns"] = .int(a.spread)
                var cs = JSONObject()
                for c in connections where c.source == k { cs[String(c.old)] = .int(Int(c.new)) }
                data["connections"] = .object(cs)
                let renumbered = connections.filter { $0.source == k }.map { "\($0.old)->\($0.new)" }.joined(separator: ", ")
                try w.append(time: 0, connection: 0, .note(text: "merge: source \(k + 1) is \(r.path) (connections \(renumbered.isEmpty ? "none" : renumbered)); \(describe(a))", data: data))
            }
            var next = [Int](repeating: 0, count: sources.count)
            while true {
                // The source whose next record is earliest; ties go to the earlier source.
                var best = -1
                var bestTime = Int64.max
                for k in sources.indices where next[k] < sources[k].count {
                    let t = absolute(sources[k], next[k]) + alignments[k].shift
                    if t < bestTime { best = k; bestTime = t }
                }
                guard best >= 0 else { break }
                let r = sources[best]
                let rec = try r.record(at: next[best])
                next[best] += 1
                var body = rec.body
                if case .note(let text, var data) = body {
                    data["merge_source"] = .int(best + 1)
                    body = .note(text: text, data: data)
                }
                let c = rec.connection == 0 ? 0 : map[best][rec.connection]!
                try w.append(time: max(0, bestTime - start), connection: c, body)
            }
            try w.finish(reason: "complete")
            return Result(alignments: alignments, records: w.records, connections: connections, redactions: w.redactions)
        } catch {
            throw Failure(description: RedactingWriter.describe(error, doing: "merge"))
        }
    }

    /// "aligned by 14 shared events: shift +1.234567 ms, residuals -0.1..+0.2 ms".
    public static func describe(_ a: Alignment) -> String {
        func ms(_ ns: Int64, signed: Bool = true) -> String {
            let sign = ns < 0 ? "-" : (signed ? "+" : "")
            let v = abs(ns)
            let frac = String(v % 1_000_000)
            return "\(sign)\(v / 1_000_000).\(String(repeating: "0", count: 6 - frac.count))\(frac) ms"
        }
        switch a.method {
        case .reference: return "the reference clock"
        case .sharedEvents:
            return "aligned by \(a.events) shared event\(a.events == 1 ? "" : "s"): shift \(ms(a.shift)), residuals \(ms(a.residualMin))..\(ms(a.residualMax)) (spread \(ms(a.spread, signed: false)))"
        case .eventTimestamps:
            return "no shared event; aligned through its QEMU's event timestamps (\(a.events) events, QEMU clocks taken as one): shift \(ms(a.shift)), receive-minus-timestamp spread \(ms(a.spread, signed: false))"
        case .wallClock: return "no events to align by: the header's wall clock as recorded"
        }
    }
}
