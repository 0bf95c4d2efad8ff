import QMP
import Recording

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads just what the state tracker needs from a record line, without decoding the whole
/// record: the byte range of its `msg` member, the top-level members of that message, and
/// single member values. Replaying thousands of records per `state(at:)` call stays cheap
/// because a reply's (possibly large) `return` value is parsed only when the command it
/// answers matters.
enum StateScan {
    /// The byte range of the `msg` member's value in a record line, or nil when the line
    /// has none (a message that was not JSON is kept only in `text`/`b64`).
    static func messageRange(_ line: UnsafeBufferPointer<UInt8>) -> Range<Int>? {
        guard let base = line.baseAddress else { return nil }
        let n = line.count
        var start: Int?
        // The writer's layout: envelope members first (`{"t":...`), `msg` last. The first
        // `,"msg":` is the envelope's: that byte sequence cannot occur inside a string.
        if n > 12, base[0] == 0x7B, base[1] == 0x22, base[2] == 0x74, base[3] == 0x22, base[4] == 0x3A {
            var i = 5
            while i + 7 <= n {
                guard let hit = memchr(base + i, 0x2C, n - i) else { break }
                let j = UnsafeRawPointer(hit) - UnsafeRawPointer(base)
                if j + 7 <= n, base[j + 1] == 0x22, base[j + 2] == 0x6D, base[j + 3] == 0x73, base[j + 4] == 0x67,
                   base[j + 5] == 0x22, base[j + 6] == 0x3A {
                    start = j + 7
                    break
                }
                i = j + 1
            }
        }
        if start == nil {
            // Any other member order (a file rewritten by jq): the slow, general scan.
            guard let members = JSONScan.members(line), let m = members.last(where: { $0.key == "msg" }) else { return nil }
            return m.value
        }
        var s = start!
        while s < n, isJSONSpace(line[s]) { s += 1 }
        // The message is the last member: it ends just before the line's closing brace.
        // (Scanning it to find its end would read a large reply twice.)
        if s < n - 1, line[s] == 0x7B, line[n - 1] == 0x7D, line[n - 2] == 0x7D { return s..<(n - 1) }
        guard let e = JSONScan.skipValue(line, s) else { return nil }
        return s..<e
    }

    /// The exact range of the JSON value starting at `range.lowerBound` (drops anything
    /// after it, such as members a later writer put after `msg`).
    static func exactValue(_ buf: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Range<Int>? {
        guard let e = JSONScan.skipValue(UnsafeBufferPointer(rebasing: buf[..<range.upperBound]), range.lowerBound)
        else { return nil }
        return range.lowerBound..<e
    }

    /// A scalar member value without the general parser: strings without escapes and
    /// integers (command ids, `libvirt-12`, `__qmp#00001`, 7); anything else is parsed.
    @inline(__always)
    static func quickValue(_ buf: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> JSONValue? {
        guard !range.isEmpty else { return nil }
        let first = buf[range.lowerBound]
        if first == 0x22, range.count >= 2, buf[range.upperBound - 1] == 0x22 {
            var plain = true
            for k in (range.lowerBound + 1)..<(range.upperBound - 1) where buf[k] == 0x5C || buf[k] < 0x20 || buf[k] >= 0x80 {
                plain = false
                break
            }
            if plain {
                return .string(String(decoding: UnsafeBufferPointer(rebasing: buf[(range.lowerBound + 1)..<(range.upperBound - 1)]), as: UTF8.self))
            }
        } else if first &- 0x30 < 10 || first == 0x2D {
            var digits = true
            for k in (range.lowerBound + 1)..<range.upperBound where buf[k] &- 0x30 >= 10 {
                digits = false
                break
            }
            if digits && !(first == 0x2D && range.count == 1) {
                return .number(JSONNumber(text: String(decoding: UnsafeBufferPointer(rebasing: buf[range]), as: UTF8.self)))
            }
        }
        return parse(buf, range)
    }

    /// The value range of a trailing `"id"` member, found from the end of the object text
    /// in `buf[range]` without scanning the members before it (QEMU writes a reply's id
    /// after its possibly large `return`). Only a string without backslashes or an integer
    /// is recognised; nil means "look the usual way".
    static func trailingID(_ buf: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Range<Int>? {
        var k = range.upperBound - 1
        let lo = range.lowerBound
        func back() { while k > lo, isJSONSpace(buf[k]) { k -= 1 } }
        back()
        guard k > lo, buf[k] == 0x7D else { return nil }
        k -= 1
        back()
        guard k > lo else { return nil }
        let valueEnd = k + 1
        if buf[k] == 0x22 {
            k -= 1
            while k > lo, buf[k] != 0x22 {
                if buf[k] == 0x5C { return nil }
                k -= 1
            }
            guard k > lo, buf[k - 1] != 0x5C else { return nil }
        } else if buf[k] &- 0x30 < 10 {
            while k > lo, buf[k - 1] &- 0x30 < 10 { k -= 1 }
            if buf[k - 1] == 0x2D { k -= 1 }
        } else {
            return nil
        }
        let valueStart = k
        k -= 1
        back()
        guard k > lo, buf[k] == 0x3A else { return nil }
        k -= 1
        back()
        // "id"
        guard k - 3 > lo, buf[k] == 0x22, buf[k - 1] == 0x64, buf[k - 2] == 0x69, buf[k - 3] == 0x22 else { return nil }
        k -= 4
        back()
        guard buf[k] == 0x2C || buf[k] == 0x7B else { return nil }
        return valueStart..<valueEnd
    }

    /// A non-negative integer member value, read directly.
    @inline(__always)
    static func integer(_ buf: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Int64? {
        guard !range.isEmpty, range.count < 19 else { return nil }
        var v: Int64 = 0
        for k in range {
            let d = buf[k] &- 0x30
            guard d < 10 else { return nil }
            v = v &* 10 &+ Int64(d)
        }
        return v
    }

    /// Calls `body` with each top-level member of the object text in `buf[range]`: the
    /// range of its key (inside the quotes) and of its value. Returns false when the text
    /// is not a well-delimited object.
    @inline(__always)
    static func forEachMember(
        _ buf: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ body: (Range<Int>, Range<Int>) -> Void
    ) -> Bool {
        let slice = UnsafeBufferPointer(rebasing: buf[range])
        let n = slice.count
        var i = 0
        func ws() { while i < n, isJSONSpace(slice[i]) { i += 1 } }
        ws()
        guard i < n, slice[i] == 0x7B else { return false }
        i += 1
        ws()
        if i < n && slice[i] == 0x7D { return true }
        let off = range.lowerBound
        while true {
            ws()
            guard i < n, slice[i] == 0x22, let keyEnd = JSONScan.skipString(slice, i) else { return false }
            let key = (off + i + 1)..<(off + keyEnd - 1)
            i = keyEnd
            ws()
            guard i < n, slice[i] == 0x3A else { return false }
            i += 1
            ws()
            guard let end = JSONScan.skipValue(slice, i) else { return false }
            body(key, (off + i)..<(off + end))
            i = end
            ws()
            guard i < n else { return false }
            if slice[i] == 0x2C { i += 1; continue }
            if slice[i] == 0x7D { return true }
            return false
        }
    }

    /// Whether the bytes of `range` are exactly `s` (a key without escapes).
    @inline(__always)
    static func equals(_ buf: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ s: StaticString) -> Bool {
        range.count == s.utf8CodeUnitCount && memcmp(buf.baseAddress! + range.lowerBound, s.utf8Start, range.count) == 0
    }

    /// Parses the JSON text in `buf[range]`.
    @inline(__always)
    static func parse(_ buf: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> JSONValue? {
        try? JSONParser.parse(UnsafeBufferPointer(rebasing: buf[range]))
    }
}
