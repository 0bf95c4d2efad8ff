import ArgumentParser
import Recording
import Shell
import ShellTerminal

struct ShellCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shell",
        abstract: "Explore a recording interactively: step, seek, filter, inspect, bookmark.",
        usage: HelpText.usage("qmpreplay shell FILE [-c \"CMD; CMD\"] [--keep-going] [--strict] [--no-color]"),
        discussion: HelpText.format("""
            On a terminal: a readline prompt showing the cursor ([#1234 +00:12:05.250 STOP] qmp>),
            Emacs keys, Ctrl-R history search (history in ~/.qmpreplay_history or
            $QMPREPLAY_HISTORY), Tab completion of commands, event and command names, field
            paths, marks and files. Enter on an empty line repeats the last next or prev; moves
            print the record they land on. Output taller than the terminal goes through $PAGER
            (default less -FRX; 'set pager off' in the shell stops it). Ctrl-C stops the running
            command; Ctrl-D or 'quit' leaves.

            When standard input is not a terminal, commands are read line by line without
            prompts, escape codes or pager. -c runs commands separated by ';'. Both stop at the
            first command that fails, as gdb's batch mode does (the error names the line or
            command on standard error), unless --keep-going is given.

            Examples:
              qmpreplay shell rec.qmprec
              qmpreplay shell rec.qmprec -c "next STOP; show; state"
              qmpreplay shell rec.qmprec --keep-going < script.txt

            Type 'help' in the shell for the commands (docs/SHELL.md is the manual).

            Exit status: 0 success; 1 a command of a script or -c failed; 2 unreadable
            recording (or its marks file); 64 bad command line.
            """))

    @Argument(help: "The recording (.qmprec or .qmprec.gz).", completion: .file(extensions: ["qmprec", "gz"]))
    var file: String

    @Option(name: .short, help: ArgumentHelp("Commands to run instead of reading standard input, separated by ';'.", valueName: "commands"))
    var command: String?

    @Flag(name: .customLong("keep-going"), help: "In a script or -c: run the remaining commands after one fails (the exit status is still 1).")
    var keepGoing = false

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
        let status = runner.run(commands: command.map(splitShellCommands), keepGoing: keepGoing)
        if status != 0 { throw ExitCode(status) }
    }
}
