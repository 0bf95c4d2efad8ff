import Logging
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// The command line's swift-log handler: library diagnostics (a client connected, a peer
/// dropped, a write failed and was retried) as one line each on standard error,
/// `qmpreplay: client 2 connected (unix) [conn=2]`, warnings and errors marked like the
/// CLI's own (`warning:` / `error:`, coloured only on a terminal). `--quiet` raises the
/// level to warnings; `QMPREPLAY_LOG=debug|trace` lowers it.
///
/// `before` runs before each line is written (the recorder clears its status line there).
struct CLILogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    let before: (@Sendable () -> Void)?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let s = Style(Output.stderr)
        var line = "qmpreplay: "
        switch event.level {
        case .warning: line += s.yellow("warning:") + " "
        case .error, .critical: line += s.red("error:") + " "
        default: break
        }
        line += LogText.line(event.message, handler: metadata, event: event.metadata)
        Self.serialized {
            before?()
            Output.stderr.line(line)
            Output.stderr.flush()
        }
    }

    /// Runs `body` while no log line is being written: libraries log from their own threads
    /// (the recorder's event loop and disk thread), and the recorder's status line is drawn
    /// from a timer, all on standard error.
    static func serialized(_ body: () -> Void) {
        stderrLock.withLock { _ in body() }
    }

    private static let stderrLock = Guarded(())

    /// Installs the handler for the whole process (once; later calls only change the level).
    static func install(quiet: Bool = false, before: (@Sendable () -> Void)? = nil) {
        var level: Logger.Level = quiet ? .warning : .info
        if let env = getenvString("QMPREPLAY_LOG"), let l = Logger.Level(rawValue: env) { level = l }
        let chosen = level
        Installed.level = chosen
        Installed.before = before
        if !Installed.done {
            Installed.done = true
            LoggingSystem.bootstrap { _ in CLILogHandler(logLevel: Installed.level, before: Installed.before) }
        }
    }

    private enum Installed {
        nonisolated(unsafe) static var done = false
        nonisolated(unsafe) static var level: Logger.Level = .info
        nonisolated(unsafe) static var before: (@Sendable () -> Void)?
    }
}

private func getenvString(_ name: String) -> String? {
    guard let p = getenv(name) else { return nil }
    return String(cString: p)
}
