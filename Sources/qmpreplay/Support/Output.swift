import Analysis
import ArgumentParser
import QMP
import Recording

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Exit statuses shared by every command (listed in `qmpreplay --help`).
enum Exit {
    static let ok: Int32 = 0
    /// `validate` found problems.
    static let findings: Int32 = 1
    /// A file could not be read, written or understood.
    static let unreadable: Int32 = 2
    static let usage: Int32 = 64
}

/// Buffered standard output. Nothing below the CLI prints; commands write here.
final class Output {
    nonisolated(unsafe) static let stdout = Output(fd: 1)
    nonisolated(unsafe) static let stderr = Output(fd: 2)

    let fd: Int32
    private var buffer: [UInt8] = []
    let isTerminal: Bool

    init(fd: Int32) {
        self.fd = fd
        isTerminal = isatty(fd) == 1
        buffer.reserveCapacity(1 << 16)
    }

    /// Colours only on a terminal, and never when NO_COLOR is set (https://no-color.org).
    var colors: Bool { isTerminal && getenv("NO_COLOR") == nil && getenv("TERM").map { String(cString: $0) } != "dumb" }

    func write(_ s: String) {
        buffer.append(contentsOf: s.utf8)
        if buffer.count >= 1 << 16 { flush() }
    }

    func write<C: Collection>(bytes: C) where C.Element == UInt8 {
        buffer.append(contentsOf: bytes)
        if buffer.count >= 1 << 16 { flush() }
    }

    func line(_ s: String = "") { write(s); write("\n") }

    /// Writes `bytes` and a newline (a stored record line, copied once).
    func line(bytes: UnsafeBufferPointer<UInt8>) {
        buffer.append(contentsOf: bytes)
        buffer.append(0x0A)
        if buffer.count >= 1 << 16 { flush() }
    }

    /// Writes a large block straight to the descriptor (after what is buffered), without
    /// copying it into the buffer first.
    func writeLarge(_ bytes: [UInt8]) {
        flush()
        bytes.withUnsafeBytes { writeFully($0) }
    }

    func flush() {
        buffer.withUnsafeBytes { writeFully($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeFully(_ raw: UnsafeRawBufferPointer) {
        var off = 0
        while off < raw.count {
            let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
            if n < 0 { if errno == EINTR { continue }; break }
            off += n
        }
    }

    deinit { flush() }
}

/// ANSI styles, applied only when the stream shows colours.
typealias Style = ANSIStyle

extension ANSIStyle {
    init(_ out: Output) { self.init(out.colors) }

    func kind(_ k: RecordKind, _ s: String) -> String {
        switch k {
        case .event: return magenta(s)
        case .command: return yellow(s)
        case .return: return green(s)
        case .error: return red(s)
        case .greeting: return blue(s)
        case .other: return red(s)
        case .open, .close, .note: return dim(s)
        }
    }
}

/// Prints `qmpreplay: error: ...` and leaves with the given status.
func fail(_ message: String, code: Int32 = Exit.unreadable) -> ExitCode {
    Output.stdout.flush()
    let s = Style(Output.stderr)
    Output.stderr.line("qmpreplay: \(s.red("error:")) \(message)")
    Output.stderr.flush()
    return ExitCode(code)
}

func warn(_ message: String) {
    let s = Style(Output.stderr)
    Output.stderr.line("qmpreplay: \(s.yellow("warning:")) \(message)")
    Output.stderr.flush()
}

/// Opens a recording for a command, turning failures into a clear error and exit 2. A
/// file that is not a recording at all (empty, binary, plain JSON, QMP text: see
/// `NotARecording`) is refused here, in one line, for every command.
func openRecording(_ path: String, strict: Bool, cache: IndexCache? = nil, pairsReplies: Bool = false,
                   replyPartners: (@Sendable (Recording, IDKeys) -> ReplyPartners)? = nil) throws -> Recording {
    do {
        return try Recording(path: path, options: RecordingOptions(strict: strict, requireRecording: true, indexCache: cache,
                                                                   pairsReplies: pairsReplies, replyPartners: replyPartners))
    } catch {
        throw fail(error.description)
    }
}

/// The schema a recording is checked against (docs/CATALOG.md, "Layers"): `--schema FILE`
/// when given (exit 2, one line, when FILE holds no usable schema), else the recording's own
/// reply, the shipped one for its QEMU version, or the seed catalog.
func schemaChoice(for r: Recording, file: String?) throws -> SchemaChoice {
    guard let file else { return RecordingSchema.choose(for: r) }
    do {
        return RecordingSchema.choose(for: r, override: try RecordingSchema.load(file: file))
    } catch {
        throw fail("--schema: \(error)")
    }
}

/// Refuses (exit 2, one line naming the file and `--force`) to replace an existing file
/// unless `force`: the CLI's side of `OutputGuard`, for every command that writes a recording.
func refuseOverwrite(_ path: String, force: Bool) throws {
    do {
        try OutputGuard.check(path, force: force)
    } catch {
        throw fail(error.description)
    }
}

/// Progress on standard error for long work, only when it is a terminal.
struct Progress {
    let label: String
    let total: Int
    let enabled = Output.stderr.isTerminal
    func update(_ done: Int, note: String? = nil) {
        guard enabled, total > 0 else { return }
        let pct = Int(Double(done) / Double(total) * 100)
        Output.stderr.write("\r\(label): \(done)/\(total) (\(pct)%)" + (note.map { ", " + $0 } ?? "") + "\u{1B}[K")
        Output.stderr.flush()
    }
    func finish() {
        guard enabled else { return }
        Output.stderr.write("\r\u{1B}[K")
        Output.stderr.flush()
    }
}

extension TimeSpec: ExpressibleByArgument {
    public init?(argument: String) {
        guard let t = try? TimeSpec.parse(argument) else { return nil }
        self = t
    }
    public static var defaultCompletionKind: CompletionKind { .default }
}

func formatBytes(_ n: Int) -> String {
    let d = Double(n)
    if d >= 1_073_741_824 { return DurationFormat.fixed(d / 1_073_741_824, 2) + " GiB" }
    if d >= 1_048_576 { return DurationFormat.fixed(d / 1_048_576, 1) + " MiB" }
    if d >= 1024 { return DurationFormat.fixed(d / 1024, 1) + " KiB" }
    return "\(n) B"
}
