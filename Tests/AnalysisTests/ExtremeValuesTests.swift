import QMP
import Recording
import Testing
@testable import Analysis
import TestSupport

/// Recordings whose envelopes are intact but whose messages (or header) hold values no real
/// QEMU sends: timestamps at the 64-bit limits, negative ones, huge balloon sizes and RTC
/// offsets. Each case once trapped (found by the `analyses` and `shell-state` fuzz targets,
/// docs/FUZZING.md, or by reading the code they pointed at); now every analysis runs to the
/// end and every output renders.
@Suite("Analyses on extreme values")
struct ExtremeValuesTests {
    /// A recording from raw lines after a header (`start_us` chosen by the test).
    static func recording(startMicros: Int64 = 1_800_000_000_000_000, _ lines: [String]) throws -> Recording {
        let header = #"{"qmprec":1,"start_us":\#(startMicros),"source":"x","mode":"synthetic"}"#
        let text = ([header] + lines).joined(separator: "\n") + "\n"
        return try Recording(bytes: FileBytes(bytes: Array(text.utf8)), path: "extreme.qmprec")
    }

    static func event(_ t: Int64, _ name: String, seconds: String, micros: String = "0", data: String? = nil) -> String {
        var msg = #"{"timestamp": {"seconds": \#(seconds), "microseconds": \#(micros)}, "event": "\#(name)""#
        if let data { msg += #", "data": \#(data)"# }
        return #"{"t":\#(t),"c":1,"from":"qemu","k":"event","n":"\#(name)","eol":"\r\n","msg":\#(msg)}}"#
    }

    static func command(_ t: Int64, _ name: String, _ args: String) -> String {
        #"{"t":\#(t),"c":1,"from":"client","k":"command","n":"\#(name)","eol":"\n","msg":{"execute":"\#(name)","arguments":\#(args)}}"#
    }

    /// Every analysis and triage, whole and from the middle, with every output.
    static func runEverything(_ r: Recording) throws {
        for name in Analyses.names {
            for (from, to) in [(nil, nil), (r.isEmpty ? 0 : r.time(r.count / 2), r.duration)] as [(Int64?, Int64?)] {
                let report = try Analyses.run(name, on: r, from: from, to: to)
                _ = report.json.serialized(.pretty(indent: 2))
                _ = report.table(colors: false, width: 100)
                _ = report.csv()
                _ = report.svg()
                _ = report.terminalChart(width: 80, height: 12)
            }
        }
    }

    @Test("the throttle rule with QEMU timestamps at and across the 64-bit limits")
    func throttleRule() {
        // (q - pq) * 1000 overflowed; the gap now saturates and is simply "more than a window".
        let far = Delivery(receive: 1_000_000_000, qemuMicros: Int64.max / 10)
        #expect(!ThrottleRule.held(previous: Delivery(receive: 0, qemuMicros: 0), current: far, previousHeld: false))
        let low = Delivery(receive: 0, qemuMicros: -9_200_000_000_000_000_000)
        let high = Delivery(receive: 1_000_000_000, qemuMicros: 9_200_000_000_000_000_000)
        #expect(!ThrottleRule.held(previous: low, current: high, previousHeld: false))
        // A held previous delivery: the receive cadence decides, as documented.
        #expect(ThrottleRule.held(previous: low, current: high, previousHeld: true))
        // Going back in QEMU's clock (max to min): the receive cadence decides.
        let back = Delivery(receive: 2_000_000_000, qemuMicros: Int64.min)
        #expect(ThrottleRule.held(previous: high, current: back, previousHeld: false))
    }

    @Test("throttle, balloon and rtc with event timestamps near ±9.2e18 µs (the triage crash)")
    func timestampsAtTheLimit() throws {
        // seconds * 1e6 wraps in QEMU's timestamp; these give µs values near ±9.2e18.
        let r = try Self.recording([
            Self.event(1_000_000_000, "BALLOON_CHANGE", seconds: "0", data: #"{"actual": 1073741824}"#),
            Self.event(2_000_000_000, "BALLOON_CHANGE", seconds: "9223372036854", micros: "775807", data: #"{"actual": 1073741824}"#),
            Self.event(3_000_000_000, "BALLOON_CHANGE", seconds: "-9223372036854", micros: "-775808", data: #"{"actual": 536870912}"#),
            Self.event(3_100_000_000, "RTC_CHANGE", seconds: "9223372036854", data: #"{"offset": 5}"#),
            Self.event(4_100_000_000, "RTC_CHANGE", seconds: "-9223372036854", data: #"{"offset": 6}"#),
        ])
        try Self.runEverything(r)
        let t = try #require(try Analyses.run("throttle", on: r).result as? ThrottleResult)
        let balloon = try #require(t.keys.first { $0.key == "BALLOON_CHANGE" })
        #expect(balloon.deliveries == 3)
        // 0 -> +9.2e18 µs: the gap in ns saturates at Int64.max; +9.2e18 -> -9.2e18 at Int64.min.
        #expect(balloon.minQemuGap == Int64.min)
        // The third went back in QEMU's clock, 1 s after the second: the receive cadence says held.
        #expect(balloon.merged == 1)
    }

    @Test("balloon: sizes and targets at ±9.2e18, and the QEMU latency of a target reached at the limit")
    func balloonExtremes() throws {
        let r = try Self.recording([
            Self.event(1_000_000_000, "BALLOON_CHANGE", seconds: "1800000001", data: #"{"actual": -9200000000000000000}"#),
            Self.command(2_000_000_000, "balloon", #"{"value": 9200000000000000000}"#),
            Self.event(3_000_000_000, "BALLOON_CHANGE", seconds: "1800000003", data: #"{"actual": 9223372036854775807}"#),
            Self.command(4_000_000_000, "balloon", #"{"value": -9223372036854775807}"#),
            Self.event(5_000_000_000, "BALLOON_CHANGE", seconds: "9223372036854", micros: "775807",
                       data: #"{"actual": -9223372036854775807}"#),
        ])
        try Self.runEverything(r)
        let b = try #require(try Analyses.run("balloon", on: r).result as? BalloonResult)
        // 9.2e18 is not reached by a guest at Int64.max (2.3e16 bytes away); the next target
        // supersedes it and is reached exactly. |a - b| here is up to 1.8e19: no Int64 holds it.
        #expect(b.targets.map(\.outcome) == ["superseded", "reached"])
        #expect(b.targets[0].until == 4_000_000_000)
        #expect(b.targets[1].reachedTime == 5_000_000_000)
        // The reaching event's QEMU timestamp is at the limit: the latency saturates.
        #expect(b.targets[1].latencyQemu == Int64.max)
        #expect(b.targets[1].until == 5_000_000_000)
    }

    @Test("rtc: offsets at the limits are anomalies, never a trap")
    func rtcExtremes() throws {
        let r = try Self.recording([
            Self.event(1_000_000_000, "RTC_CHANGE", seconds: "1800000001", data: #"{"offset": -9223372036854775807}"#),
            Self.event(2_000_000_000, "RTC_CHANGE", seconds: "1800000002", data: #"{"offset": 9223372036854775807}"#),
            Self.event(3_000_000_000, "RTC_CHANGE", seconds: "1800000003", data: #"{"offset": 3}"#),
        ])
        try Self.runEverything(r)
        let rtc = try #require(try Analyses.run("rtc", on: r).result as? RTCResult)
        #expect(rtc.series.first?.samples.map(\.kind) == ["anomaly", "anomaly", "step"])
    }

    @Test("block-jobs: a job that moved 9.2e18 bytes in 1 ns (its throughput is past Int64 as a Double)")
    func blockJobThroughput() throws {
        let r = try Self.recording([
            Self.event(1_000_000_000, "BLOCK_JOB_READY", seconds: "1800000001",
                       data: #"{"device": "j0", "type": "mirror", "len": 0, "offset": 0, "speed": 0}"#),
            Self.event(1_000_000_001, "BLOCK_JOB_COMPLETED", seconds: "1800000001",
                       data: #"{"device": "j0", "type": "stream", "len": 9223372036854775807, "offset": 9223372036854775807, "speed": 0}"#),
        ])
        try Self.runEverything(r)
        let b = try #require(try Analyses.run("block-jobs", on: r).result as? BlockJobsResult)
        #expect((b.jobs.first?.throughput ?? 0) > 9.2e27)
    }

    @Test("a header whose start_us is at the 64-bit limits: wall times saturate", arguments: [Int64.max, Int64.min, -1])
    func headerStart(_ start: Int64) throws {
        let r = try Self.recording(startMicros: start, [
            Self.event(1_000_000_000, "STOP", seconds: "1800000001"),
            Self.command(2_000_000_000, "balloon", #"{"value": 1073741824}"#),
            Self.event(3_000_000_000, "BALLOON_CHANGE", seconds: "1800000003", data: #"{"actual": 1073741824}"#),
            Self.event(4_000_000_000, "RESUME", seconds: "1800000004"),
        ])
        #expect(r.header?.startMicros == start)
        try Self.runEverything(r)
        let report = try Analyses.run("triage", on: r)
        #expect(report.svg() != nil)
    }

    @Test("the fuzzer's first crash: start_us at Int64.max in a real capture, analysed whole")
    func mutatedRealCapture() throws {
        // Recordings/panic-pause.qmprec with the header's start_us at Int64.max and one reply
        // nested 600 deep (past the JSON parser's depth limit): AnalysisContext.wall trapped.
        let real = try FileBytes(path: PackageRoot.recording("panic-pause.qmprec")).copyBytes()
        var lines = String(decoding: real, as: UTF8.self).split(separator: "\n").map(String.init)
        lines[0] = lines[0].replacingStart(of: "start_us", with: "9223372036854775807")
        if let k = lines.firstIndex(where: { $0.contains(#""k":"return""#) }),
           let range = lines[k].range(of: #""msg":"#) {
            let deep = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
            lines[k] = String(lines[k][..<range.upperBound]) + #"{"return": "# + deep + "}}"
        }
        let r = try Recording(bytes: FileBytes(bytes: Array((lines.joined(separator: "\n") + "\n").utf8)), path: "mutated.qmprec")
        #expect(r.header?.startMicros == Int64.max)
        try Self.runEverything(r)
    }
}

extension String {
    /// `"...","start_us":123,...` with the member's value replaced (test helper).
    fileprivate func replacingStart(of member: String, with value: String) -> String {
        guard let r = range(of: "\"\(member)\":") else { return self }
        var end = r.upperBound
        while end < endIndex, self[end] != ",", self[end] != "}" { end = index(after: end) }
        return String(self[..<r.upperBound]) + value + String(self[end...])
    }
}
