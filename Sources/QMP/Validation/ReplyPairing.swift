/// The identity of a request `id` as QEMU sees it: equal JSON *values* have equal keys,
/// whatever their spelling. QEMU parses the id into a QObject and writes it back with its
/// own JSON writer (docs/QEMU-FACTS.md, "Reply ids are values"), so `"caf\u00e9"`,
/// `"caf\u00E9"` and `"café"` are one id, as are `1` and `1.0`, and an object id may come
/// back with its members in another order.
///
/// `IDKey.none` (0) means "no id". Example: `IDKey(bytes: "\"libvirt-12\"")`.
public struct IDKey: Hashable, Sendable {
    public let raw: UInt64
    public static let none = IDKey(raw: 0)
    public var isNone: Bool { raw == 0 }

    public init(raw: UInt64) { self.raw = raw }

    /// From the JSON text of an id (the bytes between the `:` and the next member). Plain
    /// strings (no backslash) and plain integers are hashed without parsing.
    public init(bytes b: UnsafeBufferPointer<UInt8>) {
        guard let first = b.first else { self = .none; return }
        if first == UInt8(ascii: "\""), b.count >= 2, b[b.count - 1] == UInt8(ascii: "\""),
           !b.contains(UInt8(ascii: "\\")) {
            // The raw UTF-8 between the quotes is already the decoded string.
            self.init(raw: Self.fnv(tag: 1, UnsafeBufferPointer(rebasing: b[1..<(b.count - 1)])))
            return
        }
        if first == UInt8(ascii: "-") || (first >= 0x30 && first <= 0x39),
           b.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "-") }) {
            self.init(value: .number(JSONNumber(text: String(decoding: b, as: UTF8.self))))
            return
        }
        guard let v = try? JSONParser.parse(b) else {
            // Not JSON: QEMU could not have parsed it either; keep the bytes' identity.
            self.init(raw: Self.fnv(tag: 9, b))
            return
        }
        self.init(value: v)
    }

    public init(value: JSONValue?) {
        guard let value else { self = .none; return }
        var h = Hasher64()
        Self.feed(value, into: &h)
        self.init(raw: h.value == 0 ? 1 : h.value)
    }

    public init(text: String) {
        var s = text
        self = s.withUTF8 { IDKey(bytes: $0) }
    }

    private static func fnv(tag: UInt8, _ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h = Hasher64()
        h.add(tag)
        for c in bytes { h.add(c) }
        return h.value == 0 ? 1 : h.value
    }

    private static func feed(_ v: JSONValue, into h: inout Hasher64) {
        switch v {
        case .null: h.add(0)
        case .bool(let b): h.add(b ? 3 : 2)
        case .string(let s):
            h.add(1)
            for c in s.utf8 { h.add(c) }
        case .number(let n):
            h.add(4)
            // Integers exactly; others through their numeric value (1.0 == 1 to QEMU's visitors).
            let text: String
            if let i = Int64(n.text) { text = String(i) }
            else if let u = UInt64(n.text) { text = String(u) }
            else if let d = n.double { text = d == d.rounded() && abs(d) < 9.2e18 ? String(Int64(d)) : String(d) }
            else { text = n.text }
            for c in text.utf8 { h.add(c) }
        case .array(let a):
            h.add(5)
            for e in a { feed(e, into: &h); h.add(0xFE) }
            h.add(0xFF)
        case .object(let o):
            h.add(6)
            // Member order is not part of the value (QEMU's dictionaries do not keep it).
            for m in o.members.sorted(by: { $0.key < $1.key }) {
                for c in m.key.utf8 { h.add(c) }
                h.add(0xFD)
                feed(m.value, into: &h)
                h.add(0xFE)
            }
            h.add(0xFF)
        }
    }
}

/// FNV-1a, 64 bit: stable across runs (unlike `Hasher`), so keys can be compared in tests.
struct Hasher64 {
    var value: UInt64 = 0xcbf2_9ce4_8422_2325
    @inline(__always) mutating func add(_ c: UInt8) { value = (value ^ UInt64(c)) &* 0x100_0000_01b3 }
}

/// The one rule that pairs replies with the requests they answer, on one connection, used
/// by validation, the analyses, the shell's state and replay.
///
/// docs/QEMU-FACTS.md, "Wire protocol": a reply echoes its request's `id` (as a value) and has
/// none when the request had none; without oob, requests are answered one at a time, in
/// order. So a reply with an id answers the oldest outstanding request with that id; a
/// reply without one answers the oldest outstanding request without one (which may be
/// input that was not a command: QEMU answers it with an error). A reply matching nothing
/// pairs with nothing. A new greeting or the end of the connection drops what is outstanding.
///
/// Example: `q.sent(IDKey(text: "\"a\""), p1)`, `q.sent(.none, p2)`, then
/// `q.reply(.none)` is `p2`.
public struct ReplyQueue<Request> {
    private var items: [(key: IDKey, request: Request)] = []
    /// Items before `head` were answered (kept until compaction, so answering in order is O(1)).
    private var head = 0

    public init() {}

    public var isEmpty: Bool { head == items.count }
    public var count: Int { items.count - head }
    /// Outstanding requests, oldest first.
    public var outstanding: [Request] { items[head...].map(\.request) }

    public mutating func sent(_ key: IDKey, _ request: Request) {
        items.append((key, request))
    }

    /// The request `key`'s reply answers, removed; `nil` when none matches.
    public mutating func reply(_ key: IDKey) -> Request? {
        var i = head
        while i < items.count {
            if items[i].key == key {
                let r = items[i].request
                if i == head {
                    head += 1
                    if head > 64 && head * 2 > items.count { items.removeFirst(head); head = 0 }
                } else {
                    items.remove(at: i)
                }
                return r
            }
            i += 1
        }
        return nil
    }

    /// Drops and returns everything outstanding.
    public mutating func drain() -> [Request] {
        let r = outstanding
        items.removeAll(keepingCapacity: true)
        head = 0
        return r
    }

    /// Keeps only the newest `n` outstanding requests (a client whose replies were not
    /// recorded must not make memory grow without bound); returns the dropped ones.
    @discardableResult
    public mutating func keepNewest(_ n: Int) -> [Request] {
        guard count > n else { return [] }
        let drop = count - n
        let dropped = items[head..<(head + drop)].map(\.request)
        items.removeFirst(head + drop)
        head = 0
        return dropped
    }
}

extension ReplyQueue: Sendable where Request: Sendable {}
extension ReplyQueue: Equatable where Request: Equatable {
    public static func == (a: ReplyQueue, b: ReplyQueue) -> Bool {
        a.count == b.count && zip(a.items[a.head...], b.items[b.head...]).allSatisfy { $0.key == $1.key && $0.request == $1.request }
    }
}
