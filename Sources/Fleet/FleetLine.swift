import QMP
import Recording

/// One line of a fleet command's JSON Lines output: which recording (file, host, VM, time
/// span, size) and what the command found in it, or why it could not be read. The layout
/// is the fleet table of docs/FLEET.md (JSON Schema: docs/fleet.schema.json), which DuckDB
/// reads with `read_ndjson` and Spark with `spark.read.json`.
///
/// Example line (shortened): `{"file":"a.qmprec","ok":true,"host":"h1","vm":"web-1",
/// "start":"2026-12-01T00:00:00.000000Z",...,"command":"analyze","analysis":"triage","result":{...}}`.
public enum FleetLine {
    /// The layout's version, in every line as `fleet_schema`.
    public static let schemaVersion = 1

    /// The label keys that name the VM, first found wins (`record --label vm=NAME`;
    /// libvirt's domain name when an importer found one).
    public static let vmLabels = ["vm", "domain", "name"]

    /// The identity and span of a readable recording, then `command`, `analysis` and `result`.
    public static func line(file: String, recording r: Recording, command: String, analysis: String? = nil,
                            result: JSONValue, status: Int32 = 0) -> [UInt8] {
        line(file: file, recording: r, command: command, analysis: analysis, resultBytes: result.serializedBytes(.compact), status: status)
    }

    /// The same with the result already written as compact JSON (an analysis document
    /// streamed to bytes, never a tree).
    public static func line(file: String, recording r: Recording, command: String, analysis: String? = nil,
                            resultBytes: [UInt8], status: Int32 = 0) -> [UInt8] {
        var o = JSONObject()
        o["fleet_schema"] = .int(schemaVersion)
        o["file"] = .string(file)
        o["ok"] = .bool(true)
        o["status"] = .int(Int(status))
        let h = r.header
        o["host"] = h.map { .string($0.host) } ?? .null
        o["vm"] = h.flatMap { h in vmLabels.lazy.compactMap { h.label($0) }.first }.map { .string($0) } ?? .null
        o["labels"] = .object(JSONObject((h?.labels ?? []).map { .init(key: $0.key, value: .string($0.value)) }))
        o["qemu"] = h?.qemuVersion.map { .string($0) } ?? .null
        o["source"] = h.map { .string($0.source) } ?? .null
        let duration = r.duration
        if let h, h.startMicros > 0 {
            o["start"] = .string(WallClock.iso8601(micros: h.startMicros))
            o["end"] = .string(WallClock.iso8601(micros: h.startMicros + duration / 1000))
            o["start_us"] = .int(h.startMicros)
        } else {
            o["start"] = .null
            o["end"] = .null
            o["start_us"] = .null
        }
        o["duration_ns"] = .int(duration)
        o["records"] = .int(r.count)
        o["bytes"] = .int(r.bytes.count)
        o["command"] = .string(command)
        o["analysis"] = analysis.map { .string($0) } ?? .null
        o["error"] = .null
        // `"result":` last, its bytes spliced in before the closing brace.
        var b = JSONValue.object(o).serializedBytes(.compact)
        b.removeLast()
        b.append(contentsOf: #","result":"#.utf8)
        b.append(contentsOf: resultBytes)
        b.append(contentsOf: "}\n".utf8)
        return b
    }

    /// A file that could not be read (or a command that failed on it): one line, the run goes on.
    public static func failure(file: String, command: String, analysis: String? = nil, message: String, status: Int32) -> [UInt8] {
        var o = JSONObject()
        o["fleet_schema"] = .int(schemaVersion)
        o["file"] = .string(file)
        o["ok"] = .bool(false)
        o["status"] = .int(Int(status))
        o["command"] = .string(command)
        o["analysis"] = analysis.map { .string($0) } ?? .null
        o["error"] = .string(message)
        return bytes(o)
    }

    private static func bytes(_ o: JSONObject) -> [UInt8] {
        var b = JSONValue.object(o).serializedBytes(.compact)
        b.append(UInt8(ascii: "\n"))
        return b
    }
}
