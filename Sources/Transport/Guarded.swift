import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A value guarded by a `Synchronization.Mutex` (the project's one lock type) that
/// ThreadSanitizer can follow.
///
/// On Linux, Swift's `Mutex` hands a contended lock over inside the kernel (a priority-
/// inheritance futex), out of ThreadSanitizer's sight, so `Scripts/tsan` reports races on
/// data the mutex does guard. Under ThreadSanitizer this type tells it about each acquire and
/// release (`__tsan_acquire` / `__tsan_release`, looked up once); in any other build those
/// hooks are absent and cost one predictable branch.
///
/// Example: `let count = Guarded(0); count.withLock { $0 += 1 }`.
public struct Guarded<Value: Sendable>: ~Copyable, Sendable {
    private let mutex: Mutex<Value>
    /// Its address names this lock to ThreadSanitizer.
    private let token = Token()

    public init(_ value: Value) { mutex = Mutex(value) }

    public borrowing func withLock<Result: Sendable>(_ body: (inout Value) -> Result) -> Result {
        mutex.withLock { value in
            let id = UnsafeRawPointer(Unmanaged.passUnretained(token).toOpaque())
            ThreadSanitizerHooks.acquire?(id)
            defer { ThreadSanitizerHooks.release?(id) }
            return body(&value)
        }
    }

    private final class Token: Sendable {}
}

/// ThreadSanitizer's annotation entry points when the process runs under it.
enum ThreadSanitizerHooks {
    typealias Hook = @convention(c) (UnsafeRawPointer?) -> Void

    static let acquire = lookup("__tsan_acquire")
    static let release = lookup("__tsan_release")

    private static func lookup(_ name: String) -> Hook? {
        dlsym(UnsafeMutableRawPointer(bitPattern: 0), name).map { unsafeBitCast($0, to: Hook.self) }
    }
}
