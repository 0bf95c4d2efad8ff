import QMP
import Recording
import Transport

/// Plays a recorded connection's QEMU side as one timed byte stream (`qmpreplay replay
/// --stdout`): the greeting first, then every reply and event of the span on the recorded
/// schedule, scaled like `serve`. There is no client to answer, so replies go out on the clock.
///
/// Example: `try StreamPlayer(recording: r, options: o).run(write: { out.write($0); return true })`.
public final class StreamPlayer {
    public let script: ReplayScript
    public let options: ReplayOptions
    let clock: ReplayClock
    let scheduler: Scheduler
    /// Exact bytes and kind of each QEMU-side message in the span, in recorded order.
    let items: [(bytes: [UInt8], event: Int?)]
    public private(set) var report: SessionReport

    public init(recording r: Recording, options: ReplayOptions, clock: ReplayClock = MonotonicClock()) throws {
        try options.validate()
        var o = options
        // Every QEMU message is on the clock here; the span starts at the greeting by default.
        o.clockOnly = true
        script = try ReplayScript(recording: r, options: o)
        self.options = o
        self.clock = clock
        var start = Int64.max
        for i in 0..<r.count where r.connection(i) == script.connection && r.direction(i) == .qemu && r.kind(i) == .greeting {
            start = r.time(i); break
        }
        if start == .max { start = script.spanStart }
        if let f = options.from { start = f.resolveTime(in: r) }
        var times: [Int64] = []
        var list: [(bytes: [UInt8], event: Int?)] = []
        var eventByRecord: [Int: Int] = [:]
        for (k, e) in script.events.enumerated() { eventByRecord[e.record] = k }
        for i in 0..<r.count where r.connection(i) == script.connection && r.direction(i) == .qemu {
            let kind = r.kind(i)
            guard kind == .event || kind == .return || kind == .error || kind == .other else { continue }
            let t = r.time(i)
            guard t >= start && t <= script.spanEnd else { continue }
            let bytes: [UInt8]
            if let k = eventByRecord[i] { bytes = script.events[k].bytes } else {
                do { bytes = ReplayScript.crlf(try r.rawBytes(i) ?? []) } catch { throw ReplayError.recording(error.description) }
            }
            times.append(t)
            list.append((bytes, eventByRecord[i]))
        }
        items = list
        scheduler = Scheduler(times: times, spanStart: start, spanEnd: script.spanEnd, speed: o.speed, maxGap: o.maxGap,
                              loop: o.loop, clock: clock)
        report = SessionReport(client: 1, peer: "stdout", connectedAtMicros: WallClock.nowMicros())
    }

    /// Runs until the stream ends, `write` fails (returns false) or `shouldStop` says so.
    /// Returns the fidelity summary.
    @discardableResult
    public func run(write: ([UInt8]) -> Bool, shouldStop: () -> Bool = { false }) -> SessionReport {
        let t0 = clock.now()
        let wallOffset = MonotonicClock.wallOffsetMicros(clock)
        guard write(script.greetingBytes) else { report.closeReason = "output closed"; return report }
        report.negotiated = true
        scheduler.start()
        var first: Int64?
        var batch: [UInt8] = []
        outer: while !shouldStop() {
            while let r = scheduler.next() {
                let it = items[r.item]
                if options.retime, let k = it.event {
                    batch.append(contentsOf: ServerSession.retimed(script, k, due: r.due, speed: options.speed, wallOffsetMicros: wallOffset))
                } else {
                    batch.append(contentsOf: it.bytes)
                }
                if it.event != nil { report.eventsSent += 1 }
                if options.speed != nil {
                    report.lateness.append(r.lateness)
                    if first == nil { first = r.lateness }
                    report.driftNanos = r.lateness - first!
                }
                report.passes = r.pass + 1
                if batch.count >= 1 << 16 || options.speed != nil { break }
            }
            if !batch.isEmpty {
                report.bytesSent += batch.count
                guard write(batch) else { report.closeReason = "output closed"; break outer }
                batch.removeAll(keepingCapacity: true)
            }
            guard let d = scheduler.nextDeadline() else {
                report.closeReason = "end of span"
                break
            }
            // Sleep in slices, so a stop request is seen within 100 ms.
            clock.sleep(until: min(d, clock.now() + 100_000_000))
        }
        if report.closeReason.isEmpty { report.closeReason = "stopped" }
        report.durationNanos = clock.now() - t0
        return report
    }
}
