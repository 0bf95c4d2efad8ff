import Foundation
import QMP
import Recording
import TestSupport

/// Runs the real `qmpreplay` binary (built next to the test bundle) and captures its output.
struct CLI {
    struct Result {
        var status: Int32
        var stdout: [UInt8]
        var stderr: String
        var out: String { String(decoding: stdout, as: UTF8.self) }
    }

    static let packageRoot = PackageRoot.url

    static let binary: String = {
        if let env = ProcessInfo.processInfo.environment["QMPREPLAY_BIN"] { return env }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        let candidates = [
            exe.appendingPathComponent("qmpreplay").path,
            packageRoot.appendingPathComponent(".build/debug/qmpreplay").path,
        ]
        for c in candidates where FileManager.default.isExecutableFile(atPath: c) { return c }
        fatalError("qmpreplay binary not found (looked in \(candidates)); run 'swift build' or set QMPREPLAY_BIN")
    }()

    /// The binary's index cache while testing (docs/INDEX.md): a folder under .build, so that
    /// test runs neither read nor fill the user's ~/.cache/qmpreplay. A test that sets
    /// XDG_CACHE_HOME itself keeps its own.
    static let cacheHome: String = {
        let path = packageRoot.appendingPathComponent(".build/test-cache").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    static func recording(_ name: String) -> String {
        packageRoot.appendingPathComponent("Recordings").appendingPathComponent(name).path
    }

    @discardableResult
    static func run(_ args: [String], stdin: [UInt8]? = nil, env: [String: String] = [:]) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        var environment = ProcessInfo.processInfo.environment
        environment["XDG_CACHE_HOME"] = cacheHome
        for (k, v) in env { environment[k] = v }
        p.environment = environment
        let out = Pipe()
        let errPath = NSTemporaryDirectory() + "qmpreplay-stderr-" + UUID().uuidString
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let errHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        defer { try? FileManager.default.removeItem(atPath: errPath) }
        p.standardOutput = out
        p.standardError = errHandle
        let input = Pipe()
        p.standardInput = input
        try p.run()
        try errHandle.close()
        if let stdin { input.fileHandleForWriting.write(Data(stdin)) }
        try input.fileHandleForWriting.close()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let errData = FileManager.default.contents(atPath: errPath) ?? Data()
        return Result(status: p.terminationStatus, stdout: Array(outData), stderr: String(decoding: errData, as: UTF8.self))
    }

    static func tempDir() -> String {
        let path = NSTemporaryDirectory() + "qmpreplay-cli-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
