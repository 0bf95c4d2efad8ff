import Foundation
import NIOCore
import Testing
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// The socket rules of `Bootstraps.listen`, on real unix sockets.
@Suite struct ListenRulesTests {
    private func tempPath(_ name: String) -> String {
        "/tmp/qmpreplay-transport-\(getpid())-\(name).sock"
    }

    @Test func aLiveSocketIsRefusedAStaleOneReplaced() throws {
        let path = tempPath("live")
        defer { unlink(path) }
        let first = try Bootstraps.listen(.unix(path)) { $0.eventLoop.makeSucceededVoidFuture() }
        do {
            _ = try Bootstraps.listen(.unix(path)) { $0.eventLoop.makeSucceededVoidFuture() }
            Issue.record("a second listener took over a live socket")
        } catch {
            #expect(error.description == "unix:\(path): in use: another process is listening on it")
        }
        try first.close().wait()
        // NIO removes nothing on close: the file left behind is stale and is replaced.
        let again = try Bootstraps.listen(.unix(path)) { $0.eventLoop.makeSucceededVoidFuture() }
        try again.close().wait()
    }

    @Test func aFileThatIsNotASocketIsRefusedAndKept() throws {
        let path = tempPath("file")
        defer { unlink(path) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data("keep".utf8)))
        #expect(throws: SocketError.self) { _ = try Bootstraps.listen(.unix(path)) { $0.eventLoop.makeSucceededVoidFuture() } }
        #expect(FileManager.default.contents(atPath: path) == Data("keep".utf8))
    }

    @Test func theSocketIsCreatedWithTheModeAsked() throws {
        let path = tempPath("mode")
        defer { unlink(path) }
        let ch = try Bootstraps.listen(.unix(path), mode: 0o600) { $0.eventLoop.makeSucceededVoidFuture() }
        var st = stat()
        #expect(lstat(path, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        try ch.close().wait()
    }
}
