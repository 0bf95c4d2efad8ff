import QMP

/// The format `--format auto` settled on, and what in the source gave it away.
public struct ImportDetection: Sendable, Equatable {
    public var format: ImportFormat
    /// `QEMU_MONITOR_* lines (first on line 3)`.
    public var reason: String
}

/// Tells the format of a source from its content (`qmpreplay import --format auto`).
///
/// The first 4000 lines are looked at, and the most specific sign wins, in this order:
/// libvirt's `QEMU_MONITOR_*` probes (also inside another log's JSON) → `libvirt-log`;
/// `event NAME at S.US for domain '...'` → `virsh-events`; a `(QEMU)` or `TRANS>` prompt or
/// qmp-shell's banner → `qmp-shell`; `QA output created by`, `QMP_VERSION` or a masked
/// timestamp (`TIMESTAMP`, `"SECS"`) → `iotests`; a shell prompt whose command sends QMP
/// or runs socat/nc → `shell-session`; `->`/`<-` arrows, `\` continuations after JSON,
/// `...` elisions or Python dicts (`True`, `None`) → `qmp-transcript`; pretty objects with
/// `libvirt-N` ids and no events → `libvirt-replies`; any QMP object → `qmp-lines`.
public enum ImportDetector {
    static let lineLimit = 4000

    public static func detect(_ bytes: [UInt8]) -> ImportDetection? {
        let lines = Array(SourceLine.split(bytes).prefix(lineLimit))
        var firstLine: [ImportFormat: Int] = [:]
        func saw(_ f: ImportFormat, _ line: Int) { if firstLine[f] == nil { firstLine[f] = line } }
        var qmpObject: Int?
        var objectStartsAlone: Int?
        var libvirtIDs = false
        var events = false
        var previousJSON = false
        var pendingElision: Int?

        for (index, line) in lines.enumerated() {
            let t = TextBytes.trim(line.bytes)
            if t.isEmpty { continue }
            let n = line.number
            if TextBytes.contains(t, "QEMU_MONITOR_SEND_MSG:") || TextBytes.contains(t, "QEMU_MONITOR_RECV_EVENT:")
                || TextBytes.contains(t, "QEMU_MONITOR_RECV_REPLY:") || TextBytes.contains(t, "QEMU_MONITOR_IO_WRITE:")
                || (TextBytes.contains(t, "qemuMonitorJSONIOProcessLine") && TextBytes.contains(t, "Line ["))
            {
                saw(.libvirtLog, n)
            }
            if TextBytes.hasPrefix(t, "event "), VirshEventsImporter.parseHeading(String(decoding: t, as: UTF8.self)) != nil {
                saw(.virshEvents, n)
            }
            if QMPShellImporter.prompt(t) != nil || TextBytes.hasPrefix(t, "Welcome to the QMP low-level shell") {
                saw(.qmpShell, n)
            }
            if (index == 0 && TextBytes.hasPrefix(t, "QA output created by")) || TextBytes.equals(t, "QMP_VERSION")
                || TextBytes.contains(t, "\":  TIMESTAMP") || TextBytes.contains(t, "\": \"TIMESTAMP\"")
                || TextBytes.contains(t, "\"seconds\": \"SECS\"") || TextBytes.contains(t, "'seconds': 'SECS'")
            {
                saw(.iotests, n)
            }
            if let cmd = ShellSessionImporter.promptCommand(line.bytes) {
                let words = ShellWords.split(Array(cmd))
                let sendsQMP = words.words.contains { w in
                    ShellSessionImporter.jsonObjects(in: w[...]).contains { ShellSessionImporter.looksLikeQMP($0) }
                }
                if sendsQMP || words.programs.contains(where: { ShellSessionImporter.socketClients.contains($0) && $0 != "qmp-shell" }) {
                    saw(.shellSession, n)
                }
            }

            let q = TextBytes.trim(QMPTranscriptImporter.stripQuoting(t))
            let (marker, rest) = QMPTranscriptImporter.arrow(q)
            if marker != nil, rest.first == UInt8(ascii: "{") || QMPTranscriptImporter.isElision(TextBytes.trim(rest)) {
                saw(.qmpTranscript, n)
            }
            let isJSONStart = q.first == UInt8(ascii: "{")
            if isJSONStart, QMPTranscriptImporter.endsWithContinuation(q), ShellSessionImporter.looksLikeQMP(q) {
                saw(.qmpTranscript, n)
            }
            if isJSONStart, TextBytes.hasPrefix(q, "{'") || TextBytes.hasPrefix(q, "{u'"),
               TextBytes.contains(q, ": True") || TextBytes.contains(q, ": False") || TextBytes.contains(q, ": None")
            {
                saw(.qmpTranscript, n)
            }
            if QMPTranscriptImporter.isElision(q) {
                pendingElision = previousJSON ? n : nil
            } else if isJSONStart, let e = pendingElision {
                saw(.qmpTranscript, e)
                pendingElision = nil
            }
            if isJSONStart { previousJSON = true } else if !QMPTranscriptImporter.isElision(q) { previousJSON = false }

            if TextBytes.equals(t, "{"), objectStartsAlone == nil { objectStartsAlone = n }
            if TextBytes.contains(t, "\"libvirt-") { libvirtIDs = true }
            if TextBytes.contains(t, "\"event\"") { events = true }
            if qmpObject == nil, ShellSessionImporter.looksLikeQMP(t), TextBytes.contains(t, "{") { qmpObject = n }
        }

        let order: [(ImportFormat, String)] = [
            (.libvirtLog, "libvirt QEMU_MONITOR_* lines"),
            (.virshEvents, "'event NAME at S.US for domain' lines"),
            (.qmpShell, "qmp-shell prompts"),
            (.iotests, "qemu-iotests markers (QA output, QMP_VERSION, masked timestamps)"),
            (.shellSession, "shell prompts whose commands send QMP"),
            (.qmpTranscript, "-> / <- arrows, \\ continuations, ... elisions or Python dicts"),
        ]
        for (f, why) in order {
            if let n = firstLine[f] { return ImportDetection(format: f, reason: "\(why), first on line \(n)") }
        }
        if let n = objectStartsAlone, libvirtIDs, !events {
            return ImportDetection(format: .libvirtReplies, reason: "pretty-printed objects with libvirt-N ids and no events, first on line \(n)")
        }
        if let n = qmpObject { return ImportDetection(format: .qmpLines, reason: "QMP objects, first on line \(n)") }
        return nil
    }
}
