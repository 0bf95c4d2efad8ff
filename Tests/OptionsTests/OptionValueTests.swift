import ArgumentParser
import Transport
import Foundation
import Options
import Recording
import Replay
import Testing

/// The value parsers every option uses: good inputs, bad inputs and the exact reason given
/// (what follows "The value 'X' is invalid for '--opt <v>': ").
struct OptionValueTests {
    /// The reason `parse` gives for `text`, or nil when it parses.
    private func reason<T>(_ parse: (String) throws(OptionValueError) -> T, _ text: String) -> String? {
        do { _ = try parse(text); return nil } catch { return error.description }
    }

    @Test("ring windows: a lower-case m is minutes, a size takes M, MB or MiB; k is always a size")
    func ringWindows() throws {
        #expect(try RingWindow.parse("10m").nanoseconds == 600_000_000_000)
        #expect(try RingWindow.parse("90s").nanoseconds == 90_000_000_000)
        #expect(try RingWindow.parse("1h").bytes == nil)
        #expect(try RingWindow.parse("64M").bytes == 64 << 20)
        #expect(try RingWindow.parse("64MB").bytes == 64 << 20)
        #expect(try RingWindow.parse("64MiB").bytes == 64 << 20)
        #expect(try RingWindow.parse("512k").bytes == 512 << 10)
        #expect(try RingWindow.parse("10m").bytes == nil)
        let bad = "the ring is a positive length of time (e.g. 90s, 10m, 1h) or a size (e.g. 512k, 64M, 1G)"
        for text in ["", "0s", "0M", "10q", "-5m", "M"] { #expect(reason(RingWindow.parse, text) == bad, "\(text)") }
    }

    @Test("sizes: bytes, or k/M/G with an optional B or iB, any case", arguments: [
        ("65536", 65536), ("0", 0), ("64k", 64 << 10), ("64KiB", 64 << 10), ("64kb", 64 << 10),
        ("16M", 16 << 20), ("16MiB", 16 << 20), ("1G", 1 << 30), ("1gib", 1 << 30), ("512B", 512),
    ] as [(String, Int)])
    func sizes(_ text: String, _ bytes: Int) throws {
        let v = try ByteSize.parse(text)
        #expect(v.bytes == bytes && v.text == text && v.description == text)
    }

    @Test("bad sizes", arguments: ["", "k", "12Q", "-1", "1.5M", "64 k", "0x10", "M16"])
    func badSizes(_ text: String) {
        #expect(reason(ByteSize.parse, text) == "a size is a number of bytes, optionally with k, M or G: e.g. 65536, 64k, 16M, 1G")
        #expect(ByteSize(argument: text) == nil)
    }

    @Test func sizeTooLarge() {
        #expect(reason(ByteSize.parse, "99999999999999G") == "too large")
    }

    @Test("durations: the time syntax's units, a bare number is seconds", arguments: [
        ("500ms", Int64(500_000_000)), ("2s", 2_000_000_000), ("1m30s", 90_000_000_000), ("90", 90_000_000_000),
        ("1.5s", 1_500_000_000), ("750us", 750_000), ("0s", 0),
    ] as [(String, Int64)])
    func durations(_ text: String, _ ns: Int64) throws {
        let v = try DurationValue.parse(text)
        #expect(v.nanoseconds == ns && v.text == text)
    }

    @Test("bad durations", arguments: [
        ("5x", "unknown unit 'x' (h, m, s, ms, us, ns); durations are e.g. 500ms, 2s, 1m30s"),
        ("", "empty duration; durations are e.g. 500ms, 2s, 1m30s"),
        ("-2s", "expected a number at '-2s'; durations are e.g. 500ms, 2s, 1m30s"),
        ("2sec", "unknown unit 'sec' (h, m, s, ms, us, ns); durations are e.g. 500ms, 2s, 1m30s"),
    ])
    func badDurations(_ text: String, _ message: String) {
        #expect(reason(DurationValue.parse, text) == message)
    }

    @Test("socket modes: octal up to 0777", arguments: [("0600", 0o600), ("660", 0o660), ("0777", 0o777), ("0", 0)] as [(String, Int)])
    func socketModes(_ text: String, _ mode: Int) throws {
        #expect(try Int(SocketMode.parse(text).mode) == mode)
    }

    @Test("bad socket modes", arguments: ["0800", "1000", "rw-------", "", "-600", "0o600"])
    func badSocketModes(_ text: String) {
        #expect(reason(SocketMode.parse, text) == "a socket mode is octal permissions up to 0777, e.g. 0600 or 660")
    }

    @Test("speeds: 0.1 to 1000, 10 or 10x, or max", arguments: [
        ("10", 10), ("10x", 10), ("0.1", 0.1), ("1000", 1000), ("0.5x", 0.5), ("max", nil), ("MAX", nil),
    ] as [(String, Double?)])
    func speeds(_ text: String, _ factor: Double?) throws {
        #expect(try Speed.parse(text).factor == factor)
    }

    @Test("bad speeds", arguments: [
        ("fast", "a speed is a number from 0.1 to 1000 (10 or 10x), or max"),
        ("", "a speed is a number from 0.1 to 1000 (10 or 10x), or max"),
        ("nan", "a speed is a number from 0.1 to 1000 (10 or 10x), or max"),
        ("5000", "the speed must be from 0.1 to 1000, or max"),
        ("0", "the speed must be from 0.1 to 1000, or max"),
        ("-1", "the speed must be from 0.1 to 1000, or max"),
    ])
    func badSpeeds(_ text: String, _ message: String) {
        #expect(reason(Speed.parse, text) == message)
    }

    @Test("times keep the text as typed; an option in the value's place is named as such")
    func times() throws {
        #expect(try TimeArgument.parse("-2s").spec == .relative(-2_000_000_000))
        #expect(try TimeArgument.parse("@160").spec == .record(160))
        #expect(try TimeArgument.parse("99s").description == "99s")
        #expect(reason(TimeArgument.parse, "--to") == "that is an option, not a time: the time is missing (\(TimeSpec.examples))")
        #expect(reason(TimeArgument.parse, "5x") == "unknown unit 'x' (h, m, s, ms, us, ns); times are \(TimeSpec.examples)")
    }

    @Test("choices are their raw values")
    func choices() throws {
        #expect(MatchMode(argument: "name") == .name && MatchMode(argument: "fuzzy") == nil)
        #expect(UnmatchedPolicy(argument: "empty") == .empty && UnmatchedPolicy(argument: "") == nil)
    }

    @Test("a default's text, for --help: the largest unit that divides it")
    func defaultTexts() throws {
        #expect(ByteSize(bytes: 8 << 20).text == "8M" && ByteSize(bytes: 4096).text == "4k" && ByteSize(bytes: 1000).text == "1000")
        #expect(ByteSize(bytes: 3 << 30).text == "3G" && ByteSize(bytes: 0).text == "0")
        #expect(DurationValue(nanoseconds: 10_000_000_000).text == "10s" && DurationValue(nanoseconds: 100_000_000).text == "100ms")
        #expect(DurationValue(nanoseconds: 90_000_000_000).text == "90s" && DurationValue(nanoseconds: 120_000_000_000).text == "2m")
        #expect(DurationValue(nanoseconds: 7).text == "7ns" && DurationValue(nanoseconds: 0).text == "0s")
        #expect(SocketMode(mode: 0o600).text == "0600" && SocketMode(mode: 0o7).text == "0007")
        #expect(Speed(factor: 1).text == "1" && Speed(factor: 0.5).text == "0.5" && Speed(factor: nil).text == "max")
        // Each parses back to the value.
        #expect(try ByteSize.parse(ByteSize(bytes: 8 << 20).text).bytes == 8 << 20)
        #expect(try DurationValue.parse(DurationValue(nanoseconds: 100_000_000).text).nanoseconds == 100_000_000)
    }

    @Test("addresses: unix:PATH, tcp:HOST:PORT, a bare socket path or HOST:PORT")
    func addresses() throws {
        #expect(try Address.endpoint("/tmp/q.sock", option: "--listen") == .unix("/tmp/q.sock"))
        #expect(try Address.endpoint("unix:/tmp/q.sock", option: "--listen") == .unix("/tmp/q.sock"))
        #expect(try Address.endpoint("localhost:4444", option: "--listen") == .tcp(host: "localhost", port: 4444))
        #expect(throws: OptionValueError("--listen: 'tcp:nohost' is not an address: use unix:PATH, tcp:HOST:PORT, a socket path or HOST:PORT")) {
            _ = try Address.endpoint("tcp:nohost", option: "--listen")
        }
    }
}

/// `ServeOptions`: the words of `serve` and of the shell's `replay start`, parsed by
/// ArgumentParser from their one declaration.
struct ServeOptionsTests {
    private func message(_ words: [String]) -> String? {
        do { _ = try ServeOptions.parse(words); return nil } catch {
            return OptionErrors.message(for: error, parsing: ServeOptions.self)
        }
    }

    @Test func parsesWords() throws {
        let s = try ServeOptions.parse(["--listen", "unix:/tmp/s", "--speed", "10", "--loop", "--max-gap", "2s",
                                        "--from", "#3", "--match=name", "--unmatched", "empty", "--shared", "--socket-mode", "0660",
                                        "--client-buffer", "64KiB", "--stall-timeout", "500ms", "--to", "-1s"])
        #expect(try s.endpoint() == .unix("/tmp/s"))
        let o = s.options
        #expect(o.speed == 10 && o.loop && o.maxGap == 2_000_000_000 && o.match == .name && o.unmatched == .empty && o.shared)
        #expect(o.from == .record(3) && o.to == .relative(-1_000_000_000))
        #expect(o.socketMode == 0o660 && o.clientBufferLimit == 65536 && o.stallTimeout == 500_000_000)
        #expect(throws: OptionValueError("--listen: 'tcp:nohost' is not an address: use unix:PATH, tcp:HOST:PORT, a socket path or HOST:PORT")) {
            _ = try ServeOptions.parse(["--listen", "tcp:nohost"]).endpoint()
        }
        let m = try ServeOptions.parse(["--speed", "max", "--listen", "tcp::4444"])
        #expect(m.options.speed == nil)
        #expect(try m.endpoint() == .tcp(host: "127.0.0.1", port: 4444))
    }

    @Test("the defaults users have: speed 1, exact, error, 0600, 8M, 10s, 1024 clients")
    func defaults() throws {
        let o = try ServeOptions.parse(["--listen", "/tmp/s"]).options
        let d = ReplayOptions()
        #expect(o.speed == 1 && o.match == d.match && o.unmatched == d.unmatched && o.socketMode == d.socketMode)
        #expect(o.clientBufferLimit == d.clientBufferLimit && o.stallTimeout == d.stallTimeout && o.maxClients == d.maxClients)
        #expect(o.from == nil && o.to == nil && !o.loop && !o.strict && !o.shared && !o.realtime && o.maxGap == nil)
    }

    @Test("bad words: one line each, in the project's style", arguments: [
        (["--speed", "10"], "missing expected argument '--listen <address>'"),
        (["--listen", "/tmp/s", "--speed", "5000"], "the value '5000' is invalid for '--speed <speed>': the speed must be from 0.1 to 1000, or max"),
        (["--listen", "/tmp/s", "--frobnicate"], "unknown option '--frobnicate'"),
        (["--listen", "/tmp/s", "--fail-fast"], "--fail-fast needs --strict"),
        (["--listen"], "missing value for '--listen <address>'"),
        (["--listen", "/tmp/s", "--from", "yesterday"],
         "the value 'yesterday' is invalid for '--from <time>': expected a number at 'yesterday'; times are \(TimeSpec.examples)"),
        (["--listen", "/tmp/s", "--client-buffer", "12Q"],
         "the value '12Q' is invalid for '--client-buffer <size>': a size is a number of bytes, optionally with k, M or G: e.g. 65536, 64k, 16M, 1G"),
        (["--listen", "/tmp/s", "--client-buffer", "1k"], "--client-buffer must be at least 4 KiB"),
        (["--listen", "/tmp/s", "--stall-timeout", "0s"], "--stall-timeout must be positive"),
        (["--listen", "/tmp/s", "--socket-mode", "999"],
         "the value '999' is invalid for '--socket-mode <mode>': a socket mode is octal permissions up to 0777, e.g. 0600 or 660"),
        (["--listen", "/tmp/s", "--match", "fuzzy"], "the value 'fuzzy' is invalid for '--match <mode>'. Please provide one of 'exact' and 'name'."),
        (["--listen", "/tmp/s", "--connection", "0"], "--connection must be a connection number (1, 2, ...), got '0'"),
    ])
    func readableErrors(words: [String], expected: String) {
        #expect(message(words) == expected, "\(words)")
    }
}

/// `--from`/`--to` resolved against a recording: `--to` is inclusive, by record and by time.
struct TimeSpanTests {
    static let lifecycle: Recording = {
        var url = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { url.deleteLastPathComponent() }
        return try! Recording(path: url.appendingPathComponent("Recordings/lifecycle.qmprec").path)
    }()

    private func span(_ from: String?, _ to: String?) throws -> TimeSpan {
        TimeSpan(from: try from.map { try TimeArgument.parse($0) }, to: try to.map { try TimeArgument.parse($0) })
    }

    @Test func inclusiveEnd() throws {
        let r = Self.lifecycle
        #expect(try span("@13", "@14").resolve(in: r).records == 13..<15)
        #expect(try span(nil, nil).resolve(in: r).records == 0..<r.count)
        #expect(try span(nil, nil).resolve(in: r).start == nil)
        // A time end takes every record at that time.
        let t = r.time(5)
        let atT = (0..<r.count).filter { r.time($0) <= t }.count
        let s = try TimeSpan(to: TimeArgument(spec: .sinceStart(t), text: "t")).resolve(in: r)
        #expect(s.records == 0..<atT && s.end == t)
        // Past the end: empty, starting at the end.
        #expect(try span("99s", nil).resolve(in: r).records == r.count..<r.count)
        // Relative to the shell's cursor.
        #expect(try span("+0s", nil).resolve(in: r, current: 7).records.lowerBound == r.firstIndex(atOrAfter: r.time(7)))
    }

    @Test func reversed() throws {
        let r = Self.lifecycle
        #expect(throws: SpanError.self) { try span("5s", "1s").resolve(in: r) }
        do { _ = try span("@9", "@3").resolve(in: r) } catch {
            #expect("\(error)" == "--to @3 is before --from @9: the span is empty (swap them)")
        }
    }

    @Test("the group declares --from and --to once, with the time syntax")
    func group() throws {
        let g = try TimeSpanOptions.parse(["--from", "-2s", "--to=@20"])
        #expect(g.span == TimeSpan(from: TimeArgument(spec: .relative(-2_000_000_000), text: "-2s"), to: TimeArgument(record: 20, text: "@20")))
        do { _ = try TimeSpanOptions.parse(["--from", "--to", "4s"]) } catch {
            #expect(OptionErrors.message(for: error, parsing: TimeSpanOptions.self)
                    == "the value '--to' is invalid for '--from <time>': that is an option, not a time: the time is missing (\(TimeSpec.examples))")
        }
    }
}
