import QMP
import Dispatch
import Synchronization

/// The key of the `id` of every command and reply of a recording (`LineIDKey`), by record
/// number, 0 for other records: what pairing replies with commands (`InputDriver`) needs of
/// each record, so that an analysis reads the bytes of only the records it wants
/// (docs/INDEX.md, "Reply pairing"). Made on first use by one pass over the commands and
/// replies (`Recording.idKeys()`), and kept in the cached index from then on.
public struct IDKeys: @unchecked Sendable {
    let keys: UnsafeBufferPointer<UInt64>
    /// What keeps `keys` alive: an array, or the mapped cache entry.
    let owner: AnyObject

    init(_ keys: UnsafeBufferPointer<UInt64>, owner: AnyObject) {
        self.keys = keys
        self.owner = owner
    }

    init(array: [UInt64]) {
        let box = ArrayOwner(array)
        self.init(box.array.withUnsafeBufferPointer { $0 }, owner: box)
    }

    public var count: Int { keys.count }

    /// The key of record `i`'s id; nil when its line could not be read without decoding it
    /// (no `msg` member) and the caller must decode the record.
    @inline(__always)
    public subscript(i: Int) -> IDKey? {
        let k = keys[i]
        return k == LineIDKey.unknown ? nil : IDKey(raw: k)
    }

    /// Computes the keys of `r`'s commands and replies, each half of a large recording on
    /// its own thread; the pages read are given back behind each half's reader.
    static func compute(_ r: Recording) -> IDKeys {
        let n = r.count
        var out = [UInt64](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { o in
            let address = UInt(bitPattern: o.baseAddress)
            let parts = n >= 200_000 ? 2 : 1
            DispatchQueue.concurrentPerform(iterations: parts) { k in
                let dst = UnsafeMutablePointer<UInt64>(bitPattern: address)!
                let from = n * k / parts, to = n * (k + 1) / parts
                var pages = PassedPages(r.bytes, from: from < to ? r.offset(from) : 0)
                for i in from..<to where LineIDKey.isKeyed(r.kindDirCode(i)) {
                    pages.passed(r.offset(i))
                    dst[i] = LineIDKey.indexed(r.lineBytes(i))
                }
            }
        }
        return IDKeys(array: out)
    }
}

/// Keeps an array alive (and its storage in place) for a column that points into it.
final class ArrayOwner<Element> {
    let array: [Element]
    init(_ a: [Element]) { array = a }
}

/// What a recording adds to its cached index entry after opening: the `info` summary, the
/// id keys and the reply partners, each made on first use; any one stored rewrites the
/// entry with all of them.
final class CacheExtras: Sendable {
    struct State: Sendable {
        var idKeys: IDKeys?
        var partners: ReplyPartners?
        var summary: [UInt8]?
    }

    private let state: Mutex<State>

    init(_ s: State) {
        state = Mutex(s)
    }

    func withLock<T: Sendable>(_ body: (inout State) -> T) -> T {
        state.withLock { body(&$0) }
    }
}
