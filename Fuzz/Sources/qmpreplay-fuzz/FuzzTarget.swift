import QMP
import Recording
import Shell

#if canImport(Glibc)
import Glibc
#endif

/// One fuzz input (called by libFuzzer through `Entry.swift`). `QMPREPLAY_FUZZ_TARGET` names the parser under test (see
/// `FuzzTarget`); each target checks an invariant beyond "does not crash" where the parser
/// promises one, and traps (so libFuzzer saves the input) when it is broken.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    FuzzTarget.current.run(bytes)
    return 0
}

enum FuzzTarget: String, CaseIterable {
    case framer, json, reader, time, filter
    case importQMPLines = "import-qmp-lines"
    case importLibvirtReplies = "import-libvirt-replies"
    case importLibvirtLog = "import-libvirt-log"
    case importVirshEvents = "import-virsh-events"
    /// The shapes people paste (qmp-transcript, shell-session, qmp-shell, iotests), through
    /// format detection: whatever the detector picks must import without trapping.
    case importAuto = "import-auto"
    case replaySession = "replay-session"
    case model
    case analyses
    case shellState = "shell-state"

    static let current: FuzzTarget = {
        guard let raw = getenv("QMPREPLAY_FUZZ_TARGET").map({ String(cString: $0) }), let t = FuzzTarget(rawValue: raw) else {
            let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
            let msg = "qmpreplay-fuzz: set QMPREPLAY_FUZZ_TARGET to one of: \(names)\n"
            _ = msg.withCString { write(2, $0, strlen($0)) }
            exit(64)
        }
        return t
    }()

    func run(_ bytes: [UInt8]) {
        switch self {
        case .framer: Self.framer(bytes)
        case .json: Self.json(bytes)
        case .reader: Self.reader(bytes)
        case .time: Self.time(bytes)
        case .filter: Self.filter(bytes)
        case .importQMPLines: Self.importer(bytes, .qmpLines)
        case .importLibvirtReplies: Self.importer(bytes, .libvirtReplies)
        case .importLibvirtLog: Self.importer(bytes, .libvirtLog)
        case .importVirshEvents: Self.importer(bytes, .virshEvents)
        case .importAuto:
            // The detector's choice, then every newer format on the same bytes.
            if let d = ImportDetector.detect(bytes) { Self.importer(bytes, d.format) }
            for f in [ImportFormat.qmpTranscript, .shellSession, .qmpShell, .iotests] { Self.importer(bytes, f) }
        case .replaySession: ReplayFuzz.run(bytes)
        case .model: Self.model(bytes)
        case .analyses: AnalysesFuzz.analyses(bytes)
        case .shellState: AnalysesFuzz.shell(bytes)
        }
    }

    /// The framer loses nothing: the frames, concatenated, are the input, whatever the chunking
    /// (the first byte of the input picks the chunk size).
    static func framer(_ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        let input = Array(bytes.dropFirst())
        let chunk = Int(first % 64) + 1
        var framer = QMPFramer(limit: 4096)
        var out: [UInt8] = []
        var i = 0
        while i < input.count {
            for f in framer.push(input[i..<min(i + chunk, input.count)]) {
                out += f.bytes
                if f.kind == .json { _ = f.message() }
            }
            i += chunk
        }
        for f in framer.finish() { out += f.bytes; _ = f.message() }
        precondition(out == input, "framer lost or changed bytes")
    }

    /// Whatever parses re-serializes to text that parses to the same value.
    static func json(_ bytes: [UInt8]) {
        guard let v = try? JSONParser.parse(bytes) else { return }
        let again = try? JSONParser.parse(Array(v.serialized(.compact).utf8))
        precondition(again == v, "JSON round trip changed the value")
        _ = QMPMessage(bytes: bytes)
    }

    /// Any bytes open (lenient mode) and every indexed record decodes or fails with its line.
    static func reader(_ bytes: [UInt8]) {
        guard let r = try? Recording(bytes: FileBytes(bytes: bytes), path: "fuzz.qmprec") else {
            preconditionFailure("lenient open failed")
        }
        for i in 0..<r.count {
            _ = r.eventTimestampMicros(i)
            _ = r.name(i)
            do { _ = try r.record(at: i) } catch { precondition(error.line == r.line(i), "decode error names the wrong line") }
        }
        if r.count > 0 {
            _ = r.firstIndex(atOrAfter: r.time(r.count / 2))
            _ = RecordingSummary(r).json.serialized(.compact)
        }
    }

    /// A real recording (greeting, negotiation, events, commands) to resolve times and
    /// evaluate filters against.
    static let sample: Recording = {
        var dir = "\(#filePath)"
        for _ in 0..<4 { dir = String(dir[..<(dir.lastIndex(of: "/") ?? dir.startIndex)]) }
        return try! Recording(path: dir + "/Recordings/lifecycle-qemu.qmprec")
    }()

    static func time(_ bytes: [UInt8]) {
        let s = String(decoding: bytes, as: UTF8.self)
        if let t = try? TimeSpec.parse(s) {
            _ = t.resolveTime(in: sample, current: 0)
            _ = t.resolveIndex(in: sample, current: 1)
            _ = t.description
        }
        _ = try? TimeSpec.duration(s)
    }

    static func filter(_ bytes: [UInt8]) {
        let s = String(decoding: bytes, as: UTF8.self)
        guard let f = try? FilterExpression(parsing: s) else { return }
        for i in 0..<sample.count { _ = f.matches(sample, i) }
        // The rendered form is itself a valid expression.
        precondition((try? FilterExpression(parsing: f.description)) != nil, "rendered filter does not parse: \(f.description)")
    }

    /// The VM model on any recording: triage (every analysis, the model, the input driver)
    /// runs to the end, and the shell's state with checkpoints equals a straight fold.
    static func model(_ bytes: [UInt8]) {
        guard let r = try? Recording(bytes: FileBytes(bytes: bytes), path: "fuzz.qmprec") else {
            preconditionFailure("lenient open failed")
        }
        guard let report = try? Analyses.run("triage", on: r) else { preconditionFailure("triage refused") }
        _ = report.json.serialized(.compact)
        _ = report.result.svg()
        guard r.count > 0 else { return }
        let checkpointed = StateTracker(recording: r, checkpointInterval: 3).state(at: r.count - 1)
        let straight = StateTracker(recording: r, checkpointInterval: Int.max).state(at: r.count - 1)
        precondition(checkpointed == straight, "checkpoints changed the state")
    }

    static func importer(_ bytes: [UInt8], _ format: ImportFormat) {
        let imported = Importer.parse(bytes, format: format)
        for w in imported.warnings { _ = w.description }
    }
}
