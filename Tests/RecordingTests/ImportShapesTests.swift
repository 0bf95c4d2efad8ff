import Foundation
import QMP
import Testing
@testable import Recording

// The shapes QMP traffic comes in besides plain lines and libvirt's files: transcripts in
// bug reports, shell sessions, qmp-shell, virt-launcher logs, qemu-iotests outputs. Each
// sample in Tests/Fixtures/import/ was written for these tests; each test checks that
// every message is kept, with the right direction, in order, and that what could not be
// read is reported with its line numbers.

/// Kinds and names of the messages, for compact expectations: `command:stop`, `return`.
private func shape(_ ms: [ImportedMessage]) -> [String] {
    ms.map { m in m.message.name.map { "\(m.message.kind.rawValue):\($0)" } ?? m.message.kind.rawValue }
}

private func directions(_ ms: [ImportedMessage]) -> String {
    String(ms.map { $0.from == .client ? "c" : "q" })
}

private func notes(_ r: ImportedRecording) -> [(UInt32, String, JSONObject)] {
    r.records.compactMap { rec in
        if case .note(let text, let data) = rec.body { return (rec.connection, text, data) } else { return nil }
    }
}

private func closes(_ r: ImportedRecording) -> [(UInt32, String)] {
    r.records.compactMap { rec in
        if case .close(let by, _) = rec.body { return (rec.connection, by) } else { return nil }
    }
}

/// Every message's bytes read back as the same QMP message (nothing turned into 'other').
private func checkMessagesParse(_ r: ImportedRecording, sourceLocation: SourceLocation = #_sourceLocation) {
    for m in importedMessages(r) {
        let again = QMPMessage(bytes: m.message.bytes, payload: m.message.payload)
        #expect(again.kind == m.message.kind, "\(m.text)", sourceLocation: sourceLocation)
        #expect(m.message.kind != .other, "\(m.text)", sourceLocation: sourceLocation)
        let eol: [UInt8] = m.from == .qemu ? [0x0D, 0x0A] : [0x0A]
        #expect(Array(m.message.bytes.suffix(eol.count)) == eol, "line end of \(m.text)", sourceLocation: sourceLocation)
    }
}

// MARK: - qmp-transcript

@Suite("import qmp-transcript")
struct ImportTranscriptTests {
    @Test("a bug report: arrows, \\ continuations, multi-line events, elisions and prose")
    func bugReport() throws {
        let r = Importer.parse(try loadFixture("bug-report-mirror.txt"), format: .qmpTranscript)
        #expect(r.warnings.isEmpty, "\(r.warnings)")
        checkWellFormed(r)
        checkMessagesParse(r)
        let ms = importedMessages(r)
        #expect(r.messageCount == 11)
        #expect(shape(ms) == [
            "command:qmp_capabilities", "return", "command:blockdev-add", "return", "command:blockdev-mirror",
            "event:JOB_STATUS_CHANGE", "event:JOB_STATUS_CHANGE", "return", "command:query-block-jobs", "return",
            "event:BLOCK_JOB_ERROR",
        ])
        #expect(directions(ms) == "cqcqcqqqcqq")
        #expect(ms.allSatisfy { $0.connection == 1 })
        // The continuation backslashes and their line breaks are gone; the text is the author's.
        #expect(ms[2].text == #"{ "execute": "blockdev-add",      "arguments": { "driver": "qcow2", "node-name": "tgt0",                     "file": { "driver": "file",                               "filename": "/mnt/nfs/vm7-copy.qcow2" } } }"# + "\n")
        if case .command(let c) = ms[2].message.body {
            #expect(c.arguments?["file"]?["filename"]?.stringValue == "/mnt/nfs/vm7-copy.qcow2")
        } else {
            Issue.record("not a command")
        }
        // Values spread over lines without backslashes keep their line breaks.
        #expect(ms[5].text.hasPrefix("{ \"timestamp\": { \"seconds\": 1714651320, \"microseconds\": 118204 },\n     \"event\""))
        // Times come from the events; the rest take the time before them.
        #expect(ms.map(\.time) == [0, 0, 0, 0, 0, 0, 173_000, 173_000, 173_000, 173_000, 668_284_107_000])
        #expect(r.startMicros == 1_714_651_320_118_204)
        // The two "..." lines are notes where they were, and counted in a note up front.
        let n = notes(r)
        #expect(n.filter { $0.1.hasPrefix("the source leaves something out here") }.map { $0.2["line"]?.int64Value } == [23, 29])
        #expect(n.contains { $0.1.contains("elides text at 2 place(s)") })
        #expect(n.first?.1.contains("event timestamps") == true)
        // Prose is ignored and counted with its lines.
        #expect(r.ignored.ranges == [1...1, 3...4, 34...34])
        #expect(r.unreadLineCount == 0)
    }

    @Test("mail quoting, Python dicts, arrows that contradict the content, a second greeting")
    func quotedAndMixed() {
        let text = """
            > -> {"execute": "qmp_capabilities"}
            > <- {"return": {}}
            >> <- {'return': {'running': True, 'status': 'running', 'singlestep': False}}
            -> {"return": {}, "id": 7}
            <- {"QMP": {"version": {"qemu": {"micro": 1, "minor": 0, "major": 9}, "package": ""}, "capabilities": []}}
            -> {'execute': 'qmp_capabilities'}

            """
        let r = Importer.parse(importBytes(text), format: .qmpTranscript)
        checkWellFormed(r)
        checkMessagesParse(r)
        let ms = importedMessages(r)
        #expect(shape(ms) == ["command:qmp_capabilities", "return", "return", "return", "greeting", "command:qmp_capabilities"])
        #expect(directions(ms) == "cqqqqc")
        // The Python dict is rebuilt as JSON in QEMU's layout; QEMU's single-quoted dialect is kept.
        #expect(ms[2].text == #"{"return": {"running": true, "status": "running", "singlestep": false}}"# + "\r\n")
        #expect(ms[5].text == "{'execute': 'qmp_capabilities'}\n")
        // A return marked -> is QEMU's all the same, with a warning on its line.
        #expect(r.warnings.map(\.line) == [4])
        #expect(r.warnings.first?.message.contains("marked ->") == true)
        // The greeting starts connection 2.
        #expect(ms.map(\.connection) == [1, 1, 1, 1, 2, 2])
        #expect(closes(r).map(\.0) == [1])
        #expect(r.qemuVersion == "9.0.1")
    }

    @Test("what cannot be read is reported with its lines and left out")
    func unreadable() {
        let text = """
            -> { "execute": "query-status" }
            <- (no answer for 30 s)
            <- [ "not", "qmp" ]
            <- { "return": { "status": "running", \\
                             "running": true }
            -> { "execute": "cont",
                 "arguments": {

            """
        let r = Importer.parse(importBytes(text), format: .qmpTranscript)
        checkWellFormed(r)
        #expect(shape(importedMessages(r)) == ["command:query-status"])
        #expect(r.warnings.allSatisfy { $0.kind == .unread })
        #expect(r.warnings.map(\.line) == [2, 3, 4])
        #expect(r.warnings.map(\.endLine) == [2, 3, 7])
        #expect(r.warnings[2].message.contains("cut short"))
        #expect(r.unreadLineCount == 6)
    }
}

// MARK: - shell-session

@Suite("import shell-session")
struct ImportShellSessionTests {
    @Test("echo | socat, printf | nc, a here-document: one connection per command, shell noise ignored")
    func socatSession() throws {
        let r = Importer.parse(try loadFixture("socat-session.txt"), format: .shellSession)
        checkWellFormed(r)
        checkMessagesParse(r)
        let ms = importedMessages(r)
        #expect(r.messageCount == 17)
        #expect(shape(ms) == [
            "greeting", "command:qmp_capabilities", "command:query-status", "return", "return",
            "greeting", "command:qmp_capabilities", "command:stop", "return", "event:STOP", "return",
            "greeting", "command:qmp_capabilities", "command:cont", "return", "event:RESUME", "return",
        ])
        #expect(directions(ms) == "qccqq" + "qccqqq" + "qccqqq")
        #expect(ms.map(\.connection) == [1, 1, 1, 1, 1] + [2, 2, 2, 2, 2, 2] + [3, 3, 3, 3, 3, 3])
        // Commands are exactly what the shell passed, one line each.
        #expect(ms[1].text == #"{"execute":"qmp_capabilities"}"# + "\n")
        #expect(ms[7].text == #"{"execute":"stop","id":"s1"}"# + "\n")
        #expect(ms[13].text == #"{"execute": "cont"}"# + "\n")
        // Each command's connection closes when the command ends.
        #expect(closes(r).map(\.0) == [1, 2, 3])
        // virsh list and ls with their output, the empty last prompt and socat's own error are noise.
        #expect(r.ignored.ranges == [1...4, 15...16, 26...27])
        #expect(r.unreadLineCount == 0)
        // The socat that could not connect sent nothing: a caveat on its line.
        #expect(r.warnings.map(\.line) == [25])
        #expect(r.warnings.first?.kind == .caveat)
        #expect(r.qemuVersion == "8.2.0")
        #expect(ms.map(\.time) == Array(repeating: 0, count: 9) + Array(repeating: 0, count: 6) + [31_516_696_000, 31_516_696_000])
        #expect(notes(r).contains { $0.1.contains("2 shell command(s) that do not talk to QEMU") })
    }

    @Test("an interactive socat, shell quoting, continuation lines and unreadable output")
    func interactiveAndQuoting() {
        let text = #"""
            user@build7:~$ socat - UNIX-CONNECT:/tmp/qmp-test.sock
            {"QMP": {"version": {"qemu": {"micro": 0, "minor": 1, "major": 9}, "package": ""}, "capabilities": ["oob"]}}
            {"execute": "qmp_capabilities"}
            {"return": {}}
            {"execute": "query-kvm"}
            {"return": {"enabled": false, "present": false}}
            ^C
            user@build7:~$ echo "{\"execute\":\"qmp_capabilities\"} {\"execute\":\"query-name\"}" \
            > | nc -U /tmp/qmp-test.sock
            {"QMP": {"version": {"qemu": {"micro": 0, "minor": 1, "major": 9}, "package": ""}, "capabilities": ["oob"]}}
            {"return": {}}
            {"return": {"name": "build-vm"}, "id": 3
            user@build7:~$ cat /etc/qemu/vm.json
            {"name": "build-vm", "memory": 2048}
            user@build7:~$ sudo nc -U /tmp/qmp-test.sock <<< $'{"execute":"qmp_capabilities"}\n{"execute":"stop"}'
            {"QMP": {"version": {"qemu": {"micro": 0, "minor": 1, "major": 9}, "package": ""}, "capabilities": ["oob"]}}
            {"return": {}}
            {"timestamp": {"seconds": 1714660000, "microseconds": 1}, "event": "STOP"}
            {"return": {}}

            """#
        let r = Importer.parse(importBytes(text), format: .shellSession)
        checkWellFormed(r)
        checkMessagesParse(r)
        let ms = importedMessages(r)
        #expect(shape(ms) == [
            "greeting", "command:qmp_capabilities", "return", "command:query-kvm", "return",
            "greeting", "command:qmp_capabilities", "command:query-name", "return",
            "greeting", "command:qmp_capabilities", "command:stop", "return", "event:STOP", "return",
        ])
        #expect(directions(ms) == "qcqcq" + "qccq" + "qccqqq")
        #expect(ms.map(\.connection) == [1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3])
        // The double-quoted command lost its backslashes; the $'...' one its \n.
        #expect(ms[6].text == #"{"execute":"qmp_capabilities"}"# + "\n")
        #expect(ms[11].text == #"{"execute":"stop"}"# + "\n")
        // ^C (line 7) and the config file (lines 13-14) are noise; the reply cut short on line 12 is unread.
        #expect(r.ignored.ranges == [7...7, 13...14])
        #expect(r.unread.map(\.line) == [12])
    }
}

// MARK: - qmp-shell

@Suite("import qmp-shell")
struct ImportQMPShellTests {
    @Test("qmp-shell -v: echoed commands, Python dict replies, events after empty prompts, a transaction")
    func verbose() throws {
        let r = Importer.parse(try loadFixture("qmp-shell-verbose.txt"), format: .qmpShell)
        checkWellFormed(r)
        checkMessagesParse(r)
        let ms = importedMessages(r)
        #expect(r.messageCount == 16)
        #expect(shape(ms) == [
            "command:query-status", "return", "command:device_add", "error:GenericError", "command:netdev_add", "return",
            "command:device_add", "return", "command:stop", "return", "event:STOP", "command:cont", "return",
            "event:RESUME", "command:transaction", "return",
        ])
        #expect(directions(ms) == "cqcqcqcqcqqcqqcq")
        #expect(ms[0].text == #"{"execute":"query-status","arguments":{}}"# + "\n")
        #expect(ms[1].text == #"{"return": {"running": true, "singlestep": false, "status": "running"}}"# + "\r\n")
        if case .error(let e) = ms[3].message.body {
            #expect(e.desc == "Property 'virtio-net-pci.netdev' can't find value 'hostnet2'")
        } else {
            Issue.record("not an error")
        }
        if case .command(let c) = ms[14].message.body {
            let actions = c.arguments?["actions"]?.arrayValue
            #expect(actions?.count == 2)
            #expect(actions?.first?["data"]?["persistent"]?.boolValue == true)
        } else {
            Issue.record("not a command")
        }
        // "cont now" was refused by qmp-shell: nothing sent, a caveat on its line.
        #expect(r.warnings.map(\.line) == [22])
        #expect(r.warnings.first?.message.contains("nothing was sent") == true)
        #expect(r.qemuVersion == "5.2.0")
        #expect(r.ignored.ranges == [1...1])
        #expect(notes(r).contains { $0.1.contains("rebuilt as JSON") })
        #expect(notes(r).contains { $0.1.contains("greeting and qmp_capabilities are not in the source") })
        #expect(ms.last?.time == 8_680_585_000)
    }

    @Test("without -v the command is rebuilt from the command line as qmp-shell builds it")
    func rebuiltFromCommandLine() {
        let text = """
            Welcome to the QMP low-level shell!
            Connected to QEMU 9.1.0

            (QEMU) block-dirty-bitmap-add node=drive0 name=bm0 granularity=65536 persistent=False
            {"return": {}}
            (QEMU) blockdev-add driver=qcow2 node-name=ovl0 file.driver=file file.filename=/var/tmp/ovl0.qcow2 backing=null
            {"return": {}}
            (QEMU) qom-get path=/machine/peripheral/nic0 property=netdev
            {
                "return": "hostnet0"
            }
            (QEMU) human-monitor-command command-line="info status"
            {u'return': u'VM status: running\\r\\n'}
            (QEMU) query-jobs
            (QEMU) migrate uri=tcp:10.0.0.7:4444 blk=false
            {'error': {'class': 'GenericError', 'desc': None}}
            VM status: running
            Disconnected

            """
        let r = Importer.parse(importBytes(text), format: .qmpShell)
        checkWellFormed(r)
        checkMessagesParse(r)
        let ms = importedMessages(r)
        #expect(shape(ms) == [
            "command:block-dirty-bitmap-add", "return", "command:blockdev-add", "return", "command:qom-get", "return",
            "command:human-monitor-command", "return", "command:query-jobs", "command:migrate", "error:GenericError",
        ])
        #expect(ms[0].text == #"{"execute":"block-dirty-bitmap-add","arguments":{"node":"drive0","name":"bm0","granularity":65536,"persistent":false}}"# + "\n")
        #expect(ms[2].text == #"{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"ovl0","file":{"driver":"file","filename":"/var/tmp/ovl0.qcow2"},"backing":"null"}}"# + "\n")
        #expect(ms[5].text == #"{"return": "hostnet0"}"# + "\r\n")
        #expect(ms[6].text == #"{"execute":"human-monitor-command","arguments":{"command-line":"\"info status\""}}"# + "\n")
        #expect(ms[7].text == #"{"return": "VM status: running\r\n"}"# + "\r\n")
        #expect(ms[10].text == #"{"error": {"class": "GenericError", "desc": null}}"# + "\r\n")
        // query-jobs got no reply; the HMP text is not QMP; Disconnected closes the connection.
        #expect(r.warnings.map(\.line) == [14, 17])
        #expect(r.warnings.map(\.kind) == [.caveat, .unread])
        #expect(closes(r).map(\.1) == ["qemu"])
        #expect(ms.map(\.time) == (0..<11).map { Int64($0) * 1_000_000 })
        #expect(r.qemuVersion == "9.1.0")
    }
}

// MARK: - libvirt-log in other shapes

@Suite("import libvirt-log: wrapped, stampless, fd passing")
struct ImportLibvirtLogShapesTests {
    @Test("virt-launcher's JSON log: unwrapped, timed by its timestamps, SEND_FD as a note")
    func virtLauncher() throws {
        let r = Importer.parse(try loadFixture("virt-launcher.log"), format: .libvirtLog)
        #expect(r.warnings.isEmpty, "\(r.warnings)")
        checkWellFormed(r)
        checkMessagesParse(r)
        let ms = importedMessages(r)
        #expect(shape(ms) == [
            "command:qmp_capabilities", "return", "command:getfd", "return", "event:RESUME",
            "event:NIC_RX_FILTER_CHANGED", "command:query-rx-filter", "return",
        ])
        #expect(directions(ms) == "cqcqqqcq")
        #expect(ms[0].text == #"{"execute":"qmp_capabilities","id":"libvirt-1"}"# + "\r\n")
        #expect(ms[4].text == #"{"timestamp": {"seconds": 1714655141, "microseconds": 561873}, "event": "RESUME"}"# + "\r\n")
        #expect(ms.map(\.time) == [0, 1, 8, 9, 160, 2806, 2807, 2808].map { Int64($0) * 1_000_000 })
        #expect(r.startMicros == WallClock.parseISO8601("2024-05-02T13:05:41.402Z"))
        let fd = notes(r).filter { $0.1.contains("QEMU_MONITOR_IO_SEND_FD") }
        #expect(fd.count == 1)
        #expect(fd.first?.0 == 1)
        #expect(fd.first?.2["fd"]?.int64Value == 29)
        // The note sits after the getfd command it went with.
        let idx = r.records.firstIndex { if case .note(let t, _) = $0.body { return t.contains("SEND_FD") } else { return false } }
        let getfd = r.records.firstIndex { if case .message(_, let m) = $0.body { return m.name == "getfd" } else { return false } }
        #expect(idx != nil && getfd != nil && idx! == getfd! + 1)
        #expect(notes(r).contains { $0.1.contains("wrapped in another log's JSON (virt-launcher)") })
        // virt-launcher's own lines and libvirt's non-monitor lines are ignored.
        #expect(r.ignored.ranges == [1...1, 9...9, 12...12, 16...16])
    }

    @Test("a log without timestamps is timed by QEMU's event timestamps, not put at 1970")
    func stampless() {
        let log = """
            QEMU_MONITOR_SEND_MSG: mon=0x7fff9c20c610 msg={"execute":"stop","id":"libvirt-15"}
             fd=-1
            QEMU_MONITOR_RECV_EVENT: mon=0x7fff9c20c610 event={"timestamp": {"seconds": 1714656000, "microseconds": 250000}, "event": "STOP"}
            QEMU_MONITOR_RECV_REPLY: mon=0x7fff9c20c610 reply={"return": {}, "id": "libvirt-15"}
            QEMU_MONITOR_SEND_MSG: mon=0x7fff9c20c610 msg={"execute":"cont","id":"libvirt-16"}
             fd=-1
            QEMU_MONITOR_RECV_EVENT: mon=0x7fff9c20c610 event={"timestamp": {"seconds": 1714656003, "microseconds": 750000}, "event": "RESUME"}
            QEMU_MONITOR_RECV_REPLY: mon=0x7fff9c20c610 reply={"return": {}, "id": "libvirt-16"}
            QEMU_MONITOR_IO_SEND_FD: mon=0x7fff9c20c610 fd=41 ret=64 errno=0
            QEMU_MONITOR_RECV_REPLY: mon=0x7fff9c20c610 reply=

            """
        let r = Importer.parse(importBytes(log), format: .libvirtLog)
        checkWellFormed(r)
        let ms = importedMessages(r)
        #expect(shape(ms) == ["command:stop", "event:STOP", "return", "command:cont", "event:RESUME", "return"])
        #expect(ms.map(\.time) == [0, 0, 0, 0, 3_500_000_000, 3_500_000_000])
        #expect(r.startMicros == 1_714_656_000_250_000)
        #expect(notes(r).first?.1.contains("times come from QEMU's event timestamps") == true)
        #expect(notes(r).contains { $0.1.contains("file descriptor 41") })
        #expect(r.unread.map(\.line) == [10])
    }

    @Test("times of day without a date take the date from an event that agrees with them")
    func dateFromEvent() {
        let log = """
            13:20:00.100+0000: 2201: info : qemuMonitorSend:995 : QEMU_MONITOR_SEND_MSG: mon=0x55aa10 msg={"execute":"stop","id":"libvirt-7"}
             fd=-1
            13:20:00.102+0000: 2201: info : qemuMonitorJSONIOProcessLine:240 : QEMU_MONITOR_RECV_EVENT: mon=0x55aa10 event={"timestamp": {"seconds": 1714656000, "microseconds": 101500}, "event": "STOP"}

            """
        let r = Importer.parse(importBytes(log), format: .libvirtLog)
        #expect(r.startMicros == WallClock.parseISO8601("2024-05-02T13:20:00.100Z"))
        #expect(notes(r).contains { $0.1.contains("the date comes from QEMU's event timestamps") })
    }
}

// MARK: - iotests

@Suite("import iotests")
struct ImportIotestsTests {
    @Test("a shell test's reference output: echoed commands, masked events, two QEMUs, synthetic times")
    func shellTest() throws {
        let r = Importer.parse(try loadFixture("iotests-mirror.out"), format: .iotests)
        #expect(r.warnings.isEmpty, "\(r.warnings)")
        checkWellFormed(r)
        checkMessagesParse(r)
        let ms = importedMessages(r)
        #expect(r.messageCount == 27)
        let jsc = "event:JOB_STATUS_CHANGE"
        #expect(shape(ms) == [
            "command:qmp_capabilities", "return", "command:blockdev-add", "return", "command:blockdev-mirror", jsc, jsc, "return",
            jsc, "event:BLOCK_JOB_READY", "command:block-job-complete", "return", jsc, jsc, "event:BLOCK_JOB_COMPLETED", jsc, jsc,
            "command:quit", "return", "event:SHUTDOWN",
            "command:qmp_capabilities", "return", "command:query-block-jobs", "return", "command:quit", "return", "event:SHUTDOWN",
        ])
        #expect(directions(ms) == "cqcqcqqqqqcqqqqqqcqq" + "cqcqcqq")
        #expect(ms.map(\.connection) == Array(repeating: 1, count: 20) + Array(repeating: 2, count: 7))
        // Commands are kept as the test wrote them (QEMU's single-quoted JSON), over several lines.
        #expect(ms[2].text.hasPrefix("{ 'execute': 'blockdev-add',\n       'arguments': {"))
        #expect(ms[2].message.dialect)
        // The masked timestamps stay masked (as strings); the event is still an event.
        #expect(ms[5].text == #"{"timestamp": {"seconds":  "TIMESTAMP", "microseconds":  "TIMESTAMP"}, "event": "JOB_STATUS_CHANGE", "data": {"status": "created", "id": "job0"}}"# + "\r\n")
        // Times are synthetic, 1 ms apart, strictly in the file's order.
        #expect(ms.map(\.time) == (0..<27).map { Int64($0) * 1_000_000 })
        #expect(r.startMicros == 0)
        #expect(notes(r).first?.1.contains("times are synthetic") == true)
        let masking = notes(r).first { $0.1.hasPrefix("qemu-iotests masks") }
        #expect(masking?.2["masked_timestamps"]?.int64Value == 11)
        #expect(masking?.2["qemu_starts"]?.int64Value == 2)
        #expect(masking?.2["test"]?.stringValue == "mirror-nfs-target")
        #expect(closes(r).map(\.0) == [1])
        #expect(r.ignored.ranges == [2...5, 7...7, 17...17, 38...38, 40...42, 44...44, 54...54])
    }

    @Test("a Python test's output: JSON commands, SECS/USECS, indented logs, old Python dicts")
    func pythonTest() {
        let text = """
            {"execute": "blockdev-create", "arguments": {"job-id": "job0", "options": {"driver": "file", "filename": "TEST_DIR/PID-t.qcow2", "size": 0}}}
            {"return": {}}
            {"data": {"id": "job0", "status": "created"}, "event": "JOB_STATUS_CHANGE", "timestamp": {"microseconds": "USECS", "seconds": "SECS"}}
            {
              "return": [
                {
                  "id": "job0",
                  "status": "concluded"
                }
              ]
            }
            {u'return': {}}
            {"format-specific": {"type": "qcow2"}, "virtual-size": 0}
            {"execute": "job-dismiss", "arguments": {"id": "job0"
            === done ===

            """
        let r = Importer.parse(importBytes(text), format: .iotests)
        checkWellFormed(r)
        checkMessagesParse(r)
        let ms = importedMessages(r)
        #expect(shape(ms) == ["command:blockdev-create", "return", "event:JOB_STATUS_CHANGE", "return", "return"])
        #expect(ms[0].text == #"{"execute": "blockdev-create", "arguments": {"job-id": "job0", "options": {"driver": "file", "filename": "TEST_DIR/PID-t.qcow2", "size": 0}}}"# + "\n")
        #expect(ms[4].text == #"{"return": {}}"# + "\r\n")
        // qemu-img's JSON is no QMP message: ignored. The cut-short command runs to the end: unread.
        #expect(r.ignored.ranges == [13...13])
        #expect(r.unread.map(\.line) == [14])
        #expect(r.unread.map(\.endLine) == [15])
        #expect(r.unread.first?.message.contains("cut short") == true)
    }
}

// MARK: - Pieces

@Suite("import: Python literals, format detection, reading sources")
struct ImportPiecesTests {
    @Test("Python literals as print() and pprint write them")
    func pythonLiterals() {
        func json(_ s: String) -> String? { PythonLiteral.parse(Array(s.utf8))?.serialized() }
        #expect(json("{'a': True, 'b': False, 'c': None, 'd': [1, -2, 3.5, 1e-05]}") == #"{"a":true,"b":false,"c":null,"d":[1,-2,3.5,1e-05]}"#)
        #expect(json(#"{u'desc': "it's", 'q': 'say "hi"', 'e': 'tab\there\\x41\u00e9'}"#) == #"{"desc":"it's","q":"say \"hi\"","e":"tab\there\\x41é"}"#)
        #expect(json("{'long': ('abc'\n          'def'), 't': (1, 2)}") == #"{"long":"abcdef","t":[1,2]}"#)
        #expect(json("{'trailing': [1, 2,],}") == #"{"trailing":[1,2]}"#)
        #expect(json("{'a': }") == nil)
        #expect(json("{'a': 1} extra") == nil)
        #expect(json("{'n': 12345678901234567890L}") == #"{"n":12345678901234567890}"#)
    }

    @Test("auto detection tells every sample's format", arguments: [
        ("Tests/Fixtures/import/bug-report-mirror.txt", ImportFormat.qmpTranscript),
        ("Tests/Fixtures/import/qmp-shell-verbose.txt", .qmpShell),
        ("Tests/Fixtures/import/socat-session.txt", .shellSession),
        ("Tests/Fixtures/import/virt-launcher.log", .libvirtLog),
        ("Tests/Fixtures/import/iotests-mirror.out", .iotests),
        ("Recordings/sources/lifecycle.qmp-lines.txt", .qmpLines),
        ("Recordings/sources/rx-filter.libvirt.log", .libvirtLog),
        ("Recordings/sources/caps.libvirt.replies", .libvirtReplies),
    ])
    func detection(path: String, format: ImportFormat) throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: importTestsRoot() + "/" + path)))
        let d = ImportDetector.detect(bytes)
        #expect(d?.format == format, "\(d?.reason ?? "nothing detected")")
        // What is detected imports with every message and nothing unread.
        let r = Importer.parse(bytes, format: format)
        #expect(r.messageCount > 0 && r.unreadLineCount == 0)
    }

    @Test("detection of small inputs, and of nothing")
    func detectionSmall() {
        #expect(ImportDetector.detect(importBytes("event STOP at 1461880188.107251 for domain 'vm1': <null>\n"))?.format == .virshEvents)
        #expect(ImportDetector.detect(importBytes("{'return': {'running': True}}\n"))?.format == .qmpTranscript)
        #expect(ImportDetector.detect(importBytes(#"{"return": {}}"# + "\n...\n" + #"{"return": {}}"# + "\n"))?.format == .qmpTranscript)
        #expect(ImportDetector.detect(importBytes(#"$ echo '{"execute":"quit"}' | nc -U /tmp/q"# + "\n"))?.format == .shellSession)
        #expect(ImportDetector.detect(importBytes("hello\nworld\n")) == nil)
        #expect(ImportDetector.detect([]) == nil)
    }

    @Test("a pipe is read through one descriptor: its first bytes are not lost")
    func pipeSource() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let text = Array(#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#.utf8) + [0x0A]
        #expect(write(fds[1], text, text.count) == text.count)
        close(fds[1])
        defer { close(fds[0]) }
        let read = try ImportSource.read("/dev/fd/\(fds[0])")
        #expect(read == text)
        let r = Importer.parse(read, format: .qmpLines)
        #expect(importedMessages(r).first?.message.kind == .greeting)
    }

    @Test("gzip sources are decompressed; a .qmprec is recognised as a recording")
    func gzipAndRecording() throws {
        let dir = NSTemporaryDirectory() + "qmpreplay-import-src-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let src = importTestsRoot() + "/Recordings/sources/lifecycle.qmp-lines.txt"
        #expect(system("gzip -c '\(src)' > '\(dir)/l.gz'") == 0)
        let plain = try ImportSource.read(src)
        #expect(try ImportSource.read(dir + "/l.gz") == plain)
        #expect(!ImportSource.isRecording(plain))
        #expect(ImportSource.isRecording(try ImportSource.read(importTestsRoot() + "/Recordings/caps.qmprec")))
        #expect(throws: ImportSourceError.self) { try ImportSource.read(dir) }
        #expect(throws: ImportSourceError.self) { try ImportSource.read(dir + "/missing") }
    }
}
