import Logging
import QMP
import Recording
import Replay
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `--report FILE` of `serve` and `replay`: every session's fidelity report as JSON, the file
/// rewritten whole (through a temporary file and a rename) each time a session ends, so a
/// reader never sees half of it.
///
/// Example: `{"file": "rec.qmprec", "target": "unix:/tmp/q.sock", "connection": 1, "speed": 1, "strict": false, "sessions": [...]}`.
struct ReportFile {
    let path: String?
    let header: JSONObject

    init(path: String?, file: String, target: String, options: ReplayOptions, script: ReplayScript) {
        self.path = path
        var o = JSONObject()
        o["file"] = .string(file)
        o["target"] = .string(target)
        o["connection"] = .int(Int(script.connection))
        o["speed"] = options.speed.map { .number(JSONNumber(text: "\($0)")) } ?? .string("max")
        o["strict"] = .bool(options.strict)
        header = o
    }

    func write(_ sessions: [SessionReport]) throws {
        guard let path else { return }
        var o = header
        o["sessions"] = .array(sessions.map(\.json))
        let text = JSONValue.object(o).serialized(.pretty(indent: 2)) + "\n"
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw fail("cannot write report \(path): \(String(cString: strerror(errno)))") }
        var ok = true
        Array(text.utf8).withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 { if errno == EINTR { continue }; ok = false; break }
                off += n
            }
        }
        close(fd)
        guard ok, rename(tmp, path) == 0 else { throw fail("cannot write report \(path): \(String(cString: strerror(errno)))") }
    }
}

/// The one-line summary of a finished session (and its divergences) through the CLI's log,
/// so it goes out in order with the server's own lines; `--quiet` leaves it out.
func logSummary(_ r: SessionReport, _ log: Logger) {
    log.info("\(r)")
    for d in r.divergences { log.info("  divergence: \(d.message)") }
}

/// Waits for the server's sessions to end, printing each summary and keeping the report file
/// current, until the server finishes (or, with `once`, stops it after the first session).
/// Returns every report.
func followReports(_ server: ReplayServer, file: ReportFile, log: Logger, once: Bool = false) throws -> [SessionReport] {
    var all: [SessionReport] = []
    while case let new = server.reports(after: all.count), !new.isEmpty {
        all += new
        for r in new { logSummary(r, log) }
        try file.write(all)
        if once { server.stop() }
    }
    server.wait()
    try file.write(all)
    return all
}

/// A stop request from a signal handler to a loop that checks it (`replay --stdout`).
final class StopFlag: Sendable {
    private let flag = Mutex(false)
    func set() { flag.withLock { $0 = true } }
    var isSet: Bool { flag.withLock { $0 } }
}
