import QMP
import Recording
import Transport

/// One adversarial replay, written down: for each replayed event the point of the
/// conversation where it is sent, and where the server's output stream is cut (each cut a
/// pause before the next byte, so the client reads a message in pieces, or waits).
///
/// It is what `serve --chaos SEED` prints and what `--chaos-schedule` takes back, so a
/// failing run can be replayed exactly: `events=b0,a1,a1;cuts=17:1ms,301:200ms` sends the
/// first event between `qmp_capabilities` and its reply, the next two right after the reply
/// to the client's second request, and pauses 1 ms after output byte 17 and 200 ms after
/// byte 301. (docs/TESTING-CLIENTS.md; the legal points are in docs/QEMU-FACTS.md,
/// "Where events can fall".)
public struct ChaosSchedule: Sendable, Hashable, CustomStringConvertible {
    /// A point in the conversation: just before the reply to the client's request number
    /// `request` (0 is `qmp_capabilities`, 1 the first command after it, ...) or just after it.
    public struct Slot: Sendable, Hashable, Comparable, CustomStringConvertible {
        public var request: Int
        public var afterReply: Bool

        public init(request: Int, afterReply: Bool) {
            self.request = request
            self.afterReply = afterReply
        }

        /// Slots in conversation order: 0 = before reply 0, 1 = after reply 0, 2 = before reply 1, ...
        public init(rank: Int) { self.init(request: rank / 2, afterReply: rank % 2 == 1) }
        public var rank: Int { request * 2 + (afterReply ? 1 : 0) }

        public static func < (a: Slot, b: Slot) -> Bool { a.rank < b.rank }

        /// `b3` (before the reply to request 3) or `a3` (after it).
        public var description: String { "\(afterReply ? "a" : "b")\(request)" }
    }

    /// A pause of `pause` ns once `offset` bytes of output have been handed to the socket.
    public struct Cut: Sendable, Hashable, CustomStringConvertible {
        public var offset: Int
        public var pause: Int64

        public init(offset: Int, pause: Int64) {
            self.offset = offset
            self.pause = pause
        }

        /// `301:200ms`.
        public var description: String { "\(offset):\(ChaosSchedule.durationText(pause))" }
    }

    /// `slots[i]` is where the i-th replayed event goes (`ChaosPlan.events` order).
    public var slots: [Slot]
    /// Sorted by offset.
    public var cuts: [Cut]
    /// The seed it was made from, when it was made from one (for messages only).
    public var seed: UInt64?

    public init(slots: [Slot], cuts: [Cut] = [], seed: UInt64? = nil) {
        self.slots = slots
        self.cuts = cuts.sorted { $0.offset < $1.offset }
        self.seed = seed
    }

    /// The text `--chaos-schedule` takes: `events=b0,a1;cuts=17:1ms`.
    public var description: String {
        var s = "events=" + slots.map(\.description).joined(separator: ",")
        if !cuts.isEmpty { s += ";cuts=" + cuts.map(\.description).joined(separator: ",") }
        return s
    }

    public var json: JSONValue {
        var o = JSONObject()
        if let seed { o["seed"] = .number(JSONNumber(text: String(seed))) }
        o["schedule"] = .string(description)
        o["events"] = .array(slots.map { .string($0.description) })
        o["cuts"] = .array(cuts.map { c in
            .object(JSONObject(["offset": .int(Int64(c.offset)), "pause_us": .int(c.pause / 1000)]))
        })
        return .object(o)
    }

    /// Reads the text `description` writes; the message says what is wrong and where.
    public static func parse(_ text: String) throws(ReplayError) -> ChaosSchedule {
        var slots: [Slot] = []
        var cuts: [Cut] = []
        for part in text.split(separator: ";", omittingEmptySubsequences: true) {
            let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: " ") }
            guard kv.count == 2 else { throw bad(text, "'\(part)' is not events=... or cuts=...") }
            let items = kv[1].split(separator: ",", omittingEmptySubsequences: true).map { $0.trimmingCharacters(in: " ") }
            switch kv[0] {
            case "events":
                for item in items {
                    guard let kind = item.first, kind == "a" || kind == "b", let n = Int(item.dropFirst()), n >= 0 else {
                        throw bad(text, "event slot '\(item)' is not b<N> (before reply N) or a<N> (after reply N)")
                    }
                    slots.append(Slot(request: n, afterReply: kind == "a"))
                }
            case "cuts":
                for item in items {
                    let ov = item.split(separator: ":", maxSplits: 1)
                    guard ov.count == 2, let off = Int(ov[0]), off >= 0 else {
                        throw bad(text, "cut '\(item)' is not OFFSET:PAUSE (e.g. 301:200ms)")
                    }
                    let pause: Int64
                    do { pause = try TimeSpec.duration(String(ov[1])) } catch {
                        throw bad(text, "cut '\(item)': \(error.reason)")
                    }
                    cuts.append(Cut(offset: off, pause: pause))
                }
            default:
                throw bad(text, "unknown part '\(kv[0])' (events=..., cuts=...)")
            }
        }
        return ChaosSchedule(slots: slots, cuts: cuts)
    }

    private static func bad(_ text: String, _ why: String) -> ReplayError {
        .usage("--chaos-schedule '\(text)': \(why)")
    }

    /// `200ms`, `1500us`, `2s`: whole units, so that the text reads back to the same value.
    static func durationText(_ ns: Int64) -> String {
        if ns % 1_000_000_000 == 0 && ns != 0 { return "\(ns / 1_000_000_000)s" }
        if ns % 1_000_000 == 0 { return "\(ns / 1_000_000)ms" }
        if ns % 1000 == 0 { return "\(ns / 1000)us" }
        return "\(ns)ns"
    }
}

extension Substring {
    func trimmingCharacters(in set: Character) -> String {
        var s = self
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return String(s)
    }
}
