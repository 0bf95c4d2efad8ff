/// Structural scanning without building trees: finds where values are, so that a reader
/// can take the exact bytes of one member (a record's `msg`) or parse only the small
/// members it needs. Validity of the values themselves is left to `JSONParser`.
public enum JSONScan {
    /// The value range of member `key` of the object spanning `range` (keys compared as
    /// raw bytes: the keys looked for have no escapes); nil when absent or not an object.
    public static func member(_ buf: UnsafeBufferPointer<UInt8>, in range: Range<Int>, key: StaticString) -> Range<Int>? {
        guard let start = memberStart(buf, in: range, key: key), let end = skipValue(buf, start), end <= range.upperBound else { return nil }
        return start..<end
    }

    /// Where the value of member `key` of the object at the start of `range` begins, without
    /// finding where it ends: a path of nested members (`msg`, `data`, `actual`) is followed
    /// by skipping only the members before each key, never the objects it goes into (the
    /// search in a nested object stops at its closing brace, so the range may run to the end
    /// of the line). `nil` when the object has no such member or is not well delimited up to it.
    public static func memberStart(_ buf: UnsafeBufferPointer<UInt8>, in range: Range<Int>, key: StaticString) -> Int? {
        var i = range.lowerBound
        let n = range.upperBound
        @inline(__always) func ws() { while i < n, isJSONSpace(buf[i]) { i += 1 } }
        ws()
        guard i < n, buf[i] == UInt8(ascii: "{") else { return nil }
        i += 1
        let kn = key.utf8CodeUnitCount
        let kp = key.utf8Start
        while true {
            ws()
            guard i < n, buf[i] == UInt8(ascii: "\"") else { return nil }
            guard let keyEnd = JSONScan.skipString(buf, i), keyEnd <= n else { return nil }
            var match = keyEnd - i - 2 == kn
            if match {
                for j in 0..<kn where buf[i + 1 + j] != kp[j] { match = false; break }
            }
            i = keyEnd
            ws()
            guard i < n, buf[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            ws()
            if match { return i < n ? i : nil }
            guard let end = JSONScan.skipValue(buf, i), end <= n else { return nil }
            i = end
            ws()
            guard i < n else { return nil }
            if buf[i] == UInt8(ascii: ",") { i += 1; continue }
            return nil
        }
    }

    /// The top-level members of an object text: each key and the byte range of its value.
    /// `nil` when the text is not a well-delimited object.
    public static func members(_ buf: UnsafeBufferPointer<UInt8>) -> [(key: String, value: Range<Int>)]? {
        var i = 0
        let n = buf.count
        func ws() { while i < n, isJSONSpace(buf[i]) { i += 1 } }
        ws()
        guard i < n, buf[i] == UInt8(ascii: "{") else { return nil }
        i += 1
        var out: [(String, Range<Int>)] = []
        ws()
        if i < n && buf[i] == UInt8(ascii: "}") { return out }
        while true {
            ws()
            guard i < n, buf[i] == UInt8(ascii: "\"") else { return nil }
            guard let keyEnd = skipString(buf, i) else { return nil }
            let key: String
            if let v = try? JSONParser.parse(UnsafeBufferPointer(rebasing: buf[i..<keyEnd])), let s = v.stringValue {
                key = s
            } else {
                return nil
            }
            i = keyEnd
            ws()
            guard i < n, buf[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            ws()
            guard let end = skipValue(buf, i) else { return nil }
            out.append((key, i..<end))
            i = end
            ws()
            guard i < n else { return nil }
            if buf[i] == UInt8(ascii: ",") { i += 1; continue }
            if buf[i] == UInt8(ascii: "}") { break }
            return nil
        }
        return out
    }

    /// The byte ranges of the elements of an array text; `nil` when it is not an array.
    public static func elements(_ buf: UnsafeBufferPointer<UInt8>) -> [Range<Int>]? {
        var i = 0
        let n = buf.count
        func ws() { while i < n, isJSONSpace(buf[i]) { i += 1 } }
        ws()
        guard i < n, buf[i] == UInt8(ascii: "[") else { return nil }
        i += 1
        var out: [Range<Int>] = []
        ws()
        if i < n && buf[i] == UInt8(ascii: "]") { return out }
        while true {
            ws()
            guard let end = skipValue(buf, i) else { return nil }
            out.append(i..<end)
            i = end
            ws()
            guard i < n else { return nil }
            if buf[i] == UInt8(ascii: ",") { i += 1; continue }
            if buf[i] == UInt8(ascii: "]") { break }
            return nil
        }
        return out
    }

    /// The index just past the value starting at `start`, or `nil` if it does not end.
    public static func skipValue(_ buf: UnsafeBufferPointer<UInt8>, _ start: Int) -> Int? {
        let n = buf.count
        guard start < n else { return nil }
        let c = buf[start]
        if c == UInt8(ascii: "\"") { return skipString(buf, start) }
        if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
            var depth = 0
            var i = start
            while i < n {
                let b = buf[i]
                if b == UInt8(ascii: "\"") {
                    guard let e = skipString(buf, i) else { return nil }
                    i = e
                    continue
                }
                if b == UInt8(ascii: "{") || b == UInt8(ascii: "[") {
                    depth += 1
                } else if b == UInt8(ascii: "}") || b == UInt8(ascii: "]") {
                    depth -= 1
                    if depth == 0 { return i + 1 }
                }
                i += 1
            }
            return nil
        }
        // Scalar: up to the next delimiter.
        var i = start
        while i < n {
            let b = buf[i]
            if b == UInt8(ascii: ",") || b == UInt8(ascii: "}") || b == UInt8(ascii: "]") || isJSONSpace(b) { break }
            i += 1
        }
        return i > start ? i : nil
    }

    /// The index just past the string literal starting at `start` (which must be a quote).
    public static func skipString(_ buf: UnsafeBufferPointer<UInt8>, _ start: Int) -> Int? {
        var i = start + 1
        let n = buf.count
        while i < n {
            let b = buf[i]
            if b == UInt8(ascii: "\\") { i += 2; continue }
            if b == UInt8(ascii: "\"") { return i + 1 }
            i += 1
        }
        return nil
    }

    /// The byte range of the value at a member path (`["arguments", "password"]`) in an
    /// object text, without parsing the rest; `nil` when absent.
    public static func valueRange(path: [String], in buf: UnsafeBufferPointer<UInt8>) -> Range<Int>? {
        valueRange(path: path, in: buf, members: members, elements: elements)
    }

    /// `valueRange` with another scanner for objects and arrays (the recorder's redactor
    /// passes one that also reads QEMU's single-quote dialect). Array steps are indexes as text.
    public static func valueRange(path: [String], in buf: UnsafeBufferPointer<UInt8>,
                                  members: (UnsafeBufferPointer<UInt8>) -> [(key: String, value: Range<Int>)]?,
                                  elements: (UnsafeBufferPointer<UInt8>) -> [Range<Int>]?) -> Range<Int>? {
        var base = 0
        var slice = buf
        for (depth, key) in path.enumerated() {
            let found: Range<Int>
            if let ms = members(slice) {
                guard let m = ms.last(where: { $0.key == key }) else { return nil }
                found = m.value
            } else if let index = Int(key), let items = elements(slice), index >= 0, index < items.count {
                found = items[index]
            } else {
                return nil
            }
            let r = (found.lowerBound + base)..<(found.upperBound + base)
            if depth == path.count - 1 { return r }
            base = r.lowerBound
            slice = UnsafeBufferPointer(rebasing: buf[r])
        }
        return nil
    }
}
