import QMP
import TestSupport
import Testing

// The schema model on real query-qmp-schema replies (Recordings/schemas/: QEMU 5.2.0, 7.2.22
// and 10.0.2, x86_64), and values taken from the guest lab's real traffic.

private func object(_ text: String) -> JSONObject {
    (try! JSONParser.parse(text)).objectValue!
}

private func kinds(_ issues: [SchemaIssue]) -> [SchemaIssue.Kind] { issues.map(\.kind) }

@Suite("QAPISchema: parsing real replies")
struct SchemaParsingTests {
    @Test("every shipped reply parses, with every type reference resolved", arguments: ["5.2", "7.2", "10.0"])
    func parses(release: String) throws {
        let bytes = SchemaFixtures.reply(release)
        let s = try bytes.withUnsafeBufferPointer { try QAPISchema(bytes: $0) }
        #expect(s.unresolvedTypes.isEmpty)
        #expect(s.commands.count > 150)
        #expect(s.events.count > 40)
        for name in ["qmp_capabilities", "query-status", "stop", "cont", "query-qmp-schema", "blockdev-add"] {
            #expect(s.hasCommand(name), "\(release) lacks \(name)")
        }
        for name in ["STOP", "RESUME", "SHUTDOWN", "BLOCK_IO_ERROR", "MIGRATION", "JOB_STATUS_CHANGE"] {
            #expect(s.hasEvent(name), "\(release) lacks \(name)")
        }
        // The schema reply checks clean against its own return type.
        let reply = try JSONParser.parse(bytes)
        #expect(s.checkReturn(command: "query-qmp-schema", value: reply["return"]!).isEmpty)
    }

    @Test("counts of QEMU 7.2.22's reply: 216 commands, 52 events, out-of-band commands")
    func counts() {
        let s = SchemaFixtures.schema("7.2")
        #expect(s.commands.count == 216)
        #expect(s.events.count == 52)
        #expect(s.commandNames.filter { s.command($0)!.allowOOB } == ["migrate-pause", "migrate-recover", "query-yank", "yank"])
        #expect(s.command("drive-backup")?.features.deprecated == true)
        #expect(s.event("MEM_UNPLUG_ERROR")?.features.deprecated == true)
        #expect(s.command("x-query-profile")?.features.unstable == true)
    }

    @Test("the array alone, or a recorded message with an id, parse too; other JSON is refused")
    func shapes() throws {
        let array = #"[{"name": "0", "members": [], "meta-type": "object"}, {"name": "stop", "meta-type": "command", "arg-type": "0", "ret-type": "0"}]"#
        #expect(try QAPISchema(reply: JSONParser.parse(array)).hasCommand("stop"))
        #expect(try QAPISchema(reply: JSONParser.parse(#"{"return": "# + array + #", "id": "x"}"#)).hasCommand("stop"))
        #expect(throws: SchemaError.self) { try QAPISchema(reply: JSONParser.parse(#"{"return": {}}"#)) }
        #expect(throws: SchemaError.self) { try QAPISchema(reply: JSONParser.parse(#"[{"name": 1}]"#)) }
    }
}

@Suite("QAPISchema: replies made to refer to themselves")
struct SchemaCycleTests {
    /// QEMU never sends these, but a --schema file or a recording can hold anything.
    static let reply = #"""
        [{"name": "str", "meta-type": "builtin", "json-type": "string"},
         {"name": "e", "meta-type": "enum", "values": ["a", "b"]},
         {"name": "U", "meta-type": "object", "tag": "t", "members": [{"name": "t", "type": "e"}, {"name": "self", "type": "U", "default": null}],
          "variants": [{"case": "a", "type": "U"}, {"case": "b", "type": "[A]"}]},
         {"name": "[A]", "meta-type": "array", "element-type": "[A]"},
         {"name": "A", "meta-type": "alternate", "members": [{"type": "A"}, {"type": "str"}, {"type": "U"}]},
         {"name": "cmd", "meta-type": "command", "arg-type": "U", "ret-type": "[A]"},
         {"name": "EV", "meta-type": "event", "arg-type": "A"}]
        """#

    @Test("checking, describing and completing still end")
    func terminates() throws {
        let s = try QAPISchema(reply: JSONParser.parse(Self.reply))
        let u = s.command("cmd")!.argType
        _ = s.check(.object(object(#"{"t": "a", "self": {"t": "b", "x": 1}}"#)), against: u, root: "arguments")
        _ = s.check(try JSONParser.parse(#"[[["x"]]]"#), against: s.command("cmd")!.returnType, root: "return")
        _ = s.checkEvent("EV", data: object(#"{"t": "a"}"#))
        #expect(!s.describeEntry("cmd").isEmpty)
        #expect(!s.memberPaths(of: u, prefix: "arguments").isEmpty)
        _ = s.members(of: u)
        _ = s.enumValues(s.command("cmd")!.returnType)
        _ = s.describe(s.command("cmd")!.returnType)
        _ = s.type(at: ["self", "self", "t"], below: u)
    }
}

@Suite("QAPISchema: checking values (QEMU 7.2.22)")
struct SchemaCheckTests {
    let s = SchemaFixtures.schema("7.2")

    @Test("real events, arguments and replies from the guest lab's captures are clean")
    func realTrafficIsClean() {
        #expect(s.checkEvent("MIGRATION", data: object(#"{"status": "setup"}"#)).isEmpty)
        #expect(s.checkEvent("MIGRATION_PASS", data: object(#"{"pass": 1}"#)).isEmpty)
        #expect(s.checkEvent("STOP", data: nil).isEmpty)
        #expect(s.checkEvent("BLOCK_IO_ERROR", data: object(#"{"device": "", "node-name": "stop", "operation": "write", "action": "stop", "reason": "Input/output error"}"#)).isEmpty)
        #expect(s.checkEvent("VNC_CONNECTED", data: object(#"{"server": {"auth": "none", "family": "ipv4", "service": "5900", "host": "127.0.0.1", "websocket": false}, "client": {"family": "ipv4", "service": "43546", "host": "127.0.0.1", "websocket": false}}"#)).isEmpty)
        #expect(s.checkArguments(command: "blockdev-mirror", arguments: object(#"{"job-id": "job0", "device": "src", "target": "tgt", "sync": "full", "speed": 65536}"#)).isEmpty)
        #expect(s.checkArguments(command: "migrate-set-capabilities", arguments: object(#"{"capabilities": [{"capability": "events", "state": true}]}"#)).isEmpty)
        #expect(s.checkArguments(command: "query-status", arguments: nil).isEmpty)
        #expect(s.checkReturn(command: "query-status", value: .object(object(#"{"status": "running", "singlestep": false, "running": true}"#))).isEmpty)
        #expect(s.checkReturn(command: "stop", value: .object(JSONObject())).isEmpty)
    }

    @Test("a flat union selects its variant by the tag; nested unions and alternates too")
    func unions() {
        let ok = object(#"{"node-name": "tgt", "driver": "raw", "file": {"driver": "file", "filename": "/tmp/t.img"}}"#)
        #expect(s.checkArguments(command: "blockdev-add", arguments: ok).isEmpty)
        // BlockdevRef is an alternate: a node name (str) is as good as an object.
        #expect(s.checkArguments(command: "blockdev-add", arguments: object(#"{"node-name": "tgt", "driver": "raw", "file": "src"}"#)).isEmpty)
        let wrong = s.checkArguments(command: "blockdev-add", arguments: object(#"{"node-name": "tgt", "driver": "raw", "file": 7}"#))
        #expect(kinds(wrong) == [.wrongType])
        #expect(wrong.first?.path == "arguments.file")
        // A member of another variant (file's filename under raw) is unknown here.
        let other = s.checkArguments(command: "blockdev-add", arguments: object(#"{"node-name": "tgt", "driver": "raw", "file": "src", "filename": "/x"}"#))
        #expect(kinds(other) == [.unknownMember])
        #expect(other.first?.path == "arguments.filename")
        // Nested: the file's own variant is checked against its driver.
        let nested = s.checkArguments(command: "blockdev-add", arguments: object(#"{"node-name": "tgt", "driver": "raw", "file": {"driver": "file", "filenam": "/x"}}"#))
        #expect(Set(nested.map(\.path)) == ["arguments.file.filename", "arguments.file.filenam"])
    }

    @Test("each kind of issue, at its path")
    func issues() {
        let badEnum = s.checkArguments(command: "migrate-set-capabilities", arguments: object(#"{"capabilities": [{"capability": "evnts", "state": true}]}"#))
        #expect(kinds(badEnum) == [.badValue])
        #expect(badEnum[0].path == "arguments.capabilities[0].capability")
        #expect(badEnum[0].detail.contains("'evnts'") && badEnum[0].detail.contains("'events'"))

        let misspelt = s.checkArguments(command: "block-job-cancel", arguments: object(#"{"device": "job0", "forse": true}"#))
        #expect(kinds(misspelt) == [.unknownMember])
        #expect(misspelt[0].path == "arguments.forse")
        #expect(s.unexpectedArgument(command: "block-job-cancel", arguments: object(#"{"device": "job0", "forse": true}"#)) == "forse")
        #expect(s.unexpectedArgument(command: "block-job-cancel", arguments: object(#"{"device": "job0", "force": true}"#)) == nil)

        let missing = s.checkArguments(command: "blockdev-mirror", arguments: object(#"{"device": "src", "target": "tgt"}"#))
        #expect(kinds(missing) == [.missingMember])
        #expect(missing[0].path == "arguments.sync")

        let type = s.checkArguments(command: "balloon", arguments: object(#"{"value": "1G"}"#))
        #expect(kinds(type) == [.wrongType])
        #expect(type[0].detail == "is a string ('1G'), expected int")
        // QEMU's input visitor takes no fraction for an integer.
        #expect(kinds(s.checkArguments(command: "balloon", arguments: object(#"{"value": 1.5e9}"#))) == [.wrongType])

        let reply = s.checkReturn(command: "query-status", value: .object(object(#"{"status": "runing", "running": true}"#)))
        #expect(Set(kinds(reply)) == [.badValue, .missingMember])
        let event = s.checkEvent("MIGRATION", data: object(#"{"status": "completed", "extra": 1}"#))
        #expect(kinds(event) == [.unknownMember])
        #expect(event[0].path == "data.extra")
    }

    @Test("device_add takes the device's own properties: nothing is unexpected")
    func openArguments() {
        let args = object(#"{"driver": "virtio-net-pci", "id": "nic9", "bus": "rp1", "netdev": "n9", "mac": "52:54:00:12:34:56"}"#)
        #expect(s.unexpectedArgument(command: "device_add", arguments: args) == nil)
        #expect(QAPISchema.takesOpenArguments("device_add", schema: s))
        #expect(!QAPISchema.takesOpenArguments("object-add", schema: s))  // a union since 6.0
        #expect(QAPISchema.takesOpenArguments("object-add", schema: SchemaFixtures.schema("5.2")))  // props: any before
    }

    @Test("deprecated and unstable members and values are reported in input only (QEMU 10.0.2)")
    func features() {
        let s10 = SchemaFixtures.schema("10.0")
        let args = object(#"{"capabilities": [{"capability": "zero-blocks", "state": true}, {"capability": "x-colo", "state": false}]}"#)
        let issues = s10.checkArguments(command: "migrate-set-capabilities", arguments: args)
        #expect(kinds(issues) == [.deprecated, .unstable])
        #expect(issues[0].detail == "value 'zero-blocks' has the feature 'deprecated'")
        #expect(issues[0].path == "arguments.capabilities[0].capability")
        // The same value in a reply (query-migrate-capabilities) is QEMU's to send: no note.
        let caps = JSONValue.array([.object(object(#"{"capability": "zero-blocks", "state": false}"#))])
        #expect(s10.checkReturn(command: "query-migrate-capabilities", value: caps).isEmpty)
        // In 7.2 zero-blocks was not yet deprecated.
        #expect(kinds(s.checkArguments(command: "migrate-set-capabilities", arguments: args)) == [.unstable])
    }

    @Test("the versions differ: commands that one QEMU has and the other lacks")
    func versions() {
        let s5 = SchemaFixtures.schema("5.2"), s10 = SchemaFixtures.schema("10.0")
        #expect(!s.hasCommand("blockdev-set-active") && s10.hasCommand("blockdev-set-active"))
        #expect(s.hasCommand("x-query-profile") && !s10.hasCommand("x-query-profile"))
        #expect(s5.hasCommand("query-cpus") && !s.hasCommand("query-cpus"))
        #expect(!s.hasEvent("HV_BALLOON_STATUS_REPORT") && s10.hasEvent("HV_BALLOON_STATUS_REPORT"))
        // BLOCK_IO_ERROR gained qom-path after 7.2 (docs/QEMU-FACTS.md, "Event throttling").
        let data = object(#"{"device": "", "qom-path": "/machine/peripheral/d0/virtio-backend", "node-name": "n", "operation": "write", "action": "report", "reason": "x"}"#)
        #expect(s10.checkEvent("BLOCK_IO_ERROR", data: data).isEmpty)
        #expect(kinds(s.checkEvent("BLOCK_IO_ERROR", data: data)) == [.unknownMember])
    }

    @Test("lookups for completion and describe")
    func lookups() {
        let members = s.members(of: s.command("blockdev-add")!.argType).map(\.name)
        #expect(members.starts(with: ["driver", "node-name"]))
        #expect(members.contains("filename"))  // from the file variant
        let raw = s.members(of: s.command("blockdev-add")!.argType, tagValue: "raw").map(\.name)
        #expect(raw.contains("offset") && !raw.contains("filename"))
        let status = s.type(at: ["status"], below: s.event("MIGRATION")!.dataType)!
        #expect(s.enumValues(status).contains("pre-switchover"))
        let host = s.type(at: ["server", "host"], below: s.event("VNC_CONNECTED")!.dataType)!
        #expect(s.describe(host) == "str")
        #expect(s.describe(s.command("query-block")!.returnType) == "[object]")
        #expect(s.describe(s.type(at: ["operation"], below: s.event("BLOCK_IO_ERROR")!.dataType)!) == "'read' | 'write'")
    }
}
