#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which file on disk, and in which state: what a cached index is keyed by and checked
/// against (docs/INDEX.md). Device and inode name the file; size, modification and change
/// times say whether it is still the file that was indexed. The change time (ctime) cannot
/// be set back by `touch`, so a rewrite that keeps size and mtime still changes it.
public struct FileIdentity: Sendable, Hashable {
    public var device: UInt64
    public var inode: UInt64
    public var size: UInt64
    public var modifiedNanos: Int64
    public var changedNanos: Int64

    public init(device: UInt64, inode: UInt64, size: UInt64, modifiedNanos: Int64, changedNanos: Int64) {
        self.device = device
        self.inode = inode
        self.size = size
        self.modifiedNanos = modifiedNanos
        self.changedNanos = changedNanos
    }

    init(_ st: stat) {
        #if canImport(Darwin)
        let m = st.st_mtimespec, c = st.st_ctimespec
        #else
        let m = st.st_mtim, c = st.st_ctim
        #endif
        self.init(device: UInt64(truncatingIfNeeded: st.st_dev), inode: UInt64(truncatingIfNeeded: st.st_ino),
                  size: UInt64(truncatingIfNeeded: st.st_size),
                  modifiedNanos: Int64(m.tv_sec) &* 1_000_000_000 &+ Int64(m.tv_nsec),
                  changedNanos: Int64(c.tv_sec) &* 1_000_000_000 &+ Int64(c.tv_nsec))
    }

    /// The cache entry's file name: one entry per file (device and inode), so that a file
    /// that grew finds the index of its shorter self and extends it.
    var entryName: String { String(device, radix: 16) + "-" + String(inode, radix: 16) + ".qmpidx" }
}
