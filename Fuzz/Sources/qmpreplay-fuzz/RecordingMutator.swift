import QMP
import Recording

/// Turns a fuzz input into a recording whose envelopes are intact but whose messages hold
/// values no real QEMU sends: the wrong JSON type, a missing member, huge and negative
/// numbers (±9.2e18 timestamps, Int64's limits, 1e308), deep nesting, an event renamed to
/// another one the analyses care about (so its members are the wrong ones), a copy of a
/// record. The fuzz input is read as a recording (the corpus is seeded with
/// `Recordings/*.qmprec`); a pseudo-random generator seeded with a hash of the whole input
/// picks the records and the mutations, so one input always gives the same recording and
/// a saved crash reproduces. Untouched bytes stay as they were, so the index's and
/// `RecordView`'s fast paths (QEMU's own layout) are exercised as on a real file.
///
/// Example: `{"t":5,...,"msg":{"timestamp": {"seconds": 1763632800, "microseconds": 9100}, "event": "STOP"}}`
/// may come out with `"seconds": -9200000000000000000`, or `"event"` renamed
/// `BALLOON_CHANGE` (and `"n"` with it) and no `data`.
enum RecordingMutator {
    /// Number texts at and beyond the edges of what the code computes with.
    static let numbers = [
        "9223372036854775807", "-9223372036854775808", "9200000000000000000", "-9200000000000000000",
        "9223372036854775", "-9223372036854775", "9223372036854", "-9223372036854", "18446744073709551615",
        "99999999999999999999999", "-1", "0", "1", "-1000000", "4294967296", "2147483648", "1e308", "-1e308",
        "1e-308", "0.5", "-0.0", "1E19", "9.2e18", "-9.2e18", "1e3",
    ]

    /// Values of every other type.
    static let others = [
        "\"\"", "\"x\"", "\"9223372036854775807\"", "\"-1\"", "true", "false", "null", "[]", "{}", "[1,2,3]",
        "{\"a\":{}}", "[null]", "{\"seconds\":1,\"microseconds\":2}",
        String(repeating: "[", count: 40) + String(repeating: "]", count: 40),
        String(repeating: "{\"a\":", count: 40) + "1" + String(repeating: "}", count: 40),
        String(repeating: "[", count: 600) + String(repeating: "]", count: 600),
    ]

    /// Events whose data the analyses and the VM model read.
    static let eventNames = [
        "BALLOON_CHANGE", "RTC_CHANGE", "STOP", "RESUME", "SHUTDOWN", "RESET", "POWERDOWN", "GUEST_PANICKED",
        "WATCHDOG", "BLOCK_IO_ERROR", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_ERROR",
        "BLOCK_JOB_READY", "JOB_STATUS_CHANGE", "NIC_RX_FILTER_CHANGED", "DEVICE_DELETED", "MIGRATION",
        "MIGRATION_PASS", "VNC_CONNECTED", "VNC_INITIALIZED", "VNC_DISCONNECTED", "SPICE_CONNECTED",
        "SPICE_DISCONNECTED", "SUSPEND", "WAKEUP", "GUEST_CRASHLOADED", "MEMORY_DEVICE_SIZE_CHANGE",
    ]

    struct Rng {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }
        mutating func chance(_ oneIn: Int) -> Bool { below(oneIn) == 0 }
        mutating func pick<T>(_ a: [T]) -> T { a[below(a.count)] }
    }

    /// The mutated recording's bytes.
    static func mutate(_ input: [UInt8]) -> [UInt8] {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in input { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        var rng = Rng(state: h)
        // One in four records by default; the hash picks denser or sparser runs too.
        let oneIn = [2, 4, 4, 8, 30][rng.below(5)]
        var out: [UInt8] = []
        out.reserveCapacity(input.count + input.count / 4)
        var start = 0
        var lineNo = 0
        while start < input.count {
            var end = start
            while end < input.count, input[end] != 0x0A { end += 1 }
            var line = Array(input[start..<end])
            lineNo += 1
            if lineNo == 1, line.starts(with: Array("{\"qmprec\"".utf8)) {
                if rng.chance(16) { line = mutateHeader(line, &rng) }
            } else if rng.chance(oneIn) {
                for _ in 0...rng.below(3) { line = mutateRecord(line, &rng) }
            }
            out += line
            if end < input.count { out.append(0x0A) }
            // A copy of the record (QEMU emits an event once per monitor; a proxy may repeat).
            if lineNo > 1, end < input.count, rng.chance(64) { out += line; out.append(0x0A) }
            start = end + 1
        }
        return out
    }

    /// `start_us` at the edges (a hand-edited header).
    static func mutateHeader(_ line: [UInt8], _ rng: inout Rng) -> [UInt8] {
        line.withUnsafeBufferPointer { buf in
            guard let members = JSONScan.members(buf), let r = members.first(where: { $0.key == "start_us" })?.value else { return line }
            return splice(line, r, rng.pick(numbers))
        }
    }

    static func mutateRecord(_ line: [UInt8], _ rng: inout Rng) -> [UInt8] {
        line.withUnsafeBufferPointer { buf -> [UInt8] in
            guard let members = JSONScan.members(buf), let msg = members.first(where: { $0.key == "msg" })?.value else { return line }
            // An event renamed, in the envelope and the message alike.
            if rng.chance(6), let n = members.first(where: { $0.key == "n" })?.value,
               let ev = JSONScan.valueRange(path: ["event"], in: UnsafeBufferPointer(rebasing: buf[msg])) {
                let name = "\"" + rng.pick(eventNames) + "\""
                let evAbs = (msg.lowerBound + ev.lowerBound)..<(msg.lowerBound + ev.upperBound)
                // The later range first, so the earlier one's offsets still hold.
                let (a, b) = n.lowerBound > evAbs.lowerBound ? (n, evAbs) : (evAbs, n)
                return splice(splice(line, a, name), b, name)
            }
            var values: [(key: String, range: Range<Int>)] = []
            collect(buf, msg, key: "msg", depth: 0, into: &values)
            guard values.count > 1 else { return line }
            // Timestamps get extra attention: every event has one and three analyses compute with it.
            if rng.chance(3), let ts = values.first(where: { $0.key == "seconds" || $0.key == "microseconds" || $0.key == "timestamp" }) {
                let v = ts.key == "timestamp" && rng.chance(2)
                    ? "{\"seconds\": \(rng.pick(numbers)), \"microseconds\": \(rng.pick(numbers))}"
                    : rng.chance(5) ? rng.pick(others) : rng.pick(numbers)
                return splice(line, ts.range, v)
            }
            let target = values[1 + rng.below(values.count - 1)]
            switch rng.below(4) {
            case 0:
                // The member goes missing: its key is renamed.
                if let k = keyRange(buf, before: target.range.lowerBound) { return splice(line, k, "\"" + target.key + "~\"") }
                return splice(line, target.range, "null")
            case 1: return splice(line, target.range, rng.pick(others))
            default: return splice(line, target.range, rng.pick(numbers))
            }
        }
    }

    /// Every value inside the one at `range` (objects' members, arrays' elements), with
    /// the key it is under (arrays: the array's key).
    static func collect(_ buf: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, key: String, depth: Int,
                        into out: inout [(key: String, range: Range<Int>)]) {
        out.append((key, range))
        guard depth < 12, out.count < 400 else { return }
        let sub = UnsafeBufferPointer(rebasing: buf[range])
        guard let first = sub.first else { return }
        if first == UInt8(ascii: "{"), let members = JSONScan.members(sub) {
            for m in members {
                collect(buf, (range.lowerBound + m.value.lowerBound)..<(range.lowerBound + m.value.upperBound), key: m.key, depth: depth + 1, into: &out)
            }
        } else if first == UInt8(ascii: "["), let elements = JSONScan.elements(sub) {
            for e in elements {
                collect(buf, (range.lowerBound + e.lowerBound)..<(range.lowerBound + e.upperBound), key: key, depth: depth + 1, into: &out)
            }
        }
    }

    /// The range of the key string (quotes included) of the member whose value starts at `value`.
    static func keyRange(_ buf: UnsafeBufferPointer<UInt8>, before value: Int) -> Range<Int>? {
        var i = value - 1
        func spaces() { while i >= 0, buf[i] == 0x20 || buf[i] == 0x09 || buf[i] == 0x0A || buf[i] == 0x0D { i -= 1 } }
        spaces()
        guard i >= 0, buf[i] == UInt8(ascii: ":") else { return nil }
        i -= 1
        spaces()
        guard i >= 0, buf[i] == UInt8(ascii: "\"") else { return nil }
        let end = i + 1
        i -= 1
        while i >= 0 {
            if buf[i] == UInt8(ascii: "\""), i == 0 || buf[i - 1] != UInt8(ascii: "\\") { return i..<end }
            i -= 1
        }
        return nil
    }

    static func splice(_ line: [UInt8], _ r: Range<Int>, _ text: String) -> [UInt8] {
        var out = Array(line[..<r.lowerBound])
        out += Array(text.utf8)
        out += line[r.upperBound...]
        return out
    }
}
