/// Why a value is not a `query-qmp-schema` reply.
public struct SchemaError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension QAPISchema {
    /// Builds the model from the reply: `{"return": [SchemaInfo, ...]}`, its `return` array
    /// alone, or a whole recorded message with an `id`.
    ///
    /// SchemaInfo (docs/QEMU-FACTS.md, "QAPI introspection"): every entry has `name` and
    /// `meta-type`; `builtin` has `json-type`; `enum` has `values` (and, since 6.2,
    /// `members` with features); `array` has `element-type`; `object` has `members`
    /// (`name`, `type`, `default` present when optional, `features`) and, for a union, `tag`
    /// and `variants` (`case`, `type`); `alternate` has `members` (`type`); `command` has
    /// `arg-type`, `ret-type` and `allow-oob`; `event` has `arg-type`. Any entry may have
    /// `features`.
    public convenience init(reply: JSONValue) throws(SchemaError) {
        let entries: [JSONValue]
        if let a = reply.arrayValue {
            entries = a
        } else if let a = reply["return"]?.arrayValue {
            entries = a
        } else {
            throw SchemaError("not a query-qmp-schema reply: expected {\"return\": [...]} or an array of SchemaInfo objects")
        }
        guard !entries.isEmpty else { throw SchemaError("the query-qmp-schema reply is empty") }

        // Pass 1: a slot per named type, so that references resolve in pass 2 whatever the order.
        var index: [String: TypeRef] = [:]
        var typeEntries: [JSONObject] = []
        var commandEntries: [JSONObject] = [], eventEntries: [JSONObject] = []
        for (i, e) in entries.enumerated() {
            guard let o = e.objectValue, let name = o["name"]?.stringValue, let meta = o["meta-type"]?.stringValue else {
                throw SchemaError("entry \(i) of the query-qmp-schema reply has no name or meta-type")
            }
            switch meta {
            case "command": commandEntries.append(o)
            case "event": eventEntries.append(o)
            case "builtin", "enum", "array", "object", "alternate":
                if index[name] == nil {
                    index[name] = typeEntries.count
                    typeEntries.append(o)
                }
            default:
                // A meta-type this model does not know (none exists up to QEMU 10.0): keep
                // the name so references resolve, accepting any value.
                if index[name] == nil {
                    index[name] = typeEntries.count
                    typeEntries.append(JSONObject(["name": .string(name), "meta-type": .string("builtin"), "json-type": .string("value")]))
                }
            }
        }

        var unresolved: [String] = []
        var extra: [SchemaType] = []
        func ref(_ v: JSONValue?) -> TypeRef {
            let name = v?.stringValue ?? "any"
            if let r = index[name] { return r }
            // Array types are named "[T]"; a reply always defines them, but be lenient.
            unresolved.append(name)
            let r = typeEntries.count + extra.count
            index[name] = r
            extra.append(SchemaType(name: name, body: .builtin(.value), features: Features()))
            return r
        }
        func features(_ o: JSONObject) -> Features {
            Features(o["features"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        }

        var types: [SchemaType] = []
        types.reserveCapacity(typeEntries.count)
        for o in typeEntries {
            let name = o["name"]?.stringValue ?? ""
            let body: Body
            switch o["meta-type"]?.stringValue {
            case "builtin":
                body = .builtin(JSONType(rawValue: o["json-type"]?.stringValue ?? "value") ?? .value)
            case "enum":
                if let ms = o["members"]?.arrayValue {
                    let objs = ms.compactMap(\.objectValue)
                    body = .enumeration(EnumType(values: objs.compactMap { $0["name"]?.stringValue }, valueFeatures: objs.map(features)))
                } else {
                    let vs = o["values"]?.arrayValue?.compactMap(\.stringValue) ?? []
                    body = .enumeration(EnumType(values: vs, valueFeatures: vs.map { _ in Features() }))
                }
            case "array":
                body = .array(element: ref(o["element-type"]))
            case "alternate":
                body = .alternate((o["members"]?.arrayValue ?? []).map { ref($0["type"]) })
            default:  // object
                let members = (o["members"]?.arrayValue ?? []).compactMap(\.objectValue).map { m in
                    Member(name: m["name"]?.stringValue ?? "", type: ref(m["type"]), optional: m["default"] != nil, features: features(m))
                }
                let variants = (o["variants"]?.arrayValue ?? []).compactMap(\.objectValue).map { v in
                    Variant(tagValue: v["case"]?.stringValue ?? "", type: ref(v["type"]))
                }
                body = .object(ObjectType(members: members, tag: o["tag"]?.stringValue, variants: variants))
            }
            types.append(SchemaType(name: name, body: body, features: features(o)))
        }

        var commands: [String: CommandInfo] = [:]
        for o in commandEntries {
            let name = o["name"]!.stringValue!
            commands[name] = CommandInfo(
                name: name, argType: ref(o["arg-type"]), returnType: ref(o["ret-type"]),
                allowOOB: o["allow-oob"]?.boolValue ?? false, features: features(o))
        }
        var events: [String: EventInfo] = [:]
        for o in eventEntries {
            let name = o["name"]!.stringValue!
            events[name] = EventInfo(name: name, dataType: ref(o["arg-type"]), features: features(o))
        }
        self.init(types: types + extra, commands: commands, events: events, unresolved: unresolved)
    }

    /// From the bytes of a reply (or of any JSON text holding one).
    public convenience init(bytes: UnsafeBufferPointer<UInt8>) throws(SchemaError) {
        let v: JSONValue
        do { v = try JSONParser.parse(bytes) } catch { throw SchemaError("not JSON: \(error)") }
        try self.init(reply: v)
    }
}
