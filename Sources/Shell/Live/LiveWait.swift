import Transport

/// How the live shell waits between records: on its input (the terminal) and on the
/// recording's file at once, so that a record appended by the writer wakes it at once
/// (inotify, `FileWatch`); without inotify the file is looked at every 20 ms. The terminal
/// loop and `bench live` both wait through it, so the bench measures what the shell does.
///
/// Example: `let w = LiveWait(path: r.path); let (typed, interrupted) = w.next(input: 0); session.refresh()`.
public final class LiveWait {
    private let watch: FileWatch

    public init(path: String) { watch = FileWatch(path: path) }

    /// Waits until `input` (-1: none) is readable, the file was written to, or a signal came
    /// (a Ctrl-C: `interrupted`). After any wake-up the caller refreshes the session.
    public func next(input: Int32) -> (inputReady: Bool, interrupted: Bool) {
        let ready = FDWait.readable([input, watch.fd], timeoutMs: watch.fd >= 0 ? 250 : 20)
        guard let ready else { return (false, true) }
        if ready.contains(watch.fd) { watch.drain() }
        return (input >= 0 && ready.contains(input), false)
    }
}
