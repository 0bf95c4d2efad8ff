import ArgumentParser
import QMP
import Recording
import Synth

struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Generate a deterministic synthetic recording (for benchmarks and scale tests).",
        usage: HelpText.usage("qmpreplay synth -o FILE [--records N] [--seed S] [--profile P] [--host H] [--label K=V]... [--start TIME] [--force]"),
        discussion: HelpText.format("""
            The same --seed, --profile and --records always give a byte-identical file. The header
            says mode "synthetic": such files are never presented as captures of a real QEMU.

            Profiles: \(SynthProfile.allCases.map(\.rawValue).joined(separator: ", ")).

            --host, --label and --start make a synthetic fleet: the header's host, labels such as
            vm=NAME (the VM fleet commands report; docs/FLEET.md) and the wall clock of t = 0
            (ISO 8601, e.g. 2026-12-01T08:00:00Z; QEMU's event timestamps follow it).

            Exit status: 0 success; 2 output not writable or already there (without --force);
            64 bad command line.
            """))

    @Option(name: .shortAndLong, help: "The .qmprec file to write.")
    var output: String

    @Option(help: "Number of records.")
    var records: Int = 10_000

    @Option(help: "Seed of the pseudo-random generator.")
    var seed: UInt64 = 1

    @Option(help: "What the session does: \(SynthProfile.allCases.map(\.rawValue).joined(separator: ", ")).")
    var profile: SynthProfile = .mixed

    @Option(help: "The host named in the header (default synth).")
    var host: String = "synth"

    @Option(name: .customLong("label"), help: ArgumentHelp("A KEY=VALUE label for the header, e.g. vm=web-1 (repeatable).", valueName: "KEY=VALUE"))
    var labels: [String] = []

    @Option(help: ArgumentHelp("Wall clock of the recording's start, ISO 8601 UTC (default 2025-11-20T10:00:00Z).", valueName: "TIME"))
    var start: String?

    @Flag(help: "Replace the output file if it exists (by default an existing file is never overwritten).")
    var force = false

    func validate() throws {
        guard records >= 0 else { throw ValidationError("--records must be 0 or more") }
        for l in labels where !l.contains("=") || l.hasPrefix("=") {
            throw ValidationError("--label takes KEY=VALUE (got '\(l)')")
        }
        if let start, WallClock.parseISO8601(start) == nil {
            throw ValidationError("--start takes an ISO 8601 UTC time such as 2026-12-01T08:00:00Z (got '\(start)')")
        }
    }

    func run() throws {
        try refuseOverwrite(output, force: force)
        let progress = Progress(label: "synthesising", total: records)
        do {
            var synth = start.flatMap(WallClock.parseISO8601).map { Synthesizer(seed: seed, profile: profile, startMicros: $0) }
                ?? Synthesizer(seed: seed, profile: profile)
            synth.host = host
            synth.labels = labels.map { l in
                let eq = l.firstIndex(of: "=")!
                return (key: String(l[..<eq]), value: String(l[l.index(after: eq)...]))
            }
            try synth.write(records: records, to: output) { progress.update($0) }
        } catch {
            progress.finish()
            throw fail(error.description)
        }
        progress.finish()
        Output.stdout.line("\(output): \(records) synthetic records (profile \(profile.rawValue), seed \(seed))")
        Output.stdout.flush()
    }
}

extension SynthProfile: ExpressibleByArgument {}
