import QMP
import Recording
import Testing

import Synth
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Tests of `Synthesizer` (Sources/Recording/Synth): determinism, the file it writes, and
// that its sessions behave like QEMU and libvirt do (docs/QEMU-FACTS.md).

private typealias SynthTestRecord = SynthIterator.Element

/// Streams shared by the tests, generated once per profile (seed 1 has three NICs in rx-filter).
private enum SynthFixture {
    static let count = 40_000
    static let seed: UInt64 = 1

    static let mixed = generate(.mixed)
    static let balloonFlood = generate(.balloonFlood)
    static let rtcDrift = generate(.rtcDrift)
    static let rxFilter = generate(.rxFilter)
    static let lifecycle = generate(.lifecycle)
    static let blockJobs = generate(.blockJobs)
    static let migration = generate(.migration)

    static func generate(_ p: SynthProfile) -> [SynthTestRecord] {
        Array(Synthesizer(seed: seed, profile: p).prefix(count))
    }

    static func stream(_ p: SynthProfile) -> [SynthTestRecord] {
        switch p {
        case .mixed: return mixed
        case .balloonFlood: return balloonFlood
        case .rtcDrift: return rtcDrift
        case .rxFilter: return rxFilter
        case .lifecycle: return lifecycle
        case .blockJobs: return blockJobs
        case .migration: return migration
        }
    }
}

private enum SynthTestIO {
    static func path(_ name: String) -> String { "/tmp/qmpreplay-synthtests-\(getpid())-\(name).qmprec" }

    static func read(_ path: String) -> [UInt8] {
        guard let f = fopen(path, "rb") else { return [] }
        defer { fclose(f) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    static func lines(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        var out: [ArraySlice<UInt8>] = []
        var start = 0
        for i in bytes.indices where bytes[i] == 0x0A {
            out.append(bytes[start..<i])
            start = i + 1
        }
        if start < bytes.count { out.append(bytes[start...]) }
        return out
    }

    static func parse(_ line: ArraySlice<UInt8>) -> JSONValue? { try? JSONParser.parse(Array(line)) }

    static func remove(_ paths: String...) { for p in paths { unlink(p) } }
}

/// The message of a record, when it is one.
private func synthMessage(_ r: SynthTestRecord) -> (Direction, QMPMessage)? {
    if case .message(let d, let m) = r.body { return (d, m) }
    return nil
}

private func synthEvent(_ r: SynthTestRecord) -> Event? {
    if case .message(_, let m) = r.body, case .event(let e) = m.body { return e }
    return nil
}

private let synthSecond: Int64 = 1_000_000_000

@Suite("Synthesizer")
struct SynthTests {
    // MARK: The file

    @Test func sameSeedGivesSameBytesAndOtherSeedsDiffer() throws {
        let a = SynthTestIO.path("det-a"), b = SynthTestIO.path("det-b")
        let c = SynthTestIO.path("det-c"), d = SynthTestIO.path("det-d")
        defer { SynthTestIO.remove(a, b, c, d) }
        try Synthesizer(seed: 42, profile: .mixed).write(records: 20_000, to: a)
        try Synthesizer(seed: 42, profile: .mixed).write(records: 20_000, to: b)
        try Synthesizer(seed: 43, profile: .mixed).write(records: 20_000, to: c)
        try Synthesizer(seed: 42, profile: .balloonFlood).write(records: 20_000, to: d)
        let ba = SynthTestIO.read(a)
        #expect(ba.count > 1_000_000)
        #expect(ba == SynthTestIO.read(b))
        #expect(ba != SynthTestIO.read(c))
        #expect(ba != SynthTestIO.read(d))
        // A prefix of a longer run is the same stream.
        let short = Array(Synthesizer(seed: 42, profile: .mixed).prefix(500))
        let long = Array(Synthesizer(seed: 42, profile: .mixed).prefix(1_000))
        #expect(short.map(\.time) == long.prefix(500).map(\.time))
        #expect(short.map(\.body) == long.prefix(500).map(\.body))
    }

    @Test(arguments: [0, 1, 2, 17, 5_000])
    func writesExactlyTheRecordsAskedFor(n: Int) throws {
        let path = SynthTestIO.path("count-\(n)")
        defer { SynthTestIO.remove(path) }
        var reported: [Int] = []
        try Synthesizer(seed: 9, profile: .lifecycle).write(records: n, to: path) { reported.append($0) }
        #expect(reported.last == n)
        let bytes = SynthTestIO.read(path)
        #expect(bytes.last == 0x0A)
        let lines = SynthTestIO.lines(bytes)
        #expect(lines.count == n + 2)

        let header = try #require(SynthTestIO.parse(lines[0]).flatMap(RecordingHeader.init(json:)))
        #expect(header.mode == .synthetic)
        #expect(header.host == "synth")
        #expect(header.startMicros == 1_763_632_800_000_000)
        #expect(header.qemuVersion == "7.2.0")
        #expect(header.label("profile") == "lifecycle")
        #expect(header.label("seed") == "9")

        let trailer = try #require(SynthTestIO.parse(lines[lines.count - 1]))
        #expect(trailer["k"]?.stringValue == "end")
        #expect(trailer["records"]?.int64Value == Int64(n))
        #expect(trailer["reason"]?.stringValue == "complete")
        if n > 0 {
            let last = try #require(SynthTestIO.parse(lines[lines.count - 2]))
            #expect(trailer["t"]?.int64Value == last["t"]?.int64Value)
        }
    }

    /// Every line is a record whose `msg` classifies as its `k` says, from the right side,
    /// with QEMU's and the client's own terminators; the file is exactly the iterator's
    /// records encoded.
    @Test(arguments: SynthProfile.allCases)
    func fileRecordsParseAndClassify(profile: SynthProfile) throws {
        let n = 6_000
        let path = SynthTestIO.path("classify-\(profile.rawValue)")
        defer { SynthTestIO.remove(path) }
        let synth = Synthesizer(seed: 5, profile: profile)
        try synth.write(records: n, to: path)
        let bytes = SynthTestIO.read(path)
        let lines = SynthTestIO.lines(bytes)
        try #require(lines.count == n + 2)

        var lastTime: Int64 = 0
        var kinds: [String: Int] = [:]
        for (i, line) in lines.enumerated() where i > 0 && i <= n {
            let rec = try #require(SynthTestIO.parse(line), "line \(i + 1) is not JSON")
            let t = try #require(rec["t"]?.int64Value)
            #expect(rec["t"]?.numberValue?.isInteger == true)
            #expect(t >= lastTime, "line \(i + 1): time goes back")
            lastTime = t
            #expect(rec["c"]?.int64Value != nil)
            let k = try #require(rec["k"]?.stringValue)
            kinds[k, default: 0] += 1
            guard let kind = RecordKind(rawValue: k), kind.isMessage else {
                #expect(["open", "close"].contains(k), "line \(i + 1): unexpected kind \(k)")
                continue
            }
            let msg = try #require(rec["msg"], "line \(i + 1): no msg")
            let classified = QMPMessage.classify(msg)
            let message = QMPMessage(json: msg, bytes: [], payload: 0..<0)
            #expect(message.kind.rawValue == k, "line \(i + 1): msg is a \(message.kind.rawValue), k says \(k)")
            #expect(rec["n"]?.stringValue == message.name)
            let from = rec["from"]?.stringValue
            if case .command = classified {
                #expect(from == "client")
                #expect(rec["eol"]?.stringValue == "\n")
            } else {
                #expect(from == "qemu")
                #expect(rec["eol"]?.stringValue == "\r\n")
            }
            #expect(k != "other")
        }
        #expect(kinds["greeting", default: 0] >= 1)
        #expect(kinds["command", default: 0] > 100)
        #expect(kinds["return", default: 0] > 100)

        // The records between header and trailer are the iterator's, encoded.
        var expected = RecordEncoder.headerLine(synth.header)
        for r in synth.prefix(n) {
            RecordEncoder.encode(time: r.time, connection: r.connection, body: r.body, into: &expected)
        }
        #expect(Array(bytes.prefix(expected.count)) == expected)
    }

    // MARK: Messages and validation

    /// Each message's bytes are the serialization of its JSON in the sender's layout, the
    /// bytes parse back to the same thing, every event passes the catalog, and the whole
    /// session passes `SessionValidator`.
    @Test(arguments: SynthProfile.allCases)
    func messagesAreExactAndSessionValidates(profile: SynthProfile) throws {
        let stream = SynthFixture.stream(profile)
        var session = SessionValidator()
        var eventFindings: [Finding] = []
        var lastTime: Int64 = 0
        for (i, r) in stream.enumerated() {
            #expect(r.time >= lastTime)
            lastTime = r.time
            switch r.body {
            case .open:
                session.opened(connection: r.connection)
            case .close:
                session.closed(connection: r.connection, time: r.time)
            case .note:
                Issue.record("unexpected note at record \(i)")
            case .message(let from, let m):
                let json = try #require(m.json)
                let layout: JSONLayout = from == .qemu ? .qemu : .compact
                let terminator: [UInt8] = from == .qemu ? [0x0D, 0x0A] : [0x0A]
                #expect(m.bytes == json.serializedBytes(layout) + terminator, "record \(i)")
                #expect(Array(m.payloadBytes) == json.serializedBytes(layout))
                let reparsed = QMPMessage(bytes: m.bytes)
                #expect(reparsed.json == json && reparsed.body == m.body, "record \(i) parses differently")
                if case .event(let e) = m.body {
                    eventFindings += EventValidator.validate(e, record: i)
                }
                session.observe(m, from: from, connection: r.connection, record: i, time: r.time)
            }
        }
        let bad = eventFindings.filter { $0.severity != .info }
        #expect(bad.isEmpty, "\(bad.prefix(5))")
        let findings = session.finish()
        let errors = findings.filter { $0.severity == .error }
        let warnings = findings.filter { $0.severity == .warning }
        #expect(errors.isEmpty, "\(errors.prefix(5))")
        #expect(warnings.isEmpty, "\(warnings.prefix(5))")
    }

    /// A 7.2 source's outgoing migration (docs/QEMU-FACTS.md, "Migration"): setup, active,
    /// passes, the switch-over's STOP while still active, then completed (and the source is
    /// ended: SHUTDOWN host-signal) or failed (RESUME); never a STOP without the status active.
    @Test func migrationFollowsTheSourceSequence() {
        let events = SynthFixture.migration.compactMap(synthEvent).filter { $0.name.hasPrefix("MIGRATION") || ["STOP", "RESUME", "SHUTDOWN"].contains($0.name) }
        var status = "none", completed = 0, failed = 0, stops = 0
        var afterFinish: String?
        for e in events {
            if let expected = afterFinish {
                #expect(e.name == expected, "after MIGRATION \(status): \(e.name)")
                afterFinish = nil
            }
            switch e.name {
            case "MIGRATION":
                let next = e.data?["status"]?.stringValue ?? "?"
                let allowed = ["none": ["setup"], "setup": ["active"], "active": ["completed", "failed"], "completed": ["setup"], "failed": ["setup"]]
                #expect(allowed[status, default: []].contains(next), "\(status) -> \(next)")
                status = next
                if next == "completed" { completed += 1; afterFinish = "SHUTDOWN" }
                if next == "failed" { failed += 1; afterFinish = "RESUME" }
            case "STOP":
                #expect(status == "active")
                stops += 1
            case "MIGRATION_PASS":
                #expect(status == "active")
            default: break
            }
        }
        #expect(completed > 0 && failed > 0)
        #expect(stops == completed + failed || stops == completed + failed + 1)
    }

    @Test func mixedCoversEveryCatalogEvent() {
        var seen = Set<String>()
        for r in SynthFixture.mixed { if let e = synthEvent(r) { seen.insert(e.name) } }
        let documented = EventCatalog.all.filter { $0.members != nil }.map(\.name)
        let missing = documented.filter { !seen.contains($0) }
        #expect(missing.isEmpty, "never emitted: \(missing)")
    }

    /// QEMU's throttle: one delivery per second per key (record time); timestamps are the
    /// creation time, so delivery lags them by up to a window for throttled events and by
    /// a transit only for the others.
    @Test(arguments: SynthProfile.allCases)
    func throttlingAndTimestamps(profile: SynthProfile) throws {
        let start: Int64 = 1_763_632_800_000_000
        var lastByKey: [String: Int64] = [:]
        var maxLag: Int64 = 0
        var throttled = 0
        for r in SynthFixture.stream(profile) {
            guard let e = synthEvent(r) else { continue }
            let ts = try #require(e.timestamp)
            #expect((0...999_999).contains(ts.microseconds))
            let received = start + r.time / 1_000
            let lag = received - ts.totalMicroseconds
            #expect(lag >= 0, "\(e.name) timestamp after its delivery")
            let entry = EventCatalog.entry(for: e.name)
            if let throttle = entry?.throttle, let key = throttle.key(for: e) {
                throttled += 1
                if let last = lastByKey[key] {
                    #expect(r.time - last >= synthSecond, "\(key) delivered \(r.time - last) ns after the previous one")
                }
                lastByKey[key] = r.time
                #expect(lag <= 1_100_000, "\(e.name) lags by \(lag) µs")
                maxLag = max(maxLag, lag)
            } else {
                #expect(lag < 5_000, "\(e.name) lags by \(lag) µs")
            }
        }
        if profile == .balloonFlood || profile == .rtcDrift || profile == .mixed {
            #expect(throttled > 50)
            // Some deliveries come at the end of a window, carrying an older timestamp.
            #expect(maxLag > 100_000)
        }
    }

    /// Per connection: open, greeting, `qmp_capabilities` (libvirt-1) and its `{}`; then one
    /// command at a time, each answered with its id; ids count up; events raised by a
    /// command come before its reply.
    @Test(arguments: SynthProfile.allCases)
    func commandsRepliesAndOrdering(profile: SynthProfile) throws {
        let stream = SynthFixture.stream(profile)
        var outstanding: (id: String, name: String, index: Int)?
        var nextID = 1
        var sinceOpen = 0
        var connections = 0
        var lastOpen: UInt32 = 0
        for (i, r) in stream.enumerated() {
            switch r.body {
            case .open:
                connections += 1
                #expect(r.connection > lastOpen)
                lastOpen = r.connection
                #expect(outstanding == nil || stream[outstanding!.index].connection != r.connection)
                outstanding = nil
                nextID = 1
                sinceOpen = 0
                continue
            case .close(let by, _):
                #expect(by == "qemu" || by == "client")
                outstanding = nil
                continue
            default: break
            }
            guard let (from, m) = synthMessage(r) else { continue }
            sinceOpen += 1
            #expect(r.connection == lastOpen)
            switch sinceOpen {
            case 1:
                guard case .greeting(let g) = m.body else {
                    Issue.record("record \(i): first message is not the greeting")
                    continue
                }
                #expect(g.version?.description == "7.2.0")
                #expect(g.capabilities == ["oob"])
                continue
            case 2:
                #expect(m.name == "qmp_capabilities")
            default: break
            }
            switch m.body {
            case .command(let c):
                #expect(from == .client)
                #expect(outstanding == nil, "record \(i): \(c.name) sent while \(outstanding?.name ?? "") is outstanding")
                #expect(c.id == .string("libvirt-\(nextID)"))
                nextID += 1
                outstanding = (c.id?.stringValue ?? "", c.name, i)
            case .return(let ret):
                let cmd = try #require(outstanding, "record \(i): reply without command")
                #expect(ret.id == .string(cmd.id))
                if cmd.name == "qmp_capabilities" { #expect(ret.value == .object(JSONObject())) }
                // Events raised by the command precede its reply.
                let between = stream[(cmd.index + 1)..<i].compactMap(synthEvent).map(\.name)
                switch cmd.name {
                case "stop": #expect(between == ["STOP"])
                case "cont": #expect(between == ["RESUME"])
                case "job-dismiss": #expect(between == ["JOB_STATUS_CHANGE"])
                case "blockdev-mirror", "block-commit", "block-stream", "blockdev-backup":
                    #expect(between == ["JOB_STATUS_CHANGE", "JOB_STATUS_CHANGE"])
                default: break
                }
                if cmd.name == "quit" && i + 2 < stream.count {
                    #expect(synthEvent(stream[i + 1])?.data?["reason"] == .string("host-qmp-quit"))
                    if case .close(let by, _) = stream[i + 2].body { #expect(by == "qemu") } else {
                        Issue.record("record \(i + 2): QEMU did not close after quit")
                    }
                }
                outstanding = nil
            case .error(let err):
                let cmd = try #require(outstanding, "record \(i): error without command")
                #expect(err.id == .string(cmd.id))
                #expect(!err.desc.isEmpty)
                #expect(["GenericError", "CommandNotFound", "DeviceNotActive"].contains(err.errorClass))
                outstanding = nil
            case .event:
                #expect(from == .qemu)
            case .greeting, .other:
                Issue.record("record \(i): unexpected \(m.kind)")
            }
        }
        #expect(connections >= 1)
    }

    // MARK: Profiles

    /// STOP only from running, RESUME only from stopped; query-status agrees; documented
    /// follow-ups come within a second.
    @Test(arguments: [SynthProfile.lifecycle, .mixed])
    func runStateIsCoherent(profile: SynthProfile) throws {
        let stream = SynthFixture.stream(profile)
        var running: Bool?
        var lastCommand: String?
        var expecting: [(then: String, by: Int64, trigger: Int)] = []
        var names: [String: Int] = [:]
        var reasons = Set<String>()
        for (i, r) in stream.enumerated() {
            if case .open = r.body { running = nil }
            if case .close = r.body { expecting = [] }
            guard let (_, m) = synthMessage(r) else { continue }
            switch m.body {
            case .command(let c):
                lastCommand = c.name
            case .return(let ret):
                if lastCommand == "query-status" {
                    let reported = try #require(ret.value["running"]?.boolValue as Bool?)
                    if let running { #expect(reported == running, "record \(i): query-status disagrees") }
                    running = reported
                    #expect((ret.value["status"]?.stringValue == "running") == reported)
                }
            case .event(let e):
                names[e.name, default: 0] += 1
                if let reason = e.data?["reason"]?.stringValue { reasons.insert("\(e.name):\(reason)") }
                expecting.removeAll { $0.then == e.name && r.time <= $0.by }
                #expect(!expecting.contains { r.time > $0.by }, "record \(i): a follow-up is overdue")
                switch e.name {
                case "STOP":
                    #expect(running != false, "record \(i): STOP while stopped")
                    running = false
                case "RESUME":
                    #expect(running != true, "record \(i): RESUME while running")
                    running = true
                case "SUSPEND":
                    #expect(running == true)
                    running = false
                case "WAKEUP":
                    #expect(running == false)
                    running = true
                case "WATCHDOG":
                    switch e.data?["action"]?.stringValue {
                    case "reset": expecting.append(("RESET", r.time + synthSecond, i))
                    case "shutdown": expecting.append(("SHUTDOWN", r.time + synthSecond, i))
                    case "pause": expecting.append(("STOP", r.time + synthSecond, i))
                    default: break
                    }
                case "BLOCK_IO_ERROR":
                    if e.data?["action"]?.stringValue == "stop" {
                        #expect(running == true)
                        expecting.append(("STOP", r.time + synthSecond, i))
                    }
                default: break
                }
            default: break
            }
        }
        for name in ["STOP", "RESUME", "RESET", "SHUTDOWN", "POWERDOWN", "SUSPEND", "WAKEUP", "WATCHDOG", "GUEST_PANICKED"] {
            #expect(names[name, default: 0] > 0, "no \(name)")
        }
        for reason in ["RESET:guest-reset", "RESET:host-qmp-system-reset", "SHUTDOWN:guest-shutdown", "SHUTDOWN:host-signal"] {
            #expect(reasons.contains(reason), "no \(reason)")
        }
    }

    /// Flapping at the throttle's cadence between two values 64 KiB apart, on a 64 KiB-page guest.
    @Test func balloonFloodFloodsAndFlaps() throws {
        let stream = SynthFixture.balloonFlood
        var changes: [(time: Int64, actual: Int64)] = []
        var polls = 0, targets = 0
        var lastCommand: String?
        for r in stream {
            guard let (_, m) = synthMessage(r) else { continue }
            switch m.body {
            case .event(let e) where e.name == "BALLOON_CHANGE":
                let actual = try #require(e.data?["actual"]?.int64Value)
                #expect(actual % 65_536 == 0)
                #expect(actual > 0 && actual <= 8 << 30)
                changes.append((r.time, actual))
            case .command(let c):
                lastCommand = c.name
                if c.name == "query-balloon" { polls += 1 }
                if c.name == "balloon" { targets += 1 }
            case .return(let ret) where lastCommand == "query-balloon":
                let actual = try #require(ret.value["actual"]?.int64Value)
                #expect(actual % 65_536 == 0)
            default: break
            }
        }
        #expect(changes.count * 10 >= stream.count * 4, "BALLOON_CHANGE is \(changes.count) of \(stream.count) records")
        #expect(polls > 100)
        #expect(targets > 10)
        for k in changes.indices.dropFirst() {
            #expect(changes[k].time - changes[k - 1].time >= synthSecond / 2)
        }
        // A flapping run: at least 20 consecutive events at about 1 s cadence taking only two
        // values 64 KiB apart.
        var longest = 1, run = 1
        var values: Set<Int64> = [changes.first?.actual ?? 0]
        for k in changes.indices.dropFirst() {
            let cadence = changes[k].time - changes[k - 1].time < 1_100_000_000
            let joined = values.union([changes[k].actual])
            if cadence && (joined.count == 1 || (joined.count == 2 && joined.max()! - joined.min()! == 65_536)) {
                values = joined
                run += 1
            } else {
                let pair: Set<Int64> = [changes[k - 1].actual, changes[k].actual]
                let pairOK = cadence && pair.max()! - pair.min()! == 65_536
                values = pairOK ? pair : [changes[k].actual]
                run = pairOK ? 2 : 1
            }
            longest = max(longest, run)
        }
        #expect(longest >= 20, "longest flapping run: \(longest)")
    }

    /// Absolute offsets with qom-path, drifting slowly with occasional steps.
    @Test func rtcDriftDriftsAndSteps() throws {
        var offsets: [Int64] = []
        for r in SynthFixture.rtcDrift {
            guard let e = synthEvent(r), e.name == "RTC_CHANGE" else { continue }
            let offset = try #require(e.data?["offset"])
            #expect(offset.numberValue?.isInteger == true)
            offsets.append(try #require(offset.int64Value))
            #expect(e.data?["qom-path"]?.stringValue?.hasPrefix("/machine/") == true)
        }
        #expect(offsets.count > 2_000)
        let deltas = zip(offsets.dropFirst(), offsets).map { $0 - $1 }
        let small = deltas.filter { abs($0) <= 1 }.count
        let steps = deltas.filter { abs($0) >= 2 }.count
        #expect(small * 10 >= deltas.count * 9, "most changes are drift or truncation jitter")
        #expect(steps >= 5, "occasional steps")
        #expect(Set(offsets).count > 10)
        #expect(offsets.allSatisfy { abs($0) < 1_000_000_000 })
    }

    /// The latch (docs/QEMU-FACTS.md): a second event for a NIC only after a query-rx-filter (with
    /// no name, or naming that NIC) re-armed it. Each new QEMU process starts armed.
    @Test(arguments: [SynthProfile.rxFilter, .mixed])
    func rxFilterRespectsTheLatch(profile: SynthProfile) throws {
        let stream = SynthFixture.stream(profile)
        let stats = try checkRxLatch(stream)
        #expect(stats.nics >= 2)
        #expect(stats.events > 100 && stats.secondEvents > 50)
        #expect(stats.namedQueries > 10 && stats.allQueries > 10)
        if profile == .rxFilter {
            #expect(stats.errors > 0)
            #expect(stats.events * 10 >= stream.count * 2)
        }
    }

    /// Two or three NICs depending on the seed; the third has no id, so its events have no
    /// name and only an unnamed query re-arms it.
    @Test func rxFilterHasTwoOrThreeNICs() throws {
        var counts = Set<Int>()
        var anonymous = 0
        for seed: UInt64 in 1...8 {
            let stats = try checkRxLatch(Array(Synthesizer(seed: seed, profile: .rxFilter).prefix(4_000)))
            counts.insert(stats.nics)
            anonymous += stats.anonymous
        }
        #expect(counts == [2, 3])
        #expect(anonymous > 0)
    }

    private struct RxStats {
        var events = 0, anonymous = 0, namedQueries = 0, allQueries = 0, errors = 0, secondEvents = 0, nics = 0
    }

    private func checkRxLatch(_ stream: [SynthTestRecord]) throws -> RxStats {
        var stats = RxStats()
        var disarmed = Set<String>()
        var peer = ""
        var pending: (name: String?, index: Int)?
        var seen = Set<String>()
        for (i, r) in stream.enumerated() {
            if case .open(let p, _) = r.body, p != peer {
                peer = p
                disarmed = []
            }
            guard let (_, m) = synthMessage(r) else { continue }
            switch m.body {
            case .command(let c):
                pending = c.name == "query-rx-filter" ? (c.arguments?["name"]?.stringValue, i) : nil
            case .return(let ret):
                guard let q = pending else { break }
                let infos = try #require(ret.value.arrayValue)
                if let name = q.name {
                    stats.namedQueries += 1
                    #expect(infos.count == 1 && infos[0]["name"]?.stringValue == name)
                    disarmed.remove(name)
                } else {
                    stats.allQueries += 1
                    #expect(infos.count >= 2)
                    disarmed = []
                }
                pending = nil
            case .error(let err):
                if pending != nil {
                    stats.errors += 1
                    #expect(err.errorClass == "GenericError")
                    #expect(err.desc.hasPrefix("net client(") || err.desc.hasPrefix("invalid net client name: "))
                }
                pending = nil
            case .event(let e) where e.name == "NIC_RX_FILTER_CHANGED":
                stats.events += 1
                let path = try #require(e.data?["path"]?.stringValue)
                #expect(path.hasSuffix("/virtio-backend"))
                let identity = e.data?["name"]?.stringValue ?? path
                if e.data?["name"] == nil { stats.anonymous += 1 }
                #expect(!disarmed.contains(identity), "record \(i): second event for \(identity) without a re-arming query")
                disarmed.insert(identity)
                if seen.contains(identity) { stats.secondEvents += 1 }
                seen.insert(identity)
            default: break
            }
        }
        stats.nics = seen.count
        return stats
    }

    /// JOB_STATUS_CHANGE walks the documented states; BLOCK_JOB_* carry len/offset; jobs end
    /// completed, cancelled or failed and are dismissed.
    @Test func blockJobsWalkTheirStates() throws {
        let next: [String: Set<String>] = [
            "null": ["created"], "created": ["running"],
            "running": ["paused", "ready", "waiting", "aborting"], "paused": ["running", "aborting"],
            "ready": ["standby", "waiting"], "standby": ["ready"], "waiting": ["pending"],
            "pending": ["concluded", "aborting"], "aborting": ["concluded"], "concluded": ["null"],
        ]
        var status: [String: String] = [:]
        var names: [String: Int] = [:]
        var failed = 0
        for (i, r) in SynthFixture.blockJobs.enumerated() {
            guard let e = synthEvent(r) else { continue }
            names[e.name, default: 0] += 1
            switch e.name {
            case "JOB_STATUS_CHANGE":
                let id = try #require(e.data?["id"]?.stringValue)
                let new = try #require(e.data?["status"]?.stringValue)
                let old = status[id] ?? "null"
                #expect(next[old]?.contains(new) == true, "record \(i): \(id) \(old) -> \(new)")
                status[id] = new
            case "BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED":
                let data = try #require(e.data)
                let len = try #require(data["len"]?.int64Value)
                let offset = try #require(data["offset"]?.int64Value)
                #expect(data["len"]?.numberValue?.isInteger == true && data["speed"]?.int64Value != nil)
                #expect(0 <= offset && offset <= len)
                let id = try #require(data["device"]?.stringValue)
                if e.name == "BLOCK_JOB_CANCELLED" {
                    #expect(status[id] == "aborting")
                    #expect(offset < len)
                }
                if e.name == "BLOCK_JOB_READY" { #expect(status[id] == "ready" && offset == len) }
                if e.name == "BLOCK_JOB_COMPLETED" {
                    #expect(status[id] == "pending" || status[id] == "aborting")
                    if data["error"] != nil { failed += 1 }
                }
            case "BLOCK_JOB_PENDING":
                let id = try #require(e.data?["id"]?.stringValue)
                #expect(status[id] == "pending")
            default: break
            }
        }
        for name in ["BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_ERROR", "BLOCK_JOB_PENDING"] {
            #expect(names[name, default: 0] > 0, "no \(name)")
        }
        #expect(failed > 0)
        // An early cancellation in every block-jobs recording.
        let early = Array(Synthesizer(seed: 77, profile: .blockJobs).prefix(5_000))
        #expect(early.contains { synthEvent($0)?.name == "BLOCK_JOB_CANCELLED" })
    }
}
