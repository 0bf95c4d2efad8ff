import ArgumentParser
import Options
import QMP
import Recording
import Replay

struct DiffQEMUCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff-qemu",
        abstract: "Send a recording's client commands to a real QEMU and report what it answers differently.",
        usage: HelpText.usage("qmpreplay diff-qemu FILE [--qemu CMDLINE] [--connection N] [--json] [--print-command]"),
        discussion: HelpText.format("""
            Starts a fresh QEMU (--qemu CMDLINE, or a machine the recording suggests: TCG on q35
            with the memory, name, balloon and NICs it shows; --print-command prints it), adds
            -qmp on a private unix socket, sends the recorded client's commands in the recorded
            order (before each, it waits for the events the recorded client had seen by then,
            at most twice the recorded pause and --max-wait), and compares the greeting, every
            reply and the events (paired by name and occurrence) as JSON values.

            Each difference is explained or not: timestamp (when QEMU raised an event), id,
            version (another QEMU build), host-specific (a path in the recording's temporary
            directory, a port, a host thread id), timing (how far a job, a migration or the
            balloon had got when the command ran), external (an event no command of this
            connection raised: the guest, firmware, a timer), guest (state the guest's drivers
            set, or a run state its guest caused, when this QEMU's guest did less of it),
            recording-ended (what followed a command the recording has no reply for). The rest
            is unexplained. docs/DIFF-QEMU.md has the rules; --verbose lists the explained ones.

            Examples:
              qmpreplay diff-qemu Recordings/lifecycle-qemu.qmprec
              qmpreplay diff-qemu rec.qmprec --print-command
              qmpreplay diff-qemu rec.qmprec --qemu 'qemu-system-x86_64 -machine q35 -m 256M'
              qmpreplay diff-qemu rec.qmprec --json | jq '.unexplained, .explained'

            Exit status: 0 no unexplained difference; 1 unexplained differences; 2 unreadable
            recording, or QEMU could not be started; 64 bad command line.
            """))

    static let defaultMaxWait = DurationValue(nanoseconds: QEMUDiff.Options().maxWait)
    static let defaultReplyTimeout = DurationValue(nanoseconds: QEMUDiff.Options().replyTimeout)

    @Argument(help: "The recording (.qmprec or .qmprec.gz).", completion: .file(extensions: ["qmprec", "gz"]))
    var file: String

    @Option(help: ArgumentHelp("The QEMU to start, as a shell would split it (without -qmp, which is added). Default: qemu-system-x86_64 with a machine the recording suggests.", valueName: "cmdline"))
    var qemu: String?

    @Option(help: "The recorded connection to compare (default: the first with a greeting).")
    var connection: UInt32?

    @Option(name: .customLong("max-wait"), help: ArgumentHelp("Longest wait for the recorded events before a command.", valueName: "duration", default: DiffQEMUCommand.defaultMaxWait),
            transform: DurationValue.parse)
    var maxWait = defaultMaxWait

    @Option(name: .customLong("reply-timeout"), help: ArgumentHelp("Longest wait for a reply.", valueName: "duration", default: DiffQEMUCommand.defaultReplyTimeout),
            transform: DurationValue.parse)
    var replyTimeout = defaultReplyTimeout

    @Flag(help: "Print JSON (docs/DIFF-QEMU.md) instead of text.")
    var json = false

    @Flag(name: .customLong("print-command"), help: "Print the QEMU command line (and why, for a suggested one) and exit.")
    var printCommand = false

    @Flag(name: .shortAndLong, help: "Also print the explained differences (text output).")
    var verbose = false

    func run() throws {
        let r = try openRecording(file, strict: false)
        var o = ReplayOptions()
        o.connection = connection
        let script: ReplayScript
        do { script = try ReplayScript(recording: r, options: o) } catch { throw fail(error.description) }
        let cmdline: QEMUCommandLine
        if let q = qemu {
            do { cmdline = try QEMUCommandLine.parse(q) } catch { throw fail(error.description, code: Exit.usage) }
        } else {
            cmdline = QEMUCommandLine.suggested(for: script)
        }
        let out = Output.stdout
        if printCommand {
            out.line(cmdline.argv.map(shellQuoted).joined(separator: " "))
            for w in cmdline.reasons { out.line("  # " + w) }
            out.flush()
            return
        }
        var d = QEMUDiff.Options()
        d.maxWait = maxWait.nanoseconds
        d.replyTimeout = replyTimeout.nanoseconds
        let rep: QEMUDiffReport
        do { rep = try QEMUDiff.run(script: script, argv: cmdline.argv, options: d) } catch { throw fail(error.description) }
        if json {
            out.line(rep.json.serialized(.pretty(indent: 2)))
        } else {
            let st = Style(out)
            for (line, diff) in zip(rep.lines, rep.differences) where verbose || !diff.kind.explained {
                out.line(diff.kind.explained ? st.dim(line) : line)
            }
            for n in rep.notes where verbose { out.line(st.dim(n)) }
            if let s = rep.stoppedEarly { out.line(st.yellow("stopped early: \(s)")) }
            let explained = rep.explainedCounts.map { "\($0.1) \($0.0.rawValue)" }.joined(separator: ", ")
            let versions = rep.recordedVersion == rep.liveVersion ? "QEMU \(rep.liveVersion ?? "?")"
                : "recorded on QEMU \(rep.recordedVersion ?? "?"), compared with \(rep.liveVersion ?? "?")"
            let summary = "\(file): \(plural(rep.commandsSent, "command")) sent, \(plural(rep.repliesCompared, "reply", "replies")) and "
                + "\(rep.eventsRecorded)/\(rep.eventsLive) events (recorded/live) compared (\(versions)): "
                + "\(plural(rep.unexplained, "unexplained difference")); explained: \(explained.isEmpty ? "none" : explained)"
            out.line(rep.unexplained == 0 ? st.green(summary) : st.red(summary))
        }
        out.flush()
        if rep.unexplained > 0 { throw ExitCode(Exit.findings) }
    }

    private func shellQuoted(_ w: String) -> String {
        w.allSatisfy { $0.isLetter || $0.isNumber || "-_./=:,@+".contains($0) } ? w : "'" + w.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
    }
}
