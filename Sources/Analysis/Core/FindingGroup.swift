import QMP
import Recording

/// Occurrences of one kind of finding about one subject: the unit triage ranks.
///
/// A million-record recording can hold thousands of RTC steps or failed queries; a person
/// wants one line saying "rtc: guest set its clock 412 times (steps from -65 s to +65 s)"
/// with the first records to jump to, not 412 lines. Findings are grouped by analysis,
/// code, subject and severity; the group's finding carries the count, the time span
/// (first and last occurrence), the summed weight, and the first `recordLimit` records
/// (in time order) with their total.
public struct FindingGroup: Sendable {
    /// Records a grouped finding lists (JSON and shell); `recordCount` has the total.
    public static let recordLimit = 100

    public let analysis: String
    public let code: String
    public let subject: String
    public let severity: FindingSeverity
    /// The occurrences, in time order (at least one).
    public let members: [AnalysisFinding]

    public var count: Int { members.count }
    public var first: AnalysisFinding { members[0] }
    public var start: Int64 { members[0].time }
    public var end: Int64 { members.map(\.end).max() ?? start }
    /// The members' `value`s (those that have one).
    public var values: [Double] { members.compactMap(\.value) }
    public var totalValue: Double { values.reduce(0, +) }
    /// The member with the largest value (the longest pause, the largest step), else the first.
    public var largest: AnalysisFinding { members.max { ($0.value ?? 0) < ($1.value ?? 0) } ?? first }
    /// Distinct texts taken from the members (e.g. error descriptions), first seen first.
    public func distinct(_ text: (AnalysisFinding) -> String) -> [String] {
        var seen = Set<String>(), out: [String] = []
        for m in members where seen.insert(text(m)).inserted { out.append(text(m)) }
        return out
    }

    /// Groups `findings` (any order); a group of one keeps its finding as it is.
    static func group(_ findings: [AnalysisFinding], describe: (FindingGroup) -> String?) -> [AnalysisFinding] {
        struct Key: Hashable { var analysis, code, subject: String; var severity: FindingSeverity }
        var order: [Key] = []
        var byKey: [Key: [AnalysisFinding]] = [:]
        for f in findings {
            let k = Key(analysis: f.analysis, code: f.code, subject: f.subject, severity: f.severity)
            if byKey[k] == nil { order.append(k) }
            byKey[k, default: []].append(f)
        }
        return order.map { k in
            let members = byKey[k]!.sorted { $0.time != $1.time ? $0.time < $1.time : ($0.records.first ?? 0) < ($1.records.first ?? 0) }
            let g = FindingGroup(analysis: k.analysis, code: k.code, subject: k.subject, severity: k.severity, members: members)
            return g.finding(describe(g))
        }
    }

    /// The group as one finding.
    func finding(_ message: String?) -> AnalysisFinding {
        if count == 1 { return first }
        var f = first
        f.message = message ?? "\(first.message) (and \(count - 1) more like it, the last at \(DurationFormat.clock(end)))"
        var seen = Set<Int>()
        var records: [Int] = []
        for m in members {
            for r in m.records where seen.insert(r).inserted {
                if records.count < Self.recordLimit { records.append(r) }
            }
        }
        f.records = records
        f.recordCount = seen.count
        f.time = start
        f.end = end
        f.count = count
        f.weight = members.reduce(0) { $0 + $1.weight }
        f.value = values.isEmpty ? nil : totalValue
        return f
    }
}

/// `3 times`, `1 time`.
func times(_ n: Int) -> String { n == 1 ? "once" : "\(n) times" }

/// `1 query`, `3 queries`: the count and the noun, plural as given.
func counted(_ n: Int, _ one: String, _ many: String) -> String { "\(n) \(n == 1 ? one : many)" }

/// Seconds (a finding's `value`) as a duration: `42.000s`, `3h12m`.
func seconds(_ v: Double) -> String { DurationFormat.short(Int64(saturating: (v * 1e9).rounded())) }

extension String {
    /// The text after the first `marker`, or the whole string without one.
    func after(_ marker: String) -> String {
        guard let r = firstRange(of: marker) else { return self }
        return String(self[r.upperBound...])
    }
}
