import Capture
import QMP
import Recording
import Shell
import Testing
import TestSupport

/// Feeds every record of a shipped recording, in order, through the triggers (as the
/// recorder's encoder does) and returns the name of each record that fired, with the rule.
private func fired(_ file: String, _ specs: [String] = []) throws -> [String] {
    let r = try Recording(path: PackageRoot.recording(file))
    let t = IncidentTriggers(rules: try IncidentTriggers.rules(specs))
    var out: [String] = []
    for i in 0..<r.count {
        let line = Array(r.lineBytes(i)) + (r.lineBytes(i).last == 0x0A ? [] : [0x0A])
        if let trig = t.observe(line: line, kind: r.kind(i), connection: r.connection(i), time: r.time(i)) {
            out.append(trig.detail.hasPrefix("STOP not caused") ? "\(trig.name) (unexplained)" : trig.name)
        }
    }
    return out
}

@Suite("dashcam triggers")
struct IncidentTriggersTests {
    @Test("default triggers on real captures: panics, I/O errors, watchdogs, guest shutdowns, STOPs no command caused")
    func defaults() throws {
        #expect(try fired("panic-pause.qmprec") == ["GUEST_PANICKED", "STOP (unexplained)"])
        #expect(try fired("panic-shutdown.qmprec") == ["GUEST_PANICKED", "SHUTDOWN"])
        #expect(try fired("watchdog-pause.qmprec") == ["WATCHDOG", "STOP (unexplained)"])
        #expect(try fired("io-errors.qmprec").first == "BLOCK_IO_ERROR")
    }

    @Test("a STOP that a `stop` command or a migration's switch-over caused does not trigger; a host quit does not either")
    func commandedStops() throws {
        #expect(try fired("lifecycle-qemu.qmprec").isEmpty)
        // stop (STOP before its reply): nothing; then a BLOCK_IO_ERROR with action stop and
        // its STOP: both; the SHUTDOWN of `quit` (host-qmp-quit): nothing.
        #expect(try fired("lifecycle.qmprec") == ["BLOCK_IO_ERROR", "STOP (unexplained)"])
        #expect(try fired("migration.qmprec").isEmpty)
    }

    @Test("--trigger takes filters of the shell's language; 'default' and 'unexplained-stop' name the rules")
    func configurable() throws {
        #expect(try fired("panic-pause.qmprec", ["RESET"]).allSatisfy { $0 == "RESET" })
        #expect(try fired("panic-pause.qmprec", ["unexplained-stop"]) == ["STOP (unexplained)"])
        #expect(try fired("panic-pause.qmprec", ["event=GUEST_PANICKED and data.action == \"pause\""]) == ["GUEST_PANICKED"])
        #expect(try fired("panic-pause.qmprec", ["command cont"]) == ["cont"])
        #expect(throws: FilterParseError.self) { _ = try IncidentTriggers.rules(["data.x <"]) }
    }

    @Test("the kinds a filter can match: what the triggers skip without building anything")
    func possibleKinds() throws {
        func kinds(_ text: String) throws -> Set<RecordKind>? { try FilterExpression(parsing: text).possibleKinds }
        #expect(try kinds(IncidentTriggers.defaultFilter) == [.event])
        #expect(try kinds("command cont or error GenericError") == [.command, .error])
        #expect(try kinds("event and from qemu") == [.event])
        #expect(try kinds("kind return,error and data.x > 1") == [.return, .error])
        #expect(try kinds("has data.x") == Set(RecordKind.allCases.filter(\.isMessage)))
        // A missing path satisfies != and !~, and `not` may match anything.
        #expect(try kinds("data.x != 1") == nil)
        #expect(try kinds("not STOP") == nil)
        #expect(try kinds("STOP or conn 2") == nil)
        #expect(try kinds("STOP and command cont") == [])
    }
}
