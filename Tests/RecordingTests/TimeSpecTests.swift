import QMP
import Testing
@testable import Recording

@Suite("time syntax and seeking")
struct TimeSpecTests {
    @Test(arguments: [
        ("12.5s", TimeSpec.sinceStart(12_500_000_000)),
        ("1m30s", .sinceStart(90_000_000_000)),
        ("500ms", .sinceStart(500_000_000)),
        ("2h", .sinceStart(7_200_000_000_000)),
        ("750us", .sinceStart(750_000)),
        ("10ns", .sinceStart(10)),
        ("90", .sinceStart(90_000_000_000)),
        ("1h2m3.5s", .sinceStart(3_723_500_000_000)),
        ("+5s", .relative(5_000_000_000)),
        ("-2s", .relative(-2_000_000_000)),
        ("#123", .record(123)),
        ("#0", .record(0)),
        ("2025-11-20T10:00:05.25Z", .wallClock(micros: 1_763_632_805_250_000)),
        ("2025-11-20 10:00:05", .wallClock(micros: 1_763_632_805_000_000)),
        ("2025-11-20T11:00:05+01:00", .wallClock(micros: 1_763_632_805_000_000)),
        ("10:00:05", .timeOfDay(micros: 36_005_000_000)),
        ("10:00:05.5", .timeOfDay(micros: 36_005_500_000)),
    ])
    func parses(_ input: String, _ expected: TimeSpec) throws {
        #expect(try TimeSpec.parse(input) == expected)
    }

    @Test(arguments: ["", "abc", "5x", "#", "#-1", "1.2.3s", "25:00:00", "2026-13-01T00:00:00Z", "5 s s", "10:00", "s5"])
    func rejects(_ input: String) {
        #expect(throws: TimeSpec.ParseError.self) { _ = try TimeSpec.parse(input) }
    }

    @Test("errors say what would be right")
    func errorText() {
        do {
            _ = try TimeSpec.parse("5x")
            Issue.record("accepted 5x")
        } catch {
            #expect(error.description.contains("unknown unit 'x'"))
            #expect(error.description.contains("1m30s"))
        }
    }

    private func recording() throws -> Recording {
        // 1001 records, one every 10 ms, starting 2025-11-20T10:00:00Z.
        var text = #"{"qmprec":1,"start_us":1763632800000000,"source":"x","mode":"synthetic"}"# + "\n"
        for i in 0...1000 {
            text += #"{"t":\#(i * 10_000_000),"c":1,"from":"qemu","k":"event","n":"STOP","msg":{"event":"STOP"}}"# + "\n"
        }
        return try Recording(bytes: FileBytes(bytes: Array(text.utf8)), path: "mem")
    }

    @Test("resolution against a recording: absolute, relative, record number and wall clock")
    func resolve() throws {
        let r = try recording()
        #expect(try TimeSpec.parse("1s").resolveIndex(in: r) == 100)
        #expect(try TimeSpec.parse("1.005s").resolveIndex(in: r) == 101)
        #expect(try TimeSpec.parse("+500ms").resolveIndex(in: r, current: 100) == 150)
        #expect(try TimeSpec.parse("-500ms").resolveIndex(in: r, current: 100) == 50)
        #expect(try TimeSpec.parse("-1s").resolveIndex(in: r) == 900)  // no cursor: before the end
        #expect(try TimeSpec.parse("#42").resolveIndex(in: r) == 42)
        #expect(try TimeSpec.parse("#5000").resolveIndex(in: r) == r.count)
        #expect(try TimeSpec.parse("10:00:02").resolveIndex(in: r) == 200)
        #expect(try TimeSpec.parse("2025-11-20T10:00:03.5Z").resolveIndex(in: r) == 350)
        #expect(try TimeSpec.parse("1h").resolveIndex(in: r) == r.count)
        #expect(r.lastIndex(atOrBefore: 15_000_000) == 1)
        #expect(r.lastIndex(atOrBefore: -1) == nil)
    }

    @Test("binary search agrees with a linear scan for random times, with equal times")
    func seekMatchesLinear() throws {
        var text = #"{"qmprec":1,"start_us":0,"source":"x","mode":"synthetic"}"# + "\n"
        var times: [Int64] = []
        var t: Int64 = 0
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            t += Int64.random(in: 0...3, using: &rng)
            times.append(t)
            text += #"{"t":\#(t),"c":1,"from":"qemu","k":"return","msg":{"return":{}}}"# + "\n"
        }
        let r = try Recording(bytes: FileBytes(bytes: Array(text.utf8)), path: "mem")
        for probe in -2...(t + 2) {
            let linear = times.firstIndex { $0 >= probe } ?? times.count
            #expect(r.firstIndex(atOrAfter: probe) == linear)
        }
    }

    @Test("durations format for people")
    func formatting() {
        #expect(DurationFormat.clock(725_250_000_000) == "+00:12:05.250")
        #expect(DurationFormat.short(1_500_000_000) == "1.500s")
        #expect(DurationFormat.short(90_000_000_000) == "1m30s")
        #expect(DurationFormat.short(250_000_000) == "250.0ms")
        #expect(WallClock.iso8601(micros: 1_763_632_805_250_000) == "2025-11-20T10:00:05.250000Z")
        #expect(WallClock.parseISO8601("1970-01-01T00:00:00Z") == 0)
        #expect(WallClock.parseISO8601("2000-02-29T12:00:00Z") == 951_825_600_000_000)
    }
}
