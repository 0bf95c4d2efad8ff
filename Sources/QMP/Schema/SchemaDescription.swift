extension QAPISchema {
    /// A command's or event's members as indented lines, for the shell's `describe`:
    ///
    ///     command block-job-cancel
    ///       arguments:
    ///         device     str
    ///         force?     bool
    ///       returns: nothing ({})
    ///
    /// `?` marks an optional member; nested objects are shown `depth` levels deep; a union
    /// lists its variants' own members under the tag value that selects them.
    /// Empty when the schema has no such command or event.
    public func describeEntry(_ name: String, depth: Int = 3) -> [String] {
        var out: [String] = []
        if let c = commands[name] {
            out.append("command \(name)" + Self.featureSuffix(c.features))
            if c.allowOOB { out.append("  allow-oob: may be sent with exec-oob") }
            let args = describeMembers(c.argType, indent: 4, depth: depth)
            if args.isEmpty {
                out.append("  arguments: none")
            } else {
                out.append("  arguments:")
                out += args
            }
            let ret = describeMembers(c.returnType, indent: 4, depth: depth)
            if case .object(let o) = types[c.returnType].body, o.members.isEmpty, o.variants.isEmpty {
                out.append("  returns: nothing ({})")
            } else if ret.isEmpty {
                out.append("  returns: \(describe(c.returnType))")
            } else {
                out.append("  returns: \(describe(c.returnType))")
                out += ret
            }
        } else if let e = events[name] {
            out.append("event \(name)" + Self.featureSuffix(e.features))
            let data = describeMembers(e.dataType, indent: 4, depth: depth)
            out.append(data.isEmpty ? "  data: none" : "  data:")
            out += data
        }
        return out
    }

    /// Member lines of an object type (through arrays), `name? type [features]`.
    func describeMembers(_ ref: TypeRef, indent: Int, depth: Int) -> [String] {
        let t = elementType(ref)
        guard depth > 0, let o = object(t) else { return [] }
        let pad = String(repeating: " ", count: indent)
        let width = min(28, (o.members.map { $0.name.count + ($0.optional ? 1 : 0) }.max() ?? 0) + 2)
        var out: [String] = []
        for m in o.members {
            let label = m.name + (m.optional ? "?" : "")
            let padded = label.count >= width ? label + " " : label + String(repeating: " ", count: width - label.count)
            out.append(pad + padded + describe(m.type) + Self.featureSuffix(m.features))
            out += describeMembers(m.type, indent: indent + 2, depth: depth - 1)
        }
        if let tag = o.tag {
            for v in o.variants {
                let inner = describeMembers(v.type, indent: indent + 4, depth: depth - 1)
                guard !inner.isEmpty else { continue }
                out.append(pad + "when \(tag) is '\(v.tagValue)':")
                out += inner
            }
        }
        return out
    }

    static func featureSuffix(_ f: Features) -> String {
        f.isEmpty ? "" : "  [" + f.names.joined(separator: ", ") + "]"
    }

    /// Every dotted member path below a type, `prefix` first (`data.server.host`), for
    /// completion; unions contribute every variant's members.
    public func memberPaths(of ref: TypeRef, prefix: String, depth: Int = 3) -> [String] {
        var out: [String] = []
        let t = elementType(ref)
        guard depth > 0, object(t) != nil else { return out }
        for m in members(of: t) {
            let p = prefix + "." + m.name
            out.append(p)
            out += memberPaths(of: m.type, prefix: p, depth: depth - 1)
        }
        return out
    }
}
