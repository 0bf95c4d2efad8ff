#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A descriptor that becomes readable when a file is written to: what the live shell waits
/// on (beside the terminal) to print a record as soon as a recorder appends it. On Linux it
/// is an inotify watch (`IN_MODIFY`); elsewhere, or when inotify is unavailable, `fd` is -1
/// and the caller falls back to waking up every few milliseconds.
///
/// Example: `let w = FileWatch(path: p); FDWait.readable([0, w.fd], timeoutMs: 100); w.drain()`.
public final class FileWatch {
    public let fd: Int32

    public init(path: String) {
        #if os(Linux)
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        if fd >= 0 && inotify_add_watch(fd, path, UInt32(IN_MODIFY | IN_CLOSE_WRITE)) < 0 {
            close(fd)
            self.fd = -1
        } else {
            self.fd = fd
        }
        #else
        fd = -1
        #endif
    }

    /// Reads the pending notifications (their content does not matter: the file is re-read).
    public func drain() {
        guard fd >= 0 else { return }
        var buf = [UInt8](repeating: 0, count: 4096)
        while buf.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
    }

    deinit { if fd >= 0 { close(fd) } }
}

extension FDWait {
    /// Waits up to `timeoutMs` for any of `fds` (negative ones are skipped) to be readable
    /// (or hung up). Returns the readable ones; nil when a signal cut the wait short, so
    /// that the caller sees a Ctrl-C at once.
    public static func readable(_ fds: [Int32], timeoutMs: Int32) -> [Int32]? {
        var p = fds.filter { $0 >= 0 }.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let r = poll(&p, nfds_t(p.count), timeoutMs)
        if r < 0 { return errno == EINTR ? nil : [] }
        return p.filter { $0.revents != 0 }.map(\.fd)
    }
}
