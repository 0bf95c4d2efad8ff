/// The replay server's request handling under arbitrary client input (filled in with the
/// replay module's session model).
enum ReplayFuzz {
    static func run(_ bytes: [UInt8]) {}
}
