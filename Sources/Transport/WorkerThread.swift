import Dispatch

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

/// How a worker thread sleeps until there is work, beside a `Mutex` that holds the work.
///
/// The worker, finding nothing to do, records in the mutex-protected state that it is about
/// to sleep, leaves the lock and calls `wait`; whoever adds work under the lock and finds the
/// worker marked asleep clears the mark and calls `signal` after leaving the lock. The
/// semaphore counts, so a signal given before the worker reaches `wait` is not lost, and the
/// mark keeps it to one signal per sleep however much work arrives. There is no state here:
/// the state and its one lock type stay in the `Mutex`.
///
/// Example: `if queue.withLock({ $0.append(x); return $0.takeSleeper() }) { wakeup.signal() }`.
public final class WorkerWakeup: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)

    public init() {}

    public func signal() { semaphore.signal() }

    /// Sleeps until signalled.
    public func wait() { semaphore.wait() }

    /// Sleeps until signalled or `nanoseconds` have passed; false when the time ran out.
    @discardableResult
    public func wait(nanoseconds: Int64) -> Bool {
        semaphore.wait(timeout: .now() + .nanoseconds(Int(max(nanoseconds, 0)))) == .success
    }
}
