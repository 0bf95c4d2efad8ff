import QMP
import Recording

extension ShellSession {
    /// `describe NAME`: a command's or event's members from the schema that applies, plus
    /// what the seed catalog knows of the event; `describe` alone says which schema and why.
    func describe(_ arg: String) throws(ShellError) {
        let name = arg.trimmed()
        let choice = schema
        guard !name.isEmpty else {
            emit("schema: \(choice.summary)")
            for l in Self.wrap(choice.reason, width: max(60, out.width) - 3) { emit("  " + l) }
            emit("'describe NAME' shows a command or an event; Tab completes the names.")
            return
        }
        var lines = choice.schema?.describeEntry(name) ?? []
        let catalog = EventCatalog.entry(for: name)
        if lines.isEmpty, let catalog {
            lines = Self.describeFromCatalog(catalog)
            if choice.schema != nil { lines.insert("(not in \(RecordingValidation.label(choice)); from the seed catalog)", at: 1) }
        } else if !lines.isEmpty {
            lines.insert("  from \(RecordingValidation.label(choice))", at: 1)
        }
        if let catalog { lines += Self.catalogNotes(catalog) }
        guard !lines.isEmpty else {
            let known = (choice.schema.map { $0.commandNames + $0.eventNames } ?? []) + EventCatalog.names
            let where_ = choice.schema == nil ? "the seed catalog (no schema applies: 'describe' says why)" : "\(RecordingValidation.label(choice)) or the seed catalog"
            throw ShellError("no command or event '\(name)' in \(where_)\(Suggestions.didYouMean(name, among: known))")
        }
        for l in lines { emit(l) }
    }

    static func describeFromCatalog(_ e: CatalogEvent) -> [String] {
        var out = ["event \(e.name)"]
        func members(_ ms: [CatalogMember], indent: Int) {
            let pad = String(repeating: " ", count: indent)
            for m in ms {
                var type = m.type.description
                if let accepted = m.allowed { type = (accepted + m.laterValues).map { "'\($0)'" }.joined(separator: " | ") }
                out.append(pad + (m.name + (m.optional ? "?" : "")).padRight(18) + " " + type)
                if case .object(let inner) = m.type { members(inner, indent: indent + 2) }
            }
        }
        if let ms = e.members {
            out.append(ms.isEmpty ? "  data: none" : "  data:")
            members(ms, indent: 4)
        } else {
            out.append("  data: not described")
        }
        return out
    }

    /// The seed catalog's knowledge beyond member types.
    static func catalogNotes(_ e: CatalogEvent) -> [String] {
        var out = ["  seed catalog (\(e.sources.map(\.rawValue).joined(separator: "; "))): \(e.summary)"]
        for f in e.followUps {
            let when = f.when.map { " when \($0.member) is '\($0.value)'" } ?? ""
            out.append("    followed by \(f.then)\(when)" + (f.onlyIf.map { " (only with \($0))" } ?? ""))
        }
        if let t = e.throttle {
            out.append("    throttled: one per second per " + (t.keyPaths.isEmpty ? "event name" : t.keyPaths.joined(separator: ", ")))
        }
        for r in e.remarks { out.append("    " + r) }
        return out
    }
}
