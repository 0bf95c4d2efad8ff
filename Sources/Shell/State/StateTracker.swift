import QMP
import Recording

/// Computes `VMState`s by replaying a recording's records in order.
///
/// It keeps checkpoints, a full replay state every `checkpointInterval` records (default
/// 4096), so that `state(at:)` for any record replays at most `checkpointInterval` records
/// from the nearest checkpoint before it. Checkpoints are built lazily, up to the highest
/// record asked for; the first call for a far record therefore replays everything before
/// it once. It also remembers where the last call ended, so stepping forward through a
/// recording replays only the records in between.
///
/// Replaying reads each record's envelope from the index and decodes only what matters:
/// events the state depends on, and of other messages only what pairs replies with
/// commands (`ReplyMatcher`, per connection); a reply's value is parsed only when its
/// command matters (`query-status`, `query-balloon`, `query-rx-filter`, ...).
///
/// The rules (QMP-NOTES.md is the source of each fact):
/// - STOP → paused. Cause: an outstanding `stop` (or `migrate`) command, on the same
///   connection if there is one, else on any; else an event just before it (within 1 s,
///   QEMU timestamps when both have them, else record times): BLOCK_IO_ERROR action
///   stop, WATCHDOG action pause; else "STOP event". A STOP right after GUEST_PANICKED
///   (pause or poweroff) leaves the guest `panicked`; one right after SHUTDOWN leaves it
///   `shutdown` (QEMU under `-no-shutdown` stays up, stopped, in its shutdown state).
/// - RESUME → running ("cont command (#N)" when a `cont` is outstanding, else "RESUME
///   event"). SUSPEND → suspended, WAKEUP → running ("WAKEUP after system_wakeup (#N)"
///   or "WAKEUP event"). SHUTDOWN → shutdown ("SHUTDOWN reason R", " (guest)" when
///   `guest` is true).
/// - GUEST_PANICKED with action pause or poweroff → panicked (QEMU's `guest-panicked`;
///   poweroff is followed by SHUTDOWN guest-panic); action run changes nothing.
/// - RESET is recorded in `lastReset` and leaves the run state alone, except that a
///   reset of a shut down or panicked guest leaves QEMU in prelaunch (system/runstate.c,
///   `main_loop_should_exit`): paused, "RESET after shutdown (QEMU goes to prelaunch)".
/// - A `query-status` reply sets the run state when it disagrees (its status mapped:
///   running; paused, prelaunch, inmigrate, postmigrate, finish-migrate, restore-vm,
///   save-vm, watchdog, io-error, internal-error, debug, colo → paused; suspended;
///   shutdown; guest-panicked → panicked; anything else by `running`) and keeps the
///   earlier, better explanation when it agrees. The raw answer is in `lastStatus`.
/// - Balloon: BALLOON_CHANGE `actual` and successful `query-balloon` `actual`; target
///   from the `balloon` command, marked accepted or not by its reply.
/// - RTC: RTC_CHANGE `offset` is absolute; kept per `qom-path` ("" when absent).
/// - rx-filter latch per NIC: armed at creation (a NIC first seen is armed); an event
///   disarms it (an event for a disarmed NIC is counted in `eventsWhileDisarmed`); a
///   *successful* `query-rx-filter` reply re-arms the named NIC (creating its entry), or
///   every known NIC when the query named none (`lastRearm` is the query's record). A
///   failed query and RESET do not re-arm; a new QEMU process starts with none known.
/// - Block jobs: JOB_STATUS_CHANGE sets the status; BLOCK_JOB_READY/COMPLETED/CANCELLED
///   carry type, len, offset, speed; COMPLETED with `error` is `failed`; BLOCK_JOB_ERROR
///   notes the error. A job that reached concluded/null (or COMPLETED/CANCELLED) is
///   finished and shown with its outcome; the 8 most recently finished are kept.
///   `query-block-jobs` replies update progress too.
/// - VNC/SPICE: *_CONNECTED adds a client (key: protocol, client host, service/port),
///   *_INITIALIZED marks it initialized (auth, SASL/x509 user, SPICE channel),
///   *_DISCONNECTED removes it.
/// - Last error: the last error reply, paired with its command by `ReplyMatcher`.
/// - Events are VM-wide: an event with the same name, QEMU timestamp and data as one
///   applied less than 2 s (record time) before is the same event delivered on another
///   connection, and is applied once.
/// - A greeting after QEMU closed every open connection is a new QEMU process: the
///   VM-scoped state starts over (run state unknown until something says).
///
/// Not thread-safe: it caches checkpoints and its position; use one tracker per thread
/// (or guard it with a lock).
public final class StateTracker {
    public let recording: Recording
    /// Records between two checkpoints.
    public let checkpointInterval: Int

    private let env: StateEnv
    /// `checkpoints[k]` is the replay state before record `k * checkpointInterval`.
    private var checkpoints: [StateReplay] = [StateReplay()]
    /// Where the last call ended: the replay state after `cursorNext` records.
    private var cursor = StateReplay()
    private var cursorNext = 0

    /// `checkpointInterval` below 1 is taken as 1; `Int.max` means no checkpoints (every
    /// call replays from the start or from the last position).
    public init(recording: Recording, checkpointInterval: Int = 4096) {
        self.recording = recording
        self.checkpointInterval = max(1, checkpointInterval)
        env = StateEnv(recording: recording)
    }

    /// Checkpoints built so far (the first is the empty state).
    public var checkpointCount: Int { checkpoints.count }

    /// The state after applying record `index` (and every record before it). A negative
    /// index gives the state before any record; an index past the end, the final state.
    public func state(at index: Int) -> VMState {
        guard !recording.isEmpty, index >= 0 else { return VMState() }
        let target = min(index, recording.count - 1) + 1  // records to apply
        let k = target / checkpointInterval
        buildCheckpoints(through: k)
        let base = k * checkpointInterval
        if !(cursorNext <= target && cursorNext >= base) {
            cursor = checkpoints[k]
            cursorNext = base
        }
        replay(&cursor, from: cursorNext, to: target)
        cursorNext = target
        return cursor.state
    }

    /// Human lines for the shell's `state` command.
    public func render(_ s: VMState, at index: Int) -> [String] {
        StateRender.lines(s, at: index, recording: recording)
    }

    private func buildCheckpoints(through k: Int) {
        while checkpoints.count <= k {
            let n = checkpoints.count
            let from = (n - 1) * checkpointInterval
            let to = n * checkpointInterval
            var r: StateReplay
            var start: Int
            if cursorNext >= from && cursorNext <= to {
                r = cursor
                start = cursorNext
            } else {
                r = checkpoints[n - 1]
                start = from
            }
            replay(&r, from: start, to: to)
            checkpoints.append(r)
        }
    }

    private func replay(_ r: inout StateReplay, from: Int, to: Int) {
        var i = from
        while i < to {
            r.apply(i, env)
            i += 1
        }
    }
}
