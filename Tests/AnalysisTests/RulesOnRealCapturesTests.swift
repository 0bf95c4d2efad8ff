import QMP
import Recording
import Testing
@testable import Analysis

/// The throttle rule, balloon flapping/floods/latencies, RTC writes and throttle violations,
/// on the real captures in Recordings/ and on small fixtures of the shapes met on real QEMUs.
@Suite("throttle rule, balloon, rtc and throttle on real captures")
struct RulesOnRealCapturesTests {
    static let mib: Int64 = 1 << 20
    /// Two balloon levels a 64 KiB page apart, as on an arm64 64 K-page guest.
    static let levelA: Int64 = 1_073_610_752   // 1 GiB - 128 KiB
    static let levelB: Int64 = 1_073_676_288   // 1 GiB - 64 KiB

    // MARK: The one throttle rule

    @Test("ThrottleRule: QEMU timestamps first, then the receive cadence; none without delivery times")
    func rule() {
        let us = Session.start
        func d(_ t: Double, _ q: Double?) -> Delivery { Delivery(receive: s(t), qemuMicros: q.map { us + s($0) / 1000 }) }
        // The first delivery of a key goes out at once.
        #expect(!ThrottleRule.held(previous: nil, current: d(10, 10), previousHeld: false))
        // Created 0.6 s after the previous one was: inside its window, held.
        #expect(ThrottleRule.held(previous: d(10, 10), current: d(11, 10.6), previousHeld: false))
        // Created 1.2 s after an immediate delivery: the window had closed, sent at once,
        // even if it happens to arrive at the cadence.
        #expect(!ThrottleRule.held(previous: d(10, 10), current: d(11.2, 11.2), previousHeld: false))
        #expect(!ThrottleRule.held(previous: d(10, 10), current: d(11, 11.0), previousHeld: false))
        // After a held delivery (sent later than created), the window moved: the cadence decides.
        #expect(ThrottleRule.held(previous: d(11, 10.6), current: d(12, 11.7), previousHeld: true))
        #expect(!ThrottleRule.held(previous: d(11, 10.6), current: d(12.3, 12.3), previousHeld: true))
        // No timestamps: the receive cadence (0.95–1.05 s).
        #expect(ThrottleRule.held(previous: d(10, nil), current: d(11.02, nil), previousHeld: false))
        #expect(!ThrottleRule.held(previous: d(10, nil), current: d(11.2, nil), previousHeld: false))
        // Receive times that are not delivery times: only the timestamps can tell.
        #expect(!ThrottleRule.held(previous: d(10, nil), current: d(11, nil), previousHeld: false, receiveIsDelivery: false))
        #expect(ThrottleRule.held(previous: d(10, 10), current: d(10.6, 10.6), previousHeld: false, receiveIsDelivery: false))
    }

    @Test("guest-balloon.qmprec: balloon and throttle mark the same deliveries held (5 of 8)")
    func balloonAndThrottleAgree() throws {
        let rec = try Recording(path: Fixtures.recording("guest-balloon.qmprec"))
        let b = try #require(try Analyses.run("balloon", on: rec).result as? BalloonResult)
        let events = b.samples.filter { $0.source == "event" }
        #expect(events.map(\.record) == [9, 10, 15, 20, 25, 34, 36, 38])
        // Held, by QEMU's clock: #10 created 0.11 s after #9, #15 0.94 s after #10, #34 0.64 s
        // after #25, #38 0.03 s after #36; #20 1.004 s after the held #15, 1.000 s after it
        // by receive time. #25 and #36 were sent at once (created 1.1 s and more later).
        #expect(events.map(\.possiblyMerged) == [false, true, true, true, false, true, false, true])
        let t = try #require(try Analyses.run("throttle", on: rec).result as? ThrottleResult)
        let key = try #require(t.keys.first { $0.key == "BALLOON_CHANGE" })
        #expect(key.deliveries == events.count)
        #expect(key.merged == events.filter(\.possiblyMerged).count)
        #expect(key.merged == 5)
        #expect(t.deliveryTimesMeasured && key.violationCount == 0 && key.floods.isEmpty)
        // And the rule itself, applied by hand, says the same.
        var k = ThrottleRule.Key(receiveIsDelivery: true)
        #expect(events.map { k.deliver(Delivery(receive: $0.time, qemuMicros: $0.qemuMicros)) } == events.map(\.possiblyMerged))
    }

    // MARK: balloon

    @Test("guest-balloon.qmprec: target latencies by QEMU's clock (tens of ms) beside the receive clock (up to 1 s); no warning")
    func balloonLatencies() throws {
        let rec = try Recording(path: Fixtures.recording("guest-balloon.qmprec"))
        let report = try Analyses.run("balloon", on: rec)
        let r = try #require(report.result as? BalloonResult)
        #expect(r.targets.map(\.outcome) == ["reached", "reached", "reached", "superseded", "superseded", "superseded", "superseded", "reached", "reached"])
        let reached = r.targets.filter { $0.outcome == "reached" }
        #expect(reached.map(\.reachedRecord) == [10, 15, 20, 34, 38])
        // Receive clock: includes the time QEMU's throttle held the reaching event.
        #expect(reached.map(\.latency) == [1_004_921_687, 998_075_704, 998_171_560, 394_732_526, 1_002_641_248])
        // QEMU's clock: the reaching event's timestamp minus the command's wall time.
        #expect(reached.map(\.latencyQemu) == [113_155_000, 41_128_000, 44_751_000, 32_034_000, 30_974_000])
        for t in reached {
            #expect(t.latencyQemu! > 10_000_000 && t.latencyQemu! < 200_000_000)
            #expect(t.latency! < 1_050_000_000 && t.latency! > t.latencyQemu!)
        }
        #expect(r.targets.filter { $0.outcome != "reached" }.allSatisfy { $0.latencyQemu == nil })
        let json = report.json
        let jt = try #require(json["targets"]?.arrayValue)
        #expect(jt[0]["latency_qemu_ns"]?.int64Value == 113_155_000 && jt[0]["latency_ns"]?.int64Value == 1_004_921_687)
        #expect(jt[3]["latency_qemu_ns"] == .null)
        let table = report.table(colors: false, width: 160)
        #expect(table.contains("took (receive)") && table.contains("took (QEMU)"))
        #expect(table.contains("1.005s") && table.contains("113.2ms"))
        // Targets, then a burst of five within 0.8 s, then back: the guest converging, not a flood.
        #expect(r.floods.isEmpty && r.flapping.isEmpty)
        #expect(report.findings.filter { $0.severity != .info }.isEmpty)
        #expect(json["floods"]?.arrayValue?.isEmpty == true)
    }

    @Test("balloon flapping: arm64 64 K-page shape, two levels 64 KiB apart at 1 s with repeats (A A B B ...)")
    func arm64Flapping() throws {
        let (a, b) = (Self.levelA, Self.levelB)
        var ss = Session()
        ss.event(s(1), "BALLOON_CHANGE", "{\"actual\": \(Self.gib)}")
        let pattern = [a, a, b, b, a, a, b, b, a, a, b, b, a, a, b, b]
        for (k, v) in pattern.enumerated() { ss.event(s(10 + Double(k)), "BALLOON_CHANGE", "{\"actual\": \(v)}") }
        ss.endTime = s(40)
        let report = try Analyses.run("balloon", on: try ss.open())
        let r = try #require(report.result as? BalloonResult)
        #expect(r.flapping.count == 1)
        let f = r.flapping[0]
        #expect(f.values == [a, b])
        #expect(f.changes == 7 && f.deliveries == 15)
        #expect(f.firstRecord == 1 && f.lastRecord == 15)
        #expect(f.start == s(10) && f.duration == s(14))
        // 16 deliveries at the cadence, all explained by the flapping: no flood on top.
        #expect(r.floods.isEmpty)
        #expect(report.findings.map(\.code) == ["flapping"])
        #expect(report.findings[0].message == "balloon flapping for 14.000s between 1023.875 MiB and 1023.9375 MiB (7 changes in 15 deliveries at the 1 s throttle cadence)")
        // The levels print apart everywhere they are shown.
        let table = report.table(colors: false, width: 200)
        #expect(table.contains("1023.875 MiB (1073610752)") && table.contains("1023.9375 MiB (1073676288)"))
        #expect(table.contains("1023.875 MiB / 1023.9375 MiB"))
        #expect(report.csv().contains(",1073610752,event,false,") && report.csv().contains(",1073676288,event,false,"))
        #expect(report.svg()?.contains("flapping 1023.875 MiB / 1023.9375 MiB") == true)
    }

    @Test("balloon flapping: A B B A A B B A A B B A (6 changes) is flapping, 3 changes or a gap over 1.5 s is not")
    func flappingBoundaries() throws {
        func flaps(_ values: [Int64], gap: Double = 1) throws -> [BalloonAnalysis.Flapping] {
            var ss = Session()
            for (k, v) in values.enumerated() { ss.event(s(10 + Double(k) * gap), "BALLOON_CHANGE", "{\"actual\": \(v)}") }
            return try #require(try Analyses.run("balloon", on: try ss.open()).result as? BalloonResult).flapping
        }
        let (a, b) = (Self.levelA, Self.levelB)
        let f = try flaps([a, b, b, a, a, b, b, a, a, b, b, a])
        #expect(f.count == 1 && f[0].changes == 6 && f[0].deliveries == 12 && f[0].duration == s(11))
        #expect(try flaps([a, a, b, b, a, a, b]).isEmpty)
        #expect(try flaps([a, b, b, a, a, b, b, a, a, b, b, a], gap: 1.6).isEmpty)
        // A third level ends a run; one starts again from the deliveries of the level before it.
        let c = a - 65_536
        let g = try flaps([c, c, a, b, a, b, a, b, a, c])
        #expect(g.count == 1 && g[0].values == [a, b] && g[0].changes == 6 && g[0].firstRecord == 2 && g[0].lastRecord == 8)
    }

    @Test("balloon flood: 9 deliveries at the cadence without a target is a flood; 7, or converging on a target, is not")
    func flood() throws {
        // Free page reporting-like: the level wanders by a few MiB, one delivery a second.
        let wander: [Int64] = [1000, 1003, 998, 1004, 997, 1002, 999, 1005, 996].map { $0 * Self.mib }
        var ss = Session()
        for (k, v) in wander.enumerated() { ss.event(s(10 + Double(k) * 1.0004), "BALLOON_CHANGE", "{\"actual\": \(v)}") }
        ss.endTime = s(30)
        let report = try Analyses.run("balloon", on: try ss.open())
        let r = try #require(report.result as? BalloonResult)
        #expect(r.flapping.isEmpty)
        #expect(r.floods.count == 1)
        let f = r.floods[0]
        #expect(f.deliveries == 9 && f.converging == 0 && f.firstRecord == 0 && f.lastRecord == 8 && f.duration == s(8 * 1.0004))
        let finding = try #require(report.findings.first)
        #expect(finding.code == "flood" && finding.severity == .warning && finding.records == [0, 8])
        #expect(finding.message == "BALLOON_CHANGE flood: 9 deliveries at the 1 s throttle cadence for 8.003s (receive clock), not the guest converging on a host target (9 moved away from the target or came without one)")
        #expect(report.json["floods"]?.arrayValue?.first?["deliveries"]?.int64Value == 9)

        // Seven are not enough.
        var short = Session()
        for (k, v) in wander.prefix(7).enumerated() { short.event(s(10 + Double(k)), "BALLOON_CHANGE", "{\"actual\": \(v)}") }
        #expect(try #require(try Analyses.run("balloon", on: try short.open()).result as? BalloonResult).floods.isEmpty)

        // Nine steps of a guest deflating towards the host's target, then there: not a flood.
        var conv = Session()
        conv.command(s(9), "balloon", "{\"value\": \(900 * Self.mib)}", id: "1")
        conv.reply(s(9.001), id: "1")
        let steps: [Int64] = [988, 976, 964, 952, 940, 928, 916, 904, 900]
        for (k, v) in steps.enumerated() { conv.event(s(10 + Double(k)), "BALLOON_CHANGE", "{\"actual\": \(v * Self.mib)}") }
        let cr = try #require(try Analyses.run("balloon", on: try conv.open()).result as? BalloonResult)
        #expect(cr.samples.last?.actual == 900 * Self.mib && cr.targets.first?.outcome == "reached")
        #expect(cr.floods.isEmpty)

        // The same target, but the guest wanders off it: a flood, with the converging steps counted.
        var off = Session()
        off.command(s(9), "balloon", "{\"value\": \(900 * Self.mib)}", id: "1")
        off.reply(s(9.001), id: "1")
        let path: [Int64] = [950, 920, 900, 930, 960, 940, 990, 1000, 1010]
        for (k, v) in path.enumerated() { off.event(s(10 + Double(k)), "BALLOON_CHANGE", "{\"actual\": \(v * Self.mib)}") }
        let orr = try #require(try Analyses.run("balloon", on: try off.open()).result as? BalloonResult)
        // 950 (closer than nothing before: a step towards it), 920, 900 (there), 940 (closer than 960).
        #expect(orr.floods.map(\.deliveries) == [9] && orr.floods.map(\.converging) == [4])
    }

    // MARK: rtc

    @Test("guest-rtc.qmprec: 3 writes in 3 deliveries, the first a step from 0 (assumed), drift n/a")
    func guestRTC() throws {
        let rec = try Recording(path: Fixtures.recording("guest-rtc.qmprec"))
        let report = try Analyses.run("rtc", on: rec)
        let j = try #require(report.json["series"]?.arrayValue?.first)
        #expect(j["writes"]?.int64Value == 3 && j["writes_held"]?.int64Value == 0)
        #expect(j["steps"]?.int64Value == 3)
        #expect(j["drift_s_per_day"] == .null)
        let samples = try #require(j["samples"]?.arrayValue)
        #expect(samples.map { $0["delta"]?.int64Value } == [3600, 20, -3620])
        #expect(samples.map { $0["previous_assumed"]?.boolValue } == [true, false, false])
        #expect(samples.map { $0["possibly_merged"]?.boolValue } == [false, false, false])
        let table = report.table(colors: false, width: 200)
        #expect(table.contains("drift (least squares, receive clock): n/a"))
        #expect(!table.contains("0.000 s/day"))
        #expect(table.contains("+3600 (from 0, assumed)"))
        #expect(table.contains("writes: 3 (one per RTC_CHANGE delivery)"))
        let steps = try #require(report.findings.first { $0.code == "step" })
        #expect(steps.count == 3)
        #expect(steps.message == "RTC /machine/unattached/device[8]: guest set its clock 3 times (steps from -3620 s to +3600 s)")
        #expect(report.findings.allSatisfy { $0.code != "drift" })
    }

    @Test("rtc: a write merged by the throttle; the held delivery is marked and counted, as throttle does")
    func mergedRTCWrite() throws {
        var ss = Session()
        let dev = "\"qom-path\": \"/machine/unattached/device[8]\""
        // The guest writes at 10.0 (+100 s: sent at once, opening a window), at 10.3 (+200 s,
        // replaced: not in the recording) and at 10.6 (+300 s, held to the window's end, 11.0).
        ss.event(s(10), "RTC_CHANGE", "{\"offset\": 100, \(dev)}")
        ss.event(s(11), "RTC_CHANGE", "{\"offset\": 300, \(dev)}", qemu: Session.start + s(10.6) / 1000)
        // Later, two writes 1 s apart and sent at once each (created when received).
        ss.event(s(20), "RTC_CHANGE", "{\"offset\": 300, \(dev)}")
        ss.event(s(21.2), "RTC_CHANGE", "{\"offset\": 301, \(dev)}")
        let rec = try ss.open()
        let report = try Analyses.run("rtc", on: rec)
        let r = try #require(report.result as? RTCResult)
        let sr = r.series[0]
        #expect(sr.samples.map(\.possiblyMerged) == [false, true, false, false])
        #expect(sr.samples.map(\.kind) == ["step", "step", "unchanged", "noise"])
        #expect(sr.samples.map(\.delta) == [100, 200, 0, 1])
        // Four writes seen; the held one is where more may hide (the 10.3 s write did).
        #expect(sr.writes == 4 && sr.writesHeld == 1)
        #expect(report.table(colors: false, width: 300).contains("writes: 4 (one per RTC_CHANGE delivery); 1 held by QEMU's 1 s throttle"))
        // Drift measured over the two intervals without a step: 0 s then +1 s.
        #expect(sr.driftPerDay != nil)
        let t = try #require(try Analyses.run("throttle", on: rec).result as? ThrottleResult)
        #expect(t.keys.first { $0.key == "RTC_CHANGE" }?.merged == sr.writesHeld)
    }

    // MARK: throttle on imported recordings

    @Test("throttle: imported recordings (lifecycle: qmp-lines) report delivery_times_measured false and warn of nothing")
    func importedRecordings() throws {
        let life = try Recording(path: Fixtures.recording("lifecycle.qmprec"))
        let lt = try Analyses.run("throttle", on: life)
        #expect(lt.json["delivery_times_measured"]?.boolValue == false)
        #expect(lt.findings.isEmpty)
        // libvirt log times are libvirt's receive times: measured (commands says so too).
        let rx = try Recording(path: Fixtures.recording("rx-filter.qmprec"))
        let rt = try Analyses.run("throttle", on: rx)
        #expect(rt.json["delivery_times_measured"]?.boolValue == true)
        #expect(rt.findings.isEmpty)
        #expect(try Analyses.run("commands", on: rx).json["latency_measured"]?.boolValue == true)
        for rec in [life, rx] {
            #expect(try Analyses.run("triage", on: rec).findings.allSatisfy { $0.analysis != "throttle" })
        }
    }

    @Test("throttle: events 0.3 s apart are a violation when delivered so, not when the times are QEMU's (qmp-lines import)")
    func violationNeedsDeliveryTimes() throws {
        func run(_ mode: CaptureMode, _ labels: [(key: String, value: String)]) throws -> AnalysisReport {
            var ss = Session()
            ss.mode = mode
            ss.labels = labels
            ss.event(s(10), "RTC_CHANGE", "{\"offset\": 1}")
            ss.event(s(10.3), "RTC_CHANGE", "{\"offset\": 2}")
            return try Analyses.run("throttle", on: try ss.open())
        }
        let proxy = try run(.proxy, [])
        #expect(proxy.json["delivery_times_measured"]?.boolValue == true)
        #expect(proxy.findings.map(\.code) == ["violation"])
        let k = try #require((proxy.result as? ThrottleResult)?.keys.first)
        #expect(k.violationCount == 1 && k.minGap == s(0.3))
        // Created 0.3 s apart (QEMU's clock): the second was held, not a violation.
        #expect(k.merged == 1)

        let imported = try run(.import, [("format", "qmp-lines")])
        #expect(imported.json["delivery_times_measured"]?.boolValue == false)
        #expect(imported.findings.isEmpty)
        let jk = try #require(imported.json["keys"]?.arrayValue?.first)
        #expect(jk["respects_throttle"] == .null && jk["violation_count"] == .null)
        #expect(jk["violations"]?.arrayValue?.isEmpty == true)
        #expect(jk["possibly_merged"]?.int64Value == 1)
        #expect(imported.table(colors: false, width: 200).contains("violations not looked for"))
    }

    // MARK: levels printed exactly

    @Test("exactBytesText: different levels never print the same")
    func exactBytes() {
        #expect(bytesText(Self.levelA) == bytesText(Self.levelB))   // the defect: both "1023.9 MiB"
        #expect(exactBytesText(Self.levelA) == "1023.875 MiB")
        #expect(exactBytesText(Self.levelB) == "1023.9375 MiB")
        #expect(exactBytesText(1 << 30) == "1024 MiB")
        #expect(exactBytesText((1 << 30) - 1024) == "1023.9990234375 MiB")
        #expect(exactBytesText(4096) == "4 KiB" && exactBytesText(1536) == "1.5 KiB" && exactBytesText(1023) == "1023 B")
        #expect(exactBytesText(-65_536) == "-64 KiB" && exactBytesText(0) == "0 B")
        #expect(exactBytesText((1 << 20) + 3) == "1.00000286102294921875 MiB")
        // Every 4 KiB level around 1 GiB prints apart from its neighbours.
        var seen = Set<String>()
        for k: Int64 in 0..<512 { seen.insert(exactBytesText((1 << 30) - k * 4096)) }
        #expect(seen.count == 512)
    }

    static let gib: Int64 = 1 << 30
}
