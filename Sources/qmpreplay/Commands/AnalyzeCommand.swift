import ArgumentParser

struct AnalyzeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "analyze", abstract: "Run an analysis over a recording.")
    func run() throws { throw fail("analyze: not implemented yet") }
}
