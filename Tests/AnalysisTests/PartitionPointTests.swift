import Testing
@testable import Analysis

/// `partitionPoint` (the binary search balloon's lookups use) agrees with a linear scan.
@Suite("Partition point")
struct PartitionPointTests {
    @Test("the first element after the split, as a scan finds it")
    func agreesWithScan() {
        let xs = [1, 3, 3, 5, 8, 13, 13, 21]
        for v in -1...22 {
            #expect(xs.partitionPoint { $0 > v } == (xs.firstIndex { $0 > v } ?? xs.count), "> \(v)")
            #expect(xs.partitionPoint { $0 >= v } == (xs.firstIndex { $0 >= v } ?? xs.count), ">= \(v)")
        }
        #expect([Int]().partitionPoint { $0 > 0 } == 0)
        #expect(xs[2...].partitionPoint { $0 > 5 } == 4)
    }
}
