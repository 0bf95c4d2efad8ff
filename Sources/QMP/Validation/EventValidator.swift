/// Checks one event against the catalog: unknown event, missing member, wrong JSON
/// type, value outside the documented set, members the documents do not list.
///
/// Example: `{"event": "WATCHDOG", "data": {"action": "explode"}}` gives one `bad-value`
/// error naming the documented values.
public enum EventValidator {
    public static func validate(_ event: Event, record: Int? = nil) -> [Finding] {
        var out: [Finding] = []
        guard let entry = EventCatalog.entry(for: event.name) else {
            out.append(Finding(.info, "unknown-event", "event \(event.name) is not in the catalog", record: record))
            return out
        }
        out += timestampFindings(event, record: record)
        guard let members = entry.members else { return out }
        if members.isEmpty {
            if let data = event.data, !data.isEmpty {
                out.append(Finding(.info, "unexpected-data", "\(event.name) is documented without data but carries \(data.keys.joined(separator: ", "))", record: record))
            }
            return out
        }
        guard let data = event.data else {
            if members.contains(where: { !$0.optional }) {
                out.append(Finding(.error, "missing-data", "\(event.name) has no data; expected \(requiredNames(members))", record: record))
            }
            return out
        }
        check(data, against: members, path: "data", event: event.name, record: record, into: &out)
        return out
    }

    /// The event's `timestamp` (docs/QEMU-FACTS.md, "Event"): present, microseconds in range.
    public static func timestampFindings(_ event: Event, record: Int? = nil) -> [Finding] {
        if event.timestamp == nil {
            return [Finding(.warning, "missing-timestamp", "\(event.name) has no valid timestamp {seconds, microseconds}", record: record)]
        } else if let ts = event.timestamp, ts.microseconds < 0 || ts.microseconds > 999_999 {
            return [Finding(.warning, "bad-timestamp", "\(event.name) timestamp microseconds \(ts.microseconds) is outside 0...999999", record: record)]
        }
        return []
    }

    private static func requiredNames(_ members: [CatalogMember]) -> String {
        members.filter { !$0.optional }.map(\.name).joined(separator: ", ")
    }

    private static func check(
        _ object: JSONObject, against members: [CatalogMember], path: String, event: String, record: Int?,
        into out: inout [Finding]
    ) {
        for m in members {
            let where_ = "\(event) \(path).\(m.name)"
            guard let v = object[m.name] else {
                if !m.optional {
                    out.append(Finding(.error, "missing-member", "\(where_) is missing (\(m.type), documented in \(m.source.rawValue))", record: record))
                }
                continue
            }
            guard m.type.accepts(v) else {
                out.append(Finding(.error, "wrong-type", "\(where_) is \(v.typeName), expected \(m.type)", record: record))
                continue
            }
            if let accepted = m.acceptedValues, let s = v.stringValue, !accepted.contains(s) {
                let listed = (m.allowed ?? []) + m.laterValues
                out.append(Finding(.error, "bad-value", "\(where_) is \"\(s)\", documented values: \(listed.joined(separator: ", "))", record: record))
            }
            if case .object(let nested) = m.type, let inner = v.objectValue {
                check(inner, against: nested, path: "\(path).\(m.name)", event: event, record: record, into: &out)
            }
        }
        let known = Set(members.map(\.name))
        for key in object.keys where !known.contains(key) {
            out.append(Finding(.info, "unknown-member", "\(event) \(path).\(key) is not in the catalog (newer QEMU?)", record: record))
        }
    }
}
