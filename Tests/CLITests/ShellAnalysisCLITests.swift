import Foundation
import QMP
import Recording
import Testing

/// `triage`, `analyze` and `plot` in the scripted shell, through the real binary.
@Suite("qmpreplay shell: triage, analyze, plot (scripted)", .serialized)
struct ShellAnalysisCLITests {
    @Test("-c 'triage; goto 1; show': the ranked findings, then the first record of finding 1")
    func triageLoop() throws {
        let r = try CLI.run(["shell", CLI.recording("lifecycle.qmprec"), "-c", "triage; goto 1; show"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.out.hasPrefix("triage of #0..#22 (receive clock): 1 error, 0 warnings, 2 info"))
        #expect(r.out.contains("  1.  error    +00:00:07.887  runstate: VM paused for 10.248s after BLOCK_IO_ERROR on"))
        #expect(r.out.contains("'goto N' jumps to finding N ('goto 1' is @13, its first record); 'goto @REC' to any record listed"))
        #expect(r.out.contains("finding 1: error runstate: VM paused"))
        #expect(r.out.contains("#13  line ") && r.out.contains("BLOCK_IO_ERROR"))
        #expect(!r.out.contains("\u{1B}["))
    }

    @Test("on synthetic-mixed.qmprec: grouped findings, RTC steps as one line; analyze and plot; errors exit 1")
    func mixed() throws {
        let r = try CLI.run(["shell", CLI.recording("synthetic-mixed.qmprec"), "-c", "triage 3; analyze rtc; plot rtc"], env: ["COLUMNS": "100"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.out.contains("  1.  error    +00:01:55.194  runstate: VM paused for 29.259s after WATCHDOG (action pause)"))
        #expect(r.out.contains("… 9 more ('triage' without a number lists them all)"))
        #expect(r.out.contains("rtc — guest RTC offset"))
        #expect(r.out.contains("Guest RTC offset"))
        let bad = try CLI.run(["shell", CLI.recording("synthetic-mixed.qmprec"), "-c", "plot sessions"])
        #expect(bad.status == 1 && bad.stderr.hasPrefix("qmpreplay: error: command 1 (plot sessions): 'sessions' is not a series and has no plot"))
    }
}
