import Analysis
import Capture
import QMP
import Recording

/// The dashcam's event triggers (`record --ring --trigger ...`): filters in the shell's
/// filter language, and the VM model's rule for a STOP no command caused.
///
/// ```
/// --trigger default                       the defaults below
/// --trigger 'BLOCK_JOB_ERROR'             any filter (the shell's `filter` syntax)
/// --trigger 'event=MEMORY_DEVICE_SIZE_CHANGE and data.size < 1G'
/// --trigger unexplained-stop              a STOP the VM model does not put down to a command
/// ```
///
/// Each record is matched as the file holds it (redacted). A filter sees one record at a time
/// (`time` terms and record numbers mean nothing here); the STOP rule folds the VM model
/// (`ModelFold`, the one the shell's `state` and the analyses use) over the recent records,
/// so "caused by a command" is decided by the model's own pairing of `stop`, `migrate`
/// and their events, never by a second rule.
public final class IncidentTriggers: IncidentDetector, @unchecked Sendable {
    /// One trigger rule.
    public enum Rule: Sendable, CustomStringConvertible {
        case filter(FilterExpression)
        case unexplainedStop

        public var description: String {
            switch self {
            case .filter(let f): return f.text
            case .unexplainedStop: return Self.unexplainedStopWord
            }
        }

        static let unexplainedStopWord = "unexplained-stop"
    }

    /// GUEST_PANICKED, BLOCK_IO_ERROR, WATCHDOG, a SHUTDOWN the guest asked for or a panic
    /// caused (docs/QEMU-FACTS.md, "SHUTDOWN and RESET": SHUTDOWN's `reason` is `guest-shutdown`,
    /// `guest-reset` or `guest-panic` for those).
    public static let defaultFilter = "GUEST_PANICKED or BLOCK_IO_ERROR or WATCHDOG or (SHUTDOWN and data.reason ~ /^guest-/)"

    /// The rules of `--trigger` values: `default`, `unexplained-stop`, or a filter.
    public static func rules(_ specs: [String]) throws(FilterParseError) -> [Rule] {
        var out: [Rule] = []
        for spec in specs.isEmpty ? ["default"] : specs {
            switch spec {
            case "default":
                out.append(.filter(try FilterExpression(parsing: defaultFilter)))
                out.append(.unexplainedStop)
            case Rule.unexplainedStopWord:
                out.append(.unexplainedStop)
            default:
                out.append(.filter(try FilterExpression(parsing: spec)))
            }
        }
        return out
    }

    public let rules: [Rule]
    private let watchesStops: Bool
    /// The recent records the VM model folds when a STOP comes (the `stop` or `migrate`
    /// that explains a STOP comes shortly before it).
    private var recent: [[UInt8]] = []
    private var recentHead = 0
    static let recentLimit = 512
    static let recentLineLimit = 16 << 10
    private let headerLine = RecordEncoder.headerLine(RecordingHeader(startMicros: 0, source: "dashcam", mode: .client))

    public init(rules: [Rule]) {
        self.rules = rules
        watchesStops = rules.contains { if case .unexplainedStop = $0 { return true } else { return false } }
        var kinds: Set<RecordKind>? = []
        for rule in rules {
            switch rule {
            case .filter(let f): kinds = f.possibleKinds.flatMap { k in kinds.map { $0.union(k) } }
            case .unexplainedStop: kinds?.insert(.event)
            }
        }
        self.kinds = kinds
    }

    /// The record kinds any rule can fire on (nil: any); others are not matched at all, so
    /// that polls and replies cost nothing with the default rules.
    private let kinds: Set<RecordKind>?

    public func observe(line: [UInt8], kind: RecordKind, connection: UInt32, time: Int64) -> IncidentTrigger? {
        guard kind != .note else { return nil }
        if watchesStops { remember(line) }
        guard kind.isMessage, kinds?.contains(kind) ?? true, let one = Self.recording(headerLine, [line]) else { return nil }
        let name = one.name(0) ?? kind.rawValue
        for rule in rules {
            switch rule {
            case .filter(let f):
                if f.possibleKinds?.contains(kind) ?? true, f.matches(one, 0) { return IncidentTrigger(source: "event", name: name, detail: "matches \(f.text)") }
            case .unexplainedStop:
                guard kind == .event, name == "STOP", let cause = unexplainedStop() else { continue }
                return IncidentTrigger(source: "event", name: name, detail: "STOP not caused by a command (VM model: \(cause))")
            }
        }
        return nil
    }

    private func remember(_ line: [UInt8]) {
        // A schema or a long query reply tells the model nothing about run states; keeping
        // it would let 512 such lines hold a lot of memory.
        guard line.count <= Self.recentLineLimit else { return }
        if recent.count < Self.recentLimit {
            recent.append(line)
        } else {
            recent[recentHead] = line
            recentHead = (recentHead + 1) % Self.recentLimit
        }
    }

    /// Folds the VM model over the recent records (the STOP last): the cause in the model's
    /// words when the STOP paused the VM and no command explains it; nil when a command does
    /// (`stop`, a migration's switch-over) or the STOP belongs to a shutdown.
    private func unexplainedStop() -> String? {
        let ordered = Array(recent[recentHead...] + recent[..<recentHead])
        guard let r = Self.recording(headerLine, ordered), r.count > 0 else { return nil }
        var fold = ModelFold(recording: r)
        let selection = ModelSelection(recording: r)
        for i in 0..<r.count { fold.apply(i, selection) }
        let state = fold.model.state
        guard state.runState == .paused || state.runState == .panicked else { return nil }
        let cause = state.runStateCause ?? "STOP"
        if let c = state.runStateCauseRecord, c < r.count, r.kind(c) == .command { return nil }
        if cause.hasPrefix("migration") { return nil }
        return cause
    }

    /// A recording in memory of the given lines.
    static func recording(_ header: [UInt8], _ lines: [[UInt8]]) -> Recording? {
        var bytes = header
        for l in lines { bytes += l }
        return try? Recording(bytes: FileBytes(bytes: bytes), path: "dashcam")
    }
}
