/// One way a JSON value disagrees with a schema type, with the path to the value
/// (`arguments.sync`, `data.server.websocket`, `return[2].name`).
///
/// Example: `{"execute": "drive-backup", "arguments": {"device": "d", "sync": "fulll", ...}}`
/// gives `.badValue` at `arguments.sync`: "is 'fulll'; accepted: 'top' | 'full' | ...".
public struct SchemaIssue: Sendable, Hashable {
    public enum Kind: String, Sendable {
        /// A member the type does not have. QEMU refuses it in input ("Parameter 'x' is
        /// unexpected") and never sends one in output for its own schema.
        case unknownMember = "unknown-member"
        case missingMember = "missing-member"
        case wrongType = "wrong-type"
        /// A string outside an enum.
        case badValue = "bad-value"
        /// Use of a member or enum value that has the `deprecated` feature (input only).
        case deprecated
        /// Use of a member or enum value that has the `unstable` feature (input only).
        case unstable
    }

    public var kind: Kind
    /// Dotted path from the checked value's root name, array items as `[N]`.
    public var path: String
    /// What is wrong, without the path: "is missing (str)", "is 'x'; accepted: ...".
    public var detail: String
    /// The member name itself (last path component), for QEMU-style messages.
    public var member: String

    public init(_ kind: Kind, path: String, member: String, detail: String) {
        self.kind = kind; self.path = path; self.member = member; self.detail = detail
    }

    public var message: String { "\(path) \(detail)" }
}

extension QAPISchema {
    /// Checks `value` against type `ref`; `root` names the value in paths (`arguments`,
    /// `data`, `return`). `input`: the value was sent by a client, so members and enum
    /// values with the `deprecated`/`unstable` feature are reported when used.
    /// At most `limit` issues are returned (a reply of thousands of items stays readable).
    public func check(_ value: JSONValue, against ref: TypeRef, root: String, input: Bool = false, limit: Int = 20) -> [SchemaIssue] {
        var w = SchemaWalker(schema: self, input: input, limit: limit, root: root)
        w.check(value, ref)
        return w.issues
    }

    /// Checks a command's `arguments` (absent means `{}`). Empty for an unknown command.
    public func checkArguments(command: String, arguments: JSONObject?) -> [SchemaIssue] {
        guard let c = commands[command] else { return [] }
        return check(.object(arguments ?? JSONObject()), against: c.argType, root: "arguments", input: true)
    }

    /// Checks a successful reply's `return` value against the command's return type.
    public func checkReturn(command: String, value: JSONValue) -> [SchemaIssue] {
        guard let c = commands[command] else { return [] }
        return check(value, against: c.returnType, root: "return")
    }

    /// Checks an event's `data` (absent means `{}`: QEMU omits it for events without members).
    public func checkEvent(_ name: String, data: JSONObject?) -> [SchemaIssue] {
        guard let e = events[name] else { return [] }
        return check(.object(data ?? JSONObject()), against: e.dataType, root: "data")
    }

    /// The argument QEMU would refuse as "Parameter 'X' is unexpected" (its full name, as
    /// QEMU writes it: `target.foo` for a nested one), or nil. For the fake QEMU: nil for an
    /// unknown command, and for commands that take properties the schema does not list
    /// (`device_add`: docs/QEMU-FACTS.md, "QAPI introspection").
    public func unexpectedArgument(command: String, arguments: JSONObject?) -> String? {
        guard commands[command] != nil, !QAPISchema.takesOpenArguments(command, schema: self) else { return nil }
        let issue = checkArguments(command: command, arguments: arguments).first { $0.kind == .unknownMember }
        guard let issue else { return nil }
        return issue.path.hasPrefix("arguments.") ? String(issue.path.dropFirst("arguments.".count)) : issue.path
    }

    /// Commands whose handler takes the raw arguments (QAPI `'gen': false`): properties
    /// beyond the listed members are the device's or object's own, which introspection
    /// cannot show. `device_add` in every version; `object-add` while it took `props` (before
    /// it became a union in QEMU 6.0). docs/QEMU-FACTS.md, "QAPI introspection".
    public static func takesOpenArguments(_ command: String, schema: QAPISchema) -> Bool {
        switch command {
        case "device_add": return true
        case "object-add":
            guard let c = schema.commands[command], let o = schema.object(c.argType) else { return false }
            return o.tag == nil
        default: return false
        }
    }
}

/// Walks a value and a type together. Paths are kept as a stack of components and only
/// rendered for an issue, so a clean value costs no string building.
struct SchemaWalker {
    enum Step { case key(String), index(Int) }

    let schema: QAPISchema
    let input: Bool
    let limit: Int
    let root: String
    var path: [Step] = []
    var issues: [SchemaIssue] = []

    init(schema: QAPISchema, input: Bool, limit: Int, root: String) {
        self.schema = schema; self.input = input; self.limit = limit; self.root = root
    }

    var full: Bool { issues.count >= limit }

    mutating func check(_ v: JSONValue, _ ref: QAPISchema.TypeRef) {
        if full { return }
        switch schema.types[ref].body {
        case .builtin(let j):
            if !Self.accepts(j, v) { wrongType(v, expected: schema.describe(ref)) }
        case .enumeration(let e):
            guard case .string(let s) = v else { wrongType(v, expected: "str (an enum)"); return }
            guard let i = e.index(of: s) else {
                add(.badValue, "is '\(s)'; accepted: \(schema.describe(ref, enumLimit: 12))")
                return
            }
            if input { noteFeatures(e.valueFeatures[i], what: "value '\(s)'") }
        case .array(let element):
            guard case .array(let items) = v else { wrongType(v, expected: schema.describe(ref)); return }
            for (i, item) in items.enumerated() {
                if full { return }
                path.append(.index(i))
                check(item, element)
                path.removeLast()
            }
        case .object:
            guard case .object(let o) = v else { wrongType(v, expected: "object"); return }
            checkObject(o, ref)
        case .alternate(let members):
            guard let chosen = members.first(where: { accepts(schemaType: $0, v) }) else {
                wrongType(v, expected: schema.describe(ref))
                return
            }
            check(v, chosen)
        }
    }

    /// An object's own members, then those of the variant its tag selects (and so on down),
    /// then any member none of them declares.
    private mutating func checkObject(_ o: JSONObject, _ ref: QAPISchema.TypeRef) {
        var layer: QAPISchema.TypeRef? = ref
        var seen = 0
        var depth = 0
        // A tag outside its enum was reported already; the members of the variant it
        // failed to select would only repeat that.
        var lostVariant = false
        while let l = layer, depth < Self.maxLayers, let ot = schema.object(l) {
            depth += 1
            layer = nil
            for m in ot.members {
                guard let mv = o[m.name] else {
                    if !m.optional {
                        path.append(.key(m.name))
                        add(.missingMember, "is missing (\(schema.describe(m.type)))")
                        path.removeLast()
                    }
                    continue
                }
                seen += 1
                path.append(.key(m.name))
                check(mv, m.type)
                if input { noteFeatures(m.features, what: "member") }
                path.removeLast()
            }
            if let tag = ot.tag, let value = o[tag]?.stringValue {
                if let v = ot.variant(value) { layer = v.type } else { lostVariant = true }
            }
        }
        guard seen < o.count, !full, !lostVariant else { return }
        let layers = self.layers(o, ref)
        for key in o.keys where !layers.contains(where: { schema.object($0)?.member(key) != nil }) {
            path.append(.key(key))
            add(.unknownMember, "is not a member of this type" + suggestion(key, layers))
            path.removeLast()
        }
    }

    /// A union (variant of a variant ...) is at most this deep; a reply that says otherwise
    /// refers to itself.
    static let maxLayers = 8

    /// The object types whose members a value may have: the type, then the variants its
    /// tags select. Only built when a member is unknown, so a clean value allocates nothing.
    private func layers(_ o: JSONObject, _ ref: QAPISchema.TypeRef) -> [QAPISchema.TypeRef] {
        var out: [QAPISchema.TypeRef] = []
        var layer: QAPISchema.TypeRef? = ref
        while let l = layer, out.count < Self.maxLayers, let ot = schema.object(l) {
            out.append(l)
            layer = ot.tag.flatMap { o[$0]?.stringValue }.flatMap { ot.variant($0)?.type }
        }
        return out
    }

    private func suggestion(_ key: String, _ layers: [QAPISchema.TypeRef]) -> String {
        let names = layers.flatMap { schema.object($0)?.members.map(\.name) ?? [] }
        guard !names.isEmpty else { return " (it takes none)" }
        return " (members: \(names.joined(separator: ", ")))"
    }

    private mutating func noteFeatures(_ f: QAPISchema.Features, what: String) {
        guard !f.isEmpty else { return }
        if f.deprecated { add(.deprecated, "\(what) has the feature 'deprecated'") }
        if f.unstable { add(.unstable, "\(what) has the feature 'unstable'") }
    }

    static func accepts(_ j: QAPISchema.JSONType, _ v: JSONValue) -> Bool {
        switch (j, v) {
        case (.value, _), (.string, .string), (.boolean, .bool), (.null, .null), (.number, .number): return true
        // QEMU's input visitor refuses a number with a fraction or exponent for an integer.
        case (.int, .number(let n)): return n.isInteger
        default: return false
        }
    }

    /// Whether an alternate's member type is the one for this value's JSON type.
    private func accepts(schemaType ref: QAPISchema.TypeRef, _ v: JSONValue) -> Bool {
        switch (schema.types[ref].body, v) {
        case (.builtin(let j), _): return Self.accepts(j, v)
        case (.enumeration, .string), (.array, .array), (.object, .object): return true
        default: return false
        }
    }

    private mutating func wrongType(_ v: JSONValue, expected: String) {
        add(.wrongType, "is \(Self.article(v)), expected \(expected)")
    }

    private static func article(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case .bool(let b): return "a bool (\(b))"
        case .number(let n): return n.isInteger ? "an int (\(n.text))" : "a number (\(n.text))"
        case .string(let s): return "a string ('\(s.count > 40 ? s.prefix(40) + "…" : s)')"
        case .array(let a): return "an array (\(a.count) items)"
        case .object: return "an object"
        }
    }

    private mutating func add(_ kind: SchemaIssue.Kind, _ detail: String) {
        guard !full else { return }
        var p = root
        var last = root
        for s in path {
            switch s {
            case .key(let k): p += "." + k; last = k
            case .index(let i): p += "[\(i)]"
            }
        }
        issues.append(SchemaIssue(kind, path: p, member: last, detail: detail))
    }
}
