import QMP

/// The kinds of file `qmpreplay import` reads (docs/IMPORT.md; docs/QEMU-FACTS.md, "Formats
/// people already have QMP traffic in"). Raw values are the names given to `--format` and
/// stored in the recording's `format` label.
public enum ImportFormat: String, CaseIterable, Sendable {
    /// Plain QMP text: socat, `-qmp stdio`, pretty JSON, several objects per line.
    case qmpLines = "qmp-lines"
    /// libvirt's `tests/qemucapabilitiesdata/caps_*.replies`: command, reply, blank line.
    case libvirtReplies = "libvirt-replies"
    /// libvirt debug logs with `QEMU_MONITOR_SEND_MSG` / `QEMU_MONITOR_RECV_*` lines, also
    /// when each line is wrapped in another log's JSON (KubeVirt's virt-launcher).
    case libvirtLog = "libvirt-log"
    /// `virsh qemu-monitor-event` output: `event NAME at S.US for domain 'D': DATA`.
    case virshEvents = "virsh-events"
    /// QMP pasted into bug reports, mails and docs: `->`/`<-` arrows, `\` line
    /// continuations, `...` elisions, `>` quoting, prose between messages.
    case qmpTranscript = "qmp-transcript"
    /// A terminal session: shell commands that send QMP (`echo '{...}' | socat - UNIX-CONNECT:...`)
    /// followed by what QEMU answered.
    case shellSession = "shell-session"
    /// The output of QEMU's `qmp-shell` (`(QEMU) query-status`, Python dict replies).
    case qmpShell = "qmp-shell"
    /// qemu-iotests reference output (`tests/qemu-iotests/*.out`): masked timestamps,
    /// commands echoed as Python literals.
    case iotests

    /// One line for `--help`.
    public var summary: String {
        switch self {
        case .qmpLines: return "plain QMP text (socat, -qmp stdio, pretty JSON); exact bytes; times from event timestamps"
        case .libvirtReplies: return "libvirt caps_*.replies test transcript; no timing, records 1 ms apart"
        case .libvirtLog: return "libvirt debug log (QEMU_MONITOR_* lines, also inside virt-launcher JSON logs); one connection per mon="
        case .virshEvents: return "virsh qemu-monitor-event output; events rebuilt in QEMU's layout, one connection per domain"
        case .qmpTranscript: return "QMP pasted in bug reports/docs: -> and <- arrows, \\ continuations, ... elisions, prose"
        case .shellSession: return "terminal session: $ echo '{...}' | socat/nc ... and QEMU's output; one connection per command"
        case .qmpShell: return "qmp-shell output: (QEMU) prompts, Python dict replies, -v echoes; messages rebuilt"
        case .iotests: return "qemu-iotests reference output (*.out): masked timestamps, echoed commands; synthetic times"
        }
    }

    /// What `--format` accepts besides the format names.
    public static let autoName = "auto"

    /// `auto, qmp-lines, ...`: every value `--format` accepts, for messages.
    public static var choices: String { ([autoName] + allCases.map(\.rawValue)).joined(separator: ", ") }
}

/// Something in the source an importer could not take as it was. `line` is 1-based in
/// the source (`endLine` the last line it covers); 0 means the whole input.
///
/// - `unread`: text that was meant to be QMP but could not be read; it is not in the recording.
/// - `kept`: text that could not be read as a QMP message and is kept as an `other` record
///   with its exact bytes.
/// - `caveat`: read, but something is off (a clock going backwards, a reply without its
///   command, nothing found at all).
public struct ImportWarning: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case unread, kept, caveat
    }

    public var line: Int
    public var endLine: Int
    public var message: String
    public var kind: Kind

    public init(line: Int, endLine: Int? = nil, message: String, kind: Kind = .caveat) {
        self.line = line
        self.endLine = max(endLine ?? line, line)
        self.message = message
        self.kind = kind
    }

    /// The warning is about text that was not read as QMP (`unread` or `kept`).
    public var isUnread: Bool { kind != .caveat }

    /// Source lines the warning covers (0 for the whole input).
    public var lineCount: Int { line > 0 ? endLine - line + 1 : 0 }

    public var lineLabel: String { endLine > line ? "lines \(line)-\(endLine)" : "line \(line)" }

    public var description: String { line > 0 ? "\(lineLabel): \(message)" : message }
}

/// A set of source line numbers kept as sorted, merged ranges (`1-4, 9, 12-20`).
public struct LineRanges: Sendable, Hashable, CustomStringConvertible {
    public private(set) var ranges: [ClosedRange<Int>] = []

    public init() {}

    /// Lines in the set.
    public var count: Int { ranges.reduce(0) { $0 + $1.count } }
    public var isEmpty: Bool { ranges.isEmpty }

    public mutating func insert(_ line: Int) { insert(line...line) }

    public mutating func insert(_ r: ClosedRange<Int>) {
        guard r.lowerBound > 0 else { return }
        // Importers add lines in order: the common case appends or extends the last range.
        if let last = ranges.last {
            if r.lowerBound > last.upperBound + 1 { ranges.append(r); return }
            if r.lowerBound >= last.lowerBound {
                ranges[ranges.count - 1] = last.lowerBound...max(last.upperBound, r.upperBound)
                return
            }
        } else {
            ranges.append(r)
            return
        }
        var all = ranges + [r]
        all.sort { $0.lowerBound < $1.lowerBound }
        var merged: [ClosedRange<Int>] = []
        for x in all {
            if let m = merged.last, x.lowerBound <= m.upperBound + 1 {
                merged[merged.count - 1] = m.lowerBound...max(m.upperBound, x.upperBound)
            } else {
                merged.append(x)
            }
        }
        ranges = merged
    }

    public func contains(_ line: Int) -> Bool { ranges.contains { $0.contains(line) } }

    /// `1-4, 9, 12-20`, cut after `limit` ranges (`, ... (N more)`).
    public func label(limit: Int = 12) -> String {
        var parts = ranges.prefix(limit).map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }
        if ranges.count > limit { parts.append("... (\(ranges.count - limit) more)") }
        return parts.joined(separator: ", ")
    }

    public var description: String { label() }
}

/// One record produced by an importer, not yet written.
public struct ImportedRecord: Sendable {
    /// Nanoseconds since the start of the recording; never less than the record before.
    public var time: Int64
    public var connection: UInt32
    public var body: RecordBody

    public init(time: Int64, connection: UInt32, body: RecordBody) {
        self.time = time; self.connection = connection; self.body = body
    }
}

/// What an importer made of a source file: records ready for `RecordingWriter`.
///
/// Example: `try Importer.parse(bytes, format: .libvirtLog).write(to: "out.qmprec", sourceName: "libvirtd.log", format: .libvirtLog)`.
public struct ImportedRecording: Sendable {
    /// Wall clock of t=0 (UTC microseconds) when the source tells it, else 0.
    public var startMicros: Int64
    /// QEMU's version from a greeting or a `query-version` reply, when present (`7.2.0`).
    public var qemuVersion: String?
    public var records: [ImportedRecord]
    /// Everything the importer could not take as it was, in source order (see `ImportWarning`).
    public var warnings: [ImportWarning]
    /// Lines that carry no QMP traffic in this format and were left out by design: log
    /// lines of other subsystems, narration, shell commands that do not talk QMP.
    public var ignored: LineRanges

    public init(
        startMicros: Int64 = 0, qemuVersion: String? = nil, records: [ImportedRecord] = [], warnings: [ImportWarning] = [],
        ignored: LineRanges = LineRanges()
    ) {
        self.startMicros = startMicros; self.qemuVersion = qemuVersion; self.records = records; self.warnings = warnings
        self.ignored = ignored
    }

    /// Records that are QMP messages proper (greeting, command, return, error, event),
    /// as opposed to `other` text, notes and connection records.
    public var messageCount: Int {
        records.reduce(0) { n, r in
            if case .message(_, let m) = r.body, m.kind != .other { return n + 1 }
            return n
        }
    }

    /// Warnings about text that was not read as QMP, in source order.
    public var unread: [ImportWarning] { warnings.filter(\.isUnread) }

    /// Source lines not read as QMP (dropped or kept as `other`).
    public var unreadLineCount: Int { unread.reduce(0) { $0 + max($1.lineCount, 1) } }

    /// The header `write(to:sourceName:format:)` writes.
    public func header(sourceName: String, format: ImportFormat) -> RecordingHeader {
        RecordingHeader(
            startMicros: startMicros, source: sourceName, mode: .import, qemuVersion: qemuVersion,
            labels: [(key: "format", value: format.rawValue)])
    }

    /// Writes header (mode `import`), every record and a trailer with reason `complete`.
    /// `path` `-` writes to standard output.
    public func write(to path: String, sourceName: String, format: ImportFormat) throws(RecordingWriteError) {
        let writer = try RecordingWriter(path: path, header: header(sourceName: sourceName, format: format))
        for r in records {
            try writer.append(time: r.time, connection: r.connection, r.body)
        }
        try writer.finish(reason: "complete")
    }
}

/// Entry point of `qmpreplay import`: bytes in, records out, nothing printed.
public enum Importer {
    public static func parse(_ bytes: [UInt8], format: ImportFormat) -> ImportedRecording {
        switch format {
        case .qmpLines: return QMPLinesImporter.parse(bytes)
        case .libvirtReplies: return LibvirtRepliesImporter.parse(bytes)
        case .libvirtLog: return LibvirtLogImporter.parse(bytes)
        case .virshEvents: return VirshEventsImporter.parse(bytes)
        case .qmpTranscript: return QMPTranscriptImporter.parse(bytes)
        case .shellSession: return ShellSessionImporter.parse(bytes)
        case .qmpShell: return QMPShellImporter.parse(bytes)
        case .iotests: return IotestsImporter.parse(bytes)
        }
    }
}

/// Shared bookkeeping of the importers: opens each connection before its first message,
/// keeps times non-decreasing and picks up QEMU's version.
struct ImportBuilder {
    private(set) var records: [ImportedRecord] = []
    private(set) var warnings: [ImportWarning] = []
    private(set) var ignored = LineRanges()
    private(set) var lastTime: Int64 = 0
    private(set) var messageCount = 0
    private var opened: Set<UInt32> = []
    private var greetingVersion: String?
    private var queryVersion: String?
    /// A version a source states outside QMP (qmp-shell's "Connected to QEMU 8.2.2" banner).
    var statedVersion: String?
    /// Per connection: the command names by id, and the last command (for replies without id).
    private var commandsByID: [UInt32: [JSONValue: String]] = [:]
    private var lastCommand: [UInt32: String] = [:]
    private(set) var sawGreeting = false

    /// Something off about text that was read (kind `caveat`).
    mutating func warn(line: Int, endLine: Int? = nil, _ message: String) {
        warnings.append(ImportWarning(line: line, endLine: endLine, message: message, kind: .caveat))
    }

    /// Text meant as QMP that could not be read and is left out.
    mutating func unread(line: Int, endLine: Int? = nil, _ message: String) {
        warnings.append(ImportWarning(line: line, endLine: endLine, message: message, kind: .unread))
    }

    /// Text that is not a QMP message, kept as an `other` record.
    mutating func kept(line: Int, endLine: Int? = nil, _ message: String) {
        warnings.append(ImportWarning(line: line, endLine: endLine, message: message, kind: .kept))
    }

    /// Lines that carry no QMP in this format (log noise, narration), left out by design.
    mutating func ignore(_ lines: ClosedRange<Int>) { ignored.insert(lines) }
    mutating func ignore(_ line: Int) { ignored.insert(line) }

    func isOpen(_ connection: UInt32) -> Bool { opened.contains(connection) }

    mutating func open(_ connection: UInt32, peer: String, time: Int64) {
        guard !opened.contains(connection) else { return }
        opened.insert(connection)
        append(time: time, connection: connection, .open(peer: peer, info: JSONObject()))
    }

    mutating func close(_ connection: UInt32, by: String, reason: String, time: Int64) {
        guard opened.contains(connection) else { return }
        opened.remove(connection)
        append(time: time, connection: connection, .close(by: by, reason: reason))
    }

    mutating func note(_ text: String, data: JSONObject = JSONObject(), connection: UInt32, time: Int64) {
        append(time: time, connection: connection, .note(text: text, data: data))
    }

    /// Adds a message, opening its connection first when needed.
    mutating func message(_ m: QMPMessage, from: Direction, connection: UInt32, time: Int64, peer: String) {
        open(connection, peer: peer, time: time)
        track(m, connection: connection)
        messageCount += 1
        append(time: time, connection: connection, .message(from: from, m))
    }

    /// Puts a record at `index` with the time of the record before it (or after it, at the
    /// start). Import-wide notes go first, on connection 0, once the whole source is read.
    mutating func insert(_ body: RecordBody, connection: UInt32, at index: Int) {
        let i = min(max(index, 0), records.count)
        let t = i > 0 ? records[i - 1].time : (records.first?.time ?? 0)
        records.insert(ImportedRecord(time: t, connection: connection, body: body), at: i)
    }

    /// Inserts import-wide notes first, in order, on connection 0.
    mutating func insertNotes(_ notes: [(String, JSONObject)]) {
        for (i, n) in notes.enumerated() {
            insert(.note(text: n.0, data: n.1), connection: 0, at: i)
        }
    }

    /// The result; a source without a single message gets a warning (`nothingFound`, or a
    /// generic one), since importing nothing usually means the wrong format was chosen.
    func finish(startMicros: Int64, nothingFound: String? = nil) -> ImportedRecording {
        var w = warnings
        if messageCount == 0 {
            w.append(ImportWarning(line: 0, message: nothingFound ?? "no QMP messages found in the input"))
        }
        return ImportedRecording(
            startMicros: startMicros, qemuVersion: greetingVersion ?? queryVersion ?? statedVersion, records: records,
            warnings: w, ignored: ignored)
    }

    private mutating func append(time: Int64, connection: UInt32, _ body: RecordBody) {
        let t = max(time, lastTime)
        lastTime = t
        records.append(ImportedRecord(time: t, connection: connection, body: body))
    }

    private mutating func track(_ m: QMPMessage, connection: UInt32) {
        switch m.body {
        case .greeting(let g):
            sawGreeting = true
            if greetingVersion == nil, let v = g.version { greetingVersion = v.description }
        case .command(let c):
            lastCommand[connection] = c.name
            if let id = c.id { commandsByID[connection, default: [:]][id] = c.name }
        case .return(let r):
            let name = r.id.flatMap { commandsByID[connection]?[$0] } ?? (r.id == nil ? lastCommand[connection] : nil)
            // Trust the reply's shape when the command was not seen (a partial transcript).
            if queryVersion == nil, name == nil || name == "query-version", let v = ImportBuilder.versionString(r.value) {
                queryVersion = v
            }
        default:
            break
        }
    }

    /// `7.2.0` from a `query-version` return value: `{"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": ""}`.
    static func versionString(_ value: JSONValue) -> String? {
        guard let q = value["qemu"], let major = q["major"]?.int64Value, let minor = q["minor"]?.int64Value,
              let micro = q["micro"]?.int64Value
        else { return nil }
        return "\(major).\(minor).\(micro)"
    }

    /// Which side sent a message when the source does not say: commands (and objects that
    /// try to be commands) come from the client, everything else from QEMU.
    static func direction(of m: QMPMessage) -> Direction {
        switch m.body {
        case .command:
            return .client
        case .other(_, let json):
            if let o = json?.objectValue {
                return o["execute"] != nil || o["exec-oob"] != nil ? .client : .qemu
            }
            // Unparsable text: a broken command still names its verb near the start.
            let head = String(decoding: m.bytes[m.payload].prefix(64), as: UTF8.self)
            return head.contains("\"execute\"") || head.contains("\"exec-oob\"")
                || head.contains("'execute'") || head.contains("'exec-oob'") ? .client : .qemu
        default:
            return .qemu
        }
    }

    /// What is wrong with a frame, for the warning; `nil` for a proper QMP message.
    static func problem(_ f: Frame, _ m: QMPMessage) -> String? {
        let text = excerpt(m.payloadBytes)
        switch f.kind {
        case .garbage:
            return "not JSON, kept as 'other': \(text)"
        case .truncated:
            return "JSON text cut short, kept as 'other': \(text)"
        case .oversize:
            return "message longer than the framing limit, kept in pieces as 'other'"
        case .json:
            if case .other(let reason, _) = m.body { return "\(reason), kept as 'other': \(text)" }
            return nil
        }
    }

    /// A short, printable excerpt of bytes for warnings.
    static func excerpt<C: Collection>(_ bytes: C, limit: Int = 60) -> String where C.Element == UInt8 {
        var s = String(decoding: bytes.prefix(limit), as: UTF8.self)
        s = String(s.map { $0.isNewline || $0 == "\t" ? " " : $0 })
        return bytes.count > limit ? s + "..." : s
    }
}
