/// What one QEMU build says about itself: the reply to `query-qmp-schema`, QEMU's
/// introspection of every command (argument and return types, out-of-band permission),
/// every event (data type) and every type they use (docs/QEMU-FACTS.md, "QAPI
/// introspection"). Built once per recording; looked up by validation, the shell's
/// completion and `describe`, and the fake QEMU.
///
/// Type names other than the built-ins (`str`, `int`, `number`, `bool`, `null`, `any`) are
/// numbers chosen by QEMU ("186", "[175]" for an array), so they mean nothing across
/// builds; the model resolves them once into indices (`TypeRef`).
///
/// Example: `try QAPISchema(reply: JSONParser.parse(bytes))` on
/// `{"return": [{"name": "stop", "meta-type": "command", "arg-type": "0", "ret-type": "0"}, ...]}`.
public final class QAPISchema: Sendable {
    /// An index into `types`.
    public typealias TypeRef = Int

    /// A built-in type's JSON type (SchemaInfoBuiltin `json-type`).
    public enum JSONType: String, Sendable {
        case string, int, number, boolean, null
        /// `any`: every value.
        case value
    }

    /// The `features` of a command, event, type, member or enum value. `deprecated` and
    /// `unstable` are the two QEMU acts on (`-compat`); others (`json-cli`, ...) only inform.
    public struct Features: Sendable, Hashable {
        public let names: [String]
        // Decided once: validation asks for every command and event it sees.
        public let deprecated: Bool
        public let unstable: Bool
        /// `deprecated` and/or `unstable`, in that order: what a note about its use names.
        public var flagged: [String] {
            guard deprecated || unstable else { return [] }
            return (deprecated ? ["deprecated"] : []) + (unstable ? ["unstable"] : [])
        }
        public var isEmpty: Bool { names.isEmpty }
        public init(_ names: [String] = []) {
            self.names = names
            deprecated = names.contains("deprecated")
            unstable = names.contains("unstable")
        }
    }

    public struct Member: Sendable {
        public var name: String
        public var type: TypeRef
        /// The reply marks an optional member with `"default": null`.
        public var optional: Bool
        public var features: Features
    }

    public struct Variant: Sendable {
        public var tagValue: String
        /// An object type whose members join the base's when the tag has this value.
        public var type: TypeRef
    }

    /// A class, so that the checker's many lookups share it instead of copying three arrays.
    public final class ObjectType: Sendable {
        public let members: [Member]
        /// The member whose (enum) value selects a variant: flat unions.
        public let tag: String?
        public let variants: [Variant]

        public init(members: [Member], tag: String?, variants: [Variant]) {
            self.members = members; self.tag = tag; self.variants = variants
        }

        public func member(_ name: String) -> Member? { members.first { $0.name == name } }
        public func variant(_ tagValue: String) -> Variant? { variants.first { $0.tagValue == tagValue } }
    }

    public final class EnumType: Sendable {
        public let values: [String]
        /// Per value, parallel to `values` (7.2 and 10.0 list `members` with features; 5.2 does not).
        public let valueFeatures: [Features]

        public init(values: [String], valueFeatures: [Features]) {
            self.values = values; self.valueFeatures = valueFeatures
        }

        public func index(of value: String) -> Int? { values.firstIndex(of: value) }
    }

    public enum Body: Sendable {
        case builtin(JSONType)
        case enumeration(EnumType)
        case array(element: TypeRef)
        case object(ObjectType)
        /// A value of exactly one of these types, told apart by its JSON type.
        case alternate([TypeRef])
    }

    public struct SchemaType: Sendable {
        /// QEMU's name: a built-in's name, or a number that means nothing outside this reply.
        public var name: String
        public var body: Body
        public var features: Features
    }

    public struct CommandInfo: Sendable {
        public var name: String
        public var argType: TypeRef
        public var returnType: TypeRef
        /// `allow-oob`: the command may be sent with `exec-oob`.
        public var allowOOB: Bool
        public var features: Features
    }

    public struct EventInfo: Sendable {
        public var name: String
        public var dataType: TypeRef
        public var features: Features
    }

    public let types: [SchemaType]
    public let commands: [String: CommandInfo]
    public let events: [String: EventInfo]
    /// Sorted, for completion and listings.
    public let commandNames: [String]
    public let eventNames: [String]
    /// Type names the reply used but did not define (never in a real reply); such
    /// references accept any value.
    public let unresolvedTypes: [String]

    init(types: [SchemaType], commands: [String: CommandInfo], events: [String: EventInfo], unresolved: [String]) {
        self.types = types
        self.commands = commands
        self.events = events
        self.commandNames = commands.keys.sorted()
        self.eventNames = events.keys.sorted()
        self.unresolvedTypes = unresolved
    }

    // MARK: Lookup

    public func command(_ name: String) -> CommandInfo? { commands[name] }
    public func event(_ name: String) -> EventInfo? { events[name] }
    public func hasCommand(_ name: String) -> Bool { commands[name] != nil }
    public func hasEvent(_ name: String) -> Bool { events[name] != nil }
    public func type(_ ref: TypeRef) -> SchemaType { types[ref] }

    /// The object type behind a reference, when it is one.
    public func object(_ ref: TypeRef) -> ObjectType? {
        if case .object(let o) = types[ref].body { return o }
        return nil
    }

    /// The members a command takes, in declaration order (a union's tag first, then its
    /// variants' members are not included: see `members(of:tagValue:)`).
    public func arguments(of command: String) -> [Member] {
        guard let c = commands[command], let o = object(c.argType) else { return [] }
        return o.members
    }

    /// Every member an object type can have: its own, plus those of the variant `tagValue`
    /// selects, or of every variant when `tagValue` is nil (what completion offers).
    public func members(of ref: TypeRef, tagValue: String? = nil) -> [Member] {
        members(of: ref, tagValue: tagValue, depth: 8)
    }

    // Depth limits here and below: a reply read from a file could be made to refer to
    // itself (a union whose variant is the union, an array of itself); QEMU's never do.
    private func members(of ref: TypeRef, tagValue: String?, depth: Int) -> [Member] {
        guard depth > 0, let o = object(ref) else { return [] }
        var out = o.members
        var seen = Set(out.map(\.name))
        let chosen: [Variant] = tagValue.map { v in o.variant(v).map { [$0] } ?? [] } ?? o.variants
        for v in chosen {
            for m in members(of: v.type, tagValue: nil, depth: depth - 1) where !seen.contains(m.name) {
                seen.insert(m.name)
                out.append(m)
            }
        }
        return out
    }

    /// The type of a dotted member path below a type (`server.host` under VNC_CONNECTED's
    /// data type); array types are stepped through. `nil` when the path leaves the schema.
    public func type(at path: [String], below ref: TypeRef) -> TypeRef? {
        var t = ref
        for part in path {
            t = elementType(t)
            guard let m = members(of: t).first(where: { $0.name == part }) else { return nil }
            t = m.type
        }
        return t
    }

    /// The type an array holds (through arrays of arrays); the type itself when not an array.
    public func elementType(_ ref: TypeRef) -> TypeRef {
        var t = ref
        for _ in 0..<16 {
            guard case .array(let e) = types[t].body else { return t }
            t = e
        }
        return t
    }

    /// The values of an enum type (through arrays and alternates), for completion.
    public func enumValues(_ ref: TypeRef) -> [String] {
        switch types[elementType(ref)].body {
        case .enumeration(let e): return e.values
        case .alternate(let ms): return ms.flatMap { m -> [String] in
            if case .enumeration(let e) = types[elementType(m)].body { return e.values }
            if case .builtin(.boolean) = types[m].body { return ["true", "false"] }
            return []
        }
        case .builtin(.boolean): return ["true", "false"]
        default: return []
        }
    }

    /// A type as a person reads it: `str`, `int`, `'a' | 'b'` for a small enum, `[...]`,
    /// `object`, `str or null`.
    public func describe(_ ref: TypeRef, enumLimit: Int = 8) -> String {
        describe(ref, enumLimit: enumLimit, depth: 6)
    }

    private func describe(_ ref: TypeRef, enumLimit: Int, depth: Int) -> String {
        guard depth > 0 else { return "…" }
        let t = types[ref]
        switch t.body {
        case .builtin(let j):
            switch j {
            case .value: return "any"
            case .boolean: return "bool"
            default: return t.name
            }
        case .enumeration(let e):
            let shown = e.values.prefix(enumLimit).map { "'\($0)'" }.joined(separator: " | ")
            return e.values.count > enumLimit ? shown + " | … (\(e.values.count) values)" : shown
        case .array(let e): return "[" + describe(e, enumLimit: enumLimit, depth: depth - 1) + "]"
        case .object: return "object"
        case .alternate(let ms): return ms.map { describe($0, enumLimit: enumLimit, depth: depth - 1) }.joined(separator: " or ")
        }
    }
}
