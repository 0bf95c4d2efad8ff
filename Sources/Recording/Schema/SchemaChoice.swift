import QMP

/// Which schema a recording is checked against, and why (docs/CATALOG.md, "Layers"):
///
/// 1. a file the user names (`--schema FILE`);
/// 2. the recording's own `query-qmp-schema` reply (`record` asks for it by default): the
///    introspection of exactly the QEMU that was recorded;
/// 3. the shipped schema for the QEMU version in the greeting (same major.minor);
/// 4. none: the seed catalog alone (events of qmp-events.txt and docs/QEMU-FACTS.md).
///
/// The seed catalog's extra knowledge (follow-ups, throttling) applies in every case.
public struct SchemaChoice: Sendable {
    public enum Source: Sendable, Equatable {
        case file(path: String)
        /// The reply in record `record` (0-based), answering the command in `command`.
        case recorded(record: Int, command: Int)
        case shipped(file: String)
        case seed
    }

    public let schema: QAPISchema?
    public let source: Source
    /// The QEMU version the schema describes, when known (`7.2.22`).
    public let qemu: String?
    /// Why this layer: one sentence a person can act on.
    public let reason: String

    public init(schema: QAPISchema?, source: Source, qemu: String?, reason: String) {
        self.schema = schema; self.source = source; self.qemu = qemu; self.reason = reason
    }

    /// `file`, `recorded`, `shipped`, `seed`: the `--json` and table name.
    public var sourceName: String {
        switch source {
        case .file: return "file"
        case .recorded: return "recorded"
        case .shipped: return "shipped"
        case .seed: return "seed"
        }
    }

    /// A few words for a summary line: "QEMU 7.2.22, shipped", "seed catalog only".
    public var shortLabel: String {
        guard schema != nil else { return "seed catalog only" }
        let q = qemu.map { "QEMU \($0), " } ?? ""
        switch source {
        case .file(let p): return q + p
        case .recorded(let rec, _): return q + "recorded @\(rec)"
        default: return q + sourceName
        }
    }

    /// One line for `info` and notes: "recorded (record @12, QEMU 7.2.22: 216 commands, 52 events)".
    public var summary: String {
        var what: [String] = []
        switch source {
        case .file(let p): what.append(p)
        case .recorded(let rec, _): what.append("reply @\(rec)")
        case .shipped(let f): what.append(f)
        case .seed: return "seed catalog (\(EventCatalog.all.count) events, no commands)"
        }
        if let q = qemu { what.append("QEMU \(q)") }
        var s = sourceName + " (" + what.joined(separator: ", ")
        if let schema { s += ": \(schema.commands.count) commands, \(schema.events.count) events" }
        return s + ")"
    }

    /// docs/JSON.md, "info": `schema`.
    public var json: JSONValue {
        var o = JSONObject()
        o["source"] = .string(sourceName)
        o["qemu"] = qemu.map(JSONValue.string) ?? .null
        o["reason"] = .string(reason)
        switch source {
        case .file(let p): o["file"] = .string(p)
        case .recorded(let rec, let cmd):
            o["record"] = .int(rec)
            o["command_record"] = .int(cmd)
        case .shipped(let f): o["file"] = .string(f)
        case .seed: break
        }
        o["commands"] = schema.map { .int($0.commands.count) } ?? .null
        o["events"] = schema.map { .int($0.events.count) } ?? .null
        return .object(o)
    }
}

/// Finds the schema for a recording: the function the validator, `info`, the shell and the
/// fake QEMU call.
///
/// Example: `RecordingSchema.choose(for: recording).schema?.hasCommand("blockdev-reopen")`.
public enum RecordingSchema {
    /// The schema that applies to `r`; `override` (from `--schema FILE`) wins.
    public static func choose(for r: Recording, override: SchemaChoice? = nil) -> SchemaChoice {
        if let override { return override }
        let found = statedVersion(of: r)
        let version = found?.version
        var skipped = ""
        switch recorded(in: r) {
        case .found(let schema, let rec, let cmd, let connectionVersion):
            return SchemaChoice(
                schema: schema, source: .recorded(record: rec, command: cmd), qemu: connectionVersion ?? version?.description,
                reason: "the recording holds QEMU's own query-qmp-schema reply (record @\(rec))")
        case .unusable(let why):
            skipped = " (the recorded query-qmp-schema reply could not be used: \(why))"
        case .none:
            break
        }
        guard let version else {
            return SchemaChoice(schema: nil, source: .seed, qemu: nil,
                                reason: "no query-qmp-schema reply and no QEMU version in the recording\(skipped)")
        }
        guard let entry = ShippedSchemas.entry(for: version) else {
            let shipped = ShippedSchemas.all.map(\.release).joined(separator: ", ")
            return SchemaChoice(schema: nil, source: .seed, qemu: version.description,
                                reason: "no query-qmp-schema reply in the recording\(skipped), and no schema shipped for QEMU \(version.major).\(version.minor) (shipped: \(shipped))")
        }
        do {
            let schema = try ShippedSchemas.schema(entry)
            let same = entry.version == version.description ? "" : " (same release \(entry.release); stable updates keep the schema)"
            return SchemaChoice(
                schema: schema, source: .shipped(file: entry.file), qemu: entry.version,
                reason: "no query-qmp-schema reply in the recording\(skipped); \(found!.how), so the shipped capture of QEMU \(entry.version) (\(entry.target), \(entry.package)) applies\(same)")
        } catch {
            return SchemaChoice(schema: nil, source: .seed, qemu: version.description,
                                reason: "the shipped schema \(entry.file) could not be read: \(error)")
        }
    }

    /// The QEMU version the recording's first greeting states, else the header's.
    public static func qemuVersion(of r: Recording) -> QEMUVersion? { statedVersion(of: r)?.version }

    /// The version and where it was read ("QEMU 7.2.22 greeted", "the header names QEMU 7.2.0").
    static func statedVersion(of r: Recording) -> (version: QEMUVersion, how: String)? {
        for i in 0..<r.count where r.kind(i) == .greeting {
            if case .greeting(let g)? = (try? r.record(at: i))?.message?.body, let v = g.version {
                return (v, "QEMU \(v) greeted")
            }
            break
        }
        guard let text = r.header?.qemuVersion else { return nil }
        let parts = text.split(separator: ".").map { Int($0.prefix(while: \.isNumber)) }
        guard parts.count >= 2, let major = parts[0], let minor = parts[1] else { return nil }
        let v = QEMUVersion(major: major, minor: minor, micro: parts.count > 2 ? parts[2] ?? 0 : 0)
        return (v, "no greeting, and the header names QEMU \(text)")
    }

    public enum Recorded {
        /// `record`: the reply; `command`: the request; `qemu`: the version greeting that connection.
        case found(QAPISchema, record: Int, command: Int, qemu: String?)
        case unusable(String)
        case none
    }

    /// The first successful `query-qmp-schema` reply in the recording (any connection),
    /// paired with its request by the one reply rule (`ReplyQueue`). Only the requests of
    /// that name are decoded, found through the index.
    public static func recorded(in r: Recording) -> Recorded {
        guard let nid = r.nameID(for: "query-qmp-schema") else { return .none }
        var problem: String?
        for i in 0..<r.count where r.kind(i) == .command && r.nameID(i) == nid {
            guard let cmd = try? r.record(at: i), case .command(let c)? = cmd.message?.body else { continue }
            let conn = r.connection(i)
            let want = IDKey(value: c.id)
            // Replies on this connection answer older requests first: pair them all.
            var queue = ReplyQueue<Int>()
            queue.sent(want, i)
            var j = i + 1
            while j < r.count {
                defer { j += 1 }
                guard r.connection(j) == conn else { continue }
                let k = r.kind(j)
                if k == .greeting || k == .close || k == .open { break }
                guard k == .return || k == .error, let rec = try? r.record(at: j), let m = rec.message else { continue }
                guard queue.reply(IDKey(value: m.id)) == i else { continue }
                guard case .return(let ret) = m.body else { break }
                do {
                    let schema = try QAPISchema(reply: ret.value)
                    return .found(schema, record: j, command: i, qemu: greetingVersion(before: i, connection: conn, in: r))
                } catch {
                    problem = "record @\(j): \(error)"
                }
                break
            }
        }
        return problem.map { .unusable($0) } ?? .none
    }

    private static func greetingVersion(before i: Int, connection: UInt32, in r: Recording) -> String? {
        var j = i
        while j > 0 {
            j -= 1
            guard r.connection(j) == connection, r.kind(j) == .greeting else { continue }
            if case .greeting(let g)? = (try? r.record(at: j))?.message?.body { return g.version?.description }
            return nil
        }
        return nil
    }

    /// `--schema FILE`: a raw reply (`{"return": [...]}`, the array alone, gzipped or not)
    /// or a recording that holds one.
    public static func load(file path: String) throws(SchemaError) -> SchemaChoice {
        let bytes: [UInt8]
        do {
            bytes = try ImportSource.read(path)
        } catch {
            throw SchemaError("\(error)")
        }
        let first = bytes.first { !isJSONSpace($0) }
        if first == UInt8(ascii: "[") || first == UInt8(ascii: "{") {
            if let v = try? JSONParser.parse(bytes) {
                let schema: QAPISchema
                do { schema = try QAPISchema(reply: v) } catch { throw SchemaError("\(path): \(error)") }
                return SchemaChoice(schema: schema, source: .file(path: path), qemu: nil,
                                    reason: "--schema \(path) (a query-qmp-schema reply)")
            }
        }
        let r: Recording
        do {
            r = try Recording(path: path)
        } catch {
            throw SchemaError("\(path) is neither a query-qmp-schema reply nor a recording: \(error)")
        }
        switch recorded(in: r) {
        case .found(let schema, let rec, _, let qemu):
            return SchemaChoice(schema: schema, source: .file(path: path), qemu: qemu ?? qemuVersion(of: r)?.description,
                                reason: "--schema \(path) (the query-qmp-schema reply in its record @\(rec))")
        case .unusable(let why):
            throw SchemaError("\(path): its query-qmp-schema reply cannot be used: \(why)")
        case .none:
            throw SchemaError("\(path) holds no query-qmp-schema reply (record one with `qmpreplay record`, which asks for it by default)")
        }
    }
}
