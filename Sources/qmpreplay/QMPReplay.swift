import ArgumentParser
import Options
import Recording

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct QMPReplay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qmpreplay",
        abstract: "A workbench for recorded QEMU Monitor Protocol (QMP) sessions.",
        discussion: HelpText.format("""
            Recordings are .qmprec files (docs/FORMAT.md), optionally gzip-compressed (.qmprec.gz).

            Times (--from, --to, ...):
              12.5s, 1m30s, 500ms  since the start
              +5s, -2s             relative (-2s alone is 2 s before the end); --from -2s works as it is
              @123 or #123         record number 123; on a command line write @123 (or quote '#123'):
                                   sh takes an unquoted # as the start of a comment
              10:00:05             wall clock time of day (UTC), or 2026-11-20T10:00:05Z

            Addresses (--listen, --connect, --connect-to, ...): unix:PATH or a socket path such as
            /run/vm1.qmp, tcp:HOST:PORT or HOST:PORT (tcp::4444 is 127.0.0.1).

            Exit status: 0 success; 1 validate or doctor found problems, slice matched nothing, or a
            shell script command failed; 2 a file could not be read, written or understood; 64 bad
            command line. Each command's --help lists its own (record has two more, doctor one:
            3 the file is damaged). Errors go to standard error, their first
            line starting "qmpreplay: error:"; warnings start "qmpreplay: warning:".
            Colours are used only on a terminal and never when NO_COLOR is set.
            """),
        version: QMPReplayVersion.string,
        subcommands: [InfoCommand.self, CatCommand.self, ValidateCommand.self, DoctorCommand.self, RecoverCommand.self, SliceCommand.self, MergeCommand.self, ShellCommand.self, ServeCommand.self, ReplayCommand.self, ExploreCommand.self, DiffQEMUCommand.self, AnalyzeCommand.self, RecordCommand.self, ImportCommand.self, SynthCommand.self, BenchCommand.self]
    )

    /// ArgumentParser's `main`, with its errors in the one style of every other error
    /// (`qmpreplay: error: ...` on the first line; usage after it) and a hint for the usual
    /// cause of a missing time value.
    static func main() {
        do {
            var command = try parseAsRoot(nil)
            try command.run()
        } catch {
            let code = exitCode(for: error)
            let text = fullMessage(for: error)
            if code.rawValue == 0 {
                if !text.isEmpty { Output.stdout.line(text) }
                Output.stdout.flush()
                Glibc.exit(0)
            }
            Output.stdout.flush()
            if !text.isEmpty { Output.stderr.line(styledError(text)) }
            Output.stderr.flush()
            Glibc.exit(code.rawValue)
        }
    }

    /// `Error: Missing value for '--from <time>'` -> `qmpreplay: error: missing value for '--from <time>'`.
    static func styledError(_ text: String) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let line = lines.first else { return text }
        // The shell's `replay start` words show the same text (OptionErrors).
        var first = OptionErrors.styled(line)
        let timeOptions = ["--from", "--to", "--until"]
        if first.hasPrefix("missing value for '"), timeOptions.contains(where: { first.contains("'\($0) ") }) {
            first += " " + missingTimeHint
        }
        lines[0] = "qmpreplay: " + Style(Output.stderr).red("error:") + " " + first
        return lines.joined(separator: "\n")
    }
}
