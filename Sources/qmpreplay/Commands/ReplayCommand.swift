import ArgumentParser

struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "replay", abstract: "Push a recording's QEMU-side stream to a consumer or stdout.")
    func run() throws { throw fail("replay: not implemented yet") }
}
