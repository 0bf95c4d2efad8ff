import Foundation
import QMP
import Recording
import Testing

private let greeting72 = #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#

// MARK: - qmp-lines

@Suite("import qmp-lines")
struct ImportQMPLinesTests {
    /// socat-style: QEMU's lines end in CR LF, the client's (typed) lines in LF.
    static let socat = [
        greeting72 + "\r\n",
        #"{"execute":"qmp_capabilities"}"# + "\n",
        #"{"return": {}}"# + "\r\n",
        #"{"execute":"stop","id":1}"# + "\n",
        #"{"timestamp": {"seconds": 1763632803, "microseconds": 412807}, "event": "STOP"}"# + "\r\n",
        #"{"return": {}, "id": 1}"# + "\r\n",
        #"{"execute":"cont","id":2}"# + "\n",
        #"{"timestamp": {"seconds": 1763632806, "microseconds": 90233}, "event": "RESUME"}"# + "\r\n",
        #"{"return": {}, "id": 2}"# + "\r\n",
    ]

    @Test("a socat session: kinds, directions, names, times and exact bytes")
    func socatSession() {
        let r = Importer.parse(importBytes(Self.socat.joined()), format: .qmpLines)
        #expect(r.warnings.isEmpty, "\(r.warnings)")
        checkWellFormed(r)
        let ms = importedMessages(r)
        #expect(ms.count == 9)
        #expect(r.records.count == 11)  // note + open + 9 messages
        #expect(ms.map(\.text) == Self.socat)
        #expect(ms.map(\.message.kind) == [.greeting, .command, .return, .command, .event, .return, .command, .event, .return])
        #expect(ms.map(\.from) == [.qemu, .client, .qemu, .client, .qemu, .qemu, .client, .qemu, .qemu])
        #expect(ms.map(\.message.name) == [nil, "qmp_capabilities", nil, "stop", "STOP", nil, "cont", "RESUME", nil])
        #expect(ms.allSatisfy { $0.connection == 1 })
        // Before the first event everything is at 0; the first event defines t=0.
        #expect(ms.map(\.time) == [0, 0, 0, 0, 0, 0, 0, 2_677_426_000, 2_677_426_000])
        #expect(r.startMicros == 1_763_632_803_412_807)
        #expect(r.qemuVersion == "7.2.0")
        #expect(importedOpens(r).map(\.0) == [1])
        #expect(importedNotes(r).count == 1)
        #expect(importedNotes(r).first?.contains("event timestamps") == true)
    }

    @Test("pretty multi-line JSON and several objects on one line")
    func prettyInput() {
        let pretty = """
            {
                "QMP": {
                    "version": {
                        "qemu": {
                            "micro": 1,
                            "minor": 0,
                            "major": 8
                        },
                        "package": ""
                    },
                    "capabilities": [
                        "oob"
                    ]
                }
            }

            {"execute": "query-status"} {"execute": "query-kvm"}
            {
                "return": {
                    "status": "running",
                    "singlestep": false,
                    "running": true
                }
            }
            {
                "timestamp": {
                    "seconds": 1700000000,
                    "microseconds": 250000
                },
                "event": "BALLOON_CHANGE",
                "data": {
                    "actual": 1073741824
                }
            }
            {"return": {"enabled": true, "present": true}}

            """
        let r = Importer.parse(importBytes(pretty), format: .qmpLines)
        #expect(r.warnings.isEmpty, "\(r.warnings)")
        checkWellFormed(r)
        let ms = importedMessages(r)
        #expect(ms.map(\.message.kind) == [.greeting, .command, .command, .return, .event, .return])
        #expect(ms.map(\.from) == [.qemu, .client, .client, .qemu, .qemu, .qemu])
        #expect(r.qemuVersion == "8.0.1")
        // Concatenating the messages gives back the input exactly.
        #expect(ms.map(\.text).joined() == pretty)
        // The blank line before it and the space after it belong to the first command.
        #expect(ms[1].text == "\n" + #"{"execute": "query-status"} "#)
        #expect(ms[2].text == #"{"execute": "query-kvm"}"# + "\n")
        #expect(ms[0].message.payloadText.hasPrefix("{\n    \"QMP\""))
        #expect(ms[3].message.payloadText.hasSuffix("    }\n}"))
        if case .event(let e) = ms[4].message.body {
            #expect(e.name == "BALLOON_CHANGE")
            #expect(e.data?["actual"]?.int64Value == 1_073_741_824)
        } else {
            Issue.record("not an event")
        }
        #expect(r.startMicros == 1_700_000_000_250_000)
    }

    @Test("garbage lines become 'other' records with warnings naming their lines")
    func garbageLines() {
        let lines = [
            #"socat[4242] N accepting connection from AF=1 "<anon>" on AF=1 "/tmp/qmp.sock""# + "\n",  // 1
            greeting72 + "\r\n",  // 2
            #"{"execute":"qmp_capabilities"}"# + "\n",  // 3
            #"{"return": {}}"# + "\r\n",  // 4
            "\n",  // 5
            "this is not json\n",  // 6
            #"{"execute":"query-status"}"# + "\n",  // 7
            #"{"return": {"status": "running", "singlestep": false, "running": true}}"# + "\r\n",  // 8
            "[1, 2, 3]\n",  // 9
            #"{"execute": "query-kvm", "arguments": {"# + "\n",  // 10: cut short
            #"{"return": {"enabled": true, "present": true}}"# + "\r\n",  // 11
        ]
        let r = Importer.parse(importBytes(lines.joined()), format: .qmpLines)
        checkWellFormed(r)
        #expect(r.warnings.map(\.line) == [1, 6, 9, 10])
        #expect(r.warnings.allSatisfy { $0.message.contains("kept as 'other'") })
        let ms = importedMessages(r)
        #expect(ms.count == 10)
        #expect(ms.map(\.message.kind) == [.other, .greeting, .command, .return, .other, .command, .return, .other, .other, .return])
        #expect(ms[0].message.payloadText == #"socat[4242] N accepting connection from AF=1 "<anon>" on AF=1 "/tmp/qmp.sock""#)
        #expect(ms[4].message.payloadText == "this is not json")
        // The blank line before the garbage stays with it: nothing of the input is lost.
        #expect(ms[4].text == "\nthis is not json\n")
        #expect(ms[7].text == "[1, 2, 3]\n")
        // A broken command is still the client's.
        #expect(ms[8].from == .client)
        #expect(ms[8].message.payloadText == #"{"execute": "query-kvm", "arguments": {"#)
        #expect(ms.map(\.text).joined() == lines.joined())
        #expect(r.qemuVersion == "7.2.0")
    }

    @Test("an event timestamp going backwards is clamped with a warning")
    func backwardsTimestamps() {
        let lines = [
            #"{"timestamp": {"seconds": 100, "microseconds": 500000}, "event": "RTC_CHANGE", "data": {"offset": 1}}"# + "\r\n",
            #"{"timestamp": {"seconds": 102, "microseconds": 0}, "event": "RTC_CHANGE", "data": {"offset": 2}}"# + "\r\n",
            #"{"timestamp": {"seconds": 101, "microseconds": 0}, "event": "BALLOON_CHANGE", "data": {"actual": 1073741824}}"# + "\r\n",
            #"{"return": {}}"# + "\r\n",
            #"{"timestamp": {"seconds": 103, "microseconds": 250000}, "event": "RTC_CHANGE", "data": {"offset": 3}}"# + "\r\n",
        ]
        let r = Importer.parse(importBytes(lines.joined()), format: .qmpLines)
        checkWellFormed(r)
        #expect(r.warnings.count == 1)
        #expect(r.warnings.first?.line == 3)
        #expect(r.warnings.first?.message.contains("BALLOON_CHANGE") == true)
        #expect(importedMessages(r).map(\.time) == [0, 1_500_000_000, 1_500_000_000, 1_500_000_000, 2_750_000_000])
        #expect(r.startMicros == 100_500_000)
    }

    @Test("without events every record is at t=0; the version comes from query-version")
    func noEventsAndQueryVersion() {
        let text = #"{"execute":"query-version","id":"v"}"# + "\n"
            + #"{"return": {"qemu": {"micro": 2, "minor": 1, "major": 6}, "package": ""}, "id": "v"}"# + "\r\n"
        let r = Importer.parse(importBytes(text), format: .qmpLines)
        #expect(r.warnings.isEmpty)
        #expect(r.qemuVersion == "6.1.2")
        #expect(r.startMicros == 0)
        #expect(importedMessages(r).allSatisfy { $0.time == 0 })
        #expect(importedNotes(r).first?.contains("no event timestamps") == true)
    }

    @Test("the lifecycle example transcript imports cleanly")
    func lifecycleExample() throws {
        let r = Importer.parse(try loadExample("lifecycle.qmp-lines.txt"), format: .qmpLines)
        #expect(r.warnings.isEmpty, "\(r.warnings)")
        checkWellFormed(r)
        let ms = importedMessages(r)
        #expect(ms.count == 21)
        #expect(r.qemuVersion == "7.2.0")
        #expect(ms.filter { $0.message.kind == .event }.compactMap(\.message.name)
            == ["STOP", "RESUME", "BLOCK_IO_ERROR", "STOP", "RESET", "SHUTDOWN"])
        #expect(ms.allSatisfy { ($0.from == .client) == ($0.message.kind == .command) })
        #expect(ms.allSatisfy { $0.text.hasSuffix($0.from == .qemu ? "\r\n" : "}\n") })
        #expect(ms.last?.time == 18_135_495_000)
    }
}

// MARK: - libvirt-replies

@Suite("import libvirt-replies")
struct ImportLibvirtRepliesTests {
    static let objects = [
        """
        {
          "execute": "qmp_capabilities",
          "id": "libvirt-1"
        }
        """,
        """
        {
          "return": {
          },
          "id": "libvirt-1"
        }
        """,
        """
        {
          "execute": "query-version",
          "id": "libvirt-2"
        }
        """,
        """
        {
          "return": {
            "qemu": {
              "micro": 1,
              "minor": 0,
              "major": 8
            },
            "package": "v8.0.1"
          },
          "id": "libvirt-2"
        }
        """,
        """
        {
          "execute": "query-balloon",
          "id": "libvirt-3"
        }
        """,
        """
        {
          "error": {
            "class": "DeviceNotActive",
            "desc": "No balloon device has been activated"
          },
          "id": "libvirt-3"
        }
        """,
    ]

    @Test("commands and replies 1 ms apart, exact text, version from query-version")
    func transcript() {
        let source = Self.objects.joined(separator: "\n\n") + "\n"
        let r = Importer.parse(importBytes(source), format: .libvirtReplies)
        #expect(r.warnings.isEmpty, "\(r.warnings)")
        checkWellFormed(r)
        let ms = importedMessages(r)
        #expect(ms.count == 6)
        #expect(ms.map(\.time) == [0, 1_000_000, 2_000_000, 3_000_000, 4_000_000, 5_000_000])
        #expect(ms.map(\.from) == [.client, .qemu, .client, .qemu, .client, .qemu])
        #expect(ms.map(\.message.kind) == [.command, .return, .command, .return, .command, .error])
        #expect(ms.map(\.message.name) == ["qmp_capabilities", nil, "query-version", nil, "query-balloon", "DeviceNotActive"])
        #expect(ms.map(\.text) == Self.objects.map { $0 + "\n" })
        #expect(ms.map { $0.message.id?.stringValue } == ["libvirt-1", "libvirt-1", "libvirt-2", "libvirt-2", "libvirt-3", "libvirt-3"])
        #expect(r.qemuVersion == "8.0.1")
        #expect(r.startMicros == 0)
        #expect(importedOpens(r).map(\.0) == [1])
        #expect(importedNotes(r).first?.hasPrefix("imported from libvirt replies: no greeting and no timing in the source") == true)
    }

    @Test("a reply whose id does not match its command is warned about")
    func mismatchedID() {
        var objects = Self.objects
        objects[3] = objects[3].replacingOccurrences(of: "\"libvirt-2\"", with: "\"libvirt-7\"")
        let r = Importer.parse(importBytes(objects.joined(separator: "\n\n") + "\n"), format: .libvirtReplies)
        #expect(r.warnings.count == 1)
        // Objects 1-3 take 4 + 1 + 5 + 1 + 4 + 1 lines: the fourth starts on line 17.
        #expect(r.warnings.first?.line == 17)
        #expect(r.warnings.first?.message.contains("libvirt-7") == true)
        #expect(importedMessages(r).count == 6)
    }

    @Test("the caps example transcript imports cleanly")
    func capsExample() throws {
        let r = Importer.parse(try loadExample("caps.libvirt.replies"), format: .libvirtReplies)
        #expect(r.warnings.isEmpty, "\(r.warnings)")
        let ms = importedMessages(r)
        #expect(ms.count == 12)
        #expect(r.qemuVersion == "7.2.0")
        #expect(ms.filter { $0.message.kind == .error }.compactMap(\.message.name) == ["DeviceNotActive"])
    }
}

// MARK: - libvirt-log

@Suite("import libvirt-log")
struct ImportLibvirtLogTests {
    /// Two monitors; SEND_MSG repeated by IO_WRITE; a broken reply; a `Line [...]` line.
    static let log = """
        2022-03-07 10:41:00.900+0000: 132544: debug : virThreadJobSet:94 : Thread 132544 (rpc-worker) is now running job remoteDispatchDomainSuspend
        2022-03-07 10:41:00.928+0000: 132544: info : qemuMonitorJSONIOProcessLine:235 : QEMU_MONITOR_RECV_EVENT: mon=0x7f0fd00028a0 event={"timestamp": {"seconds": 1646649660, "microseconds": 927920}, "event": "STOP"}
        2022-03-07 10:41:00.929+0000: 132544: info : qemuMonitorJSONIOProcessLine:240 : QEMU_MONITOR_RECV_REPLY: mon=0x7f0fd00028a0 reply={"return": {}, "id": "libvirt-13"}
        2022-03-07 10:41:00.934+0000: 132549: info : qemuMonitorSend:995 : QEMU_MONITOR_SEND_MSG: mon=0x7f0fd00028a0 msg={"execute":"migrate_set_speed","arguments":{"value":9223372036853727232},"id":"libvirt-14"}\r
         fd=-1
        2022-03-07 10:41:00.934+0000: 132544: info : qemuMonitorIOWrite:452 : QEMU_MONITOR_IO_WRITE: mon=0x7f0fd00028a0 buf={"execute":"migrate_set_speed","arguments":{"value":9223372036853727232},"id":"libvirt-14"}\r
         len=93 ret=93 errno=0
        2022-03-07 10:41:00.936+0000: 132544: info : qemuMonitorJSONIOProcessLine:240 : QEMU_MONITOR_RECV_REPLY: mon=0x7f0fd00028a0 reply={"return": {}, "id": "libvirt-14"}
        2022-03-07 10:41:01.200+0000: 132550: info : qemuMonitorSend:995 : QEMU_MONITOR_SEND_MSG: mon=0x7f0fd0004c10 msg={"execute":"query-status","id":"libvirt-3"}\r
         fd=-1
        2022-03-07 10:41:01.201+0000: 132544: info : qemuMonitorJSONIOProcessLine:240 : QEMU_MONITOR_RECV_REPLY: mon=0x7f0fd0004c10 reply={"return": {"status": "paused", "singlestep": false, "running": false}, "id": "libvirt-3"}
        2022-03-07 10:41:01.250+0000: 132544: info : qemuMonitorJSONIOProcessLine:240 : QEMU_MONITOR_RECV_REPLY: mon=0x7f0fd00028a0 reply={"return": {"status": "paused", "id": "libvirt-15"}
        2022-03-07 10:41:01.300+0000: 132544: debug : qemuMonitorJSONIOProcessLine:215 : Line [{"return": {}, "id": "libvirt-16"}]
        2022-03-07 10:41:01.301+0000: 132544: debug : virObjectUnref:378 : OBJECT_UNREF: obj=0x7f0fd00028a0

        """

    @Test("connections per mon pointer, SEND_MSG over IO_WRITE, exact bytes and times")
    func debugLog() {
        let r = Importer.parse(importBytes(Self.log), format: .libvirtLog)
        checkWellFormed(r)
        #expect(r.warnings.map(\.line) == [12], "\(r.warnings)")
        #expect(r.warnings.first?.message.contains("QEMU_MONITOR_RECV_REPLY") == true)
        let ms = importedMessages(r)
        #expect(ms.count == 7)
        #expect(ms.map(\.connection) == [1, 1, 1, 1, 2, 2, 1])
        #expect(ms.map(\.from) == [.qemu, .qemu, .client, .qemu, .client, .qemu, .qemu])
        #expect(ms.map(\.message.kind) == [.event, .return, .command, .return, .command, .return, .other])
        #expect(ms.map(\.message.name) == ["STOP", nil, "migrate_set_speed", nil, "query-status", nil, nil])
        #expect(ms.map(\.time) == [0, 1_000_000, 6_000_000, 8_000_000, 272_000_000, 273_000_000, 322_000_000])
        // IO_WRITE repeats SEND_MSG: one command with that id.
        #expect(ms.filter { $0.message.id?.stringValue == "libvirt-14" && $0.from == .client }.count == 1)
        // Sent messages keep libvirt's CR LF from the log; received ones get QEMU's CR LF.
        #expect(ms[2].text == #"{"execute":"migrate_set_speed","arguments":{"value":9223372036853727232},"id":"libvirt-14"}"# + "\r\n")
        #expect(ms[0].text == #"{"timestamp": {"seconds": 1646649660, "microseconds": 927920}, "event": "STOP"}"# + "\r\n")
        #expect(ms[5].text == #"{"return": {"status": "paused", "singlestep": false, "running": false}, "id": "libvirt-3"}"# + "\r\n")
        #expect(ms[6].text == #"{"return": {"status": "paused", "id": "libvirt-15"}"#)
        // The Line [...] debug line repeats RECV_* and is not used when those exist.
        #expect(!ms.contains { $0.message.id?.stringValue == "libvirt-16" })
        #expect(importedOpens(r).map(\.0) == [1, 2])
        #expect(importedOpens(r).map(\.1) == ["libvirt:mon=0x7f0fd00028a0", "libvirt:mon=0x7f0fd0004c10"])
        #expect(r.startMicros == WallClock.parseISO8601("2022-03-07 10:41:00.928+0000"))
        #expect(r.qemuVersion == nil)
        let notes = importedNotes(r)
        #expect(notes.contains { $0.contains("CR LF added") })
        #expect(notes.contains { $0.contains("greeting") })
    }

    @Test("IO_WRITE and Line [...] are used when the log has nothing better; prefixed lines without a date")
    func fallbacksAndPrefixes() {
        let log = """
            > libvirtd(8) 23:59:59.900+0000: 2201: info : qemuMonitorIOWrite:452 : QEMU_MONITOR_IO_WRITE: mon=0x55aa10 buf={"execute":"query-balloon","id":"libvirt-7"}\r
            >  len=45 ret=45 errno=0
            > libvirtd(8) 23:59:59.901+0000: 2201: debug : qemuMonitorJSONIOProcessLine:195 : Line [{"error": {"class": "DeviceNotActive", "desc": "No balloon device has been activated"}, "id": "libvirt-7"}]
            > libvirtd(8) 00:00:00.100+0000: 2201: debug : qemuMonitorJSONIOProcessLine:195 : Line [{"timestamp": {"seconds": 1700000000, "microseconds": 100000}, "event": "RTC_CHANGE", "data": {"offset": 1}}]
            > libvirtd(8) 00:00:00.099+0000: 2205: info : qemuMonitorIOWrite:452 : QEMU_MONITOR_IO_WRITE: mon=0x55aa10 buf={"execute":"query-status","id":"libvirt-8"}\r
            >  len=44 ret=44 errno=0

            """
        let r = Importer.parse(importBytes(log), format: .libvirtLog)
        checkWellFormed(r)
        #expect(r.warnings.map(\.line) == [5], "\(r.warnings)")
        let ms = importedMessages(r)
        #expect(ms.map(\.message.kind) == [.command, .error, .event, .command])
        #expect(ms.map(\.from) == [.client, .qemu, .qemu, .client])
        #expect(ms.allSatisfy { $0.connection == 1 })
        // Past midnight without a date: 23:59:59.900 -> 00:00:00.100 is 200 ms.
        #expect(ms.map(\.time) == [0, 1_000_000, 200_000_000, 200_000_000])
        #expect(ms[0].text == #"{"execute":"query-balloon","id":"libvirt-7"}"# + "\r\n")
        #expect(ms[1].text == #"{"error": {"class": "DeviceNotActive", "desc": "No balloon device has been activated"}, "id": "libvirt-7"}"# + "\r\n")
        #expect(r.startMicros == 0)
        #expect(importedNotes(r).contains { $0.contains("no date") })
        #expect(importedOpens(r).map(\.1) == ["libvirt:mon=0x55aa10"])
    }

    @Test("a monitor address reused after QEMU_MONITOR_CLOSE is a new connection")
    func closeAndReuse() {
        let log = """
            2023-01-01 10:00:00.000+0000: 1: info : qemuMonitorSend:995 : QEMU_MONITOR_SEND_MSG: mon=0x7f00aa msg={"execute":"qmp_capabilities","id":"libvirt-1"}\r
             fd=-1
            2023-01-01 10:00:00.001+0000: 2: info : qemuMonitorJSONIOProcessLine:240 : QEMU_MONITOR_RECV_REPLY: mon=0x7f00aa reply={"return": {}, "id": "libvirt-1"}
            2023-01-01 10:00:05.000+0000: 1: info : qemuMonitorClose:901 : QEMU_MONITOR_CLOSE: mon=0x7f00aa
            2023-01-01 10:00:09.000+0000: 1: info : qemuMonitorSend:995 : QEMU_MONITOR_SEND_MSG: mon=0x7f00aa msg={"execute":"qmp_capabilities","id":"libvirt-1"}\r
             fd=-1

            """
        let r = Importer.parse(importBytes(log), format: .libvirtLog)
        #expect(r.warnings.isEmpty, "\(r.warnings)")
        checkWellFormed(r)
        #expect(importedMessages(r).map(\.connection) == [1, 1, 2])
        #expect(importedMessages(r).map(\.time) == [0, 1_000_000, 9_000_000_000])
        let closes = r.records.filter { if case .close = $0.body { return true } else { return false } }
        #expect(closes.map(\.connection) == [1])
        #expect(closes.map(\.time) == [5_000_000_000])
    }

    @Test("a log that lost its carriage returns still gives commands their CR LF")
    func strippedCarriageReturns() {
        let log = """
            2023-01-01 10:00:00.000+0000: 1: info : qemuMonitorSend:995 : QEMU_MONITOR_SEND_MSG: mon=0x7f00aa msg={"execute":"query-kvm","id":"libvirt-4"}
             fd=-1
            2023-01-01 10:00:00.002+0000: 2: info : qemuMonitorJSONIOProcessLine:240 : QEMU_MONITOR_RECV_REPLY: mon=0x7f00aa reply={"return": {"enabled": true, "present": true}, "id": "libvirt-4"}

            """
        let r = Importer.parse(importBytes(log), format: .libvirtLog)
        #expect(r.warnings.isEmpty)
        #expect(importedMessages(r).first?.text == #"{"execute":"query-kvm","id":"libvirt-4"}"# + "\r\n")
        #expect(importedNotes(r).contains { $0.contains("carriage returns") })
    }

    @Test("a log without monitor traffic gives a warning and no records")
    func noTraffic() {
        let log = "2023-01-01 10:00:00.000+0000: 1: debug : virThreadJobSet:94 : Thread 1 (rpc-worker) is now running job remoteDispatchConnectOpen\n"
        let r = Importer.parse(importBytes(log), format: .libvirtLog)
        #expect(r.records.isEmpty)
        #expect(r.warnings.count == 1)
        #expect(r.warnings.first?.message.contains("no QEMU monitor traffic") == true)
    }

    @Test("the rx-filter example log imports cleanly")
    func rxFilterExample() throws {
        let r = Importer.parse(try loadExample("rx-filter.libvirt.log"), format: .libvirtLog)
        #expect(r.warnings.isEmpty, "\(r.warnings)")
        checkWellFormed(r)
        let ms = importedMessages(r)
        #expect(ms.count == 13)
        #expect(Set(ms.map(\.connection)) == [1])
        #expect(ms.filter { $0.message.kind == .event }.compactMap(\.message.name)
            == ["NIC_RX_FILTER_CHANGED", "NIC_RX_FILTER_CHANGED", "NIC_RX_FILTER_CHANGED", "BALLOON_CHANGE", "RTC_CHANGE"])
        #expect(ms.filter { $0.from == .client }.compactMap(\.message.name)
            == ["balloon", "query-rx-filter", "query-rx-filter", "query-rx-filter"])
        #expect(ms.filter { $0.message.kind == .return }.count == 4)
        #expect(r.startMicros == WallClock.parseISO8601("2025-11-20 10:00:00.414+0000"))
    }
}

// MARK: - All formats

@Suite("import: shared behaviour")
struct ImportSharedTests {
    @Test("empty input gives no records and one warning", arguments: ImportFormat.allCases)
    func emptyInput(format: ImportFormat) {
        let r = Importer.parse([], format: format)
        #expect(r.records.isEmpty)
        #expect(r.startMicros == 0)
        #expect(r.qemuVersion == nil)
        #expect(r.warnings.count == 1)
        #expect(r.warnings.first?.line == 0)
    }

    @Test("write(to:) writes an import header, every record and a trailer")
    func roundTrip() throws {
        let r = Importer.parse(importBytes(ImportLibvirtLogTests.log), format: .libvirtLog)
        let path = NSTemporaryDirectory() + "qmpreplay-import-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).qmprec"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try r.write(to: path, sourceName: "libvirtd.log", format: .libvirtLog)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.last == "")  // ends with a newline
        let content = lines.dropLast()
        #expect(content.count == r.records.count + 2)
        let header = String(content.first ?? "")
        #expect(header.contains(#""mode":"import""#))
        #expect(header.contains(#""source":"libvirtd.log""#))
        #expect(header.contains(#""labels":{"format":"libvirt-log"}"#))
        #expect(header.contains(#""start_us":\#(r.startMicros)"#))
        let trailer = String(content.last ?? "")
        #expect(trailer.contains(#""k":"end""#))
        #expect(trailer.contains(#""reason":"complete""#))
        #expect(trailer.contains(#""records":\#(r.records.count)"#))
        // A single-line message is stored verbatim.
        #expect(text.contains(#""msg":{"execute":"query-status","id":"libvirt-3"}"#))

        // Pretty JSON survives the trip too (stored as text).
        let pretty = Importer.parse(importBytes("{\n  \"return\": {}\n}\n"), format: .qmpLines)
        try pretty.write(to: path, sourceName: "-", format: .qmpLines)
        let text2 = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text2.contains(#""text":"{\n  \"return\": {}\n}\n""#))
        #expect(text2.split(separator: "\n").last?.contains(#""k":"end""#) == true)
    }

    @Test("every format has a CLI name and a summary")
    func formatNames() {
        #expect(ImportFormat.allCases.map(\.rawValue) == [
            "qmp-lines", "libvirt-replies", "libvirt-log", "virsh-events", "qmp-transcript", "shell-session", "qmp-shell", "iotests",
        ])
        #expect(ImportFormat.allCases.allSatisfy { !$0.summary.isEmpty })
        #expect(ImportFormat.choices.hasPrefix("auto, qmp-lines, "))
    }
}
