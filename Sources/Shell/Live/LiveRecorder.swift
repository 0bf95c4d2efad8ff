import Capture
import Dispatch
import Logging
import QMP
import Recording
import Transport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The live shell's connection to QEMU (`shell --connect ADDR -o FILE`): a client-mode
/// recorder (`ClientRecorder`, the one `record --connect` runs, so the file is the same:
/// format, crash safety, redaction) running on a thread of its own, and the way the shell's
/// `send` reaches QEMU through it. The shell reads what is recorded from the file, as it
/// would read a file another process writes.
///
/// Example: `let live = try LiveRecorder(config: cfg, options: opts); let r = try live.waitForFile()`.
public final class LiveRecorder: Sendable {
    public let recorder: ClientRecorder
    public let path: String
    /// What the recorder logs (QEMU went away, came back): the shell prints it between
    /// records instead of over the line being typed.
    public let log: BufferingLogHandler.Buffer
    private let outcome = Guarded<Result<CaptureOutcome, Error>?>(nil)
    private let thread = Guarded<JoinableThread?>(nil)

    public init(config: ClientModeConfig, options: CaptureOptions) {
        let log = BufferingLogHandler.Buffer()
        self.log = log
        path = options.output
        recorder = ClientRecorder(config: config, options: options,
                                  context: RecorderContext(logger: Logger(label: "qmpreplay.shell.live") { _ in BufferingLogHandler(log) }))
    }

    /// Starts recording; returns once the file holds its header (QEMU greeted), or throws
    /// why nothing could be recorded (QEMU unreachable, the output not creatable). `waiting`
    /// is called once when that takes more than a second (with `--reconnect` the recorder
    /// waits for QEMU to come up): the caller says so.
    public func start(waiting: () -> Void = {}) throws -> Recording {
        let since = WallClock.monotonicNanos()
        var said = false
        let t = JoinableThread { [self] in
            let r = Result { try self.recorder.run() }
            self.outcome.withLock { $0 = r }
        }
        thread.withLock { $0 = t }
        while true {
            if let done = outcome.withLock({ $0 }), case .failure(let e) = done { throw e }
            if recorder.progress != nil, let r = try? Recording(path: path), r.header != nil { return r }
            if outcome.withLock({ $0 }) != nil { return try Recording(path: path) }
            if !said && WallClock.monotonicNanos() - since > 1_000_000_000 {
                said = true
                waiting()
            }
            usleep(5_000)
        }
    }

    /// Whether the recorder has ended (QEMU went away without --reconnect, or `stop`).
    public var finished: Bool { outcome.withLock { $0 != nil } }

    /// Sends `command` and waits for QEMU's reply (a return or an error message). Ctrl-C
    /// stops the wait (the reply, when it comes, is still recorded).
    public func send(_ command: RecorderCommand) throws(ShellError) -> QMPMessage {
        let box = ReplyBox()
        recorder.send(command) { r in
            box.reply.withLock { $0 = r }
            box.wake.signal()
        }
        while true {
            if let r = box.reply.withLock({ $0 }) {
                switch r {
                case .success(let m): return m
                case .failure(let e): throw ShellError("send: \(e.reason)")
                }
            }
            if Interrupt.pending {
                Interrupt.clear()
                throw ShellError("interrupted while waiting for the reply to \(command.name); it will be recorded when it comes")
            }
            box.wake.wait(nanoseconds: 50_000_000)
        }
    }

    /// Ends the recording (close record, trailer) and waits for the recorder to finish.
    public func stop() {
        recorder.stop(by: "the shell's quit")
        let t = thread.withLock { t -> JoinableThread? in
            defer { t = nil }
            return t
        }
        t?.join()
    }
}

/// Where the recorder's event loop leaves the reply to one `send`.
private final class ReplyBox: Sendable {
    let reply = Guarded<Result<QMPMessage, SocketError>?>(nil)
    let wake = WorkerWakeup()
}
