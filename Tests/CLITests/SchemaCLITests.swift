import Foundation
import QMP
import Testing

/// `info` and `validate` say which schema applies and why; `--schema FILE` overrides it.
@Suite("qmpreplay: the schema a recording is checked against")
struct SchemaCLITests {
    @Test("info names the schema and the reason, in the table and in --json")
    func info() throws {
        let t = try CLI.run(["info", CLI.recording("migration.qmprec")])
        #expect(t.status == 0)
        #expect(t.out.contains("Schema        shipped (qemu-7.2.22-x86_64.json.gz, QEMU 7.2.22: 216 commands, 52 events)"))
        #expect(t.out.contains("no query-qmp-schema reply in the recording; QEMU 7.2.22 greeted"))
        let j = try JSONParser.parse(try CLI.run(["info", "--json", CLI.recording("migration.qmprec")]).stdout)
        #expect(j["schema"]?["source"]?.stringValue == "shipped")
        #expect(j["schema"]?["qemu"]?.stringValue == "7.2.22")
        #expect(j["schema"]?["commands"]?.int64Value == 216)
        // The members info always had are still there.
        #expect(j["events"]?["MIGRATION"]?.int64Value == 3)
    }

    @Test("validate --schema FILE: a raw reply, gzipped; its JSON names the schema; a file without one is refused")
    func override() throws {
        let reply = CLI.packageRoot.appendingPathComponent("Recordings/schemas/qemu-10.0.2-x86_64.json.gz").path
        let r = try CLI.run(["validate", "--schema", reply, CLI.recording("vnc.qmprec")])
        #expect(r.status == 0, "\(r.out)")
        #expect(r.out.hasSuffix("schema: \(reply)\n"))
        let j = try JSONParser.parse(try CLI.run(["validate", "--json", "--schema", reply, CLI.recording("vnc.qmprec")]).stdout)
        #expect(j["schema"]?["source"]?.stringValue == "file")
        #expect(j["schema"]?["events"]?.int64Value == 55)
        #expect(j["counts"]?["error"]?.int64Value == 0)

        let bad = try CLI.run(["validate", "--schema", CLI.recording("vnc.qmprec"), CLI.recording("vnc.qmprec")])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("--schema: ") && bad.stderr.contains("holds no query-qmp-schema reply"))
        let info = try CLI.run(["info", "--schema", "/nonexistent/schema.json", CLI.recording("vnc.qmprec")])
        #expect(info.status == 2)
    }

    @Test("validate --verbose says what it checks against first")
    func verbose() throws {
        let r = try CLI.run(["validate", "-v", CLI.recording("caps.qmprec")])
        #expect(r.status == 0)
        #expect(r.out.hasPrefix("\(CLI.recording("caps.qmprec")): checked against shipped (qemu-7.2.22-x86_64.json.gz"))
        #expect(r.out.contains("no greeting, and the header names QEMU 7.2.0"))
    }
}
