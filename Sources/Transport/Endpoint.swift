#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A socket address as users write it: `unix:/run/qmp.sock` or `tcp:127.0.0.1:4444`
/// (`tcp:PORT` and `tcp::PORT` mean 127.0.0.1).
public enum Endpoint: Sendable, Hashable, CustomStringConvertible {
    case unix(String)
    case tcp(host: String, port: UInt16)

    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public let input: String
        public var description: String { "invalid address '\(input)': use unix:PATH or tcp:HOST:PORT" }
    }

    public init(parsing s: String) throws(ParseError) {
        if s.hasPrefix("unix:") {
            let path = String(s.dropFirst(5))
            guard !path.isEmpty, path.utf8.count < 108 else { throw ParseError(input: s) }
            self = .unix(path)
            return
        }
        if s.hasPrefix("tcp:") {
            let rest = String(s.dropFirst(4))
            let host: String
            let portText: String
            if let colon = rest.lastIndex(of: ":") {
                host = String(rest[..<colon])
                portText = String(rest[rest.index(after: colon)...])
            } else {
                host = ""
                portText = rest
            }
            guard let port = UInt16(portText) else { throw ParseError(input: s) }
            var h = host.isEmpty ? "127.0.0.1" : host
            if h.hasPrefix("[") && h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
            self = .tcp(host: h, port: port)
            return
        }
        throw ParseError(input: s)
    }

    public var description: String {
        switch self {
        case .unix(let p): return "unix:\(p)"
        case .tcp(let h, let p): return h.contains(":") ? "tcp:[\(h)]:\(p)" : "tcp:\(h):\(p)"
        }
    }
}

/// A socket error naming the endpoint and the system's reason.
public struct SocketError: Error, CustomStringConvertible, Sendable {
    public let endpoint: String
    public let reason: String
    public let errno: Int32
    public var description: String { "\(endpoint): \(reason)" }

    public init(endpoint: String, reason: String, errno: Int32) {
        self.endpoint = endpoint; self.reason = reason; self.errno = errno
    }
}

/// Thin POSIX socket helpers (blocking connect/accept, non-blocking I/O is set by callers).
public enum Sockets {
    static func error(_ ep: String, _ what: String, _ e: Int32 = errno) -> SocketError {
        SocketError(endpoint: ep, reason: "\(what): \(String(cString: strerror(e)))", errno: e)
    }

    public static func connect(_ ep: Endpoint) throws(SocketError) -> Int32 {
        switch ep {
        case .unix(let path):
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw error(ep.description, "socket") }
            var addr = unixAddress(path)
            let r = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if r != 0 { let e = errno; close(fd); throw error(ep.description, "cannot connect", e) }
            return fd
        case .tcp(let host, let port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var res: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, String(port), &hints, &res) == 0, let first = res else {
                throw SocketError(endpoint: ep.description, reason: "cannot resolve host '\(host)'", errno: 0)
            }
            defer { freeaddrinfo(res) }
            var lastErr: Int32 = ECONNREFUSED
            var ai: UnsafeMutablePointer<addrinfo>? = first
            while let a = ai {
                let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), a.pointee.ai_protocol)
                if fd >= 0 {
                    if Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 {
                        var one: Int32 = 1
                        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                        return fd
                    }
                    lastErr = errno
                    close(fd)
                }
                ai = a.pointee.ai_next
            }
            throw error(ep.description, "cannot connect", lastErr)
        }
    }

    /// Listens on an endpoint. A unix socket path that exists and is a stale socket is replaced;
    /// the socket is created with mode `mode` (0600 by default).
    public static func listen(_ ep: Endpoint, mode: mode_t = 0o600, backlog: Int32 = 16) throws(SocketError) -> Int32 {
        switch ep {
        case .unix(let path):
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw error(ep.description, "socket") }
            var st = stat()
            if lstat(path, &st) == 0 {
                guard (st.st_mode & S_IFMT) == S_IFSOCK else {
                    close(fd)
                    throw SocketError(endpoint: ep.description, reason: "exists and is not a socket", errno: EEXIST)
                }
                unlink(path)
            }
            var addr = unixAddress(path)
            let old = umask(~mode & 0o777)
            let r = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            umask(old)
            if r != 0 { let e = errno; close(fd); throw error(ep.description, "cannot bind", e) }
            if Glibc.listen(fd, backlog) != 0 { let e = errno; close(fd); throw error(ep.description, "cannot listen", e) }
            return fd
        case .tcp(let host, let port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            hints.ai_flags = AI_PASSIVE
            var res: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, String(port), &hints, &res) == 0, let a = res else {
                throw SocketError(endpoint: ep.description, reason: "cannot resolve host '\(host)'", errno: 0)
            }
            defer { freeaddrinfo(res) }
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), a.pointee.ai_protocol)
            guard fd >= 0 else { throw error(ep.description, "socket") }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if bind(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) != 0 { let e = errno; close(fd); throw error(ep.description, "cannot bind", e) }
            if Glibc.listen(fd, backlog) != 0 { let e = errno; close(fd); throw error(ep.description, "cannot listen", e) }
            return fd
        }
    }

    /// Accepts a connection; returns the fd and a description of the peer.
    public static func accept(_ listenFD: Int32) -> (Int32, String)? {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.accept(listenFD, $0, &len) }
        }
        guard fd >= 0 else { return nil }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        var peer = "unix"
        if storage.ss_family == sa_family_t(AF_INET) || storage.ss_family == sa_family_t(AF_INET6) {
            var host = [CChar](repeating: 0, count: 64)
            var serv = [CChar](repeating: 0, count: 16)
            _ = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    getnameinfo($0, len, &host, 64, &serv, 16, NI_NUMERICHOST | NI_NUMERICSERV)
                }
            }
            let h = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let s = String(decoding: serv.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            peer = "tcp:\(h):\(s)"
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        return (fd, peer)
    }

    public static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    /// Writes all bytes, waiting while the socket is full. Returns false on error. Blocking:
    /// for the test peers and benchmarks, never for the recorder or the server (they write
    /// through swift-nio).
    @discardableResult
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = send(fd, bytes.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL))
            if n > 0 { off += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { FDWait.writable(fd, timeoutMs: 1000); continue }
            return false
        }
        return true
    }

    @discardableResult
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { writeAll(fd, $0) }
    }

    private static func unixAddress(_ path: String) -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            let bytes = Array(path.utf8.prefix(buf.count - 1))
            for (i, b) in bytes.enumerated() { buf[i] = b }
            buf[bytes.count] = 0
        }
        return addr
    }
}
