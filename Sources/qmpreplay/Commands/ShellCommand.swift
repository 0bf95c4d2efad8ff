import ArgumentParser
import Capture
import Recording
import Shell
import ShellTerminal

struct ShellCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shell",
        abstract: "Explore a recording interactively: step, seek, filter, inspect, bookmark.",
        usage: HelpText.usage("""
            qmpreplay shell FILE [-c \"CMD; CMD\"] [--keep-going] [--strict] [--no-color]
            qmpreplay shell --connect ADDRESS -o FILE [--reconnect] [--init CMD ...] [--force]
            qmpreplay shell --follow FILE
            """),
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

            Live (docs/SHELL.md, "Live"): --connect ADDRESS -o FILE connects to QEMU's QMP
            socket, negotiates, runs the --init queries and records everything to FILE exactly
            as 'qmpreplay record --connect' does (same format, crash safety, redaction), while
            the shell explores the recording as it grows: the cursor follows the live end,
            printing new records through the filter ('follow off' stays), 'watch FILTER' prints
            matching records as they arrive, and 'send COMMAND key=value ...' talks to QEMU in
            qmp-shell's syntax (the reply is shown and recorded). When QEMU goes away the
            recording gets its trailer and the shell stays open on it (--reconnect waits for
            QEMU and goes on). Quitting ends the recording. --follow FILE opens a recording
            another process ('record', the proxy) is still writing; sending is off then.

            Type 'help' in the shell for the commands (docs/SHELL.md is the manual).

            Exit status: 0 success; 1 a command of a script or -c failed; 2 unreadable
            recording (or its marks file), QEMU unreachable or FILE not creatable (--connect);
            64 bad command line.
            """))

    @Argument(help: "The recording (.qmprec or .qmprec.gz).", completion: .file(extensions: ["qmprec", "gz"]))
    var file: String?

    @OptionGroup var cacheOptions: CacheOptions

    @Option(help: ArgumentHelp("Live: QEMU's QMP socket to record and talk to (unix:PATH or a socket path, tcp:HOST:PORT or HOST:PORT); needs -o.", valueName: "address"))
    var connect: String?

    @Option(name: .shortAndLong, help: ArgumentHelp("Live: the .qmprec file to record to (with --connect).", valueName: "file"))
    var output: String?

    @Option(help: ArgumentHelp("Live: open a recording another process is still writing, following its end.", valueName: "file"),
            completion: .file(extensions: ["qmprec"]))
    var follow: String?

    @Flag(help: "Live (--connect): when QEMU goes away, wait for it and go on recording.")
    var reconnect = false

    @Option(name: .customLong("init"), help: "Live (--connect): command to run after negotiation (repeatable; replaces the defaults query-version, query-status, query-qmp-schema).")
    var initCommands: [String] = []

    @Flag(name: .customLong("no-init"), help: "Live (--connect): run no commands after negotiation (completion then has no schema).")
    var noInit = false

    @Flag(help: "Live (--connect): replace FILE if it exists.")
    var force = false

    @Flag(name: .customLong("no-redact"), help: "Live (--connect): keep secrets in the recording.")
    var noRedact = false

    @Option(name: .short, help: ArgumentHelp("Commands to run instead of reading standard input, separated by ';'.", valueName: "commands"))
    var command: String?

    @Flag(name: .customLong("keep-going"), help: "In a script or -c: run the remaining commands after one fails (the exit status is still 1).")
    var keepGoing = false

    @Flag(help: "Treat any bad line as an error.")
    var strict = false

    @Flag(name: .customLong("no-color"), help: "Never use colours.")
    var noColor = false

    func validate() throws {
        let sources = [file != nil, connect != nil, follow != nil].filter { $0 }.count
        guard sources == 1 else { throw ValidationError("give one of FILE, --connect ADDRESS -o FILE, or --follow FILE") }
        if connect != nil && output == nil { throw ValidationError("--connect needs -o FILE: the live session is recorded") }
        if connect == nil && (output != nil || reconnect || !initCommands.isEmpty || noInit || force || noRedact) {
            throw ValidationError("-o, --reconnect, --init, --no-init, --force and --no-redact go with --connect")
        }
    }

    func run() throws {
        var live: LiveRecorder?
        let r: Recording
        if let connect, let output {
            try refuseOverwrite(output, force: force)
            var cfg = ClientModeConfig(endpoint: try parseEndpoint(connect, option: "--connect"))
            cfg.reconnect = reconnect
            cfg.labels = [(key: "recorded-by", value: "qmpreplay shell --connect")]
            if noInit {
                cfg.initCommands = []
            } else if !initCommands.isEmpty {
                cfg.initCommands = try initCommands.map { c in
                    do { return try RecorderCommand(parsing: c) } catch { throw fail("invalid command '\(c)': \(error)", code: Exit.usage) }
                }
            }
            var options = CaptureOptions(output: output)
            options.redact = !noRedact
            options.replaceExisting = force
            let recorder = LiveRecorder(config: cfg, options: options)
            do {
                r = try recorder.start {
                    Output.stderr.line("qmpreplay: waiting for QEMU at \(connect)" + (reconnect ? " (--reconnect; Ctrl-C gives up)" : ""))
                    Output.stderr.flush()
                }
            } catch {
                throw fail("\(error)")
            }
            live = recorder
        } else {
            r = try openRecording(follow ?? file!, strict: strict, cache: follow == nil ? cacheOptions.cache : nil)
        }
        let runner: ShellRunner
        do {
            runner = try ShellRunner(recording: r, colors: noColor ? false : nil)
        } catch {
            live?.stop()
            throw fail(error.message)
        }
        if live != nil || follow != nil { runner.session.goLive(recorder: live) }
        let status = runner.run(commands: command.map(splitShellCommands), keepGoing: keepGoing)
        if status != 0 { throw ExitCode(status) }
    }
}
