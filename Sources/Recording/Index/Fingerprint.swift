/// A 64-bit hash of the bytes an index covers, checked before a cached index is used: the
/// first and last 64 KiB of the covered range and 16 samples of 4 KiB spread between them
/// (about 200 KiB read whatever the size, so checking stays far under a millisecond). It
/// guards against a file replaced by another of the same identity (an inode reused after a
/// delete) and, for a grown file, that the bytes already indexed are still those.
enum Fingerprint {
    static let edge = 64 << 10
    static let sample = 4 << 10
    static let samples = 16

    static func of(_ base: UnsafeRawPointer, covered n: Int) -> UInt64 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(n)
        func mix(_ from: Int, _ count: Int) {
            let c = max(0, min(count, n - from))
            guard c > 0 else { return }
            let p = base + from
            var i = 0
            while i + 8 <= c {
                let w = p.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                h = (h ^ w) &* 0x100_0000_01B3
                h ^= h >> 29
                i += 8
            }
            while i < c {
                h = (h ^ UInt64(p.load(fromByteOffset: i, as: UInt8.self))) &* 0x100_0000_01B3
                i += 1
            }
            h = (h ^ UInt64(from)) &* 0xBF58_476D_1CE4_E5B9
        }
        if n <= 2 * edge + samples * sample {
            mix(0, n)
            return h
        }
        mix(0, edge)
        let stride = (n - 2 * edge) / samples
        for k in 0..<samples { mix(edge + k * stride, sample) }
        mix(n - edge, edge)
        return h
    }
}
