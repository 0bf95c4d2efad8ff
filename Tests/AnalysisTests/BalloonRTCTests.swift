import QMP
import Recording
import Testing
@testable import Analysis

@Suite("balloon and rtc analyses")
struct BalloonRTCTests {
    static let gib: Int64 = 1 << 30
    static let mib: Int64 = 1 << 20

    @Test("balloon: step series, stats, targets reached / superseded / never / rejected, merged samples")
    func balloon() throws {
        var ss = Session()
        ss.command(s(1), "query-balloon", id: "1")
        ss.reply(s(1.1), "{\"actual\": \(Self.gib)}", id: "1")
        ss.command(s(2), "balloon", "{\"value\": \(768 * Self.mib)}", id: "2")
        ss.reply(s(2.01), id: "2")
        ss.event(s(2.5), "BALLOON_CHANGE", "{\"actual\": \(900 * Self.mib)}")
        // Created at 3.1 s, inside the window the 2.5 s delivery opened: held to its end.
        ss.event(s(3.5), "BALLOON_CHANGE", "{\"actual\": \(768 * Self.mib)}", qemu: Session.start + s(3.1) / 1000)
        ss.command(s(6), "balloon", "{\"value\": \(512 * Self.mib)}", id: "3")
        ss.reply(s(6.01), id: "3")
        ss.command(s(7), "balloon", "{\"value\": \(600 * Self.mib)}", id: "4")  // supersedes 512 MiB
        ss.reply(s(7.01), id: "4")
        ss.event(s(8), "BALLOON_CHANGE", "{\"actual\": \(600 * Self.mib + 4096)}")  // within a page
        ss.command(s(9), "balloon", "{\"value\": \(256 * Self.mib)}", id: "5")
        ss.error(s(9.01), "DeviceNotActive", "No balloon device has been activated", id: "5")
        ss.command(s(10), "balloon", "{\"value\": \(300 * Self.mib)}", id: "6")
        ss.reply(s(10.01), id: "6")
        ss.endTime = s(12)
        let rec = try ss.open()
        let report = try Analyses.run("balloon", on: rec)
        let r = try #require(report.result as? BalloonResult)
        #expect(r.samples.map(\.actual) == [Self.gib, 900 * Self.mib, 768 * Self.mib, 600 * Self.mib + 4096])
        #expect(r.samples.map(\.source) == ["query", "event", "event", "event"])
        #expect(r.samples.map(\.possiblyMerged) == [false, false, true, false])
        let st = try #require(r.stats)
        #expect(st.min == 600 * Self.mib + 4096 && st.max == Self.gib && st.final == 600 * Self.mib + 4096)
        // 1 GiB for 1.4 s, 900 MiB 1 s, 768 MiB 4.5 s, 600 MiB+4 KiB 4 s over 10.9 s.
        let expected = (1.4 * Double(Self.gib) + 1.0 * Double(900 * Self.mib) + 4.5 * Double(768 * Self.mib) + 4.0 * Double(600 * Self.mib + 4096)) / 10.9
        #expect(abs(st.timeWeightedMean - expected) < 1)
        #expect(st.timeAtLevel.map(\.level) == [768 * Self.mib, 600 * Self.mib + 4096, Self.gib, 900 * Self.mib])
        #expect(st.timeAtLevel.map(\.time) == [s(4.5), s(4), s(1.4), s(1)])
        #expect(r.targets.map(\.outcome) == ["reached", "superseded", "reached", "rejected", "never"])
        #expect(r.targets[0].latency == s(1.5))
        // By QEMU's clock the guest got there at 3.1 s, 1.1 s after the command (2 s).
        #expect(r.targets[0].latencyQemu == s(1.1))
        #expect(r.targets[0].reachedRecord == 5)
        #expect(r.targets[2].latency == s(1))
        #expect(r.targets[2].latencyQemu == s(1))
        #expect(r.targets[1].latencyQemu == nil && r.targets[3].latencyQemu == nil)
        #expect(r.targets[3].error == "DeviceNotActive: No balloon device has been activated")
        #expect(r.flapping.isEmpty)
        let f = report.findings
        #expect(f.map(\.code) == ["target-never-reached", "target-rejected"])
        #expect(f[0].records == [13])
    }

    @Test("balloon: flapping between two values at the 1 s throttle cadence (arm64 64 K-page bug)")
    func flapping() throws {
        var ss = Session()
        ss.event(s(1), "BALLOON_CHANGE", "{\"actual\": \(Self.gib)}")
        for k in 0..<9 {
            // Each after the first created half-way through the window, delivered at its end.
            let t = s(10 + Double(k) * 1.0003)
            ss.event(t, "BALLOON_CHANGE", "{\"actual\": \(k % 2 == 0 ? 960 * Self.mib : Self.gib)}",
                     qemu: Session.start + t / 1000 - (k == 0 ? 0 : 500_000))
        }
        ss.event(s(40), "BALLOON_CHANGE", "{\"actual\": \(512 * Self.mib)}")
        let rec = try ss.open()
        let report = try Analyses.run("balloon", on: rec)
        let r = try #require(report.result as? BalloonResult)
        #expect(r.flapping.count == 1)
        let fl = r.flapping[0]
        #expect(fl.firstRecord == 1 && fl.lastRecord == 9)
        #expect(fl.changes == 8)
        #expect(fl.values == [960 * Self.mib, Self.gib])
        #expect(fl.duration == s(8 * 1.0003))
        #expect(fl.deliveries == 9)
        #expect(r.samples.filter(\.possiblyMerged).count == 8)
        // Nine deliveries at the cadence, but flapping explains them: no flood on top.
        #expect(r.floods.isEmpty)
        #expect(report.findings.map(\.code) == ["flapping"])
        #expect(report.findings.first?.message == "balloon flapping for 8.002s between 960 MiB and 1024 MiB (8 changes in 9 deliveries at the 1 s throttle cadence)")
    }

    @Test("balloon: --from/--to limit the records and the time-weighted span")
    func range() throws {
        var ss = Session()
        ss.event(s(1), "BALLOON_CHANGE", "{\"actual\": 100}")
        ss.event(s(3), "BALLOON_CHANGE", "{\"actual\": 200}")
        ss.event(s(5), "BALLOON_CHANGE", "{\"actual\": 300}")
        let rec = try ss.open()
        let r = try #require(try Analyses.run("balloon", on: rec, from: s(2), to: s(4)).result as? BalloonResult)
        #expect(r.samples.map(\.actual) == [200])
        #expect(r.stats?.timeAtLevel.map(\.time) == [s(1)])
    }

    @Test("rtc: absolute offsets, noise, drift, steps, DST, epoch anomaly, least squares per qom-path")
    func rtc() throws {
        var ss = Session()
        let dev = "/machine/unattached/device[8]"
        let day = 86_400.0
        // Drifting +2 s/day, sampled every 11 minutes x 4, then a step, a DST jump, an anomaly.
        ss.event(s(0), "RTC_CHANGE", "{\"offset\": 0, \"qom-path\": \"\(dev)\"}")
        ss.event(s(day / 2), "RTC_CHANGE", "{\"offset\": 1, \"qom-path\": \"\(dev)\"}")
        ss.event(s(day), "RTC_CHANGE", "{\"offset\": 2, \"qom-path\": \"\(dev)\"}")
        ss.event(s(day + 60), "RTC_CHANGE", "{\"offset\": 22, \"qom-path\": \"\(dev)\"}")
        ss.event(s(1.5 * day), "RTC_CHANGE", "{\"offset\": 3623, \"qom-path\": \"\(dev)\"}")
        ss.event(s(1.6 * day), "RTC_CHANGE", "{\"offset\": 1650000000, \"qom-path\": \"\(dev)\"}")
        ss.event(s(2 * day), "RTC_CHANGE", "{\"offset\": 3624, \"qom-path\": \"\(dev)\"}")
        ss.event(s(10), "RTC_CHANGE", "{\"offset\": -1}")   // an older QEMU's event without qom-path
        ss.event(s(20), "RTC_CHANGE", "{\"offset\": 0}")
        let rec = try ss.open()
        let report = try Analyses.run("rtc", on: rec)
        let r = try #require(report.result as? RTCResult)
        #expect(r.series.map(\.qomPath) == [dev, ""])
        let a = r.series[0]
        #expect(a.samples.map(\.offset) == [0, 1, 2, 22, 3623, 1_650_000_000, 3624])
        // The first write: 0 from the offset QEMU started with (0, assumed), no interval.
        #expect(a.samples.map(\.kind) == ["unchanged", "noise", "noise", "step", "dst", "anomaly", "noise"])
        #expect(a.samples.map(\.delta) == [0, 1, 1, 20, 3601, nil, 1])
        #expect(a.samples.map(\.previousAssumed) == [true, false, false, false, false, false, false])
        #expect(a.samples[0].interval == nil)
        #expect(a.writes == 7 && a.writesHeld == 0)
        #expect(a.samples[1].driftPerDay.map { fmt($0, 3) } == "2.000")
        // Steps and DST taken out: 0, 1, 2, 2, 2, 3 over 0, .5, 1, 1+60s, 1.5, 2 days.
        let xs: [Double] = [0, 0.5, 1, 1 + 60 / day, 1.5, 2]
        let ys: [Double] = [0, 1, 2, 2, 2, 3]
        let mx = xs.reduce(0, +) / 6, my = ys.reduce(0, +) / 6
        var sxy = 0.0, sxx = 0.0
        for (x, y) in zip(xs, ys) {
            sxy += (x - mx) * (y - my)
            sxx += (x - mx) * (x - mx)
        }
        let slope = sxy / sxx
        #expect(abs(a.driftPerDay! - slope) < 1e-6)
        #expect(r.series[1].samples.map(\.kind) == ["noise", "noise"])
        #expect(r.series[1].samples.map(\.delta) == [-1, 1])
        let codes = report.findings.map(\.code)
        #expect(codes.first == "anomaly")
        #expect(codes.contains("dst") && codes.contains("step") && codes.contains("drift"))
        #expect(report.svg()?.contains("drift fit") == true)
    }

    @Test("rtc: a real guest setting its clock +3600, +20, back (guest-rtc.qmprec)")
    func realRTC() throws {
        let rec = try Recording(path: Fixtures.recording("guest-rtc.qmprec"))
        let r = try #require(try Analyses.run("rtc", on: rec).result as? RTCResult)
        #expect(r.series.count == 1)
        #expect(r.series[0].samples.map(\.offset) == [3600, 3620, 0])
        // Three writes, three deliveries; the first a step from 0 (assumed).
        #expect(r.series[0].samples.map(\.kind) == ["step", "step", "step"])
        #expect(r.series[0].samples.map(\.delta) == [3600, 20, -3620])
        #expect(r.series[0].samples.map(\.previousAssumed) == [true, false, false])
        #expect(r.series[0].samples.map(\.record) == [5, 6, 7])
        #expect(r.series[0].writes == 3 && r.series[0].writesHeld == 0)
        // Steps only: no interval measured drift.
        #expect(r.series[0].driftPerDay == nil)
    }
}
