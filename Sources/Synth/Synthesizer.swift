import QMP
import Recording

/// Writes deterministic synthetic recordings (`qmpreplay synth`): a libvirt-like client
/// and a simulated QEMU 7.2 exchanging realistic QMP traffic, for tests, benchmarks and
/// demos. The same seed, profile and record count always give the same bytes.
///
/// Example:
/// ```
/// try Synthesizer(seed: 7, profile: .balloonFlood).write(records: 10_000, to: "/tmp/b.qmprec")
/// for r in Synthesizer(seed: 7, profile: .mixed).prefix(100) { print(r.time, r.body.kind) }
/// ```
public struct Synthesizer: Sequence, Sendable {
    public let seed: UInt64
    public let profile: SynthProfile
    /// Wall-clock time of t=0 (microseconds since the epoch); QEMU's event timestamps follow from it.
    public let startMicros: Int64
    /// The header's host, and labels after `profile` and `seed` (a synthetic fleet names
    /// its hosts and VMs here; docs/FLEET.md).
    public var host = "synth"
    public var labels: [(key: String, value: String)] = []

    public init(seed: UInt64, profile: SynthProfile, startMicros: Int64 = 1_763_632_800_000_000) {
        self.seed = seed
        self.profile = profile
        self.startMicros = startMicros
    }

    /// The header of the recordings `write` produces: host `synth` unless given, labels
    /// `profile` and `seed` (then any given), so that nothing about the machine running it leaks in.
    public var header: RecordingHeader {
        RecordingHeader(
            startMicros: startMicros, source: "synth:\(profile.rawValue)", mode: .synthetic,
            recorder: RecordingHeader.recorderName, host: host, qemuVersion: "7.2.0", redacted: false,
            labels: [(key: "profile", value: profile.rawValue), (key: "seed", value: String(seed))] + labels)
    }

    /// Writes a complete recording (header mode .synthetic with labels profile/seed, records,
    /// trailer reason "complete") of exactly `records` records (not counting header/trailer).
    /// `progress` is called with the number of records written so far, every 65,536 records
    /// and once at the end.
    public func write(records: Int, to path: String, progress: ((Int) -> Void)? = nil) throws(RecordingWriteError) {
        let writer = try RecordingWriter(path: path, header: header)
        var iterator = makeIterator()
        let count = Swift.max(0, records)
        var written = 0
        while written < count {
            let r = iterator.next()!  // the stream is infinite
            try writer.append(time: r.time, connection: r.connection, r.body)
            written += 1
            if written & 0xFFFF == 0, let progress { progress(written) }
        }
        try writer.finish(reason: "complete")
        progress?(written)
    }

    /// Same stream, as an iterator of (time ns, connection, RecordBody). It never ends:
    /// take a `prefix`.
    public func makeIterator() -> SynthIterator {
        SynthIterator(engine: SynthEngine(seed: seed, profile: profile, startMicros: startMicros))
    }
}

/// The records of a synthetic session, in time order, without end.
public struct SynthIterator: IteratorProtocol, Sendable {
    public typealias Element = (time: Int64, connection: UInt32, body: RecordBody)

    var engine: SynthEngine
    private var cursor = 0

    init(engine: SynthEngine) { self.engine = engine }

    public mutating func next() -> Element? {
        while cursor == engine.out.count {
            engine.out.removeAll(keepingCapacity: true)
            cursor = 0
            engine.step()
        }
        defer { cursor += 1 }
        return engine.out[cursor]
    }
}
