import Fleet
import Foundation
import Testing

/// The runner hands every result back exactly once, in input order, whatever order the
/// workers finish in, and never runs more jobs at once than it has workers.
@Suite struct FleetRunnerTests {
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var running = 0
        private(set) var peak = 0
        func enter() { lock.lock(); running += 1; peak = max(peak, running); lock.unlock() }
        func leave() { lock.lock(); running -= 1; lock.unlock() }
    }

    @Test("results come back in input order, once each", arguments: [1, 2, 4])
    func order(workers: Int) {
        let files = (0..<300).map { "f\($0)" }
        let counter = Counter()
        let laterDone = DispatchSemaphore(value: 0)
        var seen: [Int] = []
        FleetRunner(workers: workers).run(files, job: { i, path in
            counter.enter()
            defer { counter.leave() }
            // With several workers, file 0 finishes only after file 1 has: results arrive out
            // of order and must still come back in order.
            if workers > 1, i == 0 { laterDone.wait() }
            if workers > 1, i == 1 { laterDone.signal() }
            return path + "!"
        }, emit: { i, result in
            #expect(result == files[i] + "!")
            seen.append(i)
        })
        #expect(seen == Array(0..<300))
        #expect(counter.peak <= workers)
    }

    @Test("no files, no calls")
    func empty() {
        var calls = 0
        FleetRunner(workers: 2).run([], job: { _, _ in 0 }, emit: { _, _ in calls += 1 })
        #expect(calls == 0)
    }
}
