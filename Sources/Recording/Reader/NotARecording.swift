import QMP

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file that is not a `.qmprec` recording at all, as opposed to a damaged one.
///
/// A recording has a header line, or (a recording that lost its first line) record
/// lines. A file with neither, an empty file, or binary content is something else: a
/// program, plain JSON Lines, QMP traffic as text, a libvirt log. Opening one is not
/// "a recording with 500 bad lines"; it is a wrong file, said once, in one line, with the
/// `qmpreplay import` command when the file holds QMP traffic in a format it converts.
/// A damaged recording (a valid header, torn or corrupt lines, no trailer) is never this.
public struct NotARecording: Sendable, Hashable, CustomStringConvertible {
    public enum Content: Sendable, Hashable {
        case empty
        /// Only blank lines (whitespace).
        case blank
        /// NUL bytes or bytes that are not UTF-8.
        case binary
        /// QMP traffic in a format `qmpreplay import` reads (told by `ImportDetector`, the
        /// detector `import --format auto` uses, so the command suggested converts it).
        case qmpTraffic(ImportFormat)
        /// JSON text, but no line is a header or a record.
        case json
        /// Any other text.
        case text
    }

    public let content: Content

    /// The import format that converts the file, when it holds QMP traffic.
    public var importFormat: ImportFormat? {
        if case .qmpTraffic(let f) = content { return f }
        return nil
    }

    /// What the file is, after "not a .qmprec recording: ".
    public var what: String {
        switch content {
        case .empty: return "the file is empty"
        case .blank: return "the file holds only blank lines"
        case .binary: return "binary content"
        case .qmpTraffic(let f): return NotARecording.formats[f] ?? "it holds QMP traffic (\(f.rawValue))"
        case .json: return "JSON, but no header line and no record line (docs/FORMAT.md)"
        case .text: return "no header line and no record line (docs/FORMAT.md)"
        }
    }

    /// What each import format is, in words (a format missing here is named by its id).
    static let formats: [ImportFormat: String] = [
        .qmpLines: "it holds QMP messages as plain text",
        .libvirtReplies: "it is a libvirt .replies transcript",
        .libvirtLog: "it is a libvirt debug log",
        .virshEvents: "it is virsh qemu-monitor-event output",
        .qmpShell: "it is qmp-shell output",
        .qmpTranscript: "it is a QMP transcript (as pasted in bug reports and docs)",
        .shellSession: "it is a shell session that talks QMP",
        .iotests: "it is qemu-iotests output",
    ]

    public var description: String { "not a .qmprec recording: \(what)" }

    /// The one-line message for `path`, with the import command when the file can be
    /// converted (`import` tells the format from the content by itself).
    public func message(path: String) -> String {
        guard importFormat != nil else { return description }
        return "\(description); convert it with: qmpreplay import \(NotARecording.shellQuoted(path)) -o OUT.qmprec"
    }

    static func shellQuoted(_ s: String) -> String {
        let safe = s.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || "/._-+,:@%=".utf8.contains(c)
        }
        if safe && !s.isEmpty { return s }
        return "'" + s.replacingOccurrences("'", "'\\''") + "'"
    }

    /// How much of the file is looked at to tell what it is.
    static let sampleBytes = 64 << 10

    /// What the file holds. Called only for a file with no header, no record and no trailer.
    static func classify(_ bytes: FileBytes) -> NotARecording {
        guard let raw = bytes.base, bytes.count > 0 else { return NotARecording(content: .empty) }
        var n = min(bytes.count, sampleBytes)
        let p = raw.assumingMemoryBound(to: UInt8.self)
        if n < bytes.count {
            // Whole lines only, so that a UTF-8 sequence is never cut.
            var e = n
            while e > 0, p[e - 1] != 0x0A { e -= 1 }
            if e > 0 { n = e }
        }
        let sample = UnsafeBufferPointer(start: p, count: n)
        if memchr(p, 0, n) != nil || !isUTF8(sample) { return NotARecording(content: .binary) }
        if sample.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) { return NotARecording(content: .blank) }
        if let d = ImportDetector.detect(Array(sample)) { return NotARecording(content: .qmpTraffic(d.format)) }
        // Not QMP in any format the importer knows: JSON of another kind, or text.
        var framer = QMPFramer(limit: 1 << 20)
        let frames = framer.push(sample) + framer.finish()
        return NotARecording(content: frames.contains { $0.kind == .json } ? .json : .text)
    }

    static func isUTF8(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        var it = b.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&it) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}

extension String {
    fileprivate func replacingOccurrences(_ a: String, _ b: String) -> String {
        split(separator: Character(a), omittingEmptySubsequences: false).joined(separator: b)
    }
}
