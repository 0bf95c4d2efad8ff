import Foundation
import QMP
@testable import Recording
import TestSupport
import Testing

// Validation against QEMU's schema on real traffic: the guest lab's captures of QEMU 7.2.22
// (Recordings/), each altered in one place for each class of finding.

/// A copy of a shipped recording with the `occurrence`-th line containing `marker` changed
/// (every `from` in it replaced by `to`; the record's `n` changes with its message), and the
/// record number of that line.
private func altered(
    _ name: String, marker: String, occurrence: Int = 0, _ edits: [(String, String)],
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> (recording: Recording, record: Int) {
    let text = try String(contentsOfFile: PackageRoot.recording(name), encoding: .utf8)
    var lines = text.components(separatedBy: "\n")
    let hits = lines.indices.filter { lines[$0].contains(marker) }
    let at = try #require(hits.count > occurrence ? hits[occurrence] : nil, "no line with \(marker)", sourceLocation: sourceLocation)
    for (from, to) in edits {
        #expect(lines[at].contains(from), "line \(at + 1) has no \(from)", sourceLocation: sourceLocation)
        lines[at] = lines[at].replacingOccurrences(of: from, with: to)
    }
    let path = makeTempDir() + "/" + name
    writeFile(path, Array(lines.joined(separator: "\n").utf8))
    let r = try Recording(path: path)
    let record = try #require((0..<r.count).first { r.line($0) == at + 1 }, sourceLocation: sourceLocation)
    return (r, record)
}

private extension Array where Element == Finding {
    var serious: [Finding] { filter { $0.severity >= .warning } }
    func with(code: String) -> [Finding] { filter { $0.code == code } }
}

/// The real captures of the guest lab (Recordings/README.md, "Real captures").
private let captures = [
    "guest-balloon", "guest-rtc", "guest-rx-filter", "lifecycle-qemu", "block-jobs", "vnc", "migration",
    "migration-failed", "panic-none", "panic-pause", "panic-shutdown", "watchdog-reset", "watchdog-pause",
    "watchdog-none", "io-errors", "unplug-stuck", "block-jobs-reuse", "qemu-killed", "quirky-ids",
    "reboot-loop", "job-error-cancelled",
].map { $0 + ".qmprec" }

@Suite("validation against QEMU's schema")
struct SchemaValidationTests {
    @Test("the guest lab's captures: QEMU 7.2.22's shipped schema, no unknown event, no false finding", arguments: captures)
    func realCapturesAreClean(name: String) throws {
        let r = try Recording(path: PackageRoot.recording(name))
        let choice = RecordingSchema.choose(for: r)
        #expect(choice.source == .shipped(file: "qemu-7.2.22-x86_64.json.gz"))
        let findings = RecordingValidation.run(r, schema: choice)
        #expect(findings.serious.isEmpty, "\(findings.serious.map(\.message))")
        #expect(findings.with(code: "unknown-event").isEmpty)
        #expect(findings.with(code: "unknown-member").isEmpty)
        // The only notes: commands QEMU left unanswered at the end, and (quirky-ids) an
        // unknown command sent on purpose, which QEMU refused.
        for f in findings where f.severity == .info {
            #expect(["unanswered-command", "unknown-command"].contains(f.code), "\(f.code): \(f.message)")
            if f.code == "unknown-command" { #expect(f.message.contains("QEMU refused it (CommandNotFound")) }
        }
    }

    @Test("MIGRATION, MIGRATION_PASS and the others the seed catalog lacks are known to the schema")
    func formerlyUnknownEvents() throws {
        let r = try Recording(path: PackageRoot.recording("migration.qmprec"))
        #expect(RecordingValidation.run(r).with(code: "unknown-event").isEmpty)
        // Without a schema, the seed catalog alone does not know them.
        let seed = SchemaChoice(schema: nil, source: .seed, qemu: nil, reason: "test")
        let unknown = RecordingValidation.run(r, schema: seed).with(code: "unknown-event").map(\.message)
        #expect(unknown.contains { $0.contains("MIGRATION_PASS") })
    }

    @Test("a wrong enum value in a command QEMU accepted is an error at that command")
    func wrongEnumValue() throws {
        let (r, rec) = try altered("block-jobs-reuse.qmprec", marker: #""n":"blockdev-mirror""#, [(#""sync":"full""#, #""sync":"fulll""#)])
        let f = RecordingValidation.run(r).serious
        #expect(f.map(\.code) == ["bad-value"])
        #expect(f.first?.record == rec)
        #expect(f.first?.severity == .error)
        #expect(f.first?.message.hasPrefix("blockdev-mirror arguments.sync is 'fulll'; accepted: 'top' | 'full' | 'none'") == true)
        #expect(f.first?.message.contains("yet QEMU accepted it") == true)
    }

    @Test("a misspelt argument is an unknown-argument error")
    func misspeltArgument() throws {
        let (r, rec) = try altered("job-error-cancelled.qmprec", marker: #""force":true"#, [(#""force":true"#, #""forse":true"#)])
        let f = RecordingValidation.run(r).serious
        #expect(f.map(\.code) == ["unknown-argument"])
        #expect(f.first?.record == rec)
        #expect(f.first?.message.contains("arguments.forse is not a member of this type (members: device, force)") == true)
    }

    @Test("a missing member in an event's data, and in a reply, is an error")
    func missingMember() throws {
        let (r, rec) = try altered("migration.qmprec", marker: #""status": "setup""#, [(#""data": {"status": "setup"}"#, #""data": {}"#)])
        let f = RecordingValidation.run(r).serious
        #expect(f.map(\.code) == ["missing-member"])
        #expect(f.first?.record == rec)
        #expect(f.first?.message.hasPrefix("event MIGRATION data.status is missing ('none' | 'setup'") == true)

        let (r2, rec2) = try altered("lifecycle-qemu.qmprec", marker: #""status": "paused""#, [(#", "running": false"#, "")])
        let f2 = RecordingValidation.run(r2).serious
        #expect(f2.map(\.code) == ["missing-member"])
        #expect(f2.first?.record == rec2)
        #expect(f2.first?.message.hasPrefix("reply to query-status return.running is missing (bool)") == true)
    }

    @Test("a deprecated command is a note naming the feature; the recording stays valid")
    func deprecatedCommand() throws {
        // drive-backup (deprecated in 7.2) in place of blockdev-backup, same arguments.
        let (r, rec) = try altered("block-jobs-reuse.qmprec", marker: #""n":"blockdev-backup""#, [("blockdev-backup", "drive-backup")])
        let f = RecordingValidation.run(r)
        #expect(f.serious.isEmpty, "\(f.serious.map(\.message))")
        let notes = f.with(code: "deprecated")
        #expect(notes.count == 1)
        #expect(notes.first?.record == rec)
        #expect(notes.first?.message == "command drive-backup has the feature 'deprecated' in QEMU 7.2.22's schema (shipped)")
    }

    @Test("an unknown command QEMU accepted; exec-oob of a command without allow-oob")
    func otherClasses() throws {
        let (r2, rec2) = try altered("lifecycle-qemu.qmprec", marker: #""n":"query-status""#, [("query-status", "query-statsu")])
        let f2 = RecordingValidation.run(r2).serious
        #expect(f2.map(\.code) == ["unknown-command"])
        #expect(f2.first?.record == rec2)
        let (r3, rec3) = try altered("lifecycle-qemu.qmprec", marker: #""n":"query-status""#, [(#""execute":"query-status""#, #""exec-oob":"query-status""#)])
        let f3 = RecordingValidation.run(r3).serious
        #expect(f3.map(\.code) == ["oob-not-allowed"])
        #expect(f3.first?.record == rec3)
    }

    @Test("a value of the wrong JSON type is an error")
    func wrongType() throws {
        let text = try String(contentsOfFile: PackageRoot.recording("guest-balloon.qmprec"), encoding: .utf8)
        let line = try #require(text.components(separatedBy: "\n").first { $0.contains(#""n":"balloon""#) })
        let value = try #require(line.range(of: #"(?<="value":)\d+"#, options: .regularExpression).map { String(line[$0]) })
        let (r, rec) = try altered("guest-balloon.qmprec", marker: #""n":"balloon""#, [(#""value":\#(value)"#, #""value":"\#(value)""#)])
        let f = RecordingValidation.run(r).serious
        #expect(f.map(\.code) == ["wrong-type"])
        #expect(f.first?.record == rec)
        #expect(f.first?.message.hasPrefix("balloon arguments.value is a string ('\(value)'), expected int") == true)
    }

    @Test("a command that QEMU 10.0 has and 7.2 lacks is validated by the version that applies")
    func versionDecides() throws {
        // stop -> blockdev-set-active (new in 10.0; returns {} like stop).
        let edits = [(#""n":"stop""#, #""n":"blockdev-set-active""#), (#""execute":"stop""#, #""execute":"blockdev-set-active","arguments":{"active":true}"#)]
        let (r72, rec) = try altered("lifecycle-qemu.qmprec", marker: #""n":"stop""#, edits)
        let f72 = RecordingValidation.run(r72).serious
        #expect(f72.map(\.code) == ["unknown-command"])
        #expect(f72.first?.record == rec)
        #expect(f72.first?.message.hasPrefix("command blockdev-set-active is not in QEMU 7.2.22's schema (shipped)") == true)

        // The same traffic from a QEMU that greets as 10.0.2: the shipped 10.0 schema applies.
        let path10 = r72.path + ".10.qmprec"
        let text = try String(contentsOfFile: r72.path, encoding: .utf8)
            .replacingOccurrences(of: #""micro": 22, "minor": 2, "major": 7"#, with: #""micro": 2, "minor": 0, "major": 10"#)
        writeFile(path10, Array(text.utf8))
        let r10 = try Recording(path: path10)
        let choice10 = RecordingSchema.choose(for: r10)
        #expect(choice10.source == .shipped(file: "qemu-10.0.2-x86_64.json.gz"))
        #expect(RecordingValidation.run(r10, schema: choice10).serious.isEmpty)

        // --schema: a reply file of 10.0 makes the 7.2 recording clean as well.
        let reply = makeTempDir() + "/schema-10.json"
        writeFile(reply, SchemaFixtures.reply("10.0"))
        let override = try RecordingSchema.load(file: reply)
        let chosen = RecordingSchema.choose(for: r72, override: override)
        #expect(chosen.source == .file(path: reply))
        #expect(RecordingValidation.run(r72, schema: chosen).serious.isEmpty)
    }

    @Test("the recording's own schema reply comes first; --schema takes a recording that holds one")
    func recordedFirst() throws {
        let dir = makeTempDir()
        let path = dir + "/probe.qmprec"
        let w = try RecordingWriter(path: path, header: RecordingHeader(startMicros: 0, source: "test", mode: .client, qemuVersion: "7.2.22"))
        let greeting = #"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#
        try w.append(time: 0, connection: 1, .open(peer: "test", info: JSONObject()))
        try w.message(time: 1, connection: 1, from: .qemu, QMPMessage(text: greeting))
        try w.message(time: 2, connection: 1, from: .client, QMPMessage(text: #"{"execute": "qmp_capabilities", "id": 1}"#))
        try w.message(time: 3, connection: 1, from: .qemu, QMPMessage(text: #"{"return": {}, "id": 1}"#))
        try w.message(time: 4, connection: 1, from: .client, QMPMessage(text: #"{"execute": "query-qmp-schema", "id": 2}"#))
        // A 10.0.2 reply behind a 7.2.22 greeting: the reply is what the QEMU said of itself.
        var reply = SchemaFixtures.reply("10.0")
        reply.removeLast(2)  // CR LF
        reply.removeLast()  // }
        reply += Array(#", "id": 2}"#.utf8)
        try w.message(time: 5, connection: 1, from: .qemu, QMPMessage(bytes: reply))
        try w.message(time: 6, connection: 1, from: .client, QMPMessage(text: #"{"execute": "blockdev-set-active", "arguments": {"active": true}, "id": 3}"#))
        try w.message(time: 7, connection: 1, from: .qemu, QMPMessage(text: #"{"return": {}, "id": 3}"#))
        try w.finish(reason: "eof")
        let r = try Recording(path: path)
        let choice = RecordingSchema.choose(for: r)
        #expect(choice.source == .recorded(record: 5, command: 4))
        #expect(choice.qemu == "7.2.22")
        #expect(choice.schema?.hasCommand("blockdev-set-active") == true)
        #expect(RecordingValidation.run(r, schema: choice).serious.isEmpty)

        let viaFile = try RecordingSchema.load(file: path)
        #expect(viaFile.source == .file(path: path))
        #expect(viaFile.schema?.commands.count == choice.schema?.commands.count)
        #expect(viaFile.reason.contains("record @5"))

        // A recording without a reply cannot serve as --schema.
        #expect(throws: SchemaError.self) { try RecordingSchema.load(file: PackageRoot.recording("vnc.qmprec")) }
    }

    @Test("no shipped schema for the version: the seed catalog, and info says why")
    func seedFallback() throws {
        let text = try String(contentsOfFile: PackageRoot.recording("migration.qmprec"), encoding: .utf8)
            .replacingOccurrences(of: #""micro": 22, "minor": 2, "major": 7"#, with: #""micro": 0, "minor": 2, "major": 8"#)
        let path = makeTempDir() + "/m82.qmprec"
        writeFile(path, Array(text.utf8))
        let r = try Recording(path: path)
        let choice = RecordingSchema.choose(for: r)
        #expect(choice.source == .seed)
        #expect(choice.schema == nil)
        #expect(choice.reason.contains("no schema shipped for QEMU 8.2 (shipped: 5.2, 7.2, 10.0)"))
        #expect(!RecordingValidation.run(r, schema: choice).with(code: "unknown-event").isEmpty)
    }

    @Test("the embedded schemas are the files in Recordings/schemas/")
    func embeddedMatchesFiles() throws {
        #expect(ShippedSchemas.all.map(\.version) == ["5.2.0", "7.2.22", "10.0.2"])
        for e in ShippedSchemas.all {
            let onDisk = try ImportSource.read(PackageRoot.file("Recordings/schemas/" + e.file))
            #expect(try ShippedSchemas.reply(e) == onDisk, "\(e.file)")
            #expect(e.target == "x86_64")
        }
        #expect(ShippedSchemas.entry(for: QEMUVersion(major: 7, minor: 2, micro: 0))?.version == "7.2.22")
        #expect(ShippedSchemas.entry(for: QEMUVersion(major: 9, minor: 2, micro: 0)) == nil)
    }
}
