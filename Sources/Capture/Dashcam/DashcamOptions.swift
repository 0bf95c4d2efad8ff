import Foundation
import Recording
import Transport

/// Dashcam mode of the recorder (`record --ring`): what the ring keeps, how long to go on
/// recording after a trigger, where incident files go and what triggers one.
///
/// Example: `DashcamOptions(bound: RingBound(nanoseconds: 600_000_000_000), directory: "incidents")`
/// writes `incidents/incident-20261206T041500Z-001.qmprec` on the first trigger.
public struct DashcamOptions: Sendable {
    public var bound: RingBound
    /// Recording goes on this long after a trigger (ns); a trigger meanwhile extends it.
    public var after: Int64 = 10_000_000_000
    /// Where incident files are written (created when missing).
    public var directory: String
    /// File name pattern: `{time}` (UTC, `20261206T041500Z`), `{seq}` (001, 002, ...),
    /// `{trigger}` (the trigger's name, e.g. `GUEST_PANICKED`, `SIGUSR1`, `control`).
    public var namePattern = "incident-{time}-{seq}.qmprec"
    /// Decides which records trigger (nil: only signals and the control socket do).
    public var detector: (any IncidentDetector)?
    /// The recorder's clock (ns, the clock of record times): the post-trigger window ends
    /// on it even when no traffic comes.
    public var now: @Sendable () -> Int64 = { 0 }

    public init(bound: RingBound, directory: String) {
        self.bound = bound
        self.directory = directory
    }

    /// The file name for incident `seq` triggered by `trigger` at wall-clock `micros`.
    public func fileName(seq: Int, trigger: String, micros: Int64) -> String {
        let iso = WallClock.iso8601(micros: micros)   // 2026-12-06T04:15:00.000000Z
        let compact = String(iso.prefix(19).filter { $0 != "-" && $0 != ":" }) + "Z"
        let safeTrigger = String(trigger.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" ? $0 : "_" }.prefix(40))
        return namePattern
            .replacingOccurrences(of: "{time}", with: compact)
            .replacingOccurrences(of: "{seq}", with: seq < 1000 ? String(format: "%03d", seq) : String(seq))
            .replacingOccurrences(of: "{trigger}", with: safeTrigger)
    }
}

/// Why an incident file was written: the header's `trigger` member (docs/FORMAT.md).
public struct IncidentTrigger: Sendable, Equatable {
    /// `event`, `signal` or `control`.
    public var source: String
    /// The event's name, the signal's name, or the control command's reason.
    public var name: String
    /// What matched, in words (`GUEST_PANICKED`, `STOP not caused by a command`, ...).
    public var detail: String

    public init(source: String, name: String, detail: String) {
        self.source = source; self.name = name; self.detail = detail
    }
}

/// Decides, record by record, whether the traffic shows an incident (the dashcam's event
/// triggers). Called on the recorder's encoder thread only, with each record as the file
/// would hold it (redacted), in order; so an implementation may keep state without a lock.
public protocol IncidentDetector: AnyObject, Sendable {
    /// The trigger this record fires, if any.
    func observe(line: [UInt8], kind: RecordKind, connection: UInt32, time: Int64) -> IncidentTrigger?
}

extension CaptureOptions {
    /// These options with the dashcam reading the recorder's clock (record times are
    /// `clock.now() - start`).
    func clocked(_ clock: ReplayClock, since start: Int64) -> CaptureOptions {
        guard ring != nil else { return self }
        var o = self
        o.ring!.now = { clock.now() - start }
        return o
    }
}
