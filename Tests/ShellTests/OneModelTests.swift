import Foundation
import QMP
import Recording
import Shell
import Testing
import TestSupport
import Synth

/// The shell's `state` and the analyses fold one VM model (`VMModel`): at every record of
/// every recording shipped in Recordings/ (real captures, imports, synthetic) and of fresh
/// synthetic sessions, they must say the same thing about run state, balloon, RTC and the
/// NIC rx-filter latch.
@Suite("one VM model: shell state and analyses agree at every record")
struct OneModelTests {
    static var root: String { PackageRoot.path }

    static var shipped: [String] {
        let dir = root + "/Recordings"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { $0.hasSuffix(".qmprec") }.sorted().map { dir + "/" + $0 }
    }

    static func synthetic(_ profile: String, seed: UInt64) throws -> String {
        let path = NSTemporaryDirectory() + "/one-model-\(profile)-\(seed)-\(getpid()).qmprec"
        try? FileManager.default.removeItem(atPath: path)
        try Synthesizer(seed: seed, profile: try #require(SynthProfile(rawValue: profile))).write(records: 3000, to: path) { _ in }
        return path
    }

    func agree(_ path: String) throws {
        let r = try Recording(path: path)
        let tracker = StateTracker(recording: r, checkpointInterval: 256)
        let states = (0..<r.count).map { tracker.state(at: $0) }
        let name = (path as NSString).lastPathComponent

        // Run state: the segment holding each record is the shell's state there.
        let run = try #require(try Analyses.run("runstate", on: r).result as? RunstateResult)
        var k = 0
        let segments = run.segments.filter { $0.startRecord != nil }
        for i in 0..<r.count {
            while k + 1 < segments.count, segments[k + 1].startRecord! <= i { k += 1 }
            let expected = segments.isEmpty || segments[0].startRecord! > i ? "unknown" : segments[k].state
            #expect(states[i].runState.rawValue == expected, "\(name) #\(i): state says \(states[i].runState), runstate says \(expected)")
            if states[i].runState.rawValue != expected { return }
        }

        // Balloon: the last sample at or before each record, unless a new QEMU process started since.
        let balloon = try #require(try Analyses.run("balloon", on: r).result as? BalloonResult)
        for i in 0..<r.count {
            let level = balloon.level(atRecord: i, time: r.time(i))
            #expect(states[i].balloon?.actual == level, "\(name) #\(i): balloon")
            if states[i].balloon?.actual != level { return }
        }

        // RTC: each sample's offset is the shell's offset for its qom-path from that record on.
        let rtc = try #require(try Analyses.run("rtc", on: r).result as? RTCResult)
        for series in rtc.series {
            for sample in series.samples {
                #expect(states[sample.record].rtcOffsets[series.qomPath]?.offset == sample.offset, "\(name) #\(sample.record): rtc")
            }
        }

        // NIC latch: whether each event found the latch armed, as the shell saw it just before.
        let nic = try #require(try Analyses.run("nic-rx-filter", on: r).result as? NICRxFilterResult)
        for n in nic.nics {
            for e in n.events {
                let before = e.record > 0 ? states[e.record - 1] : VMState()
                let key = before.nics.keys.first { $0 == n.name || before.nics[$0]?.path == n.path }
                let armed = key.flatMap { before.nics[$0]?.armed } ?? true
                #expect(armed == e.latchArmed, "\(name) #\(e.record): latch of \(n.name)")
            }
        }
    }

    @Test("every shipped recording", arguments: OneModelTests.shipped)
    func shippedRecording(_ path: String) throws {
        try agree(path)
    }

    @Test("synthetic sessions of every profile", arguments: ["mixed", "balloon-flood", "rtc-drift", "rx-filter", "lifecycle", "block-jobs"])
    func syntheticProfile(_ profile: String) throws {
        let path = try Self.synthetic(profile, seed: 7)
        defer { try? FileManager.default.removeItem(atPath: path) }
        try agree(path)
    }
}
