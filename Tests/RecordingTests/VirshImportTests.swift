import QMP
import Testing
@testable import Recording

@Suite("import virsh-events")
struct VirshImportTests {
    @Test("events are rebuilt in QEMU's layout with their timestamps, data and domains")
    func rebuild() throws {
        let text = """
            event STOP at 1461880188.107251 for domain 'vm 1': <null>
            event BALLOON_CHANGE at 1461880190.000123 for domain 'vm 1': {
              "actual": 1073741824
            }
            not an event
            event DEVICE_TRAY_MOVED at 1461880191.5 for domain 'other': {"device":"ide1-cd0","tray-open":true}

            """
        let r = Importer.parse(Array(text.utf8), format: .virshEvents)
        let messages = r.records.compactMap { rec -> (UInt32, Int64, QMPMessage)? in
            if case .message(_, let m) = rec.body { return (rec.connection, rec.time, m) }
            return nil
        }
        #expect(messages.count == 3)
        #expect(messages[0].2.payloadText == #"{"timestamp": {"seconds": 1461880188, "microseconds": 107251}, "event": "STOP"}"#)
        #expect(messages[0].2.bytes.suffix(2) == [0x0D, 0x0A])
        guard case .event(let b) = messages[1].2.body else { Issue.record("not an event"); return }
        #expect(b.name == "BALLOON_CHANGE" && b.data?["actual"]?.int64Value == 1_073_741_824)
        #expect(messages[1].1 == 1_892_872_000)
        guard case .event(let t) = messages[2].2.body else { Issue.record("not an event"); return }
        #expect(t.timestamp?.microseconds == 500_000)
        #expect(messages.map(\.0) == [1, 1, 2])
        #expect(r.warnings.map(\.line) == [5])
        #expect(r.startMicros == 1_461_880_188_107_251)
        #expect(EventValidator.validate(t).filter { $0.severity >= .warning }.isEmpty)
    }

    @Test("a file with no event lines imports nothing and says so")
    func nothing() {
        let r = Importer.parse(Array("hello\n".utf8), format: .virshEvents)
        #expect(r.records.isEmpty)
        #expect(r.warnings.contains { $0.line == 0 })
    }
}
