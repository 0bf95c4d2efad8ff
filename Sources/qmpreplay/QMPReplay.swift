import ArgumentParser
import Recording

@main
struct QMPReplay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qmpreplay",
        abstract: "A workbench for recorded QEMU Monitor Protocol (QMP) sessions.",
        discussion: """
            Recordings are .qmprec files (docs/FORMAT.md), optionally gzip-compressed (.qmprec.gz).

            Times (--from, --to, ...): 12.5s, 1m30s, 500ms (since start), +5s / -2s (relative; -2s alone
            is 2 s before the end), #123 (record number), 10:00:05 or 2026-11-20T10:00:05Z (wall clock, UTC).

            Exit status: 0 success; 1 validate found problems; 2 a file could not be read, written or
            understood; 64 bad command line.
            Colours are used only on a terminal and never when NO_COLOR is set.
            """,
        version: QMPReplayVersion.string,
        subcommands: [InfoCommand.self, CatCommand.self, ValidateCommand.self, ShellCommand.self, ServeCommand.self, ReplayCommand.self, AnalyzeCommand.self, RecordCommand.self, ImportCommand.self, SynthCommand.self, BenchCommand.self]
    )
}
