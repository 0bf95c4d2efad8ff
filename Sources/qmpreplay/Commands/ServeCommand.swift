import ArgumentParser

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Serve a recording to QMP clients as a fake QEMU.")
    func run() throws { throw fail("serve: not implemented yet") }
}
