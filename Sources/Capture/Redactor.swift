import QMP

/// Replaces secrets in QMP traffic by a marker before it is recorded. On by default
/// (`qmpreplay record --no-redact` keeps everything; the header says which).
///
/// The rules live here and only here (docs/RECORDER.md lists them):
///
/// | command | values replaced |
/// |---|---|
/// | `set_password`, `change-vnc-password` | `arguments.password` |
/// | `object-add` of `secret` / `secret_keyring` | `data`, `iv` (flat, or under `props` before QEMU 6.0) |
/// | `migrate`, `migrate-incoming` | `arguments.uri` when it carries credentials (`user:pass@`) |
/// | `blockdev-add`, `object-add` (any type) | every member named `password`, `passphrase` or `key`, at any depth (objects and arrays) |
/// | `human-monitor-command` | `arguments.command-line` of `set_password`, `change vnc password`, `object_add secret...` |
/// | replies to `query-*` | every member named `password` or `passphrase` |
///
/// Only the value's bytes change: the rest of the message keeps its exact bytes, and the
/// replacement is the JSON string `"<redacted>"`.
public struct Redactor: Sendable {
    public static let marker = "<redacted>"
    public static let secretMemberNames: Set<String> = ["password", "passphrase", "key"]
    public static let replyMemberNames: Set<String> = ["password", "passphrase"]

    public var enabled: Bool
    private var matcher = ReplyMatcher()
    public private(set) var redactions = 0

    public init(enabled: Bool = true) { self.enabled = enabled }

    /// The message to record: `m` itself, or a copy with secret values replaced.
    public mutating func process(_ m: QMPMessage, from direction: Direction, connection: UInt32) -> QMPMessage {
        guard enabled else { return m }
        var paths: [[String]] = []
        switch (direction, m.body) {
        case (.client, .command(let c)):
            matcher.sent(.init(record: 0, time: 0, name: c.name, id: c.id, arguments: nil), connection: connection)
            paths = Redactor.commandPaths(c)
        case (.client, .other):
            matcher.sent(.init(record: 0, time: 0, name: nil, id: m.json?["id"], arguments: nil), connection: connection)
        case (.qemu, .return(let r)):
            if let p = matcher.reply(id: r.id, connection: connection), let name = p.name, name.hasPrefix("query-") {
                Redactor.collect(r.value, prefix: ["return"], names: Redactor.replyMemberNames, into: &paths)
            }
        case (.qemu, .error(let e)):
            _ = matcher.reply(id: e.id, connection: connection)
        default:
            break
        }
        guard !paths.isEmpty else { return m }
        return replace(paths, in: m)
    }

    /// Forgets a connection's outstanding commands (it closed).
    public mutating func closed(connection: UInt32) { _ = matcher.close(connection: connection) }

    static func commandPaths(_ c: Command) -> [[String]] {
        guard let args = c.arguments else { return [] }
        var out: [[String]] = []
        let a = ["arguments"]
        switch c.name {
        case "set_password", "change-vnc-password":
            if args["password"] != nil { out.append(a + ["password"]) }
        case "migrate", "migrate-incoming":
            if let uri = args["uri"]?.stringValue, uri.contains("@") { out.append(a + ["uri"]) }
        case "human-monitor-command":
            if let line = args["command-line"]?.stringValue {
                let l = line.trimmingLeadingSpaces()
                if l.hasPrefix("set_password") || l.hasPrefix("change vnc password") || l.hasPrefix("object_add secret") {
                    out.append(a + ["command-line"])
                }
            }
        case "object-add":
            let type = args["qom-type"]?.stringValue
            if type == "secret" || type == "secret_keyring" {
                for k in ["data", "iv"] where args[k] != nil { out.append(a + [k]) }
                if let props = args["props"]?.objectValue {
                    for k in ["data", "iv"] where props[k] != nil { out.append(a + ["props", k]) }
                }
            }
            collect(.object(args), prefix: a, names: secretMemberNames, into: &out)
        case "blockdev-add":
            collect(.object(args), prefix: a, names: secretMemberNames, into: &out)
        default:
            break
        }
        // Unique, in order.
        var seen = Set<[String]>()
        return out.filter { seen.insert($0).inserted }
    }

    static func collect(_ v: JSONValue, prefix: [String], names: Set<String>, into out: inout [[String]]) {
        if case .array(let items) = v {
            for (i, item) in items.enumerated() { collect(item, prefix: prefix + [String(i)], names: names, into: &out) }
            return
        }
        guard case .object(let o) = v else { return }
        for m in o.members {
            if names.contains(m.key), m.value.objectValue == nil {
                out.append(prefix + [m.key])
            } else {
                collect(m.value, prefix: prefix + [m.key], names: names, into: &out)
            }
        }
    }

    private mutating func replace(_ paths: [[String]], in m: QMPMessage) -> QMPMessage {
        var ranges: [Range<Int>] = []
        m.bytes.withUnsafeBufferPointer { buf in
            let payload = UnsafeBufferPointer(rebasing: buf[m.payload])
            for p in paths {
                if let r = JSONScan.valueRange(path: p, in: payload) {
                    ranges.append((r.lowerBound + m.payload.lowerBound)..<(r.upperBound + m.payload.lowerBound))
                }
            }
        }
        guard !ranges.isEmpty else { return m }
        var bytes = m.bytes
        var end = m.payload.upperBound
        let marker = Array("\"\(Redactor.marker)\"".utf8)
        for r in ranges.sorted(by: { $0.lowerBound > $1.lowerBound }) {
            bytes.replaceSubrange(r, with: marker)
            end += marker.count - r.count
            redactions += 1
        }
        return QMPMessage(bytes: bytes, payload: m.payload.lowerBound..<end)
    }
}

extension String {
    func trimmingLeadingSpaces() -> String { String(drop { $0 == " " || $0 == "\t" }) }
}
