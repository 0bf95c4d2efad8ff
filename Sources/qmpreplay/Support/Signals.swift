import Dispatch

#if canImport(Glibc)
import Glibc
#endif

/// SIGINT, SIGTERM and SIGHUP for the commands that run until stopped (record, serve,
/// replay). Signal handling lives only here, in the command-line target: the libraries offer
/// a `stop(...)` method, and the command calls it when a signal arrives.
///
/// SIGPIPE is ignored for the whole process (a peer that closes while we write is an error
/// value, never a death); the libraries write with MSG_NOSIGNAL or through swift-nio anyway.
///
/// Example: `Signals.onStop { name in recorder.stop(by: name) }`, then `recorder.run()`.
enum Signals {
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []
    private static let queue = DispatchQueue(label: "qmpreplay.signals")
    nonisolated(unsafe) private static var received: Int32 = 0

    /// Calls `action` (on a private queue) with the signal's name, once per signal received.
    static func onStop(_ action: @escaping @Sendable (String) -> Void) {
        signal(SIGPIPE, SIG_IGN)
        for s in [SIGINT, SIGTERM, SIGHUP] {
            signal(s, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: s, queue: queue)
            src.setEventHandler {
                received = s
                action(name(s))
            }
            src.resume()
            sources.append(src)
        }
    }

    /// SIGUSR1 for `record --ring`: calls `action` with the signal's name (on the private
    /// queue), once per signal; the recorder writes an incident file.
    static func onTrigger(_ action: @escaping @Sendable (String) -> Void) {
        signal(SIGUSR1, SIG_IGN)
        let src = DispatchSource.makeSignalSource(signal: SIGUSR1, queue: queue)
        src.setEventHandler { action(name(SIGUSR1)) }
        src.resume()
        sources.append(src)
    }

    /// The last signal received, by name (nil before any).
    static var last: String? { received == 0 ? nil : name(received) }

    static func name(_ s: Int32) -> String {
        switch s {
        case SIGINT: return "SIGINT"
        case SIGTERM: return "SIGTERM"
        case SIGHUP: return "SIGHUP"
        case SIGUSR1: return "SIGUSR1"
        default: return "signal \(s)"
        }
    }
}
