import QMP

/// Imports libvirt debug logs (`log_filters="1:qemu.qemu_monitor"`), the QMP "recordings"
/// most often attached to bug reports (docs/QEMU-FACTS.md, "Formats people already have QMP
/// traffic in"):
///
/// ```
/// 2022-03-07 10:41:00.929+0000: 132544: info : qemuMonitorJSONIOProcessLine:240 : QEMU_MONITOR_RECV_REPLY: mon=0x7f0fd00028a0 reply={"return": {}, "id": "libvirt-13"}
/// 2022-03-07 10:41:00.934+0000: 132549: info : qemuMonitorSend:995 : QEMU_MONITOR_SEND_MSG: mon=0x7f0fd00028a0 msg={"execute":"cont","id":"libvirt-14"}\r
///  fd=-1
/// ```
///
/// Which lines count:
/// - commands come from `QEMU_MONITOR_SEND_MSG`; `QEMU_MONITOR_IO_WRITE` repeats them
///   and is used only when the log has no SEND_MSG at all;
/// - QEMU's messages come from `QEMU_MONITOR_RECV_EVENT` / `QEMU_MONITOR_RECV_REPLY`;
///   the `qemuMonitorJSONIOProcessLine ... : Line [...]` debug lines repeat them and are
///   used only when the log has neither;
/// - `QEMU_MONITOR_CLOSE` closes the connection, so a monitor address reused by a later
///   QEMU becomes a new connection;
/// - `QEMU_MONITOR_IO_SEND_FD` (libvirt passed a file descriptor with the command it just
///   wrote, over SCM_RIGHTS) becomes a note on that connection;
/// - a line that is another log's JSON wrapping libvirt's message (KubeVirt's virt-launcher:
///   `{"component":"virt-launcher","level":"info","msg":"QEMU_MONITOR_RECV_EVENT: mon=0x... event={\"timestamp\": ...}","pos":"qemuMonitorJSONIOProcessLine:205","timestamp":"2024-..."}`)
///   is unwrapped first: the message string is unescaped and read as libvirt's line, with
///   the wrapper's timestamp;
/// - every other line is ignored (counted, with its line number).
///
/// Each `mon=0x...` address is one connection, numbered from 1 in order of appearance.
/// A message is exactly the balanced JSON object after `msg=`/`buf=`/`event=`/`reply=`.
/// libvirt logs what it sends together with its `\r\n` (so the log line continues with
/// ` fd=-1`), and that line end is kept; received messages are logged without theirs, so
/// `\r\n` is added, since QEMU ends every message with it (docs/QEMU-FACTS.md, "Framing").
/// Times are the log's millisecond timestamps relative to the first imported line. A log
/// whose lines carry no timestamps (copied out of a bigger log, or stripped) is timed by
/// QEMU's event timestamps instead, like plain QMP lines; a log with times of day but no
/// date takes its date from an event timestamp that agrees with it within a minute.
public enum LibvirtLogImporter {
    enum Probe: CaseIterable {
        case sendMsg, ioWrite, recvEvent, recvReply, sendFD, close, line

        /// What follows `QEMU_MONITOR_` in the probe's name.
        var probeName: String {
            switch self {
            case .sendMsg: return "SEND_MSG"
            case .ioWrite: return "IO_WRITE"
            case .recvEvent: return "RECV_EVENT"
            case .recvReply: return "RECV_REPLY"
            case .sendFD: return "IO_SEND_FD"
            case .close: return "CLOSE"
            case .line: return "Line"
            }
        }

        /// The text right before the message.
        var key: [UInt8] {
            switch self {
            case .sendMsg: return Array(" msg=".utf8)
            case .ioWrite: return Array(" buf=".utf8)
            case .recvEvent: return Array(" event=".utf8)
            case .recvReply: return Array(" reply=".utf8)
            case .sendFD, .close: return []
            case .line: return Array("Line [".utf8)
            }
        }

        var keyLabel: String { String(String(decoding: key, as: UTF8.self).drop { $0 == " " }) }
        var label: String { self == .line ? "Line [...]" : "QEMU_MONITOR_\(probeName)" }
        var isSend: Bool { self == .sendMsg || self == .ioWrite }
    }

    enum Stamp {
        /// Microseconds since the epoch.
        case dated(Int64)
        /// Microseconds since midnight UTC (`libvirtd(8) 19:03:07.260+0000: ...`).
        case timeOfDay(Int64)
    }

    struct Entry {
        var line: Int
        var probe: Probe
        var stamp: Stamp?
        var mon: String
        var message: QMPMessage?
        var problem: String?
        var restoredCR = false
        /// `fd=`, `ret=`, `errno=` of a QEMU_MONITOR_IO_SEND_FD line.
        var fdInfo: JSONObject?
    }

    /// The log's lines after unwrapping, and where each came from.
    struct Scan {
        var entries: [Entry] = []
        /// Lines with no monitor traffic (source line numbers).
        var ignored = LineRanges()
        /// Lines unwrapped from another log's JSON, and the wrapper's name.
        var wrapped = 0
        var wrapper: String?
    }

    public static func parse(_ bytes: [UInt8]) -> ImportedRecording {
        let unwrapped = unwrap(bytes)
        var scanned = scan(unwrapped.bytes, lineMap: unwrapped.lineMap)
        scanned.wrapped = unwrapped.wrapped
        scanned.wrapper = unwrapped.wrapper
        let entries = scanned.entries
        let hasSend = entries.contains { $0.probe == .sendMsg }
        let hasRecv = entries.contains { $0.probe == .recvEvent || $0.probe == .recvReply }
        let kept = entries.filter {
            switch $0.probe {
            case .ioWrite: return !hasSend
            case .line: return !hasRecv
            default: return true
            }
        }

        var b = ImportBuilder()
        for r in scanned.ignored.ranges { b.ignore(r) }
        // Without a single timestamp in the log, QEMU's event timestamps are the clock.
        let stampless = !kept.contains { $0.stamp != nil }
        var firstEventMicros: Int64?
        var timedEvents = 0
        var firstDatedEvent: (time: Int64, qemuMicros: Int64)?
        var notesFD = 0
        var connections: [String: UInt32] = [:]
        var nextConnection: UInt32 = 1
        var base: Int64?
        var dated: Bool?
        var lastTimeOfDay: Int64?
        var dayOffset: Int64 = 0
        var time: Int64 = 0
        var receivedCount = 0
        var restoredCR = 0
        var startFromEvent: Int64?
        for e in kept {
            // Lines that add no record do not move the clock either.
            let addsRecord: Bool
            switch e.probe {
            case .close: addsRecord = connections[e.mon] != nil
            case .sendFD: addsRecord = e.fdInfo != nil
            default: addsRecord = e.message != nil
            }
            if !addsRecord {
                if let p = e.problem { b.unread(line: e.line, "\(e.probe.label): \(p)") }
                continue
            }
            // Times: the log's clock relative to the first imported line, never backwards.
            if let s = e.stamp {
                let us: Int64
                switch s {
                case .dated(let v):
                    us = v
                    if dated == nil { dated = true }
                case .timeOfDay(let v):
                    // Without a date, a jump back by more than half a day is midnight passing.
                    if let last = lastTimeOfDay, v + dayOffset < last - 43_200_000_000 { dayOffset += 86_400_000_000 }
                    us = v + dayOffset
                    lastTimeOfDay = us
                    if dated == nil { dated = false }
                }
                let first = base ?? us
                base = first
                let t = QMPLinesImporter.nanos(fromMicros: us, since: first)
                if t < time {
                    b.warn(line: e.line, "log time goes back by \(DurationFormat.short(time.subtractingSaturating(t))); kept at the previous record's time")
                } else {
                    time = t
                }
            }

            if stampless, let m = e.message, let us = SourceClock.realTimestamp(m) {
                let first = firstEventMicros ?? us
                firstEventMicros = first
                timedEvents += 1
                let t = QMPLinesImporter.nanos(fromMicros: us, since: first)
                if t < time {
                    b.warn(line: e.line, "event \(m.name ?? "?")'s timestamp is \(DurationFormat.short(time.subtractingSaturating(t))) before the previous record's time; kept at that time")
                } else {
                    time = t
                }
            }
            if dated == false, firstDatedEvent == nil, let m = e.message, let us = SourceClock.realTimestamp(m) {
                firstDatedEvent = (time, us)
            }

            if e.probe == .close, let c = connections[e.mon] {
                b.close(c, by: "client", reason: "libvirt closed the monitor (QEMU_MONITOR_CLOSE)", time: time)
                connections[e.mon] = nil
                continue
            }
            if e.probe == .sendFD, var info = e.fdInfo {
                info["mon"] = .string(e.mon)
                let fd = info["fd"]?.int64Value.map(String.init) ?? "?"
                b.note(
                    "libvirt passed file descriptor \(fd) to QEMU with the command before (QEMU_MONITOR_IO_SEND_FD, SCM_RIGHTS)",
                    data: info, connection: connections[e.mon] ?? 0, time: time)
                notesFD += 1
                continue
            }
            if let p = e.problem { b.kept(line: e.line, "\(e.probe.label): \(p)") }
            guard let m = e.message else { continue }
            let c: UInt32
            if let known = connections[e.mon] {
                c = known
            } else {
                c = nextConnection
                nextConnection += 1
                connections[e.mon] = c
            }
            if e.probe.isSend { if e.restoredCR { restoredCR += 1 } } else { receivedCount += 1 }
            b.message(m, from: e.probe.isSend ? .client : .qemu, connection: c, time: time, peer: "libvirt:mon=\(e.mon)")
        }

        if !b.records.isEmpty {
            var notes: [(String, JSONObject)] = []
            let commands = hasSend ? "QEMU_MONITOR_SEND_MSG" : "QEMU_MONITOR_IO_WRITE"
            let received = hasRecv ? "QEMU_MONITOR_RECV_EVENT/RECV_REPLY" : "qemuMonitorJSONIOProcessLine 'Line [...]'"
            var first = JSONObject(["commands": .string(commands), "received": .string(received)])
            if notesFD > 0 { first["fd_passing"] = .int(notesFD) }
            notes.append((
                stampless && timedEvents > 0
                    ? "imported from a libvirt log: its lines have no timestamps, so times come from QEMU's event timestamps (other records take the time of the record before them); each mon= address is a connection"
                    : "imported from a libvirt log: times are libvirt's log timestamps (1 ms resolution); each mon= address is a connection",
                first))
            if scanned.wrapped > 0 {
                notes.append((
                    "the log's lines were wrapped in another log's JSON (\(scanned.wrapper ?? "unknown")): libvirt's message was unescaped from it, with the wrapper's timestamp",
                    JSONObject(["lines": .int(scanned.wrapped)])))
            }
            if receivedCount > 0 {
                notes.append((
                    "libvirt logs QEMU's messages without their line end: CR LF added to each received message, as QEMU ends every message with it",
                    JSONObject(["messages": .int(receivedCount)])))
            }
            if restoredCR > 0 {
                notes.append((
                    "the log lost the carriage returns of libvirt's CR LF line ends: restored on the commands",
                    JSONObject(["messages": .int(restoredCR)])))
            }
            if !b.sawGreeting {
                notes.append(("QEMU's greeting is not in the log", JSONObject()))
            }
            if dated == false {
                if let base, let ev = firstDatedEvent, let start = dateFromEvent(baseTimeOfDay: base, event: ev) {
                    startFromEvent = start
                    notes.append(("the log's timestamps have no date: the date comes from QEMU's event timestamps, which agree with the log's times of day", JSONObject()))
                } else {
                    notes.append(("the log's timestamps have no date: the start time is unknown", JSONObject()))
                }
            } else if dated == nil && timedEvents == 0 {
                notes.append(("the log has no timestamps and no timed events: every record is at t=0", JSONObject()))
            }
            b.insertNotes(notes)
        }
        let nothing = bytes.isEmpty ? nil
            : "no QEMU monitor traffic found: the log needs QEMU_MONITOR_* lines (log_filters=\"1:qemu.qemu_monitor\")"
        var out = b.finish(startMicros: 0, nothingFound: nothing)
        if dated == true, let base { out.startMicros = base }
        if let startFromEvent { out.startMicros = startFromEvent }
        if stampless, let firstEventMicros { out.startMicros = firstEventMicros }
        return out
    }

    /// The wall clock of the first line of a log with times of day only, from an event:
    /// QEMU's timestamp minus the event's offset in the log gives the day, if the two clocks
    /// agree (within a minute) on the time of day.
    static func dateFromEvent(baseTimeOfDay base: Int64, event: (time: Int64, qemuMicros: Int64)) -> Int64? {
        let day: Int64 = 86_400_000_000
        let approx = event.qemuMicros - event.time / 1000
        let x = (approx - base) + day / 2
        let midnight = (x >= 0 ? x / day : -((-x + day - 1) / day)) * day
        let start = midnight + base
        guard abs(start - approx) <= 60_000_000 else { return nil }
        return start
    }

    // MARK: - Scanning lines

    private static let monitorMarker = Array("QEMU_MONITOR_".utf8)
    private static let processLine = Array("qemuMonitorJSONIOProcessLine".utf8)
    private static let monKey = Array("mon=".utf8)

    /// Every monitor line of the log, in order, before deduplication. `lineMap[i]` is the
    /// source line of line i+1 of `b` when `b` is an unwrapped copy of the source.
    static func scan(_ b: [UInt8], lineMap: [Int]? = nil) -> Scan {
        var out = Scan()
        var lastMon: String?
        var lineNo = 0
        var start = 0
        var previousWasSend = false
        while start < b.count {
            lineNo += 1
            let sourceLine = lineMap.map { lineNo - 1 < $0.count ? $0[lineNo - 1] : lineNo } ?? lineNo
            var end = start
            while end < b.count, b[end] != 0x0A { end += 1 }
            defer { start = end + 1 }

            var probe: Probe?
            var markerEnd = start
            var markerStart = start
            if let p = find(monitorMarker, in: b, from: start, to: end) {
                markerStart = p
                let after = p + monitorMarker.count
                for candidate in Probe.allCases where candidate != .line {
                    let name = Array((candidate.probeName + ":").utf8)
                    if hasPrefix(name, in: b, at: after, to: end) {
                        probe = candidate
                        markerEnd = after + name.count
                        break
                    }
                }
                if let mon = monitor(in: b, from: after, to: end) { lastMon = mon }
            } else if let p = find(processLine, in: b, from: start, to: end),
                      find(Probe.line.key, in: b, from: p + processLine.count, to: end) != nil {
                probe = .line
                markerStart = p
                markerEnd = p + processLine.count
            }
            guard let probe else {
                // libvirt logs what it sends with its CR LF, so the log line goes on with
                // " fd=-1" (SEND_MSG) or " len=... ret=... errno=..." (IO_WRITE).
                let continuation = previousWasSend && end > start && b[start] == 0x20
                previousWasSend = false
                if !continuation && !isBlankLine(b, start, end) { out.ignored.insert(sourceLine) }
                continue
            }
            previousWasSend = probe.isSend

            // `Line [...]` names no monitor: it belongs to the last one a monitor line named.
            var e = Entry(
                line: sourceLine, probe: probe, stamp: stamp(in: b, from: start, to: markerStart),
                mon: monitor(in: b, from: markerEnd, to: end) ?? lastMon ?? "(unknown)")
            switch probe {
            case .close: break
            case .sendFD: e.fdInfo = fdInfo(b, from: markerEnd, to: end)
            default: extract(b, probe: probe, from: markerEnd, lineEnd: end, into: &e)
            }
            out.entries.append(e)
        }
        return out
    }

    private static func isBlankLine(_ b: [UInt8], _ start: Int, _ end: Int) -> Bool {
        var i = start
        while i < end, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0D { i += 1 }
        return i == end
    }

    /// `fd=32 ret=72 errno=0` after `QEMU_MONITOR_IO_SEND_FD: mon=0x...`.
    private static func fdInfo(_ b: [UInt8], from: Int, to end: Int) -> JSONObject? {
        var o = JSONObject()
        for key in ["fd", "ret", "errno"] {
            let k = Array(" \(key)=".utf8)
            guard let p = find(k, in: b, from: from - 1, to: end) else { continue }
            var q = p + k.count
            let s = q
            if q < end, b[q] == UInt8(ascii: "-") { q += 1 }
            while q < end, b[q] >= 0x30, b[q] <= 0x39 { q += 1 }
            if let v = Int64(String(decoding: b[s..<q], as: UTF8.self)) { o[key] = .int(v) }
        }
        return o["fd"] == nil ? nil : o
    }

    // MARK: - Lines wrapped in another log's JSON

    /// Members that hold the wrapped log message, and the wrapper's timestamp.
    static let messageKeys = ["msg", "message", "MESSAGE", "log", "textPayload"]
    static let timeKeys = ["timestamp", "time", "ts", "@timestamp"]

    /// Rewrites lines that wrap libvirt's messages in JSON (virt-launcher:
    /// `{"component":"virt-launcher","level":"info","msg":"QEMU_MONITOR_SEND_MSG: ...","pos":"qemuMonitorSend:...","timestamp":"..."}`)
    /// into libvirt's own line format; `lineMap` maps the result's lines to the source's.
    /// Returns the input itself when no line is wrapped.
    static func unwrap(_ b: [UInt8]) -> (bytes: [UInt8], lineMap: [Int]?, wrapped: Int, wrapper: String?) {
        var out: [UInt8] = []
        var map: [Int] = []
        var wrapped = 0
        var wrapper: String?
        var lineNo = 0
        var start = 0
        while start < b.count {
            lineNo += 1
            var end = start
            while end < b.count, b[end] != 0x0A { end += 1 }
            defer { start = end + 1 }
            if let line = unwrapLine(b, start, end) {
                if wrapped == 0 {
                    // Copy the lines before the first wrapped one.
                    out = Array(b[0..<start])
                    map = Array(1..<lineNo)
                }
                wrapped += 1
                if wrapper == nil { wrapper = line.wrapper }
                for piece in line.text.split(separator: 0x0A, omittingEmptySubsequences: false) {
                    out += piece
                    out.append(0x0A)
                    map.append(lineNo)
                }
            } else if wrapped > 0 {
                out += b[start..<end]
                out.append(0x0A)
                map.append(lineNo)
            }
        }
        return wrapped == 0 ? (b, nil, 0, nil) : (out, map, wrapped, wrapper)
    }

    /// One wrapped line rewritten as `TIME: THREAD: LEVEL : POS : MESSAGE` (the message may
    /// span lines once unescaped), or nil when the line wraps no monitor message.
    private static func unwrapLine(_ b: [UInt8], _ start: Int, _ end: Int) -> (text: [UInt8], wrapper: String)? {
        // In a wrapped line the probe sits inside the JSON string, after the opening brace.
        guard let marker = find(monitorMarker, in: b, from: start, to: end) ?? find(processLine, in: b, from: start, to: end),
              let brace = find(Array("{\"".utf8), in: b, from: start, to: marker)
        else { return nil }
        var hi = end
        while hi > brace, b[hi - 1] == 0x20 || b[hi - 1] == 0x0D || b[hi - 1] == 0x09 { hi -= 1 }
        guard let v = try? JSONParser.parse(Array(b[brace..<hi])), let o = v.objectValue else { return nil }
        guard let msg = messageKeys.lazy.compactMap({ o[$0]?.stringValue }).first(where: {
            $0.contains("QEMU_MONITOR_") || $0.contains("qemuMonitorJSONIOProcessLine") || $0.hasPrefix("Line [")
        }) else { return nil }
        var prefix = ""
        if let ts = timeKeys.lazy.compactMap({ o[$0]?.stringValue }).first {
            prefix = ts
        } else {
            // A container runtime's prefix before the JSON (`2024-05-02T09:14:03.123456789Z stdout F {...}`).
            prefix = String(decoding: b[start..<brace], as: UTF8.self)
        }
        let thread = o["thread"].map { $0.stringValue ?? $0.serialized() } ?? "0"
        let level = o["level"]?.stringValue ?? "info"
        let pos = o["pos"]?.stringValue ?? "unknown"
        let text = "\(prefix): \(thread): \(level) : \(pos) : \(msg)"
        let name = o["component"]?.stringValue ?? (o["subcomponent"]?.stringValue ?? "JSON log")
        return (Array(text.utf8), name)
    }

    /// Cuts the message out of a line: the balanced JSON object after the probe's key.
    private static func extract(_ b: [UInt8], probe: Probe, from: Int, lineEnd: Int, into e: inout Entry) {
        guard let k = find(probe.key, in: b, from: from, to: lineEnd) else {
            e.problem = "no message after '\(probe.keyLabel)'"
            return
        }
        let s = k + probe.key.count
        guard let close = balancedObjectEnd(b, from: s, to: lineEnd) else {
            var hi = lineEnd
            if hi > s, b[hi - 1] == 0x0D { hi -= 1 }
            if probe == .line, hi > s, b[hi - 1] == UInt8(ascii: "]") { hi -= 1 }
            guard hi > s else {
                e.problem = "empty message"
                return
            }
            e.message = QMPMessage(bytes: Array(b[s..<hi]))
            e.problem = "no complete JSON object, kept as 'other': \(ImportBuilder.excerpt(b[s..<hi]))"
            return
        }
        var bytes = Array(b[s..<close])
        if probe.isSend {
            if close + 1 < b.count, b[close] == 0x0D, b[close + 1] == 0x0A {
                bytes += [0x0D, 0x0A]
            } else if close == lineEnd, close < b.count {
                // The JSON ends the line: libvirt's "\r\n" lost its CR on the way to us.
                bytes += [0x0D, 0x0A]
                e.restoredCR = true
            }
        } else {
            bytes += [0x0D, 0x0A]
        }
        let m = QMPMessage(bytes: bytes, payload: 0..<(close - s))
        e.message = m
        if case .other(let reason, _) = m.body {
            e.problem = "\(reason), kept as 'other': \(ImportBuilder.excerpt(b[s..<close]))"
        }
    }

    /// The index after the `}` closing the object that starts at `from`; `nil` when there
    /// is no `{` there or the line ends first (a JSON text never holds a raw newline).
    static func balancedObjectEnd(_ b: [UInt8], from: Int, to end: Int) -> Int? {
        guard from < end, b[from] == UInt8(ascii: "{") else { return nil }
        var depth = 0
        var inString = false
        var escaped = false
        var i = from
        while i < end {
            let c = b[i]
            if inString {
                if escaped { escaped = false }
                else if c == UInt8(ascii: "\\") { escaped = true }
                else if c == UInt8(ascii: "\"") { inString = false }
            } else {
                switch c {
                case UInt8(ascii: "\""): inString = true
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return i + 1 }
                default: break
                }
            }
            i += 1
        }
        return nil
    }

    /// `0x7f0fd00028a0` from `mon=0x7f0fd00028a0 ...`.
    private static func monitor(in b: [UInt8], from: Int, to end: Int) -> String? {
        guard let p = find(monKey, in: b, from: from, to: end) else { return nil }
        var q = p + monKey.count
        let s = q
        while q < end, b[q] != 0x20, b[q] != 0x0D, b[q] != 0x09 { q += 1 }
        return q > s ? String(decoding: b[s..<q], as: UTF8.self) : nil
    }

    /// The log timestamp in a line's prefix: `2022-03-07 10:41:00.928+0000`, or a time of
    /// day alone (`19:03:07.260+0000`). When several look like one (a syslog prefix
    /// before libvirt's own), the one with a date and milliseconds wins.
    static func stamp(in b: [UInt8], from start: Int, to end: Int) -> Stamp? {
        func digit(_ i: Int) -> Bool { i >= start && i < end && b[i] >= 0x30 && b[i] <= 0x39 }
        func colon(_ i: Int) -> Bool { i < end && b[i] == UInt8(ascii: ":") }
        var best: (score: Int, stamp: Stamp)?
        var i = start
        while i + 8 <= end {
            guard digit(i), digit(i + 1), colon(i + 2), digit(i + 3), digit(i + 4), colon(i + 5), digit(i + 6), digit(i + 7),
                  !digit(i - 1), !digit(i + 8)
            else { i += 1; continue }
            var j = i + 8
            var score = 0
            if j < end, b[j] == UInt8(ascii: ".") || b[j] == UInt8(ascii: ","), digit(j + 1) {
                j += 1
                while digit(j) { j += 1 }
                score += 1
            }
            if j < end, b[j] == UInt8(ascii: "Z") {
                j += 1
            } else if j < end, b[j] == UInt8(ascii: "+") || b[j] == UInt8(ascii: "-"), digit(j + 1), digit(j + 2) {
                if colon(j + 3), digit(j + 4), digit(j + 5) { j += 6 } else if digit(j + 3), digit(j + 4) { j += 5 }
            }
            let d = i - 11
            let hasDate = d >= start && digit(d) && digit(d + 1) && digit(d + 2) && digit(d + 3) && b[d + 4] == UInt8(ascii: "-")
                && digit(d + 5) && digit(d + 6) && b[d + 7] == UInt8(ascii: "-") && digit(d + 8) && digit(d + 9)
                && (b[d + 10] == 0x20 || b[d + 10] == UInt8(ascii: "T"))
            var found: Stamp?
            if hasDate, let us = WallClock.parseISO8601(String(decoding: b[d..<j], as: UTF8.self)) {
                found = .dated(us)
                score += 2
            } else if let us = WallClock.parseTimeOfDay(String(decoding: b[i..<j], as: UTF8.self)) {
                found = .timeOfDay(us)
            }
            if let found, score > (best?.score ?? -1) { best = (score, found) }
            i = j
        }
        return best?.stamp
    }

    private static func hasPrefix(_ needle: [UInt8], in b: [UInt8], at i: Int, to end: Int) -> Bool {
        guard i + needle.count <= end else { return false }
        for k in 0..<needle.count where b[i + k] != needle[k] { return false }
        return true
    }

    private static func find(_ needle: [UInt8], in b: [UInt8], from: Int, to end: Int) -> Int? {
        guard let first = needle.first, end - from >= needle.count else { return nil }
        var i = from
        let last = end - needle.count
        while i <= last {
            if b[i] == first, hasPrefix(needle, in: b, at: i, to: end) { return i }
            i += 1
        }
        return nil
    }
}
