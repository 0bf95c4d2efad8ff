import QMP

/// Imports libvirt's test transcripts, `tests/qemucapabilitiesdata/caps_<version>_<arch>.replies`
/// (docs/QEMU-FACTS.md, "Formats people already have QMP traffic in"):
///
/// ```
/// {
///   "execute": "qmp_capabilities",
///   "id": "libvirt-1"
/// }
///
/// {
///   "return": {},
///   "id": "libvirt-1"
/// }
/// ```
///
/// Pretty-printed objects separated by a blank line, each command followed by its reply.
/// The source has no greeting, no events and no clock, so records are placed 1 ms apart
/// (t = i × 1 ms) on one connection. Each message keeps its text exactly as in the file,
/// with its own line end; the blank line separating it from the one before is the file's
/// layout, not part of the message, and is left out.
public enum LibvirtRepliesImporter {
    public static let peer = "import:libvirt-replies"
    public static let spacing: Int64 = 1_000_000

    public static func parse(_ bytes: [UInt8]) -> ImportedRecording {
        var framer = QMPFramer()
        var frames = framer.push(bytes)
        frames += framer.finish()

        var b = ImportBuilder()
        var line = 1
        var index: Int64 = 0
        var pending: (name: String, id: JSONValue?, line: Int)?
        for f in frames {
            let frameLine = line
            line += QMPLinesImporter.newlineCount(f.bytes[...])
            guard !f.payload.isEmpty else { continue }
            let at = frameLine + QMPLinesImporter.newlineCount(f.bytes[..<f.payload.lowerBound])
            let own = Frame(
                bytes: Array(f.bytes[f.payload.lowerBound...]), payload: 0..<f.payload.count, kind: f.kind)
            let m = own.message()
            if let problem = ImportBuilder.problem(own, m) {
                b.kept(line: at, endLine: at + QMPLinesImporter.newlineCount(own.bytes[own.payload]), problem)
            }

            switch m.body {
            case .command(let c):
                if let p = pending { b.warn(line: p.line, "command \(p.name) has no reply") }
                pending = (c.name, c.id, at)
            case .return, .error:
                if let p = pending {
                    if m.id != p.id {
                        b.warn(line: at, "reply id \(show(m.id)) does not match id \(show(p.id)) of the command \(p.name) before it")
                    }
                } else {
                    b.warn(line: at, "reply with id \(show(m.id)) has no command before it")
                }
                pending = nil
            default:
                break
            }
            b.message(m, from: ImportBuilder.direction(of: m), connection: 1, time: index * spacing, peer: peer)
            index += 1
        }
        if let p = pending { b.warn(line: p.line, "command \(p.name) has no reply") }

        if !b.records.isEmpty {
            b.insert(
                .note(
                    text: "imported from libvirt replies: no greeting and no timing in the source; records are 1 ms apart and keep libvirt's pretty-printed text",
                    data: JSONObject()),
                connection: 0, at: 0)
        }
        return b.finish(startMicros: 0)
    }

    private static func show(_ id: JSONValue?) -> String { id?.serialized() ?? "(none)" }
}
