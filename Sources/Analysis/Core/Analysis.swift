import QMP
import Recording

/// One analysis of a recording: what it listens to, how it folds records into state, and
/// the typed result it ends with. Every analysis (`balloon`, `rtc`, ..., `triage`) conforms,
/// so the CLI, the shell and the notebooks reach them the same way (through `Analyses`).
///
/// The runner (`AnalysisRunner`) reads the recording once, in order, and hands each
/// analysis only the records named in its `interest` (filtered on the index, before any
/// decoding), with commands already paired to their replies. An analysis keeps only the
/// series it reports, so memory does not grow with the recording.
///
/// Example: `BalloonAnalysis.interest` names BALLOON_CHANGE, `balloon` and `query-balloon`;
/// it never sees a `query-status`.
public protocol Analysis: SendableMetatype {
    associatedtype Result: AnalysisResult
    /// The name used on the command line (`balloon`).
    static var name: String { get }
    /// One line for `--help`, `--list` and completion.
    static var summary: String { get }
    /// Which clock the analysis measures time with (said in every output).
    static var clock: AnalysisClock { get }
    /// The records it wants.
    static var interest: Interest { get }
    /// Whether it reads the VM model (`context.vm`): the runner then folds the model once
    /// per pass, before handing each input to the analyses, so every analysis of a pass
    /// reads the same model after the same input.
    static var usesModel: Bool { get }

    init(context: AnalysisContext)
    mutating func consume(_ input: AnalysisInput)
    /// Called once after the last record of the range.
    func finish() -> Result
}

/// A finished analysis, renderable every way the project needs.
public protocol AnalysisResult: Sendable {
    /// The analysis-specific members of the JSON document (the envelope is added around them).
    var jsonMembers: [JSONObject.Member] { get }
    /// A table for a terminal; `width` is the terminal width (long cells are cut).
    func table(colors: Bool, width: Int) -> String
    /// The main series or list as CSV (header line first).
    func csv() -> String
    /// A standalone SVG plot, for series; `nil` otherwise.
    func svg() -> String?
    /// A Unicode chart for the shell's `plot`, for series; `nil` otherwise.
    func terminalChart(width: Int, height: Int) -> String?
    /// What is worth a person's attention, one finding per occurrence.
    var findings: [AnalysisFinding] { get }
    /// The message for a group of findings with the same code and subject (more than one);
    /// `nil` for a generic one. Example: "guest set its clock 412 times (steps from -65 s to +65 s)".
    func describe(_ group: FindingGroup) -> String?
    /// `findings` grouped and ranked (what reports, triage and the shell show).
    var groupedFindings: [AnalysisFinding] { get }
}

extension Analysis {
    public static var usesModel: Bool { false }
}

extension AnalysisResult {
    public func svg() -> String? { nil }
    public func terminalChart(width: Int, height: Int) -> String? { nil }
    public func describe(_ group: FindingGroup) -> String? { nil }
    public var groupedFindings: [AnalysisFinding] {
        FindingGroup.group(findings, describe: describe).sorted(by: AnalysisFinding.ranked)
    }
}

/// The clock an analysis measures with. docs/QEMU-FACTS.md, "Event throttling": the recorder's
/// receive time and QEMU's event timestamp are kept apart, and each analysis says which
/// one it uses.
public enum AnalysisClock: String, Sendable {
    /// The recorder's monotonic receive time (`t` of each record).
    case receive
    /// QEMU's event timestamp (host wall clock when the event was created).
    case qemuTimestamp = "qemu-timestamp"

    public var note: String {
        switch self {
        case .receive:
            return "times are the recorder's monotonic receive times (t_ns since the recording's start); QEMU's event timestamps are shown as qemu_us where used"
        case .qemuTimestamp:
            return "times are QEMU's event timestamps (host wall clock when each event was created)"
        }
    }
}

/// The records an analysis wants, by name; filtered on the index before decoding.
public struct Interest: Sendable {
    /// Event names.
    public var events: [String] = []
    /// Command names whose commands *and* replies (paired by the runner) are delivered.
    public var commands: [String] = []
    /// Every command and reply (the `commands` analysis).
    public var allCommands = false
    /// Connection `close` records (to end what was pending on that connection) and greetings
    /// (a new QEMU process starts everything over).
    public var closes = false
    /// Every error reply, also those that answer no recorded command or a line that was not
    /// a command (their `command.name` is empty, `command.record` the line's or -1).
    public var errorReplies = false

    public init(events: [String] = [], commands: [String] = [], allCommands: Bool = false, closes: Bool = false,
                errorReplies: Bool = false) {
        self.events = events; self.commands = commands; self.allCommands = allCommands; self.closes = closes
        self.errorReplies = errorReplies
    }

    /// Everything the VM model (`VMModel`) reads, plus `extra`.
    public static func model(plus extra: Interest = Interest()) -> Interest {
        var i = VMModel.interest
        i.events += extra.events.filter { !i.events.contains($0) }
        i.commands += extra.commands.filter { !i.commands.contains($0) }
        i.allCommands = i.allCommands || extra.allCommands
        i.closes = true
        i.errorReplies = true
        return i
    }
}

/// What the runner hands an analysis: one record of interest, already classified.
public enum AnalysisInput {
    case event(EventInput)
    case command(CommandInput)
    case reply(ReplyInput)
    /// A connection ended; commands still outstanding on it will never be answered.
    case close(record: Int, time: Int64, connection: UInt32, unanswered: [PendingCommand])
    /// QEMU greeted on a connection; `newProcess` when it is a new QEMU process (see
    /// `InputDriver`): everything VM-scoped starts over.
    case greeting(record: Int, time: Int64, connection: UInt32, newProcess: Bool)
}

extension AnalysisInput {
    /// The record the input comes from.
    public var record: Int {
        switch self {
        case .event(let e): return e.record
        case .command(let c): return c.record
        case .reply(let r): return r.record
        case .close(let record, _, _, _), .greeting(let record, _, _, _): return record
        }
    }
}

public struct EventInput {
    public var record: Int
    public var time: Int64
    public var connection: UInt32
    public var name: String
    /// Lazy access to the members of the message.
    public var view: RecordView
    /// QEMU's timestamp in µs since the epoch, when present.
    public var qemuMicros: Int64? { view.qemuMicros }
}

public struct CommandInput {
    public var record: Int
    public var time: Int64
    public var connection: UInt32
    public var name: String
    public var view: RecordView
}

/// A command still waiting for (or matched to) its reply.
public struct PendingCommand: Sendable, Hashable {
    public var record: Int
    public var time: Int64
    public var connection: UInt32
    public var name: String
    /// Identity of the `id` (`IDKey.none`: none); equal id values have equal keys.
    public var idKey: IDKey
}

public struct ReplyInput {
    public var record: Int
    public var time: Int64
    public var connection: UInt32
    /// The command this reply answers (matched by id, per connection: docs/QEMU-FACTS.md "Reply").
    public var command: PendingCommand
    /// `nil` for a `return`; the error class for an `error` reply.
    public var errorClass: String?
    public var view: RecordView
    public var isError: Bool { errorClass != nil }
    /// The reply's `desc` for errors.
    public var errorDesc: String? { view.string("error", "desc") }
    /// Latency from the command's receive time to the reply's.
    public var latency: Int64 { time - command.time }
}

/// What every analysis knows about the recording and the range it covers.
public struct AnalysisContext: Sendable {
    public let recording: Recording
    /// Wall clock of t = 0 in µs since the epoch (from the header), when known.
    public let startMicros: Int64?
    /// First record in range and one past the last.
    public let firstRecord: Int
    public let endRecord: Int
    /// The range in ns since the start.
    public let rangeStart: Int64
    public let rangeEnd: Int64
    /// The VM model of this pass, after the input being consumed (for analyses whose
    /// `usesModel` is true; shared by every analysis of the pass).
    public let vm: SharedVM

    public init(recording: Recording, from: Int64?, to: Int64?) {
        self.recording = recording
        vm = SharedVM(recording: recording)
        startMicros = recording.header?.startMicros
        let first = from.map { recording.firstIndex(atOrAfter: $0) } ?? 0
        let end = to.map { recording.firstIndex(atOrAfter: $0 &+ 1) } ?? recording.count
        firstRecord = first
        endRecord = max(first, end)
        rangeStart = from ?? 0
        let lastTime = end > first ? recording.time(end - 1) : rangeStart
        if let to {
            rangeEnd = max(rangeStart, min(to, max(recording.duration, lastTime)))
        } else {
            rangeEnd = max(rangeStart, recording.duration)
        }
    }

    /// ISO 8601 wall clock of a time since the start; `nil` without a header.
    public func wall(_ t: Int64) -> String? {
        startMicros.map { WallClock.iso8601(micros: $0.addingSaturating(t / 1000)) }
    }

    public func view(_ record: Int) -> RecordView { RecordView(recording: recording, index: record) }
}

/// The VM model one analysis pass folds, shared by the analyses of the pass (a reference:
/// `AnalysisContext` is copied into each of them). Only the runner mutates it.
public final class SharedVM: @unchecked Sendable {
    public internal(set) var model: VMModel
    /// What the input of record `incidentsRecord` revealed (see `VMModel.apply`).
    public internal(set) var incidents: [Incident] = []
    public internal(set) var incidentsRecord = -1

    init(recording: Recording) { model = VMModel(recording: recording) }

    func apply(_ input: AnalysisInput) {
        let found = model.apply(input)
        if !found.isEmpty {
            incidents = found
            incidentsRecord = input.record
        }
    }
}
