import QMP

/// The identity (`IDKey`) of a record line's message `id`, read from the end of the line
/// without parsing it: QEMU writes `id` last in every reply, and clients (libvirt,
/// qemu.qmp, qmp-shell) write it last in their commands, so a recorded command or reply
/// line ends `"id": VALUE}}` (the message's `}`, then the record's). The match counts only
/// when the value ends exactly where `msg` closes and the key follows `{`, `,` or a space;
/// anything else is left to a reader that walks the members (nil).
///
/// The index stores this for every command and reply (docs/INDEX.md, "Reply pairing"), so
/// that pairing replies with commands (`InputDriver`) reads no record bytes.
public enum LineIDKey {
    /// The id key of the message on `line` (a record line without its newline), or nil when
    /// the line does not end in the common shape.
    public static func fast(_ line: UnsafeBufferPointer<UInt8>) -> IDKey? {
        var end = line.count
        while end > 0, isJSONSpace(line[end - 1]) { end -= 1 }
        // `}` of the line, then `}` of msg.
        guard end >= 2, line[end - 1] == UInt8(ascii: "}") else { return nil }
        var close = end - 2
        while close > 0, isJSONSpace(line[close]) { close -= 1 }
        guard line[close] == UInt8(ascii: "}") else { return nil }
        var i = close - 1
        let lower = max(0, close - 256)
        while i > lower {
            if line[i] == UInt8(ascii: "\""), i >= 4, line[i - 1] == UInt8(ascii: "d"), line[i - 2] == UInt8(ascii: "i"),
               line[i - 3] == UInt8(ascii: "\""),
               line[i - 4] == UInt8(ascii: ",") || isJSONSpace(line[i - 4]) || line[i - 4] == UInt8(ascii: "{") {
                var j = i + 1
                while j < close, isJSONSpace(line[j]) { j += 1 }
                if j < close, line[j] == UInt8(ascii: ":") {
                    j += 1
                    while j < close, isJSONSpace(line[j]) { j += 1 }
                    if let e = JSONScan.skipValue(line, j) {
                        var k = e
                        while k < close, isJSONSpace(line[k]) { k += 1 }
                        if k == close { return IDKey(bytes: UnsafeBufferPointer(rebasing: line[j..<e])) }
                    }
                }
            }
            i -= 1
        }
        return nil
    }

    /// What the index stores for a command or reply line: the key read from the end of the
    /// line, else from the `id` member of `msg` found by walking the members (`.none` when
    /// it has none), else `unknown` (a line without `msg`: the record must be decoded).
    public static func indexed(_ line: UnsafeBufferPointer<UInt8>) -> UInt64 {
        if let k = fast(line) { return k.raw }
        guard let msg = JSONScan.member(line, in: 0..<line.count, key: "msg") else { return unknown }
        guard let id = JSONScan.member(line, in: msg, key: "id") else { return IDKey.none.raw }
        return IDKey(bytes: UnsafeBufferPointer(rebasing: line[id])).raw
    }

    /// Whether a record of this kind and direction (`Recording.kindDirCode`) has a key: a
    /// command from the client, a return or an error from QEMU.
    @inline(__always)
    static func isKeyed(_ kindDir: UInt8) -> Bool {
        kindDir == RecordKind.command.code | 0x80 || kindDir == RecordKind.return.code | 0x40 || kindDir == RecordKind.error.code | 0x40
    }

    /// What the index stores for a record whose key it could not read: its readers decode
    /// the record (a real key equal to this is only read again, never wrong).
    public static let unknown = UInt64.max
}
