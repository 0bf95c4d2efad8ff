#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// TRANSITIONAL (issue 15): what `serve` and `replay` still poll until they move onto
/// swift-nio and `Signals.onStop`; delete it then. The recorder no longer uses it.
/// SIGINT/SIGTERM as a file descriptor that poll() can watch (the self-pipe trick), so the
/// socket loops stop cleanly: flush, close records, trailer.
enum StopSignal {
    nonisolated(unsafe) private static var pipeFDs: [Int32] = [-1, -1]
    nonisolated(unsafe) private(set) static var received: Int32 = 0

    /// The read end to poll; installs the handlers on first use.
    static func install() -> Int32 {
        if pipeFDs[0] >= 0 { return pipeFDs[0] }
        var fds: [Int32] = [0, 0]
        _ = pipe(&fds)
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        pipeFDs = fds
        signal(SIGPIPE, SIG_IGN)
        for s in [SIGINT, SIGTERM, SIGHUP] {
            signal(s) { sig in
                StopSignal.received = sig
                var b: UInt8 = UInt8(truncatingIfNeeded: sig)
                _ = write(StopSignal.pipeFDs[1], &b, 1)
            }
        }
        return fds[0]
    }

    static var name: String {
        switch received {
        case SIGINT: return "SIGINT"
        case SIGTERM: return "SIGTERM"
        case SIGHUP: return "SIGHUP"
        default: return "signal \(received)"
        }
    }
}
