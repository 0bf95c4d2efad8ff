import QMP

/// Imports the output of `virsh qemu-monitor-event` (with or without `--pretty`), which is
/// not QMP text but one line per event:
///
/// ```
/// event STOP at 1461880188.107251 for domain 'vm1': <null>
/// event BALLOON_CHANGE at 1461880190.000123 for domain 'vm1': {"actual":1073741824}
/// ```
///
/// virsh prints the event's name, QEMU's timestamp and its data; the QMP message is
/// rebuilt from them in QEMU's own layout (`{"timestamp": {...}, "event": ..., "data": ...}`
/// ended by CR LF). The bytes are therefore a reconstruction, and a note in the recording
/// says so. Times come from the timestamps (t=0 at the first event). Each domain is a
/// connection.
public enum VirshEventsImporter {
    public static func parse(_ bytes: [UInt8]) -> ImportedRecording {
        var b = ImportBuilder()
        var domains: [String: UInt32] = [:]
        var first: Int64?
        var time: Int64 = 0
        var i = 0
        var line = 1
        let n = bytes.count
        bytes.withUnsafeBufferPointer { buf in
            while i < n {
                var end = i
                while end < n && buf[end] != 0x0A { end += 1 }
                let text = String(decoding: buf[i..<end], as: UTF8.self)
                var next = end + 1
                var consumedLines = 1
                defer { line += consumedLines; i = next }
                guard let ev = parseHeading(text) else {
                    if !text.trimmingSpaces().isEmpty { b.unread(line: line, "not a virsh event line ('event NAME at SECONDS.MICROS for domain ...'); skipped: \(ImportBuilder.excerpt(Array(text.utf8)))") }
                    continue
                }
                // The data starts after ": " and may span lines (--pretty).
                let dataStart = i + ev.dataOffset
                var data: JSONValue?
                var s = dataStart
                while s < n, buf[s] == 0x20 { s += 1 }
                if s + 6 <= n, String(decoding: buf[s..<(s + 6)], as: UTF8.self) == "<null>" {
                    data = nil
                } else if s < n, buf[s] == UInt8(ascii: "{"), let e = JSONScan.skipValue(buf, s),
                          let v = try? JSONParser.parse(UnsafeBufferPointer(rebasing: buf[s..<e])) {
                    data = v
                    if e > end {
                        consumedLines += buf[end..<e].filter { $0 == 0x0A }.count
                        var after = e
                        while after < n && buf[after] != 0x0A { after += 1 }
                        next = after + 1
                    }
                } else {
                    b.warn(line: line, "event \(ev.name): data is neither <null> nor a JSON object; imported without data")
                }
                var o = JSONObject()
                o["timestamp"] = .object(JSONObject(["seconds": .int(ev.seconds), "microseconds": .int(ev.micros)]))
                o["event"] = .string(ev.name)
                if let data { o["data"] = data }
                let msgBytes = JSONValue.object(o).serializedBytes(.qemu) + [0x0D, 0x0A]
                let m = QMPMessage(bytes: msgBytes, payload: 0..<(msgBytes.count - 2))
                let us = ev.seconds * 1_000_000 + ev.micros
                let base = first ?? us
                first = base
                let t = QMPLinesImporter.nanos(fromMicros: us, since: base)
                if t < time {
                    b.warn(line: line, "event \(ev.name)'s timestamp goes backwards; kept at the previous time")
                } else {
                    time = t
                }
                let conn = domains[ev.domain] ?? UInt32(domains.count + 1)
                domains[ev.domain] = conn
                b.message(m, from: .qemu, connection: conn, time: time, peer: "virsh:domain=\(ev.domain)")
            }
        }
        if !b.records.isEmpty {
            b.insert(.note(
                text: "imported from virsh qemu-monitor-event: each QMP event was rebuilt from virsh's name, timestamp and data in QEMU's layout; the exact bytes QEMU sent are not in the source",
                data: JSONObject(["domains": .int(domains.count)])), connection: 0, at: 0)
        }
        return b.finish(startMicros: first ?? 0, nothingFound: "no 'event NAME at SECONDS.MICROS for domain ...' lines found")
    }

    struct Heading {
        var name: String
        var seconds: Int64
        var micros: Int64
        var domain: String
        var dataOffset: Int
    }

    /// `event NAME at S.US for domain 'D': ` (the domain name may contain spaces or quotes).
    static func parseHeading(_ text: String) -> Heading? {
        guard text.hasPrefix("event ") else { return nil }
        let u = Array(text.utf8)
        guard let at = find(u, " at ", from: 6) else { return nil }
        let name = String(decoding: u[6..<at], as: UTF8.self)
        guard let forD = find(u, " for domain '", from: at + 4) else { return nil }
        let stamp = String(decoding: u[(at + 4)..<forD], as: UTF8.self)
        let parts = stamp.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let s = Int64(parts[0]), var us = Int64(parts[1]) else { return nil }
        // virsh prints microseconds with 6 digits; be lenient with fewer.
        for _ in parts[1].count..<6 { us *= 10 }
        guard let colon = findLast(u, "': ") else { return nil }
        let domain = String(decoding: u[(forD + 13)..<colon], as: UTF8.self)
        return Heading(name: name, seconds: s, micros: us, domain: domain, dataOffset: colon + 3)
    }

    private static func find(_ u: [UInt8], _ s: String, from: Int) -> Int? {
        let p = Array(s.utf8)
        guard u.count >= p.count else { return nil }
        var i = from
        while i + p.count <= u.count {
            if Array(u[i..<(i + p.count)]) == p { return i }
            i += 1
        }
        return nil
    }

    private static func findLast(_ u: [UInt8], _ s: String) -> Int? {
        let p = Array(s.utf8)
        guard u.count >= p.count else { return nil }
        var i = u.count - p.count
        // The data after "': " may itself contain "': " (strings); take the first after the domain.
        var found: Int?
        while i >= 0 {
            if Array(u[i..<(i + p.count)]) == p { found = i }
            i -= 1
        }
        return found
    }
}
