import ArgumentParser
import Recording
import Shell

struct ShellCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shell",
        abstract: "Explore a recording interactively: step, seek, filter, inspect, bookmark.",
        discussion: """
            On a terminal: a readline prompt showing the cursor ([#1234 +00:12:05.250 STOP] qmp>),
            Emacs keys, Ctrl-R history search (history in ~/.qmpreplay_history or
            $QMPREPLAY_HISTORY), Tab completion of commands, event and command names, field
            paths, marks and files. Ctrl-C stops the running command; Ctrl-D or 'quit' leaves.

            When standard input is not a terminal, commands are read line by line without
            prompts or escape codes:  qmpreplay shell x.qmprec < script.txt
            -c runs commands separated by ';':  qmpreplay shell x.qmprec -c "seek 10s; show"

            Type 'help' in the shell for the commands (docs/SHELL.md is the manual).

            Exit status: 0 success; 1 a scripted command failed; 2 unreadable recording.
            """)

    @Argument(help: "The recording (.qmprec or .qmprec.gz).", completion: .file(extensions: ["qmprec", "gz"]))
    var file: String

    @Option(name: .short, help: "Commands to run instead of reading standard input, separated by ';'.")
    var command: String?

    @Flag(help: "Treat any bad line as an error.")
    var strict = false

    @Flag(name: .customLong("no-color"), help: "Never use colours.")
    var noColor = false

    func run() throws {
        let r = try openRecording(file, strict: strict)
        let runner: ShellRunner
        do {
            runner = try ShellRunner(recording: r, colors: noColor ? false : nil)
        } catch {
            throw fail(error.message)
        }
        let status = runner.run(commands: command.map(splitShellCommands))
        if status != 0 { throw ExitCode(status) }
    }
}
