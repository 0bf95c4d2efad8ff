import ArgumentParser

/// What `validate` and `doctor` both take besides the recording: --json, --verbose and --schema.
struct CheckOptions: ParsableArguments {
    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Flag(name: .shortAndLong, help: "Also print notes (info findings).")
    var verbose = false

    @Option(help: ArgumentHelp("Check against this schema: a query-qmp-schema reply (JSON, may be gzipped) or a recording that holds one.", valueName: "FILE"),
            completion: .file())
    var schema: String?
}
