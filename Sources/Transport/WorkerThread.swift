#if canImport(Glibc)
import Glibc
#endif

/// A thread that runs a closure and can be joined: the recorder's encoder and disk workers
/// and the benchmarks' peers. Threads are made only here, in the transport layer.
public final class JoinableThread: @unchecked Sendable {
    private var tid = pthread_t()
    private let body: () -> Void

    public init(_ body: @escaping () -> Void) {
        self.body = body
        let ctx = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&tid, nil, { p in
            let me = Unmanaged<JoinableThread>.fromOpaque(p!).takeRetainedValue()
            me.body()
            return nil
        }, ctx)
    }

    public func join() { pthread_join(tid, nil) }
    public func detach() { pthread_detach(tid) }
}
