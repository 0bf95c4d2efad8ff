/// Binary search over a collection already ordered by a predicate: the analyses' series
/// are in record (and so time) order, and looking an element up by scanning from the start
/// made a 47-million-record triage quadratic (docs/INDEX.md, "Memory").
extension RandomAccessCollection {
    /// The first index whose element satisfies `isAfter`, given that every element that
    /// does comes after every element that does not; `endIndex` when none does.
    ///
    /// Example: `[1, 3, 5].partitionPoint { $0 > 2 }` is 1.
    func partitionPoint(where isAfter: (Element) -> Bool) -> Index {
        var lo = startIndex, n = count
        while n > 0 {
            let half = n / 2
            let mid = index(lo, offsetBy: half)
            if isAfter(self[mid]) {
                n = half
            } else {
                lo = index(after: mid)
                n -= half + 1
            }
        }
        return lo
    }
}
