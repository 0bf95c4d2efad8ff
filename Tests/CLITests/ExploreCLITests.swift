import Foundation
import QMP
import Testing

/// `qmpreplay explore` and the adversarial options of `serve` from the command line: help,
/// exit statuses, and the walk against trivial clients (a passing and a failing shell
/// command). The real clients are in Tests/Integration/test_chaos.py.
struct ExploreCLITests {
    let example = CLI.packageRoot.appendingPathComponent("docs/examples/status-events.qmprec").path

    @Test func helpFitsAndListsExitStatuses() throws {
        for width in [60, 80, 132] {
            let r = try CLI.run(["explore", "--help"], env: ["COLUMNS": "\(width)"])
            #expect(r.status == 0)
            for line in r.out.split(separator: "\n") { #expect(line.count <= width, "explore at \(width): '\(line)'") }
            let text = r.out.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
            #expect(text.contains("Exit status: 0 ") && text.contains("64 bad command line"))
        }
    }

    @Test func aClientThatAlwaysPassesPassesEverySchedule() throws {
        let r = try CLI.run(["explore", example, "--json", "--", "/bin/sh", "-c", "test -S \"$QMP_SOCKET\" && test -S {socket}"])
        #expect(r.status == 0, "\(r.stderr)")
        let o = try JSONParser.parse(r.out).objectValue!
        #expect(o["passed"] == .bool(true))
        // The recording's own order, then 3 events x 7 other slots, less the duplicates.
        #expect((o["runs"]?.numberValue?.int64 ?? 0) > 10)
    }

    @Test func aClientThatAlwaysFailsFailsOnTheRecordedOrder() throws {
        let r = try CLI.run(["explore", example, "--", "/bin/sh", "-c", "echo broken; exit 3"])
        #expect(r.status == 1)
        #expect(r.out.contains("smallest failing schedule (found by the recording's own order): the recording's own order"))
        #expect(r.out.contains("client exit status 3; its last output:") && r.out.contains("| broken"))
        #expect(r.out.contains("--chaos-schedule 'events=a1,a2,a3'"))
    }

    @Test func badInputIsAUsageError() throws {
        #expect(try CLI.run(["explore", example]).status == 64)
        let r = try CLI.run(["serve", example, "--listen", "/tmp/qmpreplay-never.sock", "--chaos-schedule", "events=b0"])
        #expect(r.status == 64 && r.stderr.contains("1 event slot(s); the replayed span has 3 event(s)"))
        let s = try CLI.run(["serve", example, "--listen", "/tmp/qmpreplay-never.sock", "--chaos", "1", "--shared"])
        #expect(s.status == 64 && s.stderr.contains("--chaos gives each client its own schedule"))
        let f = try CLI.run(["serve", example, "--listen", "/tmp/qmpreplay-never.sock", "--faults", "/nonexistent/faults.txt"])
        #expect(f.status == 64 && f.stderr.contains("/nonexistent/faults.txt"))
    }
}
