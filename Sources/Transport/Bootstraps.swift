import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Listening and connecting for the recorder and the fake QEMU, on swift-nio, with the
/// rules users of QMP sockets expect: a unix socket is created with a chosen mode (0600 by
/// default: the monitor is root-equivalent), a stale socket file left by a crash is
/// replaced but any other file at that path is refused, TCP sockets get TCP_NODELAY (QMP is
/// small request/response traffic), and errors name the address and the system's reason.
///
/// Example: `let ch = try Bootstraps.listen(.unix("/tmp/q.sock"), mode: 0o600) { ch in ch.pipeline.addHandler(h) }`.
public enum Bootstraps {
    private static let umaskSetting = Mutex(())

    /// Binds and listens; `childInit` sets up each accepted connection's pipeline. Returns
    /// the listening channel once it accepts connections.
    public static func listen(
        _ ep: Endpoint, mode: mode_t = 0o600, backlog: Int32 = 128,
        group: EventLoopGroup = EventLoops.shared,
        childInit: @escaping @Sendable (Channel) -> EventLoopFuture<Void>
    ) throws(SocketError) -> Channel {
        let b = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: backlog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { ch in
                switch ch.remoteAddress {
                case .v4?, .v6?:
                    return ch.setOption(.socketOption(.tcp_nodelay), value: 1).flatMap { childInit(ch) }
                default:
                    return childInit(ch)
                }
            }
        do {
            switch ep {
            case .unix(let path):
                var st = stat()
                if lstat(path, &st) == 0 {
                    guard (st.st_mode & S_IFMT) == S_IFSOCK else {
                        throw SocketError(endpoint: ep.description, reason: "exists and is not a socket", errno: EEXIST)
                    }
                    // A socket file is stale when nobody accepts on it; a live one belongs to
                    // another server (a second `serve` or `record --listen` on the same path
                    // must not take it over, nor delete it later).
                    if isLive(path) {
                        throw SocketError(endpoint: ep.description, reason: "in use: another process is listening on it", errno: EADDRINUSE)
                    }
                    unlink(path)
                }
                // The mode is set through the umask while binding, so the socket never exists
                // with wider permissions (a chmod afterwards would leave a window). The umask
                // is the process's: two listens at once (tests run in parallel) would restore
                // each other's, so one binds at a time.
                return try umaskSetting.withLock { _ in
                    let old = umask(~mode & 0o777)
                    defer { umask(old) }
                    return try b.bind(unixDomainSocketPath: path).wait()
                }
            case .tcp(let host, let port):
                return try b.bind(host: host, port: Int(port)).wait()
            }
        } catch let e as SocketError {
            throw e
        } catch {
            throw Self.error(ep, "cannot listen", error)
        }
    }

    /// True when something accepts connections on the unix socket at `path` (a blocking
    /// connect to a local socket answers at once: refused for a stale file).
    static func isLive(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (i, b) in bytes.enumerated() { buf[i] = b }
            buf[bytes.count] = 0
        }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return r == 0
    }

    /// Connects; `initializer` sets up the pipeline before the first byte arrives.
    public static func connect(
        _ ep: Endpoint, group: EventLoopGroup = EventLoops.shared,
        initializer: @escaping @Sendable (Channel) -> EventLoopFuture<Void>
    ) throws(SocketError) -> Channel {
        let b = ClientBootstrap(group: group)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer(initializer)
        do {
            switch ep {
            case .unix(let path):
                return try b.connect(unixDomainSocketPath: path).wait()
            case .tcp(let host, let port):
                let ch = try b.connect(host: host, port: Int(port)).wait()
                _ = try? ch.setOption(.socketOption(.tcp_nodelay), value: 1).wait()
                return ch
            }
        } catch {
            throw Self.error(ep, "cannot connect", error)
        }
    }

    /// The same as `connect`, without blocking: for use on an event loop.
    public static func connectLater(
        _ ep: Endpoint, group: EventLoopGroup,
        initializer: @escaping @Sendable (Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<Channel> {
        let b = ClientBootstrap(group: group)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer(initializer)
        switch ep {
        case .unix(let path): return b.connect(unixDomainSocketPath: path)
        case .tcp(let host, let port):
            return b.connect(host: host, port: Int(port)).flatMap { ch in
                ch.setOption(.socketOption(.tcp_nodelay), value: 1).map { ch }
            }
        }
    }

    /// A NIO or system error as the one-line reason users see:
    /// `unix:/no/such.sock: cannot connect: No such file or directory`.
    public static func error(_ ep: Endpoint, _ what: String, _ error: Error) -> SocketError {
        if let io = error as? IOError {
            return SocketError(endpoint: ep.description, reason: "\(what): \(String(cString: strerror(io.errnoCode)))", errno: io.errnoCode)
        }
        if let s = error as? SocketAddressError {
            return SocketError(endpoint: ep.description, reason: "\(what): \(s)", errno: 0)
        }
        if let c = error as? NIOConnectionError, let first = c.connectionErrors.first {
            return Self.error(ep, what, first.error)
        }
        return SocketError(endpoint: ep.description, reason: "\(what): \(error)", errno: 0)
    }
}
