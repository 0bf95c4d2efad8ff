import QMP

/// The kinds of file `qmpreplay import` reads (docs/QEMU-FACTS.md, "Formats people already
/// have QMP traffic in"). Raw values are the names given on the command line and stored
/// in the recording's `format` label.
public enum ImportFormat: String, CaseIterable, Sendable {
    /// Plain QMP text: socat, `-qmp stdio`, pretty JSON, several objects per line.
    case qmpLines = "qmp-lines"
    /// libvirt's `tests/qemucapabilitiesdata/caps_*.replies`: command, reply, blank line.
    case libvirtReplies = "libvirt-replies"
    /// libvirt debug logs with `QEMU_MONITOR_SEND_MSG` / `QEMU_MONITOR_RECV_*` lines.
    case libvirtLog = "libvirt-log"
    /// `virsh qemu-monitor-event` output: `event NAME at S.US for domain 'D': DATA`.
    case virshEvents = "virsh-events"

    /// One line for `--help`.
    public var summary: String {
        switch self {
        case .qmpLines: return "plain QMP text (socat, -qmp stdio, pretty JSON); times from event timestamps"
        case .libvirtReplies: return "libvirt caps_*.replies test transcript; no timing, records 1 ms apart"
        case .libvirtLog: return "libvirt debug log (QEMU_MONITOR_* lines); one connection per mon= pointer"
        case .virshEvents: return "virsh qemu-monitor-event output; events rebuilt in QEMU's layout, one connection per domain"
        }
    }
}

/// Something in the source an importer could not take as it was (garbage, a broken
/// message, a clock going backwards). `line` is 1-based in the source; 0 means the whole input.
public struct ImportWarning: Sendable, Hashable, CustomStringConvertible {
    public var line: Int
    public var message: String

    public init(line: Int, message: String) {
        self.line = line; self.message = message
    }

    public var description: String { line > 0 ? "line \(line): \(message)" : message }
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
    public var warnings: [ImportWarning]

    public init(startMicros: Int64 = 0, qemuVersion: String? = nil, records: [ImportedRecord] = [], warnings: [ImportWarning] = []) {
        self.startMicros = startMicros; self.qemuVersion = qemuVersion; self.records = records; self.warnings = warnings
    }

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
        }
    }
}

/// Shared bookkeeping of the importers: opens each connection before its first message,
/// keeps times non-decreasing and picks up QEMU's version.
struct ImportBuilder {
    private(set) var records: [ImportedRecord] = []
    private(set) var warnings: [ImportWarning] = []
    private(set) var lastTime: Int64 = 0
    private(set) var messageCount = 0
    private var opened: Set<UInt32> = []
    private var greetingVersion: String?
    private var queryVersion: String?
    /// Per connection: the command names by id, and the last command (for replies without id).
    private var commandsByID: [UInt32: [JSONValue: String]] = [:]
    private var lastCommand: [UInt32: String] = [:]
    private(set) var sawGreeting = false

    mutating func warn(line: Int, _ message: String) {
        warnings.append(ImportWarning(line: line, message: message))
    }

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

    /// The result; a source without a single message gets a warning (`nothingFound`, or a
    /// generic one), since importing nothing usually means the wrong format was chosen.
    func finish(startMicros: Int64, nothingFound: String? = nil) -> ImportedRecording {
        var w = warnings
        if messageCount == 0 {
            w.append(ImportWarning(line: 0, message: nothingFound ?? "no QMP messages found in the input"))
        }
        return ImportedRecording(
            startMicros: startMicros, qemuVersion: greetingVersion ?? queryVersion, records: records, warnings: w)
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
            return head.contains("\"execute\"") || head.contains("\"exec-oob\"") ? .client : .qemu
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
