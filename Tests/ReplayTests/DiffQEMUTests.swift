import QMP
import Recording
import Testing
import TestSupport
@testable import Replay

/// `diff-qemu`'s pure parts (docs/DIFF-QEMU.md): the rules that explain a difference, the
/// collapsing of long arrays, the QEMU command line (`--qemu` and the suggested machine).
/// The comparison with the installed QEMU is Tests/Integration/test_diff_qemu.py.
struct DiffQEMUTests {
    static func kind(_ command: String?, _ event: String?, _ path: String, _ e: String?, _ a: String?,
                     _ ev: DiffRules.Evidence = DiffRules.Evidence()) -> DifferenceKind {
        func v(_ s: String?) -> JSONValue? { s.flatMap { try? JSONParser.parse($0) } }
        return DiffRules.explain(command: command, event: event, path: path, expected: v(e), actual: v(a), evidence: ev).0
    }

    @Test func eachRuleExplainsWhatItShouldAndNothingElse() {
        #expect(Self.kind(nil, "STOP", "timestamp.seconds", "1", "2") == .timestamp)
        #expect(Self.kind("stop", nil, "id", "1", "2") == .id)
        #expect(Self.kind(nil, nil, "QMP.version.qemu.micro", "22", "0") == .version)
        #expect(Self.kind("query-version", nil, "return.package", #""a""#, #""b""#) == .version)
        #expect(Self.kind("query-vnc", nil, "return.service", #""5901""#, #""5902""#) == .hostSpecific)
        #expect(Self.kind("query-block", nil, "return[0].inserted.file", #""/tmp/gl-x/a.qcow2""#, #""/tmp/gl-y/a.qcow2""#) == .hostSpecific)
        #expect(Self.kind("query-block-jobs", nil, "return[0].offset", "10", "20") == .timing)
        #expect(Self.kind(nil, "BALLOON_CHANGE", "data.actual", "10", "20") == .timing)
        // Not explained: a changed status, an error instead of a return, a command's own result.
        #expect(Self.kind("query-status", nil, "return.status", #""paused""#, #""running""#) == .unexplained)
        #expect(Self.kind("stop", nil, "error", nil, #"{"class": "GenericError"}"#) == .unexplained)
        #expect(Self.kind("query-balloon", nil, "return.actual", "1", "2") == .timing, "the driver's progress when asked")
        #expect(Self.kind("query-rx-filter", nil, "return[0].promiscuous", "false", "true") == .unexplained, "a guest rule needs evidence")
    }

    @Test func guestRulesNeedEvidenceThatTheGuestDidLess() {
        var ev = DiffRules.Evidence()
        ev.fewer["NIC_RX_FILTER_CHANGED"] = 2
        #expect(Self.kind("query-rx-filter", nil, "return[0].promiscuous", "false", "true", ev) == .guest)
        #expect(Self.kind("query-status", nil, "return.status", #""io-error""#, #""running""#, ev) == .unexplained)
        ev.externalStopMissing = true
        #expect(Self.kind("query-status", nil, "return.status", #""io-error""#, #""running""#, ev) == .guest)
        #expect(Self.kind("query-block", nil, "return[2].io-status", #""failed""#, #""ok""#, ev) == .guest)
        #expect(Self.kind("query-vnc", nil, "return.clients[0]", "{}", nil, ev) == .unexplained)
        ev.fewer["VNC_CONNECTED"] = 1
        #expect(Self.kind("query-vnc", nil, "return.clients[0]", "{}", nil, ev) == .external)
    }

    @Test func longArrayDifferencesBecomeOne() throws {
        let rec = try JSONParser.parse(#"{"t": [], "r": [{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}, {"a": 5}]}"#)
        let live = try JSONParser.parse(#"{"t": [5, 4, 3, 2, 1], "r": [{"a": 0}, {"a": 0}, {"a": 0}, {"a": 0}, {"a": 0}]}"#)
        let d = QEMUDiff.collapsed(JSONDiff.diff(expected: rec, actual: live), rec, live)
        #expect(d.filter { $0.path == "t" }.count == 1 && d.first { $0.path == "t" }?.actual == live["t"])
        #expect(d.filter { $0.path.hasPrefix("r[") }.count == 5, "members inside elements stay apart")
    }

    @Test func theQEMUCommandLineIsSplitAsAShellSplitsIt() throws {
        let c = try QEMUCommandLine.parse(#"qemu-system-x86_64 -name 'my vm' -device "virtio-net-pci,id=a\"b" x\ y"#)
        #expect(c.argv == ["qemu-system-x86_64", "-name", "my vm", "-device", #"virtio-net-pci,id=a"b"#, "x y"])
        #expect(throws: LiveQEMUError.self) { try QEMUCommandLine.parse("qemu 'unterminated") }
        #expect(throws: LiveQEMUError.self) { try QEMUCommandLine.parse("   ") }
    }

    @Test func theSuggestedMachineHasTheRecordedDevices() throws {
        func suggested(_ name: String) throws -> [String] {
            let r = try Recording(path: PackageRoot.recording(name))
            return QEMUCommandLine.suggested(for: try ReplayScript(recording: r, options: ReplayOptions())).argv
        }
        let unplug = try suggested("unplug-stuck.qmprec").joined(separator: " ")
        #expect(unplug.contains("-device pcie-root-port,id=rp0,chassis=1") && unplug.contains("-device qemu-xhci,id=usb0"))
        #expect(!unplug.contains("nic9"), "nic9 was hot-plugged by the recording itself")
        let balloon = try suggested("guest-balloon.qmprec")
        #expect(balloon.contains("virtio-balloon-pci,id=balloon0") && balloon.contains("256M"))
        #expect(try suggested("lifecycle-qemu.qmprec").prefix(3) == ["qemu-system-x86_64", "-nodefaults", "-no-user-config"])
    }
}
