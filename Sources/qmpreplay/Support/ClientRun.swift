import Recording

#if canImport(Glibc)
import Glibc
#endif

/// Runs a client under test once, as `explore` does for each schedule: the command with
/// `{socket}` in its words replaced by the socket path and `QMP_SOCKET` set to it, its output
/// kept in a file, killed (only this child) when it outlives the timeout.
///
/// Example: `ClientRun.run(["python3", "client.py", "{socket}"], socket: "/tmp/x/qmp.sock", timeout: 10_000_000_000, log: "/tmp/x/out")`.
struct ClientRun {
    /// The exit status (128 + signal when killed by one).
    var status: Int32
    var timedOut: Bool
    /// The client's last lines of output (stdout and stderr together).
    var tail: [String]

    var passed: Bool { status == 0 && !timedOut }

    static func run(_ argv: [String], socket: String, timeout: Int64, log: String) -> ClientRun {
        let words = argv.map { $0.replacingAll("{socket}", with: socket) }
        var env = environmentWithout("QMP_SOCKET")
        env.append("QMP_SOCKET=\(socket)")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var pid: pid_t = 0
        let cArgs = words.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup($0) } + [nil]
        defer { (cArgs + cEnv).forEach { free($0) } }
        let rc = posix_spawnp(&pid, words[0], &actions, nil, cArgs, cEnv)
        guard rc == 0 else {
            return ClientRun(status: 127, timedOut: false, tail: ["cannot start \(words[0]): \(String(cString: strerror(rc)))"])
        }
        let deadline = monotonicNow() + timeout
        var status: Int32 = 0
        var timedOut = false
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { break }
            if monotonicNow() > deadline && !timedOut {
                timedOut = true
                kill(pid, SIGKILL)
            }
            usleep(2000)
        }
        let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return ClientRun(status: code, timedOut: timedOut, tail: lastLines(of: log, 8))
    }

    private static func monotonicNow() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    private static func environmentWithout(_ name: String) -> [String] {
        var out: [String] = []
        var p = environ
        while let e = p.pointee {
            let s = String(cString: e)
            if !s.hasPrefix(name + "=") { out.append(s) }
            p += 1
        }
        return out
    }

    private static func lastLines(of path: String, _ n: Int) -> [String] {
        guard let bytes = try? ImportSource.read(path) else { return [] }
        return Array(String(decoding: bytes, as: UTF8.self).split(separator: "\n").suffix(n).map(String.init))
    }
}
