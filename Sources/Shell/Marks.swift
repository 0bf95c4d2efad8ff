import QMP
import Recording

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Bookmarks with notes, kept in a sidecar file next to the recording
/// (`session.qmprec.marks.json`): the recording itself is evidence and is never modified.
public struct MarkStore: Sendable {
    public struct Mark: Sendable, Equatable {
        public var name: String
        public var record: Int
        public var time: Int64
        public var note: String
        public var created: String
    }

    public let path: String
    public private(set) var marks: [Mark] = []

    public static func sidecarPath(for recording: String) -> String { recording + ".marks.json" }

    /// Loads the sidecar if there is one; a damaged sidecar is reported, not fatal.
    public init(recordingPath: String) throws(ShellError) {
        path = MarkStore.sidecarPath(for: recordingPath)
        guard access(path, F_OK) == 0 else { return }
        let bytes: [UInt8]
        do {
            bytes = try FileBytes(path: path).copyBytes()
        } catch {
            throw ShellError("cannot read marks from \(path): \(error.reason)")
        }
        do {
            let v = try JSONParser.parse(bytes)
            for m in v["marks"]?.arrayValue ?? [] {
                guard let name = m["name"]?.stringValue, let rec = m["record"]?.int64Value else { continue }
                marks.append(Mark(
                    name: name, record: Int(rec), time: m["time_ns"]?.int64Value ?? 0, note: m["note"]?.stringValue ?? "",
                    created: m["created"]?.stringValue ?? ""))
            }
        } catch {
            throw ShellError("marks file \(path) is not valid JSON (\(error)); fix or remove it")
        }
    }

    public func mark(named name: String) -> Mark? { marks.first { $0.name == name } }

    public mutating func set(_ name: String, record: Int, time: Int64, note: String) throws(ShellError) {
        let m = Mark(name: name, record: record, time: time, note: note, created: WallClock.iso8601(micros: WallClock.nowMicros(), fractionDigits: 0))
        if let i = marks.firstIndex(where: { $0.name == name }) { marks[i] = m } else { marks.append(m) }
        try save()
    }

    public mutating func remove(_ name: String) throws(ShellError) -> Bool {
        guard let i = marks.firstIndex(where: { $0.name == name }) else { return false }
        marks.remove(at: i)
        try save()
        return true
    }

    private func save() throws(ShellError) {
        var o = JSONObject()
        o["marks"] = .array(marks.map { m in
            .object(JSONObject([
                "name": .string(m.name), "record": .int(m.record), "time_ns": .int(m.time), "note": .string(m.note),
                "created": .string(m.created),
            ]))
        })
        let text = JSONValue.object(o).serialized(.pretty(indent: 2)) + "\n"
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw ShellError("cannot save marks to \(path): \(String(cString: strerror(errno)))") }
        let ok = Array(text.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) == $0.count }
        close(fd)
        guard ok, rename(tmp, path) == 0 else { throw ShellError("cannot save marks to \(path): \(String(cString: strerror(errno)))") }
    }
}

/// An error of a shell command: one line saying what was wrong and what would be right.
public struct ShellError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
