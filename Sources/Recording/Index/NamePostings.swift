/// For each record name, the numbers of the records that carry it, in order: what makes
/// selecting by name (`cat --event`, the shell's `next NAME`, an analysis's interest) cost
/// the answer rather than the file. Built by a counting sort over the index's name ids
/// (two passes, 4 bytes a record), stored in the cached index (docs/INDEX.md).
public struct NamePostings: Sendable {
    /// `records[starts[id]..<starts[id + 1]]` are the records named by `id`.
    var starts: [UInt32]
    var records: [UInt32]

    init(starts: [UInt32], records: [UInt32]) {
        self.starts = starts
        self.records = records
    }

    init(nameIDs: [UInt16], nameCount: Int) {
        var counts = [UInt32](repeating: 0, count: nameCount + 1)
        nameIDs.withUnsafeBufferPointer { ids in
            for id in ids where Int(id) < nameCount { counts[Int(id) + 1] &+= 1 }
        }
        for k in 1..<counts.count { counts[k] &+= counts[k - 1] }
        starts = counts
        var next = counts
        var out = [UInt32](repeating: 0, count: Int(counts[nameCount]))
        out.withUnsafeMutableBufferPointer { o in
            nameIDs.withUnsafeBufferPointer { ids in
                for (i, id) in ids.enumerated() where Int(id) < nameCount {
                    o[Int(next[Int(id)])] = UInt32(truncatingIfNeeded: i)
                    next[Int(id)] &+= 1
                }
            }
        }
        records = out
    }
}

/// Record numbers in increasing order (one name's records), as `Int`s.
/// It reads the index in place (`IndexColumns`), which it keeps alive.
public struct RecordList: RandomAccessCollection, @unchecked Sendable {
    let items: UnsafeBufferPointer<UInt32>
    let owner: AnyObject
    init(_ items: UnsafeBufferPointer<UInt32>, owner: AnyObject) {
        self.items = items
        self.owner = owner
    }
    public var startIndex: Int { 0 }
    public var endIndex: Int { items.count }
    public subscript(i: Int) -> Int { Int(items[i]) }

    /// The position of the first record numbered `record` or later (`count` when none).
    public func firstPosition(atOrAfter record: Int) -> Int {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if self[mid] < record { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
