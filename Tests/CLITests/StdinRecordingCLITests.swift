import Foundation
import Testing

/// A recording read from a pipe (`/dev/stdin`, process substitution): the path is opened
/// once, so no byte is lost to sniffing gzip's magic number, and a gzipped stream is
/// recognised in memory.
@Suite("recordings through a pipe")
struct StdinRecordingCLITests {
    @Test("info and cat read /dev/stdin whole, plain or gzipped")
    func pipe() throws {
        let path = CLI.recording("lifecycle-qemu.qmprec")
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let direct = try CLI.run(["cat", path, "--format", "jsonl"])
        let piped = try CLI.run(["cat", "/dev/stdin", "--format", "jsonl"], stdin: bytes)
        #expect(piped.status == 0, "\(piped.stderr)")
        #expect(piped.out == direct.out)
        let info = try CLI.run(["info", "/dev/stdin", "--json"], stdin: bytes)
        #expect(info.status == 0 && info.out.contains("\"records\""), "\(info.stderr)")

        let gz = NSTemporaryDirectory() + "stdin-\(UUID().uuidString).qmprec.gz"
        defer { try? FileManager.default.removeItem(atPath: gz) }
        let zip = Process()
        zip.executableURL = URL(fileURLWithPath: "/bin/sh")
        zip.arguments = ["-c", "gzip -c '\(path)' > '\(gz)'"]
        try zip.run()
        zip.waitUntilExit()
        let gzBytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: gz)))
        let unzipped = try CLI.run(["cat", "/dev/stdin", "--format", "jsonl"], stdin: gzBytes)
        #expect(unzipped.status == 0, "\(unzipped.stderr)")
        #expect(unzipped.out == direct.out)
    }
}
