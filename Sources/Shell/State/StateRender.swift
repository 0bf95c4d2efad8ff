import Analysis
import QMP
import Recording

/// The shell's `state` output: one line per fact, a 12-column label first.
///
/// ```
/// at          #1234 +00:01:02.500
/// run state   paused since +00:01:02.500 (#1234): BLOCK_IO_ERROR on ide0-hd1 (action stop)
/// balloon     2.00 GiB (2147483648) at +00:00:12.358 (#20, query-balloon)
/// ```
enum StateRender {
    static func lines(_ s: VMState, at index: Int, recording: Recording) -> [String] {
        var out: [String] = []
        func add(_ label: String, _ text: String) {
            out.append(label + String(repeating: " ", count: max(1, 12 - label.count)) + text)
        }
        func when(_ record: Int, _ time: Int64) -> String { "\(DurationFormat.clock(time)) (#\(record))" }

        if index >= 0 && !recording.isEmpty {
            let i = min(index, recording.count - 1)
            add("at", "#\(i) \(DurationFormat.clock(recording.time(i)))")
        } else {
            add("at", "before the first record")
        }

        var run = s.runState.rawValue
        if let since = s.runStateSince, let r = s.runStateRecord { run += " since \(when(r, since))" }
        if let cause = s.runStateCause { run += ": \(cause)" }
        if let cr = s.runStateCauseRecord, cr != s.runStateRecord { run += " (#\(cr))" }
        add("run state", run)
        if let st = s.lastStatus {
            add("status", "query-status said \(st.status)" + (st.running.map { " (running: \($0))" } ?? "")
                + " at \(when(st.record, st.time))")
        }
        if let r = s.lastReset {
            var text = "at \(when(r.record, r.time))"
            if let reason = r.reason { text += ": \(reason)" }
            if let g = r.guest { text += g ? " (guest)" : " (host)" }
            add("last reset", text)
        }
        if let p = s.processStart { add("process", "QEMU restarted at #\(p)") }

        if let b = s.balloon {
            add("balloon", "\(bytes(b.actual)) at \(DurationFormat.clock(b.time)) (#\(b.record), \(b.source))")
        }
        if let b = s.balloonTarget {
            let verdict: String
            switch b.accepted {
            case true?: verdict = "accepted"
            case false?: verdict = "refused"
            case nil: verdict = "no reply yet"
            }
            add("target", "\(bytes(b.value)) asked at \(when(b.record, b.time)), \(verdict)")
        }
        for path in s.rtcOffsets.keys.sorted() {
            let r = s.rtcOffsets[path]!
            let sign = r.offset > 0 ? "+" : ""
            add("rtc", "\(path.isEmpty ? "(no qom-path)" : path) \(sign)\(r.offset) s at \(when(r.record, r.time))")
        }
        for key in s.nics.keys.sorted() {
            let n = s.nics[key]!
            var text = "\(key) \(n.armed ? "armed" : "disarmed")"
            if let e = n.lastEvent { text += ", last event \(when(e.record, e.time))" }
            if let q = n.lastRearm { text += ", last re-armed by query-rx-filter #\(q.record)" }
            text += ", \(n.events) event\(n.events == 1 ? "" : "s")"
            if n.eventsWhileDisarmed > 0 { text += ", \(n.eventsWhileDisarmed) while disarmed (unrecorded query?)" }
            add("nic", text)
        }
        let jobs = s.blockJobs.values.sorted { ($0.finished ? 1 : 0, $0.firstRecord, $0.id) < ($1.finished ? 1 : 0, $1.firstRecord, $1.id) }
        for j in jobs {
            var text = j.id
            if let type = j.type { text += " \(type)" }
            if j.finished {
                text += " finished"
                if let o = j.outcome { text += " (\(o.rawValue))" }
                if let st = j.status, st != "concluded" { text += ", status \(st)" }
            } else {
                text += " \(j.status ?? "?")"
                if j.ready && j.status != "ready" { text += " (ready)" }
            }
            if let off = j.offset, let len = j.len {
                let pct = len > 0 ? DurationFormat.fixed(Double(off) / Double(len) * 100, 1) + "%" : "-"
                text += " \(pct) (\(bytes(off, exact: false)) of \(bytes(len, exact: false)))"
            }
            if let sp = j.speed { text += ", speed \(sp == 0 ? "unlimited" : bytes(sp, exact: false) + "/s")" }
            if let e = j.error { text += ", error: \(e)" }
            text += ", last \(j.lastEvent) \(when(j.lastRecord, j.lastTime))"
            add("block job", text)
        }
        for key in s.displayClients.keys.sorted() {
            let d = s.displayClients[key]!
            var text = "\(key) \(d.phase.rawValue) since \(when(d.record, d.since))"
            if let c = d.connected, d.phase != .connected { text += ", connected \(DurationFormat.clock(c.time))" }
            if let a = d.auth { text += ", auth \(a)" }
            if let u = d.user { text += ", user \(u)" }
            if let ch = d.channel { text += ", channel \(ch)" }
            add("display", text)
        }
        if let e = s.lastError {
            var text = "\(e.errorClass) \"\(e.desc)\""
            if let c = e.command {
                text += " for \(c)" + (e.commandRecord.map { " (#\($0))" } ?? "")
            } else if e.commandRecord != nil {
                text += " for input that was not a command (#\(e.commandRecord!))"
            }
            text += ", reply \(when(e.record, e.time)) on c\(e.connection)"
            add("last error", text)
        }
        if let v = s.qemuVersion { add("qemu", v) }
        add("connections", s.connections.isEmpty ? "none open" : s.connections.sorted().map { "c\($0)" }.joined(separator: ", "))
        return out
    }

    /// `2.00 GiB (2147483648)`, or without the exact count.
    static func bytes(_ n: Int64, exact: Bool = true) -> String {
        let a = Double(n.magnitude)
        let units: [(Double, String)] = [(1_099_511_627_776, "TiB"), (1_073_741_824, "GiB"), (1_048_576, "MiB"), (1_024, "KiB")]
        for (size, unit) in units where a >= size {
            let text = (n < 0 ? "-" : "") + DurationFormat.fixed(a / size, 2) + " " + unit
            return exact ? "\(text) (\(n))" : text
        }
        return "\(n) B"
    }
}
