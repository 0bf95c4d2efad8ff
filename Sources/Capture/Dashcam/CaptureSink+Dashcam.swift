import Foundation
import QMP
import Recording

#if canImport(Glibc)
import Glibc
#endif

/// The dashcam's state on the sink's disk thread: the ring, and the incident file being
/// written (from its trigger until `after` has passed).
struct DashcamState {
    struct Incident {
        var trigger: IncidentTrigger
        /// Recording into the file goes on until this time (ns, record clock).
        var until: Int64
    }

    var ring: DashcamRing
    var incident: Incident?
    var seq = 0
}

extension IncidentTrigger {
    /// `event GUEST_PANICKED`, `signal SIGUSR1`, `control`: for messages and the trailer.
    public var summary: String { source == name ? source : "\(source) \(name)" }

    /// The header's `trigger` member and the trigger note's data (docs/FORMAT.md).
    public var json: JSONObject {
        JSONObject(["source": .string(source), "name": .string(name), "detail": .string(detail)])
    }
}

extension CaptureSink {
    /// Dashcam mode, on the disk thread: every record goes into the ring; a record that
    /// triggers starts an incident file with what the ring holds; while an incident is
    /// open its records go to the file as well, until `after` has passed on the clock
    /// (`now`), when the file gets its trailer and the dashcam goes back to ring mode.
    func dashcamTake(_ lines: [Line], now: Int64) {
        guard var cam = dashcam, let ring = options.ring else { return }
        var pending: [Line] = []
        for line in lines {
            if let inc = cam.incident, line.time > inc.until {
                flushIncident(&pending)
                endIncident(&cam, reason: "after")
            }
            cam.ring.append(DashcamRing.Entry(bytes: line.bytes, time: line.time, connection: line.conn, role: line.role))
            if cam.incident != nil {
                pending.append(line)
                if line.trigger != nil { cam.incident!.until = max(cam.incident!.until, line.time + ring.after) }
            } else if let trig = line.trigger {
                startIncident(&cam, trig, at: line.time)
            }
        }
        flushIncident(&pending)
        if let inc = cam.incident, now > inc.until {
            endIncident(&cam, reason: "after")
        }
        let (records, bytes) = (cam.ring.count, cam.ring.memoryBytes)
        stats.withLock { s in
            s.ringRecords = records
            s.ringBytes = bytes
            s.ringPeakBytes = max(s.ringPeakBytes, bytes)
        }
        dashcam = cam
    }

    private func flushIncident(_ pending: inout [Line]) {
        guard !pending.isEmpty, file != nil else { pending.removeAll(); return }
        if failed != nil { lose(pending) } else { write(pending) }
        pending.removeAll(keepingCapacity: true)
    }

    /// Creates the incident file (header naming the trigger) and writes the ring into it:
    /// the context that scrolled out, a note saying where the window begins, the window.
    private func startIncident(_ cam: inout DashcamState, _ trig: IncidentTrigger, at time: Int64) {
        guard let ring = options.ring else { return }
        cam.seq += 1
        var h = header
        var t = trig.json
        t["t"] = .int(time)
        if let ns = ring.bound.nanoseconds { t["ring_ns"] = .int(ns) }
        if let b = ring.bound.bytes { t["ring_bytes"] = .int(Int64(b)) }
        t["after_ns"] = .int(ring.after)
        t["seq"] = .int(Int64(cam.seq))
        h.extra["trigger"] = .object(t)
        let wallMicros = header.startMicros + time / 1000
        var created: CaptureFile?
        for attempt in 0..<100 {
            var name = ring.fileName(seq: cam.seq, trigger: trig.name, micros: wallMicros)
            if attempt > 0 { name = CaptureSink.partPath(name, attempt) }
            let path = (ring.directory as NSString).appendingPathComponent(name)
            do {
                created = try CaptureFile.create(path: path, header: h, replace: false)
                break
            } catch {
                if error.errno == EEXIST { continue }
                let text = "\(error.description): incident \(cam.seq) (\(trig.summary)) is not written"
                stats.withLock { s in
                    s.outputFailures += 1
                    s.outputError = text
                }
                logger.warning("dashcam: \(text)")
                return
            }
        }
        guard let f = created else { return }
        file = f
        failed = nil
        writtenTime = 0
        partLost = 0
        let size = f.size
        stats.withLock { s in
            s.parts.append(CapturePart(path: f.path, bytes: size))
            s.bytes = s.parts.reduce(0) { $0 + $1.bytes }
            s.incidents += 1
        }
        logger.notice("dashcam: \(trig.summary) (\(trig.detail)): writing \(f.path) (the last \(Self.describe(ring.bound)) and \(DurationFormat.short(ring.after)) after)")
        let snap = cam.ring.snapshot()
        func line(_ e: DashcamRing.Entry) -> Line { Line(bytes: e.bytes, time: e.time, kind: .message, conn: e.connection, wire: 0, gap: nil) }
        var lines = snap.context.map(line)
        if snap.evicted > 0, let start = snap.windowStart {
            // Where the window begins: what lies between the context and here scrolled out.
            let text = "dashcam: the ring holds the records from here on; earlier records of this session scrolled out "
                + "(kept above: each open connection's open record, greeting and negotiation, and the commands whose replies follow)"
            let data = JSONObject(["ring_window_from": .int(start), "ring_scrolled_out": .int(Int64(snap.evicted))])
            let t0 = max(lines.last?.time ?? 0, start)
            lines.append(Line(bytes: RecordEncoder.encode(time: t0, connection: 0, body: .note(text: text, data: data)),
                              time: t0, kind: .note, conn: 0, wire: 0, gap: nil))
        }
        lines += snap.window.map(line)
        write(lines)
        cam.incident = DashcamState.Incident(trigger: trig, until: time + ring.after)
    }

    private func endIncident(_ cam: inout DashcamState, reason: String) {
        guard let inc = cam.incident else { return }
        cam.incident = nil
        guard let f = file else { return }
        if failed == nil {
            let trailer = RecordEncoder.trailerLine(RecordingTrailer(time: max(inc.until, writtenTime), records: f.records,
                                                                     reason: "incident \(inc.trigger.summary)", dropped: partLost))
            let r = trailer.withUnsafeBytes { f.write($0, lineEnds: [trailer.count]) }
            if let e = r.error { logger.warning("dashcam: \(f.path): cannot write the trailer: \(String(cString: strerror(e)))") }
        } else {
            logger.warning("dashcam: \(f.path) ends at its last complete record (the output failed)")
            failed = nil
        }
        if options.fsync { _ = f.sync() }
        f.close()
        let (path, size) = (f.path, f.size)
        stats.withLock { Self.updateSizes(&$0, path, size) }
        logger.notice("dashcam: \(path) written (\(size) bytes); back to ring mode")
        file = nil
    }

    static func describe(_ b: RingBound) -> String {
        switch (b.nanoseconds, b.bytes) {
        case (let ns?, let bytes?): return "\(DurationFormat.short(ns)) (at most \(bytes) bytes)"
        case (let ns?, nil): return DurationFormat.short(ns)
        case (nil, let bytes?): return "\(bytes) bytes"
        default: return "records"
        }
    }
}
