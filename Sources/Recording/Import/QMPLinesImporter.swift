import QMP

/// Imports plain QMP text as captured by `socat`, `-qmp stdio` or a terminal:
///
/// ```
/// {"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}
/// {"execute":"qmp_capabilities"}
/// {"return": {}}
/// {"timestamp": {"seconds": 1763632805, "microseconds": 120400}, "event": "STOP"}
/// ```
///
/// The whole input goes through `QMPFramer`, so pretty multi-line JSON, several texts on
/// one line and garbage lines are cut the way a live recorder would cut them; each
/// message keeps its exact bytes (with its own line end). The text has no clock of its
/// own, so QEMU's event timestamps provide one: t=0 is the first event's timestamp and
/// every other message takes the time of the record before it. One connection (1).
public enum QMPLinesImporter {
    public static let peer = "import:qmp-lines"

    public static func parse(_ bytes: [UInt8]) -> ImportedRecording {
        var framer = QMPFramer()
        var frames = framer.push(bytes)
        frames += framer.finish()

        var b = ImportBuilder()
        var line = 1
        var firstEventMicros: Int64?
        var time: Int64 = 0
        var timedEvents = 0
        for f in frames {
            let frameLine = line
            line += newlineCount(f.bytes[...])
            // Whitespace with nothing after it (blank lines at the end of the input).
            guard !f.payload.isEmpty else { continue }
            let at = frameLine + newlineCount(f.bytes[..<f.payload.lowerBound])
            let m = f.message()
            if let problem = ImportBuilder.problem(f, m) {
                b.kept(line: at, endLine: at + newlineCount(f.bytes[f.payload]), problem)
            }

            if case .event(let e) = m.body, let ts = e.timestamp {
                timedEvents += 1
                let us = ts.totalMicroseconds
                let first = firstEventMicros ?? us
                firstEventMicros = first
                let t = nanos(fromMicros: us, since: first)
                if t < time {
                    b.warn(line: at, "event \(e.name)'s timestamp is \(DurationFormat.short(time.subtractingSaturating(t))) before the previous record's time; kept at that time")
                } else {
                    time = t
                }
            }
            b.message(m, from: ImportBuilder.direction(of: m), connection: 1, time: time, peer: peer)
        }

        if !b.records.isEmpty {
            let text = timedEvents > 0
                ? "imported from QMP lines: times come from QEMU's event timestamps; other messages take the time of the record before them"
                : "imported from QMP lines: no event timestamps in the source, so every record is at t=0"
            b.insert(.note(text: text, data: JSONObject(["timed_events": .int(timedEvents)])), connection: 0, at: 0)
        }
        return b.finish(startMicros: firstEventMicros ?? 0)
    }

    static func newlineCount(_ bytes: ArraySlice<UInt8>) -> Int {
        var n = 0
        for c in bytes where c == 0x0A { n += 1 }
        return n
    }

    /// (us - base) in nanoseconds, saturating instead of trapping on absurd timestamps.
    static func nanos(fromMicros us: Int64, since base: Int64) -> Int64 {
        let (d, o1) = us.subtractingReportingOverflow(base)
        if o1 { return us < base ? Int64.min : Int64.max }
        let (ns, o2) = d.multipliedReportingOverflow(by: 1000)
        if o2 { return d < 0 ? Int64.min : Int64.max }
        return ns
    }
}
