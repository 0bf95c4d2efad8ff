import QMP
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The persistent index (docs/INDEX.md): a directory of cached indexes, one entry per
/// recording file, so that the next open of a recording reads its index instead of
/// scanning it. Recordings are never touched. An entry is used only when the file is the
/// one it was made from (device, inode, size, modification and change time) and the
/// fingerprint of the bytes it covers still matches; an entry for a file that has since
/// grown is extended by scanning only the appended bytes (`IndexBuilder.extend`, as
/// `Recording.extended()` does); anything else is rebuilt. Every failure to read or write
/// the cache (read-only, full, missing) falls back to indexing in memory, silently.
public struct IndexCache: Sendable {
    public var directory: String
    /// When the entries together grow past this many bytes, the least recently used go
    /// until they are under three quarters of it (an entry is about 31 bytes a record).
    public var limit: Int

    public init(directory: String, limit: Int = 4 << 30) {
        self.directory = directory
        self.limit = limit
    }

    /// `$XDG_CACHE_HOME/qmpreplay/index`, else `~/.cache/qmpreplay/index`; nil when
    /// `QMPREPLAY_NO_CACHE` is set (to anything but empty or `0`) or no home is known.
    public static func standard(environment env: [String: String]) -> IndexCache? {
        if let off = env["QMPREPLAY_NO_CACHE"], !off.isEmpty, off != "0" { return nil }
        let limit = env["QMPREPLAY_CACHE_LIMIT_MB"].flatMap(Int.init).map { max(1, $0) << 20 } ?? 4 << 30
        if let x = env["XDG_CACHE_HOME"], x.hasPrefix("/") { return IndexCache(directory: x + "/qmpreplay/index", limit: limit) }
        if let h = env["HOME"], !h.isEmpty { return IndexCache(directory: h + "/.cache/qmpreplay/index", limit: limit) }
        return nil
    }

    /// How an open used the cache (for tests and `bench index`).
    public enum Outcome: String, Sendable {
        /// The entry matched: nothing scanned.
        case hit
        /// The file had grown: only the appended bytes scanned, the entry rewritten.
        case extended
        /// No usable entry (none, stale, damaged): the file scanned whole, an entry written.
        case built
        /// As `built`, but the entry could not be written (read-only cache directory...).
        case unwritable
    }

    /// What the cache gives an open: the builder's state (without its arrays when the
    /// columns are read in place from the entry), the columns, the `info` summary when one
    /// was stored, and what happened.
    struct Opened {
        var builder: IndexBuilder
        var columns: IndexColumns
        var extras: CacheExtras.State
        var outcome: Outcome
    }

    func entryPath(_ id: FileIdentity) -> String { directory + "/" + id.entryName }

    /// The index of `bytes` (a mapped regular file), from the cache when it holds a usable
    /// entry, else built (or extended) here and stored. `idKeys`: the caller pairs replies,
    /// so a scan of the whole file reads the id keys too, and the caller stores the entry
    /// once with what else it makes (`Recording.pairingExtras`).
    func index(_ bytes: FileBytes, identity id: FileIdentity, parallelThreshold: Int, idKeys: Bool = false) -> Opened {
        let path = entryPath(id)
        if let base = bytes.base, let found = load(path, for: bytes, base: base, identity: id) {
            if found.head.identity == id {
                _ = utimensat(AT_FDCWD, path, nil, 0)  // recently used: the last to be evicted
                var b = found.builder
                b.header = IndexCache.header(base, count: bytes.count, seen: b.headerLineSeen)
                return Opened(builder: b, columns: found.columns, extras: found.extras, outcome: .hit)
            }
            // Grown: the covered bytes are unchanged (fingerprint), so resume after them.
            var b = found.builder
            found.columns.restore(into: &b)
            b.header = IndexCache.header(base, count: bytes.count, seen: b.headerLineSeen)
            b.extend(bytes)
            let columns = IndexColumns(builder: b, postings: NamePostings(nameIDs: b.nameIDs, nameCount: b.names.count))
            let ok = idKeys || store(b, columns: columns, extras: CacheExtras.State(), bytes: bytes, identity: id)
            return Opened(builder: b, columns: columns, extras: CacheExtras.State(), outcome: ok ? .extended : .unwritable)
        }
        var b = IndexBuilder.build(bytes, parallelThreshold: parallelThreshold, idKeys: idKeys)
        let extras = CacheExtras.State(idKeys: b.takeIDKeys())
        let columns = IndexColumns(builder: b, postings: NamePostings(nameIDs: b.nameIDs, nameCount: b.names.count))
        let ok = idKeys || store(b, columns: columns, extras: extras, bytes: bytes, identity: id)
        return Opened(builder: b, columns: columns, extras: extras, outcome: ok ? .built : .unwritable)
    }

    /// Writes the entry for a recording (made, extended, or given its summary).
    func store(_ b: IndexBuilder, columns: IndexColumns, extras: CacheExtras.State, bytes: FileBytes, identity id: FileIdentity) -> Bool {
        guard let base = bytes.base, b.completeEnd <= bytes.count, makeDirectory() else { return false }
        let fp = Fingerprint.of(base, covered: b.completeEnd)
        guard IndexFile.save(entryPath(id), identity: id, fingerprint: fp, builder: b, columns: columns, extras: extras) else {
            return false
        }
        var st = stat()
        let written = stat(entryPath(id), &st) == 0 ? Int(st.st_size) : 0
        if CacheLedger.shared.needsScan(directory, adding: written, limit: limit) {
            CacheLedger.shared.scanned(directory, total: evict(keeping: id.entryName))
        }
        return true
    }

    /// Keeps the directory under `limit`: the least recently used entries go first (an
    /// entry used is touched), never `keeping`; temporary files older than an hour (a writer
    /// that died) go too. Another process may be deleting the same files: failures are fine.
    /// Returns the bytes the entries take afterwards.
    @discardableResult
    func evict(keeping: String) -> Int {
        guard let d = opendir(directory) else { return 0 }
        var entries: [(name: String, size: Int, used: Int64)] = []
        var total = 0
        let now = Int64(time(nil))
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            let temporary = IndexCache.isTemporary(name)
            guard name.hasSuffix(".qmpidx") || temporary else { continue }
            var st = stat()
            guard stat(directory + "/" + name, &st) == 0 else { continue }
            let modified = FileIdentity(st).modifiedNanos / 1_000_000_000
            if temporary {
                if now - modified > 3600 { unlink(directory + "/" + name) }
                continue
            }
            total += Int(st.st_size)
            entries.append((name, Int(st.st_size), modified))
        }
        closedir(d)
        guard total > limit else { return total }
        for e in entries.sorted(by: { $0.used < $1.used }) where e.name != keeping {
            if total <= limit - limit / 4 { break }
            if unlink(directory + "/" + e.name) == 0 { total -= e.size }
        }
        return total
    }

    /// `NAME.qmpidx.tmp.PID.RANDOM`, what `IndexFile.save` writes before its rename.
    static func isTemporary(_ name: String) -> Bool {
        let b = Array(name.utf8), m = ".qmpidx.tmp.".utf8
        return b.indices.dropLast(m.count).contains { b[$0...].starts(with: m) }
    }

    /// The entry at `path` when it may be used for `bytes`: made from this very file state,
    /// or from a shorter state of it whose covered bytes are still the same.
    private func load(_ path: String, for bytes: FileBytes, base: UnsafeRawPointer, identity id: FileIdentity) -> IndexFile? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard let head = IndexFile.readHead(fd) else { return nil }
        let same = head.identity == id
        let grown = head.identity.device == id.device && head.identity.inode == id.inode && head.identity.size < id.size
        guard same || grown, head.covered <= bytes.count, head.covered <= Int(head.identity.size),
              Fingerprint.of(base, covered: head.covered) == head.fingerprint
        else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        return IndexFile.read(fd, head: head, fileSize: Int(st.st_size))
    }

    private func makeDirectory() -> Bool {
        var parts: [Substring] = []
        var dir = ""
        for p in directory.split(separator: "/") {
            parts.append(p)
            dir += "/" + p
            if mkdir(dir, 0o700) != 0 && errno != EEXIST { return false }
        }
        return access(directory, W_OK) == 0
    }

    /// The header read again from line 1 (the entry keeps the header's problems, not the
    /// header itself: one small parse).
    static func header(_ base: UnsafeRawPointer, count: Int, seen: Bool) -> RecordingHeader? {
        guard seen, count > 0 else { return nil }
        let p = base.assumingMemoryBound(to: UInt8.self)
        var end = count
        if let nl = memchr(p, 0x0A, count) { end = UnsafeRawPointer(nl) - base }
        if end > 0 && p[end - 1] == 0x0D { end -= 1 }
        guard let v = try? JSONParser.parse(UnsafeBufferPointer(start: p, count: end)) else { return nil }
        return RecordingHeader(json: v)
    }
}

/// What this process knows of each cache directory's size, so that storing an entry does
/// not list the whole directory each time (a fleet run stores thousands): the first store
/// in a process lists it (and evicts), later ones add what they wrote to the total then
/// known, and list it again only when that estimate passes the limit. Another process's
/// entries are seen at its next listing; the limit can be passed by what other processes
/// wrote meanwhile, never by this one.
final class CacheLedger: Sendable {
    static let shared = CacheLedger()
    private let totals = Mutex<[String: Int]>([:])

    /// Records `adding` bytes written to `directory`; true when it must be listed now.
    func needsScan(_ directory: String, adding: Int, limit: Int) -> Bool {
        totals.withLock { t in
            guard let known = t[directory] else { return true }
            t[directory] = known + adding
            return known + adding > limit
        }
    }

    func scanned(_ directory: String, total: Int) {
        totals.withLock { $0[directory] = total }
    }
}
