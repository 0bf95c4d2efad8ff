import Capture
import QMP
import Recording

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The live shell: the session on a recording that grows while it is open, written by the
/// session's own recorder (`shell --connect`, then `send` talks to QEMU) or by another
/// process (`shell --follow`). The terminal side calls `refresh()` whenever the file may
/// have grown; everything else (moves, find, state, analyze, export) works on the
/// recording as it is at that moment.
extension ShellSession {
    /// Makes this a live session on a recording that may still grow; `recorder` when the
    /// session records it itself. The cursor starts following the live end.
    public func goLive(recorder: LiveRecorder?) {
        live = recorder
        growing = recording.trailer == nil
        wasLive = true
        following = true
        schemaAwaited = recording.nameID(for: "query-qmp-schema") != nil
        if !recording.isEmpty { cursor = recording.count - 1 }
    }

    /// The prompt's marker: `live` (following), `+N` (staying, N records past the cursor),
    /// `ended` (the recording is finished); empty for a recording that was never live.
    var liveMarker: String {
        guard wasLive else { return "" }
        if !growing { return "ended" }
        if following { return "live" }
        let past = recording.count - 1 - cursor
        return past > 0 ? "+\(past)" : "stay"
    }

    /// A move away from the live end: stay where the cursor lands.
    func stay() { following = false }

    /// Takes in the records appended since the last call: indexes only them (`Recording.extended`),
    /// carries the state tracker on (so `state` folds only the new ones), prints each new record
    /// that passes the filter while following, or matches the watch, and says when QEMU went
    /// away, came back, or the recording ended. Returns whether it printed anything.
    @discardableResult
    public func refresh() -> Bool {
        var wrote = false
        if let log = live?.log {
            let (lines, new) = log.recent(50)
            for l in lines.suffix(new) { emit(paint("33", "(recorder) \(l)")); wrote = true }
        }
        guard growing else { return wrote }
        let old = recording
        guard let grown = try? old.extended(), grown !== old else { return wrote }
        let continues = grown.count >= old.count && (old.isEmpty || grown.offset(old.count - 1) == old.offset(old.count - 1))
        recording = grown
        guard continues else {
            tracker = StateTracker(recording: grown)
            cursor = min(cursor, max(0, grown.count - 1))
            emit(paint("33", "\(grown.path) was replaced by another file; reading it from the start"))
            return true
        }
        tracker.extend(to: grown)
        let new = old.count..<grown.count
        // QEMU's own schema (for `describe` and `send`'s completion) once its reply is in:
        // chosen again only while a query-qmp-schema waits for its reply, not per record.
        if new.contains(where: { grown.kind($0) == .command && grown.name($0) == "query-qmp-schema" }) { schemaAwaited = true }
        if schemaAwaited && new.contains(where: { grown.kind($0) == .return }) {
            schema = RecordingSchema.choose(for: grown)
            if case .recorded = schema.source { schemaAwaited = false }
        }
        if following, let last = new.reversed().first(where: { visible($0) }) { cursor = last }
        for i in new {
            if (following && visible(i)) || watchFilter?.matches(grown, i) == true {
                emit(row(i))
                wrote = true
            }
            if let notice = connectionNotice(i) { emit(paint("33", notice)); wrote = true }
        }
        if let t = grown.trailer {
            growing = false
            following = false
            emit(paint("33", "the recording ended (\(t.reason)): \(grown.path) is complete, \(grown.count) records"
                       + (quitRequested ? "" : "; the session stays open on it")))
            wrote = true
        }
        return wrote
    }

    /// QEMU went away or came back (the recorder's close and open records).
    private func connectionNotice(_ i: Int) -> String? {
        let k = recording.kind(i)
        guard k == .close || k == .open, let rec = try? recording.record(at: i) else { return nil }
        switch rec.body {
        case .close(let by, let reason) where by == "qemu":
            let waiting = live?.recorder.config.reconnect == true ? "; waiting for it to come back (--reconnect)" : ""
            return "QEMU went away (#\(i)): \(reason)\(waiting)"
        case .open where i > 0 && recording.header?.mode == .client:
            return "connected to QEMU (connection \(rec.connection), #\(i))"
        default:
            return nil
        }
    }

    func follow(_ arg: String) throws(ShellError) {
        switch arg.trimmed() {
        case "", "on":
            guard growing else {
                throw ShellError(wasLive ? "the recording has ended; nothing more will come ('last' goes to its end)"
                                 : "this recording is not growing ('qmpreplay shell --follow FILE' follows one being written)")
            }
            following = true
            if let last = (0..<recording.count).reversed().first(where: { visible($0) }) { cursor = last }
            emit("following the live end\(filter != nil ? " through the filter" : ""): new records print as they arrive")
        case "off":
            following = false
            emit("staying at #\(cursor); 'follow' goes back to the live end")
        case let other:
            throw ShellError("follow takes on or off, not '\(other)'")
        }
    }

    func watch(_ arg: String) throws(ShellError) {
        let a = arg.trimmed()
        switch a {
        case "":
            emit(watchFilter.map { "watching: \($0)" } ?? "no watch ('watch FILTER' sets one)")
        case "off", "none", "clear":
            watchFilter = nil
            emit("watch cleared")
        default:
            let f = try Self.parseFilter(a)
            watchFilter = f
            emit("watching: \(f)" + (growing ? "" : " (the recording is not growing: nothing will arrive)"))
        }
    }

    /// `send COMMAND key=value ...`: the reply as QEMU sent it; the records it caused are
    /// taken in before returning, so that the next command (`state`) sees them.
    func send(_ arg: String) throws(ShellError) {
        guard let live else {
            throw ShellError(growing ? "sending is off: this session follows a file another process writes ('qmpreplay shell --connect ADDR -o FILE' talks to QEMU)"
                             : "not connected to QEMU ('qmpreplay shell --connect ADDR -o FILE' records and talks to it)")
        }
        guard growing, !live.finished else { throw ShellError("QEMU is gone: the recording has ended") }
        let command: RecorderCommand
        do { command = try QMPShellSyntax.parse(arg) } catch { throw ShellError("send: \(error.description) (send COMMAND [key=value ...], as in qmp-shell)") }
        let reply = try live.send(command)
        // The reply is recorded before it is handed over; wait (briefly) until the file has it.
        let id = reply.id?.stringValue
        for _ in 0..<200 {
            refresh()
            if hasReply(id) { break }
            usleep(2_000)
        }
        let text = reply.json?.serialized(.compact) ?? String(decoding: reply.bytes, as: UTF8.self)
        emit(paint(reply.kind == .error ? "31" : "32", text))
    }

    /// Whether the recording holds the reply with `id` among its last records.
    private func hasReply(_ id: String?) -> Bool {
        guard let id else { return true }
        var i = recording.count - 1
        while i >= max(0, recording.count - 200) {
            let k = recording.kind(i)
            if (k == .return || k == .error), let m = try? recording.record(at: i).message, m.id?.stringValue == id { return true }
            i -= 1
        }
        return false
    }
}
