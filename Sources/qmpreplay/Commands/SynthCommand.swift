import ArgumentParser
import QMP
import Recording

struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Generate a deterministic synthetic recording (for benchmarks and scale tests).",
        discussion: """
            The same --seed, --profile and --records always give a byte-identical file. The header
            says mode "synthetic": such files are never presented as captures of a real QEMU.

            Profiles: \(SynthProfile.allCases.map(\.rawValue).joined(separator: ", ")).

            Exit status: 0 success, 2 output not writable.
            """)

    @Option(name: .shortAndLong, help: "The .qmprec file to write.")
    var output: String

    @Option(help: "Number of records.")
    var records: Int = 10_000

    @Option(help: "Seed of the pseudo-random generator.")
    var seed: UInt64 = 1

    @Option(help: "What the session does: \(SynthProfile.allCases.map(\.rawValue).joined(separator: ", ")).")
    var profile: SynthProfile = .mixed

    func validate() throws {
        guard records >= 0 else { throw ValidationError("--records must be 0 or more") }
    }

    func run() throws {
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
