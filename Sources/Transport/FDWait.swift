#if canImport(Glibc)
import Glibc
#endif

/// Waiting on one descriptor, for the few places that write without an event loop: the
/// recorder's disk thread when a pipe or FIFO it writes to is full, and the blocking helpers
/// of the test peers. Every `poll(2)` of the project is here, in the transport layer.
///
/// Example: `if FDWait.writable(fd, timeoutMs: 50) { write(fd, ...) }`.
public enum FDWait {
    /// Waits up to `timeoutMs` for `fd` to take more bytes (or to have an error to report);
    /// false when the time ran out first. A signal does not cut the wait short.
    @discardableResult
    public static func writable(_ fd: Int32, timeoutMs: Int32) -> Bool {
        wait(fd, for: Int16(POLLOUT), timeoutMs: timeoutMs) != 0
    }

    /// Waits up to `timeoutMs` for any of `events` (`POLLIN`, `POLLOUT`; hang-ups and errors
    /// are always reported) on `fd`; returns what happened (0: the time ran out).
    public static func wait(_ fd: Int32, for events: Int16, timeoutMs: Int32) -> Int16 {
        var p = pollfd(fd: fd, events: events, revents: 0)
        while true {
            let r = poll(&p, 1, timeoutMs)
            if r < 0 && errno == EINTR { continue }
            return r > 0 ? p.revents : 0
        }
    }
}
