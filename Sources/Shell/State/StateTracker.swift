import Analysis
import QMP
import Recording

/// Computes `VMState`s by folding the VM model (`VMModel`, module Analysis: the same rules
/// every analysis folds) over a recording's records, in order.
///
/// It keeps checkpoints, a copy of the fold every `checkpointInterval` records (default
/// 4096), so that `state(at:)` for any record replays at most `checkpointInterval` records
/// from the nearest checkpoint before it. Checkpoints are built lazily, up to the highest
/// record asked for; the first call for a far record therefore replays everything before
/// it once. It also remembers where the last call ended, so stepping forward through a
/// recording replays only the records in between. Checkpointing is all it adds: it holds
/// no rule of its own.
///
/// Not thread-safe: it caches checkpoints and its position; use one tracker per thread
/// (or guard it with a lock).
public final class StateTracker {
    public private(set) var recording: Recording
    /// Records between two checkpoints.
    public let checkpointInterval: Int

    private var selection: ModelSelection
    /// `checkpoints[k]` is the fold before record `k * checkpointInterval`.
    private var checkpoints: [ModelFold]
    /// Where the last call ended: the fold after `cursorNext` records.
    private var cursor: ModelFold
    private var cursorNext = 0

    /// `checkpointInterval` below 1 is taken as 1; `Int.max` means no checkpoints (every
    /// call replays from the start or from the last position).
    public init(recording: Recording, checkpointInterval: Int = 4096) {
        self.recording = recording
        self.checkpointInterval = max(1, checkpointInterval)
        selection = ModelSelection(recording: recording)
        checkpoints = [ModelFold(recording: recording)]
        cursor = ModelFold(recording: recording)
    }

    /// Goes on over `grown`, the same recording extended (`Recording.extended()`): the
    /// checkpoints and the last position stay (the records they folded are unchanged), so
    /// `state` at the live end folds only the records that arrived since. The selection is
    /// made again, because new records may carry names the old index did not have.
    public func extend(to grown: Recording) {
        guard grown !== recording else { return }
        recording = grown
        selection = ModelSelection(recording: grown)
        for k in checkpoints.indices { checkpoints[k].rebind(to: grown) }
        cursor.rebind(to: grown)
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
        return cursor.model.state
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
            var r: ModelFold
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

    private func replay(_ r: inout ModelFold, from: Int, to: Int) {
        var i = from
        while i < to {
            r.apply(i, selection)
            i += 1
        }
    }
}
