#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Counts the messages in bytes of a stream that will not be recorded: each line with
/// content (a byte other than space, tab, CR) is one message, counted at its first such byte.
///
/// QEMU writes one message per line, and the framer records a message as soon as its JSON
/// text closes, before its line end may have come. Counting where a message begins, not at
/// its line end, keeps the count exact at every cut: the line end of a message already
/// recorded (alone at the start of a dropped chunk, or its LF after a recorded CR) holds no
/// content and counts nothing; a message split between the framer's buffer and a dropped
/// chunk, or between two dropped chunks, is one line and counts once; a message whose end
/// is lost with the stream (a stop, a close) counts all the same.
///
/// The bytes come in pieces that may be counted apart (the socket side counts the chunks it
/// drops before the encoder knows where the stream stood) and joined with `append`, which
/// gives the count of the pieces read as one. Example: `{"a": 1}\r\n{"b"` then `: 2}\r\n`
/// is two messages, counted apart or together.
struct LostLines: Sendable, Equatable {
    /// Lines with content that begin after the first line end.
    private var begun = 0
    /// Content before the first line end (a line that may have begun before these bytes).
    private var head = false
    private var sawLineEnd = false
    /// The last line holds content so far.
    private var open = false

    /// The messages these bytes hold, read from the start of a line or right after a
    /// recorded message (whose rest, if any, is blank).
    var messages: Int { begun + (head ? 1 : 0) }

    mutating func scan(_ bytes: some Collection<UInt8>) {
        let done: Void? = bytes.withContiguousStorageIfAvailable { scan($0) }
        if done == nil { Array(bytes).withUnsafeBufferPointer { scan($0) } }
    }

    private mutating func scan(_ b: UnsafeBufferPointer<UInt8>) {
        guard let base = b.baseAddress else { return }
        var i = 0
        while i < b.count {
            if open {
                // Inside a line with content: only its end matters (memchr, a dropped chunk can be megabytes).
                guard let nl = memchr(base + i, 0x0A, b.count - i) else { return }
                i = UnsafePointer(nl.assumingMemoryBound(to: UInt8.self)) - base + 1
                sawLineEnd = true
                open = false
                continue
            }
            let c = base[i]
            i += 1
            if c == 0x0A {
                sawLineEnd = true
            } else if c != 0x20 && c != 0x09 && c != 0x0D {
                open = true
                if sawLineEnd { begun += 1 } else { head = true }
            }
        }
    }

    /// `next` follows these bytes in the stream: a line open at the end of these that `next`
    /// continues is one message.
    mutating func append(_ next: LostLines) {
        if sawLineEnd {
            begun += next.begun + (next.head && !open ? 1 : 0)
        } else {
            // These bytes are part of one line: `next`'s first line continues it.
            head = head || next.head
            begun = next.begun
        }
        open = next.sawLineEnd ? next.open : (open || next.open)
        sawLineEnd = sawLineEnd || next.sawLineEnd
    }
}
