import ArgumentParser
import Logging
import Options
import QMP
import Recording
import Replay
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// `qmpreplay explore FILE -- CLIENT...`: runs a client under test against `serve` once per
/// chaos schedule (every event at every legal slot, then seeded schedules) and reports the
/// smallest schedule that makes it fail (docs/TESTING-CLIENTS.md, "Systematic exploration").
struct ExploreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explore",
        abstract: "Find the event placements that break a QMP client, systematically.",
        usage: HelpText.usage("qmpreplay explore FILE [--seeds N] [--timeout D] [--json] -- CLIENT [ARGS...]"),
        discussion: HelpText.format("""
            Serves FILE to CLIENT once per schedule, each time on a fresh unix socket whose
            path the client gets as {socket} in its words and as $QMP_SOCKET. A run passes
            when the client exits 0 within --timeout. First the recording's own order; then
            every event moved to every legal point of the conversation (before or after each
            reply, qmp_capabilities included; events keep their recorded order), fewest
            changes first; then --seeds N seeded schedules (with output splits and, with
            --chaos-stall, a stall). At the first failure the schedule is shrunk to the
            smallest that still fails, which is printed with a --chaos-schedule to replay it
            under `qmpreplay serve`.

            Examples:
              qmpreplay explore rec.qmprec -- python3 my_client.py {socket}
              qmpreplay explore rec.qmprec --seeds 50 --chaos-stall 300ms --json -- ./check.sh

            Exit status: 0 every schedule passed; 1 a failing schedule was found (printed);
            2 unreadable recording or cannot listen; 64 bad command line.
            """))

    @Argument(help: "The recording (.qmprec or .qmprec.gz); small ones suit a systematic walk.", completion: .file(extensions: ["qmprec", "gz"]))
    var file: String

    @Option(help: "After the systematic walk, also this many seeded schedules (seeds 1 to N).")
    var seeds = 0

    @Option(name: .customLong("chaos-splits"), help: "Output splits in each seeded schedule.")
    var chaosSplits = ChaosSettings.defaultSplits

    @Option(name: .customLong("chaos-stall"), help: ArgumentHelp("One stall of this length in each seeded schedule.", valueName: "duration"),
            transform: DurationValue.parse)
    var chaosStall: DurationValue?

    @Option(help: ArgumentHelp("How long one client run may take.", valueName: "duration", default: DurationValue(nanoseconds: 10_000_000_000)),
            transform: DurationValue.parse)
    var timeout = DurationValue(nanoseconds: 10_000_000_000)

    @Option(help: ArgumentHelp("A client quiet this long while events remain gets the next ones anyway.", valueName: "duration", default: DurationValue(nanoseconds: ChaosSettings.defaultIdle)),
            transform: DurationValue.parse)
    var idle = DurationValue(nanoseconds: ChaosSettings.defaultIdle)

    @Option(name: .customLong("max-runs"), help: "Run at most this many schedules.")
    var maxRuns = 2000

    @Flag(help: "Print the result as JSON.")
    var json = false

    @Argument(parsing: .postTerminator, help: "The client command, after --.")
    var client: [String] = []

    func validate() throws {
        guard !client.isEmpty else { throw ValidationError("give the client command after --, e.g. -- python3 client.py {socket}") }
        if seeds < 0 || maxRuns < 1 || chaosSplits < 0 { throw ValidationError("--seeds, --chaos-splits and --max-runs must not be negative") }
    }

    func run() throws {
        CLILogHandler.install(quiet: true)
        let r = try openRecording(file, strict: false)
        var o = ReplayOptions()
        o.chaos = ChaosSettings(idle: idle.nanoseconds)
        let script: ReplayScript
        do { script = try ReplayScript(recording: r, options: o) } catch { throw fail(error.description) }
        let plan = ChaosPlan(script: script)
        let explorer = ScheduleExplorer(plan: plan)
        var dir = Array("/tmp/qmpreplay-explore-XXXXXX".utf8CString)
        guard let d = dir.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { throw fail("cannot make a temporary directory") }
        let tmp = String(cString: d)
        defer { unlink(tmp + "/client.log"); rmdir(tmp) }
        let progress = Output.stderr.isTerminal && !json

        var runs = 0
        var last = ClientRun(status: 0, timedOut: false, tail: [])
        func fails(_ s: ChaosSchedule) throws -> Bool {
            runs += 1
            var opts = o
            opts.chaos = ChaosSettings(schedule: s, idle: idle.nanoseconds)
            let server: ReplayServer
            do { server = try ReplayServer(script: script, options: opts, logger: Logger(label: "qmpreplay.explore")) } catch { throw fail("\(error)") }
            let sock = tmp + "/qmp.sock"
            do { try server.start(listen: .unix(sock), socketMode: 0o600) } catch { throw fail("\(error)") }
            let result = ClientRun.run(client, socket: sock, timeout: timeout.nanoseconds, log: tmp + "/client.log")
            server.stop()
            server.wait()
            if progress { Output.stderr.write("\r\(runs) schedule(s) run"); Output.stderr.flush() }
            if !result.passed { last = result }
            return !result.passed
        }

        var found: (first: ChaosSchedule, kind: String)?
        if try fails(plan.naturalSchedule) {
            found = (plan.naturalSchedule, "the recording's own order")
        }
        if found == nil {
            for s in explorer.candidates().prefix(maxRuns - 1) where try fails(s) {
                found = (s, "systematic walk")
                break
            }
        }
        if found == nil && seeds > 0 {
            for seed in 1...UInt64(seeds) where runs < maxRuns {
                let s = plan.generate(seed: seed, splits: chaosSplits, stall: chaosStall?.nanoseconds)
                if try fails(s) { found = (s, "seed \(seed)"); break }
            }
        }
        if progress { Output.stderr.line() }

        guard let (first, kind) = found else {
            report(runs: runs, plan: plan, failing: nil, first: nil, kind: nil, result: nil)
            return
        }
        let firstResult = last
        // Shrinking reruns the client: a flaky client may make it stop early, never lie.
        var shrinkError: Error?
        let smallest = kind == "the recording's own order" ? first : explorer.shrink(first) { s in
            do { return try fails(s) } catch { shrinkError = error; return false }
        }
        if let e = shrinkError { throw e }
        // The result shown is the smallest schedule's own run.
        let result = smallest == first ? firstResult : (try fails(smallest) ? last : firstResult)
        report(runs: runs, plan: plan, failing: smallest, first: first, kind: kind, result: result)
        throw ExitCode(1)
    }

    private func report(runs: Int, plan: ChaosPlan, failing: ChaosSchedule?, first: ChaosSchedule?, kind: String?, result: ClientRun?) {
        let out = Output.stdout
        if json {
            var o = JSONObject()
            o["file"] = .string(file)
            o["runs"] = .int(runs)
            o["passed"] = .bool(failing == nil)
            if let s = failing, let first, let kind, let result {
                var f = JSONObject()
                f["schedule"] = .string(s.description)
                f["changes"] = .array(plan.explain(s).map { .string($0) })
                f["found_by"] = .string(kind)
                f["first_failing"] = .string(first.description)
                f["exit_status"] = .int(Int(result.status))
                f["timed_out"] = .bool(result.timedOut)
                f["client_output"] = .array(result.tail.map { .string($0) })
                o["failing"] = .object(f)
            }
            out.line(JSONValue.object(o).serialized(.pretty(indent: 2)))
            out.flush()
            return
        }
        guard let s = failing, let kind, let result else {
            out.line("explore: \(runs) schedule(s) of \(file), the client passed every one")
            out.flush()
            return
        }
        out.line("explore: the client failed (found by \(kind), \(runs) schedule(s) run)")
        let changes = plan.explain(s)
        out.line(changes.isEmpty ? "smallest failing schedule: the recording's own order"
                                 : "smallest failing schedule (\(changes.count) change(s) from the recording's order):")
        for c in changes { out.line("  \(c)") }
        out.line("replay it: qmpreplay serve \(file) --listen SOCKET --chaos-schedule '\(s)'")
        out.line("client \(result.timedOut ? "timed out" : "exit status \(result.status)")\(result.tail.isEmpty ? "" : "; its last output:")")
        for l in result.tail { out.line("  | \(l)") }
        out.flush()
    }
}
