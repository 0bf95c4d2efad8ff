/// What pairing replies with commands decided for each record of a whole recording
/// (docs/INDEX.md, "Reply partners"): for a line the client sent that QEMU answers (a
/// command, or a line that is not one), the record number of the reply that answered it or
/// of the `close` that dropped it unanswered; for a greeting, 1 when it starts a new QEMU
/// process; `none` for everything else (and for a request that was never answered nor
/// dropped by a close). Pairing depends only on the recording, not on what a pass wants, so
/// the analyses make it once, during their first pass over a whole recording, and it is kept
/// in the cached index: later passes then read only the records they want and the replies
/// those records received. The rule itself is the analyses' (`InputDriver`); this is where
/// its result is kept.
public struct ReplyPartners: @unchecked Sendable {
    public static let none = UInt32.max
    let values: UnsafeBufferPointer<UInt32>
    /// What keeps `values` alive: an array, or the mapped cache entry.
    let owner: AnyObject

    init(_ values: UnsafeBufferPointer<UInt32>, owner: AnyObject) {
        self.values = values
        self.owner = owner
    }

    public init(array: [UInt32]) {
        let box = ArrayOwner(array)
        self.init(box.array.withUnsafeBufferPointer { $0 }, owner: box)
    }

    public var count: Int { values.count }

    @inline(__always)
    public subscript(i: Int) -> UInt32 { values[i] }
}
