import QMP
import Recording

/// `incidents`: what went wrong, as the VM model saw it (docs/QEMU-FACTS.md for each rule):
/// guest panics (whatever QEMU did next), watchdog expiries, I/O errors the guest saw or
/// that were hidden from it, failed migrations, unplugs the guest never completed, resets
/// no command asked for and reboot loops, a suspend without wakeup, QEMU gone without
/// SHUTDOWN (killed or crashed) and the commands it left unanswered, documented follow-ups
/// that never came, and error replies a client got again and again.
///
/// Example: a guest panic with `-action panic=none` is "the guest kernel panicked
/// (GUEST_PANICKED, action run): QEMU let it run on (panic action none)", an error.
public struct IncidentsAnalysis: Analysis {
    public static let name = "incidents"
    public static let summary = "what went wrong: panics, watchdog, guest-visible I/O errors, failed migrations, stuck unplugs, resets, QEMU killed"
    public static let clock = AnalysisClock.receive
    public static let interest = Interest.model(plus: Interest(allCommands: true))
    public static let usesModel = true

    /// The same error reply (command, class, text) this many times is worth a look.
    static let repeatedErrors = 3

    let context: AnalysisContext
    var incidents: [Incident] = []
    /// Error replies by (command, class, desc): count and the records of each.
    var errors: [String: (count: Int, records: [Int], first: Int64, last: Int64)] = [:]

    public init(context: AnalysisContext) {
        self.context = context
    }

    public mutating func consume(_ input: AnalysisInput) {
        // The model (folded by the runner just before) says what this input revealed.
        if context.vm.incidentsRecord == input.record { incidents += context.vm.incidents }
        if case .reply(let r) = input, let cls = r.errorClass {
            let key = "\(r.command.name.isEmpty ? "(not a command)" : r.command.name): \(cls): \(r.errorDesc ?? "")"
            var e = errors[key] ?? (0, [], r.time, r.time)
            e.count += 1
            if e.records.count < FindingGroup.recordLimit { e.records.append(r.record) }
            e.last = r.time
            errors[key] = e
        }
    }

    public func finish() -> IncidentsResult {
        var all = incidents + context.vm.model.finish(end: context.rangeEnd, record: context.endRecord)
        // The runstate analysis reports missing follow-ups; triage must not show them twice.
        all.removeAll { $0.code == "missing-follow-up" }
        for (key, e) in errors where e.count >= Self.repeatedErrors {
            all.append(Incident(.warning, "repeated-error", subject: key,
                                "a client got the same error \(e.count) times: \(key)", records: e.records, time: e.first, end: e.last,
                                weight: Double(e.count) / 100))
        }
        return IncidentsResult(context: context, incidents: all.sorted { ($0.time, $0.code) < ($1.time, $1.code) })
    }
}

public struct IncidentsResult: StreamedJSONResult {
    public let context: AnalysisContext
    public let incidents: [Incident]

    public var findings: [AnalysisFinding] { incidents.map { $0.finding(IncidentsAnalysis.name) } }

    public func describe(_ g: FindingGroup) -> String? {
        switch g.code {
        case "guest-panic": return "the guest panicked \(times(g.count)) (\(g.subject))"
        case "watchdog": return "the guest's watchdog expired \(times(g.count)) (\(g.subject))"
        case "io-error-reported": return "the guest got \(g.count) I/O errors (\(g.subject))"
        case "io-error-ignored": return "\(g.count) I/O errors were hidden from the guest (\(g.subject))"
        case "guest-reset": return "the VM reset \(times(g.count)) without a system_reset command"
        case "unanswered": return "\(g.count) \(g.subject) commands were never answered: QEMU closed the connection"
        case "qemu-gone": return "QEMU ended without SHUTDOWN \(times(g.count)): killed or crashed"
        default: return nil
        }
    }

    public var streamedMembers: [StreamedMember] {
        let incidents = self.incidents, context = self.context
        return [.array("incidents", count: incidents.count) { k in
            let i = incidents[k]
            var o = JSONObject(point: context, i.records.first ?? 0, i.time)
            o["severity"] = .string(i.severity.rawValue)
            o["code"] = .string(i.code)
            o["subject"] = .string(i.subject)
            o["message"] = .string(i.message)
            o["records"] = .array(i.records.map { .int($0) })
            o["end_ns"] = jopt(i.end)
            return .object(o)
        }]
    }

    public func table(colors: Bool, width: Int) -> String {
        guard !incidents.isEmpty else { return "  no incidents\n" }
        return FindingsTable.render(groupedFindings, colors: colors, width: width, context: context)
    }

    public func csv() -> String {
        var c = CSV(["severity", "code", "t_ns", "wall", "message", "records", "subject"])
        for i in incidents {
            c.add([i.severity.rawValue, i.code, "\(i.time)", context.wall(i.time) ?? "", i.message,
                   i.records.map { "\($0)" }.joined(separator: " "), i.subject])
        }
        return c.string
    }
}
