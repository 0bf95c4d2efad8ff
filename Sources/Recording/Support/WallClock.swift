#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// UTC calendar arithmetic for wall-clock times in microseconds since the epoch, without
/// Foundation (which is slow to load on Linux and not needed for ISO 8601 in UTC).
public enum WallClock {
    /// `2026-11-20T10:00:05.250000Z`
    public static func iso8601(micros: Int64, fractionDigits: Int = 6) -> String {
        let (days, rem) = floorDivMod(micros, 86_400_000_000)
        let (y, m, d) = civil(fromDays: days)
        let secOfDay = rem / 1_000_000
        let frac = rem % 1_000_000
        guard (0...9999).contains(y) else {
            // Outside four-digit years (damaged input): the general, slower form.
            var s = "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secOfDay / 3600, 2)):\(pad(secOfDay / 60 % 60, 2)):\(pad(secOfDay % 60, 2))"
            if fractionDigits > 0 { s += "." + String(pad(frac, 6).prefix(fractionDigits)) }
            return s + "Z"
        }
        // Analyses write one of these per sample (tens of thousands per report): digits go
        // straight into a fixed buffer instead of through string interpolation.
        return String(unsafeUninitializedCapacity: 27) { format(y, m, d, rem, fractionDigits: fractionDigits, into: $0) }
    }

    /// Appends `iso8601(micros:)` to `out` as UTF-8, without making a string (the JSON
    /// rows of an analysis: `JSONRow.point`).
    public static func appendISO8601(micros: Int64, to out: inout [UInt8]) {
        let (days, rem) = floorDivMod(micros, 86_400_000_000)
        let (y, m, d) = civil(fromDays: days)
        guard (0...9999).contains(y) else { out.append(contentsOf: iso8601(micros: micros).utf8); return }
        var scratch: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &scratch) { raw in
            let buf = raw.bindMemory(to: UInt8.self)
            let n = format(y, m, d, rem, fractionDigits: 6, into: buf)
            out.append(contentsOf: UnsafeBufferPointer(rebasing: buf[0..<n]))
        }
    }

    /// Writes a four-digit year's time as ISO 8601 into `buf` (27 bytes at most); returns
    /// the count written.
    private static func format(_ y: Int64, _ m: Int64, _ d: Int64, _ rem: Int64, fractionDigits: Int,
                               into buf: UnsafeMutableBufferPointer<UInt8>) -> Int {
        let secOfDay = rem / 1_000_000
        let frac = rem % 1_000_000
        let digits = min(max(fractionDigits, 0), 6)
        var i = 0
        func put(_ v: Int64, _ width: Int) {
            var v = v
            var k = i + width - 1
            while k >= i { buf[k] = 0x30 + UInt8(v % 10); v /= 10; k -= 1 }
            i += width
        }
        func sep(_ c: UInt8) { buf[i] = c; i += 1 }
        put(y, 4); sep(0x2D); put(m, 2); sep(0x2D); put(d, 2); sep(0x54)
        put(secOfDay / 3600, 2); sep(0x3A); put(secOfDay / 60 % 60, 2); sep(0x3A); put(secOfDay % 60, 2)
        if digits > 0 {
            sep(0x2E)
            var f = frac
            for _ in digits..<6 { f /= 10 }
            put(f, digits)
        }
        sep(0x5A)
        return i
    }

    /// `10:00:05.250` (time of day, UTC).
    public static func timeOfDay(micros: Int64, fractionDigits: Int = 3) -> String {
        let full = iso8601(micros: micros, fractionDigits: fractionDigits)
        let t = full.split(separator: "T")[1]
        return String(t.dropLast())
    }

    /// Parses `2026-11-20T10:00:05.25Z`, `2026-11-20 10:00:05`, with `Z`, `+HH:MM`, `+HHMM`
    /// or no zone (UTC). Returns microseconds since the epoch.
    public static func parseISO8601(_ text: String) -> Int64? {
        let b = Array(text.utf8)
        guard b.count >= 19 else { return nil }
        func num(_ from: Int, _ n: Int) -> Int64? {
            guard from + n <= b.count else { return nil }
            var v: Int64 = 0
            for i in from..<(from + n) {
                guard b[i] >= 0x30 && b[i] <= 0x39 else { return nil }
                v = v * 10 + Int64(b[i] - 0x30)
            }
            return v
        }
        guard let y = num(0, 4), b[4] == UInt8(ascii: "-"), let mo = num(5, 2), b[7] == UInt8(ascii: "-"),
              let d = num(8, 2), b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: " ") || b[10] == UInt8(ascii: "t"),
              (1...12).contains(mo), (1...31).contains(d)
        else { return nil }
        guard let tod = parseTimeOfDay(Array(b[11...]), allowZone: true) else { return nil }
        let days = days(fromCivil: y, mo, d)
        return days * 86_400_000_000 + tod
    }

    /// Parses `HH:MM:SS[.fff][Z|±HH:MM]`; returns microseconds since midnight UTC
    /// (may be negative or past a day when a zone shifts it).
    public static func parseTimeOfDay(_ text: String) -> Int64? {
        parseTimeOfDay(Array(text.utf8), allowZone: true)
    }

    static func parseTimeOfDay(_ b: [UInt8], allowZone: Bool) -> Int64? {
        var i = 0
        func digits(_ n: Int) -> Int64? {
            guard i + n <= b.count else { return nil }
            var v: Int64 = 0
            for _ in 0..<n {
                guard b[i] >= 0x30 && b[i] <= 0x39 else { return nil }
                v = v * 10 + Int64(b[i] - 0x30); i += 1
            }
            return v
        }
        guard let h = digits(2), i < b.count, b[i] == UInt8(ascii: ":") else { return nil }
        i += 1
        guard let m = digits(2), i < b.count, b[i] == UInt8(ascii: ":") else { return nil }
        i += 1
        guard let s = digits(2), h < 24, m < 60, s < 61 else { return nil }
        var micros = (h * 3600 + m * 60 + s) * 1_000_000
        if i < b.count && (b[i] == UInt8(ascii: ".") || b[i] == UInt8(ascii: ",")) {
            i += 1
            var scale: Int64 = 100_000
            var any = false
            while i < b.count, b[i] >= 0x30 && b[i] <= 0x39 {
                micros += Int64(b[i] - 0x30) * scale
                scale /= 10
                i += 1
                any = true
            }
            guard any else { return nil }
        }
        if i == b.count { return micros }
        guard allowZone else { return nil }
        if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") { return i + 1 == b.count ? micros : nil }
        guard b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") else { return nil }
        let sign: Int64 = b[i] == UInt8(ascii: "+") ? 1 : -1
        i += 1
        guard let zh = digits(2) else { return nil }
        if i < b.count && b[i] == UInt8(ascii: ":") { i += 1 }
        let zm = i < b.count ? (digits(2) ?? -1) : 0
        guard zm >= 0, i == b.count else { return nil }
        return micros - sign * (zh * 3600 + zm * 60) * 1_000_000
    }

    /// Current wall clock in microseconds since the epoch.
    public static func nowMicros() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
    }

    /// Monotonic clock in nanoseconds (for record times).
    public static func monotonicNanos() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    static func floorDivMod(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
        var q = a / b
        var r = a % b
        if r < 0 { q -= 1; r += b }
        return (q, r)
    }

    // Howard Hinnant's civil-from-days algorithm (public domain arithmetic).
    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }

    static func days(fromCivil y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    private static func pad(_ v: Int64, _ n: Int) -> String {
        let s = String(v)
        return s.count >= n ? s : String(repeating: "0", count: n - s.count) + s
    }
}

/// Formats durations in nanoseconds for people: `+00:12:05.250`, `1.5s`, `320µs`.
public enum DurationFormat {
    /// `+HH:MM:SS.mmm` (the shell's prompt and `cat`'s first column).
    public static func clock(_ ns: Int64) -> String {
        let sign = ns < 0 ? "-" : "+"
        let a = ns.magnitude
        let ms = a / 1_000_000
        let s = ms / 1000
        func p(_ v: UInt64, _ n: Int) -> String { let t = String(v); return String(repeating: "0", count: max(0, n - t.count)) + t }
        return "\(sign)\(p(s / 3600, 2)):\(p(s / 60 % 60, 2)):\(p(s % 60, 2)).\(p(ms % 1000, 3))"
    }

    /// A short human duration: `2h03m`, `1m30s`, `12.500s`, `250ms`, `320µs`, `45ns`.
    public static func short(_ ns: Int64) -> String {
        let a = Double(ns.magnitude)
        let sign = ns < 0 ? "-" : ""
        if a >= 3_600e9 { let m = Int(a / 60e9); return "\(sign)\(m / 60)h\(m % 60 < 10 ? "0" : "")\(m % 60)m" }
        if a >= 60e9 { let s = Int(a / 1e9); return "\(sign)\(s / 60)m\(s % 60 < 10 ? "0" : "")\(s % 60)s" }
        if a >= 1e9 { return sign + fixed(a / 1e9, 3) + "s" }
        if a >= 1e6 { return sign + fixed(a / 1e6, 1) + "ms" }
        if a >= 1e3 { return sign + fixed(a / 1e3, 1) + "µs" }
        return "\(sign)\(Int(a))ns"
    }

    public static func fixed(_ v: Double, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let r = (v * scale).rounded() / scale
        var s = String(r)
        if let dot = s.firstIndex(of: ".") {
            let have = s.distance(from: dot, to: s.endIndex) - 1
            if have < digits { s += String(repeating: "0", count: digits - have) }
            if digits == 0 { s = String(s[..<dot]) }
        } else if digits > 0 {
            s += "." + String(repeating: "0", count: digits)
        }
        return s
    }
}
