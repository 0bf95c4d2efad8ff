import Foundation
import QMP
import Testing
@testable import Recording
import Synth

#if canImport(Glibc)
import Glibc
#endif

/// The persistent index (docs/INDEX.md): used when it matches the file, extended when the
/// file grew, rebuilt in every stale case (truncated, rewritten at the same size, another
/// file under the same identity, a damaged entry), skipped when the cache cannot be written;
/// and every open, whichever way it went, equals an open without the cache.
@Suite("Persistent index")
struct IndexCacheTests {
    /// A recording of `records` synthesised records in a fresh directory, and a cache there.
    static func setUp(records: Int = 3_000, seed: UInt64 = 7) throws -> (path: String, cache: IndexCache) {
        let dir = makeTempDir()
        let path = dir + "/r.qmprec"
        try Synthesizer(seed: seed, profile: .mixed).write(records: records, to: path)
        return (path, IndexCache(directory: dir + "/cache"))
    }

    static func reopen(_ path: String, _ cache: IndexCache?) throws -> Recording {
        try Recording(path: path, options: RecordingOptions(indexCache: cache))
    }

    /// The cached open equals a plain one: index, names, problems, header, trailer.
    static func expectFresh(_ r: Recording, _ what: String) throws {
        let fresh = try Recording(path: r.path)
        ExtendTests.expectSame(r, fresh, what)
        #expect(r.problems == fresh.problems, "\(what): problems")
        #expect(r.header == fresh.header, "\(what): header")
        for name in fresh.names.dropFirst() {
            let scanned = (0..<fresh.count).filter { fresh.name($0) == name }
            #expect(r.records(named: name).map(Array.init) == scanned, "\(what): records named \(name)")
        }
    }

    @Test("built on the first open, used as it is on the second")
    func hit() throws {
        let (path, cache) = try Self.setUp()
        let first = try Self.reopen(path, cache)
        #expect(first.cacheOutcome == .built)
        let second = try Self.reopen(path, cache)
        #expect(second.cacheOutcome == .hit)
        try Self.expectFresh(second, "hit")
    }

    @Test("the id keys are made once, stored with the entry, and read back the same")
    func idKeys() throws {
        let (path, cache) = try Self.setUp()
        let first = try Self.reopen(path, cache)
        let made: [UInt64] = Array(first.idKeys().keys)
        let fresh: [UInt64] = Array(try Recording(path: path).idKeys().keys)
        #expect(made == fresh)
        let withIDs = made.filter { $0 != 0 && $0 != LineIDKey.unknown }.count
        #expect(withIDs > 0, "the synthetic file's commands have ids")
        let second = try Self.reopen(path, cache)
        #expect(second.cacheOutcome == .hit)
        let stored = second.idKeys()
        let fromEntry = stored.owner is MappedFile
        #expect(fromEntry, "read from the entry, not made again")
        let storedKeys: [UInt64] = Array(stored.keys)
        #expect(storedKeys == made)
        // A summary stored afterwards keeps the keys, and the keys kept the summary.
        _ = RecordingSummary.of(second)
        let third = try Self.reopen(path, cache)
        #expect(third.cachedSummary != nil)
        let thirdKeys: [UInt64] = Array(third.idKeys().keys)
        #expect(thirdKeys == made)
    }

    @Test("opened for pairing replies: the entry is written once, with the id keys")
    func pairsReplies() throws {
        let (path, cache) = try Self.setUp()
        let first = try Recording(path: path, options: RecordingOptions(indexCache: cache, pairsReplies: true))
        #expect(first.cacheOutcome == .built)
        let second = try Self.reopen(path, cache)
        #expect(second.cacheOutcome == .hit)
        let fromEntry = second.idKeys().owner is MappedFile
        #expect(fromEntry, "the keys were stored with the entry at open")
        let stored: [UInt64] = Array(second.idKeys().keys), fresh: [UInt64] = Array(try Recording(path: path).idKeys().keys)
        #expect(stored == fresh)
    }

    @Test("a grown file: the entry is extended, then used")
    func grown() throws {
        let (path, cache) = try Self.setUp()
        let all = readFile(path)
        var cut = all.count / 2
        while all[cut - 1] != 0x0A { cut += 1 }
        cut += 10  // a torn last line too
        writeFile(path, Array(all[..<cut]))
        #expect(try Self.reopen(path, cache).cacheOutcome == .built)
        let fd = open(path, O_WRONLY | O_APPEND)
        all[cut...].withUnsafeBytes { _ = write(fd, $0.baseAddress, $0.count) }
        close(fd)
        let r = try Self.reopen(path, cache)
        #expect(r.cacheOutcome == .extended)
        try Self.expectFresh(r, "grown")
        #expect(try Self.reopen(path, cache).cacheOutcome == .hit)
    }

    @Test("a truncated file is indexed again")
    func truncated() throws {
        let (path, cache) = try Self.setUp()
        _ = try Self.reopen(path, cache)
        let all = readFile(path)
        writeFile(path, Array(all[..<(all.count * 2 / 3)]))
        let r = try Self.reopen(path, cache)
        #expect(r.cacheOutcome == .built)
        try Self.expectFresh(r, "truncated")
    }

    @Test("a file rewritten at the same size, times put back, is indexed again")
    func rewrittenSameSize() throws {
        let (path, cache) = try Self.setUp()
        _ = try Self.reopen(path, cache)
        var st = stat()
        stat(path, &st)
        // Another recording of exactly the same length: same layout, other times.
        var other = readFile(path)
        if let i = other.indices.first(where: { k in other[k] == 0x31 && k > other.count / 2 }) { other[i] = 0x32 }  // one digit
        let fd = open(path, O_WRONLY)
        other.withUnsafeBytes { _ = pwrite(fd, $0.baseAddress, $0.count, 0) }
        close(fd)
        var times = [st.st_atim, st.st_mtim]
        utimensat(AT_FDCWD, path, &times, 0)  // mtime back as it was; ctime cannot be put back
        let r = try Self.reopen(path, cache)
        #expect(r.cacheOutcome == .built)
        try Self.expectFresh(r, "rewritten")
    }

    @Test("another file under the same identity (a reused inode): the fingerprint refuses the entry")
    func otherFileSameIdentity() throws {
        let (a, cache) = try Self.setUp(seed: 7)
        let b = try Self.setUp(seed: 8).path
        let ra = try Self.reopen(a, cache)
        let rb = try Recording(path: b)
        // Give A's entry B's identity, as if B now lived where A did.
        let idA = try #require(ra.bytes.identity), idB = try #require(rb.bytes.identity)
        var entry = readFile(cache.entryPath(idA))
        var w = ByteWriter()
        w.uint64(idB.device); w.uint64(idB.inode); w.uint64(idB.size); w.int64(idB.modifiedNanos); w.int64(idB.changedNanos)
        entry.replaceSubrange(16..<56, with: w.bytes)
        writeFile(cache.entryPath(idB), entry)
        let r = try Self.reopen(b, cache)
        #expect(r.cacheOutcome == .built)
        try Self.expectFresh(r, "same identity")
    }

    @Test("a damaged entry is ignored and replaced", arguments: [100, 5_000, -20])
    func damaged(cut: Int) throws {
        let (path, cache) = try Self.setUp()
        let r0 = try Self.reopen(path, cache)
        let entry = cache.entryPath(try #require(r0.bytes.identity))
        let bytes = readFile(entry)
        writeFile(entry, Array(bytes[..<(cut > 0 ? cut : bytes.count + cut)]))
        let r = try Self.reopen(path, cache)
        #expect(r.cacheOutcome == .built)
        try Self.expectFresh(r, "damaged at \(cut)")
    }

    @Test("a cache that cannot be written: indexed in memory, nothing fails")
    func unwritable() throws {
        let (path, _) = try Self.setUp()
        let cache = IndexCache(directory: path + "/not-a-directory")
        let r = try Self.reopen(path, cache)
        #expect(r.cacheOutcome == .unwritable)
        try Self.expectFresh(r, "unwritable")
    }

    @Test("two opens at once both get a right index, and the entry left is whole")
    func concurrent() throws {
        let (path, cache) = try Self.setUp(records: 20_000)
        let results = UnsafeMutablePointer<Recording?>.allocate(capacity: 4)
        results.initialize(repeating: nil, count: 4)
        defer { results.deinitialize(count: 4); results.deallocate() }
        let address = UInt(bitPattern: results)
        DispatchQueue.concurrentPerform(iterations: 4) { k in
            UnsafeMutablePointer<Recording?>(bitPattern: address)![k] = try? Self.reopen(path, cache)
        }
        for k in 0..<4 { try Self.expectFresh(try #require(results[k]), "concurrent \(k)") }
        #expect(try Self.reopen(path, cache).cacheOutcome == .hit)
        let dir = try FileManager.default.contentsOfDirectory(atPath: cache.directory)
        #expect(dir.count == 1, "no temporary files left: \(dir)")
    }

    @Test("info's summary is stored with the index and read back the same")
    func summary() throws {
        let (path, cache) = try Self.setUp()
        let computed = RecordingSummary.of(try Self.reopen(path, cache))
        let r = try Self.reopen(path, cache)
        #expect(r.cachedSummary != nil)
        let read = RecordingSummary.of(r)
        #expect(read.json == computed.json)
        #expect(read.skew?.firstReceive == computed.skew?.firstReceive)
        #expect(read.json == RecordingSummary(try Recording(path: path)).json)
    }

    @Test("past its limit, the cache drops the least recently used entries, never the one just written")
    func eviction() throws {
        let dir = makeTempDir()
        var paths: [String] = []
        for k in 0..<3 {
            let p = dir + "/r\(k).qmprec"
            try Synthesizer(seed: UInt64(k), profile: .mixed).write(records: 2_000, to: p)
            paths.append(p)
        }
        let probe = IndexCache(directory: dir + "/probe")
        let sizes = try paths.map { p in readFile(probe.entryPath(try #require(try Self.reopen(p, probe).bytes.identity))).count }
        // The two newer entries fit in three quarters of the limit; all three do not fit.
        let limit = (sizes[1] + sizes[2]) * 4 / 3 + 8
        #expect(sizes.reduce(0, +) > limit)
        let cache = IndexCache(directory: dir + "/cache", limit: limit)
        _ = try Self.reopen(paths[0], cache)
        _ = try Self.reopen(paths[1], cache)
        let old = cache.entryPath(try #require(Recording(path: paths[0]).bytes.identity))
        var times = [timespec(tv_sec: 1_000, tv_nsec: 0), timespec(tv_sec: 1_000, tv_nsec: 0)]
        utimensat(AT_FDCWD, old, &times, 0)  // used long ago
        writeFile(cache.directory + "/x.qmpidx.tmp.1.2", [1, 2, 3])
        let tmp = cache.directory + "/x.qmpidx.tmp.1.2"
        utimensat(AT_FDCWD, tmp, &times, 0)  // a writer that died
        let third = try Self.reopen(paths[2], cache)
        #expect(third.cacheOutcome == .built)
        #expect(access(old, F_OK) != 0, "the least recently used entry went")
        #expect(access(tmp, F_OK) != 0, "the dead writer's temporary went")
        #expect(try Self.reopen(paths[1], cache).cacheOutcome == .hit)
        #expect(try Self.reopen(paths[2], cache).cacheOutcome == .hit)
        #expect(try Self.reopen(paths[0], cache).cacheOutcome == .built)
    }

    @Test("the standard cache: XDG_CACHE_HOME, HOME, and QMPREPLAY_NO_CACHE")
    func standard() {
        #expect(IndexCache.standard(environment: ["XDG_CACHE_HOME": "/x", "HOME": "/h"])?.directory == "/x/qmpreplay/index")
        #expect(IndexCache.standard(environment: ["HOME": "/h"])?.directory == "/h/.cache/qmpreplay/index")
        #expect(IndexCache.standard(environment: ["HOME": "/h", "QMPREPLAY_NO_CACHE": "1"]) == nil)
        #expect(IndexCache.standard(environment: ["HOME": "/h", "QMPREPLAY_NO_CACHE": "0"]) != nil)
        #expect(IndexCache.standard(environment: ["HOME": "/h", "QMPREPLAY_CACHE_LIMIT_MB": "10"])?.limit == 10 << 20)
    }
}
