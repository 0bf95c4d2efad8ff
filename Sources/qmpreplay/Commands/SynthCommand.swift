import ArgumentParser
import QMP
import Recording
import Synth

struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Generate a deterministic synthetic recording (for benchmarks and scale tests).",
        usage: HelpText.usage("qmpreplay synth -o FILE [--records N] [--seed S] [--profile P] [--force]"),
        discussion: HelpText.format("""
            The same --seed, --profile and --records always give a byte-identical file. The header
            says mode "synthetic": such files are never presented as captures of a real QEMU.

            Profiles: \(SynthProfile.allCases.map(\.rawValue).joined(separator: ", ")).

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

    @Flag(help: "Replace the output file if it exists (by default an existing file is never overwritten).")
    var force = false

    func validate() throws {
        guard records >= 0 else { throw ValidationError("--records must be 0 or more") }
    }

    func run() throws {
        try refuseOverwrite(output, force: force)
        let progress = Progress(label: "synthesising", total: records)
        do {
            try Synthesizer(seed: seed, profile: profile).write(records: records, to: output) { progress.update($0) }
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
