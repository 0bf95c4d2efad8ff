import ArgumentParser
import Recording
import Replay

/// The options that make a replay adversarial, for clients under test (docs/TESTING-CLIENTS.md):
/// a chaos schedule (`--chaos SEED` or `--chaos-schedule SPEC`, with splits, a stall and the
/// idle time) and fault rules (`--fault RULE`, `--faults FILE`). Part of `ServeOptions`, so
/// `serve` and the shell's `replay start` take them alike.
/// Example: `--chaos 42 --chaos-stall 200ms --fault 'query-status#2 delay 2s'`.
public struct AdversaryOptions: ParsableArguments {
    public init() {}

    @Option(help: ArgumentHelp("Deliver the recorded events at adversarial points (between a command and its reply, in bursts, split across reads) chosen from this seed; the schedule is printed, and the same seed gives the same schedule.", valueName: "seed"))
    public var chaos: UInt64?

    @Option(name: .customLong("chaos-schedule"), help: ArgumentHelp("Deliver the events by this schedule, as --chaos or explore print it (events=b0,a1;cuts=17:1ms).", valueName: "spec"))
    public var chaosSchedule: String?

    @Option(name: .customLong("chaos-splits"), help: ArgumentHelp("With --chaos: cut the output at this many seed-chosen bytes (a 1 ms pause each).", valueName: "n"))
    public var chaosSplits = ChaosSettings.defaultSplits

    @Option(name: .customLong("chaos-stall"), help: ArgumentHelp("With --chaos: stall the output once, this long, at a seed-chosen byte (e.g. 500ms).", valueName: "duration"),
            transform: DurationValue.parse)
    public var chaosStall: DurationValue?

    @Option(name: .customLong("chaos-idle"), help: ArgumentHelp("With --chaos: a client quiet this long while events remain gets the next ones anyway.", valueName: "duration", default: DurationValue(nanoseconds: ChaosSettings.defaultIdle)),
            transform: DurationValue.parse)
    public var chaosIdle = DurationValue(nanoseconds: ChaosSettings.defaultIdle)

    @Option(name: .customLong("fault"), help: ArgumentHelp("A fault rule, e.g. 'device_add error DeviceNotFound \"no bus\"', 'query-status#2 delay 2s', 'migrate close', 'cont event RESUME', 'after migrate: query-migrate return {\"status\": \"failed\"}' (repeatable; docs/TESTING-CLIENTS.md).", valueName: "rule"))
    public var fault: [String] = []

    @Option(name: .customLong("faults"), help: ArgumentHelp("A file of fault rules, one per line (# comments).", valueName: "file"))
    public var faultsFile: String?

    /// The chaos settings, nil without --chaos or --chaos-schedule.
    public func chaosSettings() throws(ReplayError) -> ChaosSettings? {
        guard chaos != nil || chaosSchedule != nil else { return nil }
        return ChaosSettings(seed: chaos ?? 0, schedule: try chaosSchedule.map(ChaosSchedule.parse), splits: chaosSplits,
                             stall: chaosStall?.nanoseconds, idle: chaosIdle.nanoseconds)
    }

    /// Every rule: those of --fault in order, then those of the file.
    public func faultRules() throws(ReplayError) -> [FaultRule] {
        var rules: [FaultRule] = []
        for (i, text) in fault.enumerated() { rules.append(try FaultRule.parse(text, source: "--fault \(i + 1)")) }
        if let path = faultsFile {
            let bytes: [UInt8]
            do { bytes = try ImportSource.read(path) } catch { throw .usage("cannot read the fault rules file \(error)") }
            rules += try FaultRule.parseFile(String(decoding: bytes, as: UTF8.self), path: path)
        }
        return rules
    }

    public func validate() throws {
        if chaos != nil && chaosSchedule != nil { throw ValidationError("--chaos and --chaos-schedule exclude each other") }
        if chaos == nil && chaosSchedule == nil && (chaosStall != nil || chaosSplits != ChaosSettings.defaultSplits) {
            throw ValidationError("--chaos-stall and --chaos-splits need --chaos SEED")
        }
        do {
            _ = try chaosSettings()
            _ = try faultRules()
        } catch { throw ValidationError(error.description) }
    }
}
