import Analysis
import ArgumentParser
import Fleet
import QMP
import Recording

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What one recording gave a fleet command: its JSON document, a one-line summary for the
/// table, and the exit status it alone would have had.
struct FleetAnswer {
    /// The document, compact JSON.
    var resultBytes: [UInt8]
    var summary: String
    var status: Int32 = Exit.ok

    init(resultBytes: [UInt8], summary: String, status: Int32 = Exit.ok) {
        self.resultBytes = resultBytes; self.summary = summary; self.status = status
    }

    init(result: JSONValue, summary: String, status: Int32 = Exit.ok) {
        self.init(resultBytes: result.serializedBytes(.compact), summary: summary, status: status)
    }
}

/// A reading command over several recordings (docs/FLEET.md): the inputs expanded
/// (directories, patterns), the files read on every core, one JSON line (or one table line)
/// per recording in input order, a damaged file one error line. Progress on a terminal.
/// Returns the worst status: 2 when any input was unreadable, else the worst of the answers.
struct FleetRun {
    /// One recording's output, made on a worker thread.
    struct Done: Sendable {
        var line: [UInt8]
        var summary: String
        var status: Int32
    }

    enum Format { case jsonl, table }

    var command: String
    var analysis: String?
    var format: Format
    var strict: Bool
    var jobs: Int
    /// The persistent index to use for every recording (nil: `--no-cache`).
    var cache: IndexCache? = nil

    /// Whether the arguments ask for the fleet form: several inputs, a directory or pattern,
    /// or `--format jsonl` on one file.
    static func isFleet(_ arguments: [String], jsonl: Bool) -> Bool {
        if jsonl || arguments.count != 1 { return true }
        var st = stat()
        return stat(arguments[0], &st) == 0 ? (st.st_mode & S_IFMT) == S_IFDIR : arguments[0].contains { "*?[".contains($0) }
    }

    func run(_ arguments: [String], answer: @escaping @Sendable (String, Recording) throws -> FleetAnswer) throws {
        let strict = self.strict, command = self.command, analysis = self.analysis, cache = self.cache
        let inputs = FleetInputs.expand(arguments)
        let out = Output.stdout
        var worst = Exit.ok
        let label = analysis.map { "\(command) \($0)" } ?? command
        for p in inputs.problems {
            worst = Exit.unreadable
            emit(FleetLine.failure(file: p.path, command: command, analysis: analysis, message: p.message, status: Exit.unreadable),
                 summary: "\(p.path): error: \(p.message)", to: out)
        }
        let progress = Progress(label: label, total: inputs.files.count)
        var done = 0
        let started = WallClock.monotonicNanos()
        FleetRunner(workers: jobs).run(inputs.files, job: { _, path in
            FleetRun.one(path, strict: strict, cache: cache, command: command, analysis: analysis, answer: answer)
        }, emit: { _, done1 in
            let (line, summary, status) = (done1.line, done1.summary, done1.status)
            worst = FleetRun.worse(worst, status)
            emit(line, summary: summary, to: out)
            done += 1
            if done % 64 == 0 || done == inputs.files.count {
                let secs = Double(WallClock.monotonicNanos() - started) / 1e9
                progress.update(done, note: secs > 0 ? "\(Int(Double(done) / secs)) files/s" : nil)
            }
        })
        progress.finish()
        out.flush()
        if worst != Exit.ok { throw ExitCode(worst) }
    }

    private func emit(_ line: [UInt8], summary: String, to out: Output) {
        switch format {
        case .jsonl: out.write(bytes: line)
        case .table: out.line(summary)
        }
    }

    /// Unreadable beats findings beats success.
    static func worse(_ a: Int32, _ b: Int32) -> Int32 {
        func rank(_ s: Int32) -> Int { s == Exit.unreadable ? 3 : s == Exit.ok ? 0 : s == Exit.findings ? 1 : 2 }
        return rank(b) > rank(a) ? b : a
    }

    private static func one(_ path: String, strict: Bool, cache: IndexCache?, command: String, analysis: String?,
                            answer: (String, Recording) throws -> FleetAnswer) -> Done {
        let r: Recording
        do {
            r = try Recording(path: path, options: RecordingOptions(strict: strict, requireRecording: true, indexCache: cache,
                                                                    pairsReplies: analysis.map(Analyses.pairsReplies) ?? false,
                                                                    replyPartners: analysis.flatMap(Analyses.replyPartners(for:))))
        } catch {
            let message = error.description.hasPrefix(path + ": ") ? String(error.description.dropFirst(path.count + 2)) : error.description
            return Done(line: FleetLine.failure(file: path, command: command, analysis: analysis, message: message, status: Exit.unreadable),
                        summary: "\(path): error: \(message)", status: Exit.unreadable)
        }
        do {
            let a = try answer(path, r)
            let who = [r.header.flatMap { h in FleetLine.vmLabels.lazy.compactMap { h.label($0) }.first }, r.header?.host]
                .compactMap { $0 }.joined(separator: "@")
            let span = DurationFormat.clock(r.duration)
            let summary = "\(path)\t\(who.isEmpty ? "-" : who)\t\(span)\t\(a.summary)"
            return Done(line: FleetLine.line(file: path, recording: r, command: command, analysis: analysis, resultBytes: a.resultBytes, status: a.status),
                        summary: summary, status: a.status)
        } catch {
            let message = String(describing: error)
            return Done(line: FleetLine.failure(file: path, command: command, analysis: analysis, message: message, status: Exit.usage),
                        summary: "\(path): error: \(message)", status: Exit.usage)
        }
    }
}

/// `--jobs`: how many recordings a fleet command reads at once.
struct FleetOptions: ParsableArguments {
    @Option(help: ArgumentHelp("With several recordings: how many to read at once (default: one per core).", valueName: "N"))
    var jobs: Int = 0

    func validate() throws {
        guard jobs >= 0 else { throw ValidationError("--jobs must be 0 (one per core) or more") }
    }
}
