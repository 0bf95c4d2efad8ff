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

    @Flag(name: .customLong("keep-going"), help: "Do not stop at the first failing schedule: run them all and list every smallest failing one.")
    var keepGoing = false

    @Flag(inversion: .prefixedNo, help: "Walk every event through every legal slot (--no-walk: only the recorded order and the seeded schedules).")
    var walk = true

    @Flag(name: .customLong("spare-negotiation"), help: "Never put an event between qmp_capabilities and its reply (to look past a known failure there).")
    var spareNegotiation = false

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

        // Every schedule to try, in order, with how it was found.
        var plans: [(ChaosSchedule, String)] = [(plan.naturalSchedule, "the recording's own order")]
        let firstSlot = ChaosSchedule.Slot(request: 0, afterReply: spareNegotiation)
        if walk { plans += explorer.candidates(firstSlot: firstSlot).map { ($0, "systematic walk") } }
        if seeds > 0 {
            plans += (1...UInt64(seeds)).map { (plan.generate(seed: $0, splits: chaosSplits, stall: chaosStall?.nanoseconds, firstSlot: firstSlot), "seed \($0)") }
        }
        var failures: [Failure] = []
        for (s, kind) in plans where runs < maxRuns {
            guard try fails(s) else { continue }
            let firstResult = last
            // Shrinking reruns the client; an error while doing so (cannot listen) ends the run.
            var shrinkError: Error?
            let smallest = kind == plans[0].1 ? s : explorer.shrink(s) { t in
                do { return try fails(t) } catch { shrinkError = error; return false }
            }
            if let e = shrinkError { throw e }
            // The output shown is the smallest schedule's own run.
            let result = smallest == s ? firstResult : (try fails(smallest) ? last : firstResult)
            if !failures.contains(where: { $0.smallest.slots == smallest.slots && $0.smallest.cuts == smallest.cuts }) {
                failures.append(Failure(smallest: smallest, first: s, kind: kind, result: result))
            }
            if !keepGoing { break }
        }
        if progress { Output.stderr.line() }
        report(runs: runs, plan: plan, failures: failures)
        if !failures.isEmpty { throw ExitCode(1) }
    }

    /// A failing schedule as found, shrunk, and the client's run on the smallest one.
    struct Failure {
        var smallest: ChaosSchedule
        var first: ChaosSchedule
        var kind: String
        var result: ClientRun
    }

    private func report(runs: Int, plan: ChaosPlan, failures: [Failure]) {
        let out = Output.stdout
        if json {
            var o = JSONObject()
            o["file"] = .string(file)
            o["runs"] = .int(runs)
            o["passed"] = .bool(failures.isEmpty)
            o["failing"] = .array(failures.map { f in
                var j = JSONObject()
                j["schedule"] = .string(f.smallest.description)
                j["changes"] = .array(plan.explain(f.smallest).map { .string($0) })
                j["found_by"] = .string(f.kind)
                j["first_failing"] = .string(f.first.description)
                j["exit_status"] = .int(Int(f.result.status))
                j["timed_out"] = .bool(f.result.timedOut)
                j["client_output"] = .array(f.result.tail.map { .string($0) })
                return .object(j)
            })
            out.line(JSONValue.object(o).serialized(.pretty(indent: 2)))
            out.flush()
            return
        }
        guard !failures.isEmpty else {
            out.line("explore: \(runs) schedule(s) of \(file), the client passed every one")
            out.flush()
            return
        }
        out.line("explore: the client failed \(failures.count) distinct smallest schedule(s) (\(runs) schedule(s) run)")
        for f in failures {
            let changes = plan.explain(f.smallest)
            out.line(changes.isEmpty ? "smallest failing schedule (found by \(f.kind)): the recording's own order"
                                     : "smallest failing schedule (found by \(f.kind); \(changes.count) change(s) from the recording's order):")
            for c in changes { out.line("  \(c)") }
            out.line("  replay it: qmpreplay serve \(file) --listen SOCKET --chaos-schedule '\(f.smallest)'")
            out.line("  client \(f.result.timedOut ? "timed out" : "exit status \(f.result.status)")\(f.result.tail.isEmpty ? "" : "; its last output:")")
            for l in f.result.tail { out.line("  | \(l)") }
        }
        out.flush()
    }
}
