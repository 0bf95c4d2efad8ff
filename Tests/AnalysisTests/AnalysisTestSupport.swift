import QMP
import Recording

#if canImport(Glibc)
import Glibc
#endif

/// Builds a small recording by hand: `s(1.5)` is 1.5 s after the start, in ns.
func s(_ seconds: Double) -> Int64 { Int64((seconds * 1e9).rounded()) }

/// A hand-made session, written with the real writer and read back with the real reader.
struct Session {
    static let start: Int64 = 1_800_000_000_000_000   // 2027-01-15T08:00:00Z
    var items: [(Int64, UInt32, RecordBody)] = []
    var endTime: Int64?
    /// The header's mode and labels: `.import` with `("format", "qmp-lines")` makes a
    /// recording whose receive times are not delivery times.
    var mode: CaptureMode = .synthetic
    var labels: [(key: String, value: String)] = []

    mutating func event(_ t: Int64, _ name: String, _ data: String? = nil, conn: UInt32 = 1, qemu: Int64? = nil) {
        let q = qemu ?? (Session.start + t / 1000)
        var text = "{\"timestamp\": {\"seconds\": \(q / 1_000_000), \"microseconds\": \(q % 1_000_000)}, \"event\": \"\(name)\""
        if let data { text += ", \"data\": \(data)" }
        text += "}\r\n"
        items.append((t, conn, .message(from: .qemu, QMPMessage(text: text))))
    }

    mutating func command(_ t: Int64, _ name: String, _ args: String? = nil, id: String? = nil, conn: UInt32 = 1) {
        var text = "{\"execute\":\"\(name)\""
        if let args { text += ",\"arguments\":\(args)" }
        if let id { text += ",\"id\":\(id)" }
        text += "}\n"
        items.append((t, conn, .message(from: .client, QMPMessage(text: text))))
    }

    mutating func reply(_ t: Int64, _ value: String = "{}", id: String? = nil, conn: UInt32 = 1) {
        items.append((t, conn, .message(from: .qemu, QMPMessage(text: "{\"return\": \(value)\(id.map { ", \"id\": \($0)" } ?? "")}\r\n"))))
    }

    mutating func error(_ t: Int64, _ cls: String, _ desc: String, id: String? = nil, conn: UInt32 = 1) {
        items.append((t, conn, .message(from: .qemu, QMPMessage(text: "{\"error\": {\"class\": \"\(cls)\", \"desc\": \"\(desc)\"}\(id.map { ", \"id\": \($0)" } ?? "")}\r\n"))))
    }

    /// QEMU's greeting on a connection (a second one on the same connection, or one after
    /// QEMU closed every connection, is a new QEMU process).
    mutating func greeting(_ t: Int64, conn: UInt32 = 1) {
        let text = #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"# + "\r\n"
        items.append((t, conn, .message(from: .qemu, QMPMessage(text: text))))
    }

    mutating func close(_ t: Int64, conn: UInt32 = 1, by: String = "client") {
        items.append((t, conn, .close(by: by, reason: "eof")))
    }

    func open() throws -> Recording {
        var template = Array("/tmp/qmpreplay-analysis-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        let path = dir + "/t.qmprec"
        let header = RecordingHeader(startMicros: Session.start, source: "test", mode: mode, host: "test",
                                     qemuVersion: "9.0.0", redacted: false, labels: labels)
        let w = try RecordingWriter(path: path, header: header)
        for (t, c, body) in items.sorted(by: { $0.0 < $1.0 }) { try w.append(time: t, connection: c, body) }
        try w.finish(reason: "complete", time: endTime)
        return try Recording(path: path)
    }
}
