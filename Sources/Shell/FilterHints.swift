import QMP
import Recording

/// Why a filter matches nothing, when the reason is a name or field the recording does not
/// have: `next NIC_RX_FILTER_CHANGE` (no such event here; did you mean
/// NIC_RX_FILTER_CHANGED?), `find data.nmae == "net0"` (did you mean data.name?).
enum FilterHints {
    /// QMP's error classes (qapi/error.json), for `error CLASS`.
    static let errorClasses = ["GenericError", "CommandNotFound", "DeviceNotActive", "DeviceNotFound", "KVMMissingCap"]

    /// How many message records are read to learn the field paths of a recording.
    static let pathSample = 20_000

    /// Hints for the names and paths of `f` that the recording does not have, each with the
    /// closest known ones; empty when every name and path is known.
    static func hints(for f: FilterExpression, in recording: Recording, knownPaths: Set<String>) -> [String] {
        var out: [String] = []
        var seen = Set<String>()
        walk(f.root) { node in
            switch node {
            case .name(let kind, let pattern):
                let name: String
                switch pattern {
                case .glob(let g) where Glob(g).isLiteral: name = g
                case .exact(let e): name = e
                default: return
                }
                guard seen.insert("\(kind.rawValue) \(name)").inserted, !recording.names.dropFirst().contains(name) else { return }
                out.append(nameHint(kind, name, recording))
            case .compare(let p, _, _), .has(let p):
                let key = normalized(p.components)
                guard !key.isEmpty, seen.insert(key).inserted, !knownPaths.contains(key) else { return }
                let first = p.components.first ?? ""
                let candidates = knownPaths.filter { $0.hasPrefix(first + ".") || $0 == first }
                let best = Suggestions.closest(to: key, among: Array(candidates), limit: 2)
                if !best.isEmpty {
                    out.append("no record has \(p.description); did you mean \(best.joined(separator: " or "))?")
                } else if recording.count <= pathSample {
                    out.append("no record has \(p.description)")
                }
            default:
                break
            }
        }
        return out
    }

    private static func nameHint(_ kind: RecordKind, _ name: String, _ recording: Recording) -> String {
        let here: [String]
        let elsewhere: [String]
        switch kind {
        case .event:
            here = recording.names.dropFirst().filter(Suggestions.isEventName)
            elsewhere = EventCatalog.names
        case .command:
            here = Suggestions.commandNames(in: recording)
            elsewhere = []
        default:
            here = recording.names.dropFirst().filter { errorClasses.contains($0) }
            elsewhere = errorClasses
        }
        var s = "no \(kind.rawValue) named \(name) in this recording"
        if let best = Suggestions.closest(to: name, among: here, limit: 2).first {
            s += "; did you mean \(best)?"
        } else if let best = Suggestions.closest(to: name, among: elsewhere, limit: 1).first {
            s += "; did you mean \(best)? (there is none of those here either)"
        }
        return s
    }

    /// `return.0.device` -> `return.device`: array positions do not matter for "is there such a field".
    static func normalized(_ components: [String]) -> String {
        components.filter { Int($0) == nil }.joined(separator: ".")
    }

    /// The field paths of the first `pathSample` messages (arrays entered without their
    /// positions) and every `data.` path the event catalog documents.
    static func knownPaths(in recording: Recording) -> Set<String> {
        var paths = Set(EventCatalogPaths.paths)
        for member in JSONPathSpec.messageMembers { paths.insert(member) }
        func add(_ v: JSONValue, _ prefix: String, _ depth: Int) {
            guard depth < 8 else { return }
            switch v {
            case .object(let o):
                for m in o.members {
                    let p = prefix.isEmpty ? m.key : prefix + "." + m.key
                    paths.insert(p)
                    add(m.value, p, depth + 1)
                }
            case .array(let items):
                for item in items.prefix(64) { add(item, prefix, depth + 1) }
            default:
                break
            }
        }
        var decoded = 0
        var i = 0
        while i < recording.count && decoded < pathSample {
            defer { i += 1 }
            guard recording.direction(i) != nil, let rec = try? recording.record(at: i), let json = rec.message?.json else { continue }
            decoded += 1
            add(json, "", 0)
        }
        return paths
    }

    /// Visits every node of a filter tree.
    static func walk(_ node: FilterNode, _ visit: (FilterNode) -> Void) {
        visit(node)
        switch node {
        case .or(let items), .and(let items): for n in items { walk(n, visit) }
        case .not(let n): walk(n, visit)
        default: break
        }
    }
}

/// Field paths offered by completion: `data.` plus every member the catalog documents.
public enum EventCatalogPaths {
    public static let paths: [String] = {
        var out = Set<String>()
        func walk(_ members: [CatalogMember], _ prefix: String) {
            for m in members {
                out.insert(prefix + m.name)
                if case .object(let nested) = m.type { walk(nested, prefix + m.name + ".") }
            }
        }
        for e in EventCatalog.all { if let m = e.members { walk(m, "data.") } }
        return out.sorted()
    }()
}
