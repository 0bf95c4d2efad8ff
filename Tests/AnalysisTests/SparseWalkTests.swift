import Foundation
import QMP
import Recording
import Synth
import TestSupport
import Testing
@testable import Analysis

/// A pass that knows the recording's reply partners visits only the records it wants
/// (`SparseWalk`): every analysis must print exactly what the pass over every record
/// prints, on every shipped recording and on synthesised ones of every profile (many
/// connections, requests never answered, connections closed with requests outstanding,
/// new QEMU processes, lines that are not commands).
@Suite("Sparse passes")
struct SparseWalkTests {
    static var files: [String] { StreamedJSONTests.files }

    /// Each analysis, full pass then sparse, on `r`; the first pairing pass made the partners.
    static func compare(_ r: Recording, _ label: String) throws {
        #expect(r.replyPartners == nil)
        _ = try Analyses.run("balloon", on: r, progress: nil, sparse: false)
        let partners = try #require(r.replyPartners, "the first whole pass that pairs replies keeps the partners")
        #expect(partners.count == r.count)
        for name in Analyses.names {
            let full = try Analyses.run(name, on: r, progress: nil, sparse: false).jsonBytes(.compact)
            let sparse = try Analyses.run(name, on: r, progress: nil, sparse: true).jsonBytes(.compact)
            #expect(StreamedJSONTests.firstDifference(sparse, full) == nil, "\(name) on \(label)")
        }
    }

    /// Runs `body(path, dir)` on a synthesised recording in a directory of its own.
    static func withSynthesised(_ profile: SynthProfile, records: Int, _ body: (String, String) throws -> Void) throws {
        let dir = NSTemporaryDirectory() + "sparse-\(getpid())-\(profile.rawValue)-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Synthesizer(seed: 7, profile: profile).write(records: records, to: dir + "/r.qmprec")
        try body(dir + "/r.qmprec", dir)
    }

    @Test("every analysis: sparse equals full, on every shipped recording", arguments: SparseWalkTests.files)
    func shipped(path: String) throws {
        try Self.compare(try Recording(path: path), path)
    }

    @Test("every analysis: sparse equals full, on synthesised recordings", arguments: SynthProfile.allCases)
    func synthesised(profile: SynthProfile) throws {
        try Self.withSynthesised(profile, records: 20_000) { path, _ in try Self.compare(try Recording(path: path), profile.rawValue) }
    }

    @Test("what the walk visits: the wanted records and their replies, not the rest")
    func visitsLess() throws {
        try Self.withSynthesised(.mixed, records: 20_000) { path, _ in try visits(path) }
    }

    func visits(_ path: String) throws {
        let r = try Recording(path: path)
        _ = try Analyses.run("balloon", on: r, progress: nil, sparse: false)
        var sel = Selection(recording: r, interests: [(1, BalloonAnalysis.interest)])
        sel.idKeys = r.idKeys()
        let walk = try #require(SparseWalk(r, sel))
        let events = r.records(named: "BALLOON_CHANGE")?.count ?? 0
        let queries = (r.records(named: "query-balloon")?.count ?? 0) + (r.records(named: "balloon")?.count ?? 0)
        #expect(walk.count >= events + queries)
        #expect(walk.count < r.count / 2, "visits \(walk.count) of \(r.count)")
        // Every command wanted: not sparse.
        var all = Selection(recording: r, interests: [(1, Interest(allCommands: true))])
        all.idKeys = r.idKeys()
        #expect(SparseWalk(r, all) == nil)
    }

    @Test("made at open for an analysis that walks sparsely: the partners a full pass makes, stored with the entry")
    func atOpen() throws {
        #expect(Analyses.replyPartners(for: "balloon") != nil)
        for name in ["triage", "commands", "incidents", "rtc"] { #expect(Analyses.replyPartners(for: name) == nil, "\(name)") }
        try Self.withSynthesised(.mixed, records: 5_000) { path, dir in
            let options = RecordingOptions(indexCache: IndexCache(directory: dir + "/cache"), pairsReplies: true,
                                           replyPartners: Analyses.replyPartners(for: "balloon"))
            let opened = try Recording(path: path, options: options)
            let atOpen = try #require(opened.replyPartners, "made as the recording opened")
            let plain = try Recording(path: path)
            _ = try Analyses.run("commands", on: plain)  // a full pass keeps them too
            let byPass = try #require(plain.replyPartners)
            #expect((0..<plain.count).allSatisfy { atOpen[$0] == byPass[$0] })
            let again = try Recording(path: path, options: RecordingOptions(indexCache: IndexCache(directory: dir + "/cache")))
            #expect(again.cacheOutcome == .hit)
            #expect(again.replyPartners != nil, "the one write at open held them")
            #expect(try Analyses.run("balloon", on: again).jsonBytes(.compact) == Analyses.run("balloon", on: plain, progress: nil, sparse: false).jsonBytes(.compact))
        }
    }

    @Test("a mapped entry given back behind the pass: the same documents as without a cache")
    func mappedAndReleased() throws {
        // 60,000 records: an entry over 1 MiB, mapped (smaller ones are read into memory),
        // whose pages the passes give back behind them (Recording.releaseIndex).
        try Self.withSynthesised(.mixed, records: 60_000) { path, dir in
            let cache = IndexCache(directory: dir + "/cache")
            let plain = try Recording(path: path)
            for name in ["balloon", "triage", "block-jobs", "rtc"] {
                let options = RecordingOptions(indexCache: cache, pairsReplies: Analyses.pairsReplies(name),
                                               replyPartners: Analyses.replyPartners(for: name))
                _ = try Recording(path: path, options: options)  // makes (or completes) the entry
                let r = try Recording(path: path, options: options)
                #expect(r.cacheOutcome == .hit)
                let expected = try Analyses.run(name, on: plain, progress: nil, sparse: false).jsonBytes(.compact)
                let first = try Analyses.run(name, on: r).jsonBytes(.compact)
                let second = try Analyses.run(name, on: r).jsonBytes(.compact)  // after the pages went
                #expect(StreamedJSONTests.firstDifference(first, expected) == nil, "\(name)")
                #expect(second == first, "\(name), again")
            }
            let entry = try #require(try FileManager.default.contentsOfDirectory(atPath: dir + "/cache").first)
            let size = try #require(try FileManager.default.attributesOfItem(atPath: dir + "/cache/" + entry)[.size] as? Int)
            #expect(size >= 1 << 20, "the entry is mapped")
        }
    }

    @Test("partners from a damaged entry (any values): every analysis still runs to a document")
    func damagedPartners() throws {
        let r = try Recording(path: PackageRoot.recording("synthetic-mixed.qmprec"))
        var rng = SplitMix64(seed: 16)
        let junk = (0..<r.count).map { _ -> UInt32 in
            switch rng.next() % 4 {
            case 0: return ReplyPartners.none
            case 1: return UInt32(truncatingIfNeeded: rng.next() % UInt64(r.count))  // before or after, any kind
            case 2: return UInt32(truncatingIfNeeded: UInt64(r.count) + rng.next() % 1_000)  // past the end
            default: return UInt32(truncatingIfNeeded: rng.next())
            }
        }
        r.storeReplyPartners(ReplyPartners(array: junk))
        for name in Analyses.names {
            let doc = try Analyses.run(name, on: r).jsonBytes(.compact)
            #expect((try? JSONParser.parse(doc)) != nil, "\(name)")
        }
    }

    @Test("the partners are kept in the cached index and read back")
    func cached() throws {
        try Self.withSynthesised(.mixed, records: 5_000) { path, dir in try cachedAt(path, dir) }
    }

    func cachedAt(_ path: String, _ dir: String) throws {
        let options = RecordingOptions(indexCache: IndexCache(directory: dir + "/cache"), pairsReplies: true)
        let first = try Recording(path: path, options: options)
        #expect(first.replyPartners == nil)
        let before = try Analyses.run("balloon", on: first).jsonBytes(.compact)
        let made = try #require(first.replyPartners)
        let again = try Recording(path: path, options: options)
        #expect(again.cacheOutcome == .hit)
        let read = try #require(again.replyPartners, "the entry holds the partners")
        #expect((0..<made.count).allSatisfy { made[$0] == read[$0] })
        #expect(try Analyses.run("balloon", on: again).jsonBytes(.compact) == before)
        // A summary stored afterwards keeps them.
        again.storeSummary(Array("{}".utf8))
        #expect(try Recording(path: path, options: options).replyPartners != nil)
    }
}
