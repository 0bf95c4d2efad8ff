import Transport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs one job per recording on several threads and hands the results back in input
/// order, on the calling thread, as each becomes the next one due. The job gets the file's
/// position and path and returns its output (e.g. a JSON line); the jobs must not share mutable
/// state. Results that finish early wait in a small reorder window; the workers stop taking
/// new files while the window is full, so memory stays bounded by `workers × window`
/// results, not by the number of files.
///
/// Example: `FleetRunner(workers: 2).run(files) { i, path in line(for: path) } emit: { i, bytes in out.write(bytes) }`.
public struct FleetRunner: Sendable {
    public var workers: Int

    /// `workers` threads; 0 means one per online core.
    public init(workers: Int = 0) {
        self.workers = workers > 0 ? workers : FleetRunner.onlineCores
    }

    public static var onlineCores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    private struct Slots<Result: Sendable>: Sendable {
        var next = 0
        var results: [Int: Result] = [:]
    }

    public func run<Result: Sendable>(_ files: [String], job: @escaping @Sendable (Int, String) -> Result,
                                      emit: (Int, Result) -> Void) {
        guard !files.isEmpty else { return }
        let threads = min(workers, files.count)
        if threads == 1 {
            for (i, f) in files.enumerated() { emit(i, job(i, f)) }
            return
        }
        let window = threads * 4
        let state = SharedSlots<Result>()
        let ready = WorkerWakeup()
        let room = WorkerWakeup()
        var pool: [JoinableThread] = []
        for _ in 0..<threads {
            pool.append(JoinableThread {
                while true {
                    let i: Int? = state.slots.withLock { s in
                        guard s.next < files.count else { return nil }
                        defer { s.next += 1 }
                        return s.next
                    }
                    guard let i else { return }
                    let result = job(i, files[i])
                    state.slots.withLock { $0.results[i] = result }
                    ready.signal()
                    // Bound the reorder window: wait while too far ahead of the emitter.
                    while state.slots.withLock({ $0.results.count }) > window { room.wait(nanoseconds: 5_000_000) }
                }
            })
        }
        var due = 0
        while due < files.count {
            if let result = state.slots.withLock({ $0.results.removeValue(forKey: due) }) {
                emit(due, result)
                due += 1
                room.signal()
            } else {
                ready.wait()
            }
        }
        for t in pool { t.join() }
    }

    private final class SharedSlots<Result: Sendable>: Sendable {
        let slots = Guarded(Slots<Result>())
    }
}
