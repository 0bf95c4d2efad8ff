import QMP
import Recording

/// `nic-rx-filter`: the per-NIC dedup latch of NIC_RX_FILTER_CHANGED (docs/QEMU-FACTS.md,
/// "NIC_RX_FILTER_CHANGED").
///
/// After one event QEMU stays silent about that NIC until someone runs `query-rx-filter`
/// (no arguments: every NIC; `{"name": X}`: only X). The latch starts armed. So a second
/// event with no recorded successful query in between means an unrecorded client queried
/// (or the dedup failed), and an event never followed by a query means later filter
/// changes were invisible to the client. A failed query (GenericError) re-arms nothing.
public struct NICRxFilterAnalysis: Analysis {
    public static let name = "nic-rx-filter"
    public static let summary = "NIC_RX_FILTER_CHANGED dedup latch per NIC: re-arming queries and their latency, unrecorded re-arms, invisible changes"
    public static let clock = AnalysisClock.receive
    public static let interest = Interest(events: ["NIC_RX_FILTER_CHANGED"], commands: ["query-rx-filter"], closes: true)
    public static let usesModel = true

    public struct Event: Sendable, Hashable {
        public var record: Int
        public var time: Int64
        /// Whether the latch was armed (as far as the recording shows) when it came.
        public var latchArmed: Bool
        /// `rearmed` (a recorded query re-armed it), `rearmed-unrecorded` (the next event
        /// came without a recorded query), `never` (no query until the end).
        public var outcome: String = "never"
        public var rearmRecord: Int?
        public var rearmTime: Int64?
        public var latency: Int64? { rearmTime.map { $0 - time } }
    }

    public struct Query: Sendable, Hashable {
        public var record: Int
        public var time: Int64
        /// The `name` argument; `nil` queries every NIC.
        public var name: String?
        public var replyRecord: Int?
        /// `ok`, `error` or `unanswered`.
        public var outcome: String
        public var error: String?
    }

    public struct NIC: Sendable {
        public var name: String
        public var path: String
        public var events: [Event] = []
        /// The queries that re-armed it or failed for it, as indexes into the result's
        /// `queries` (`NICRxFilterResult.queries(of:)`): a query of every NIC is kept once,
        /// not once per NIC.
        public var queryIndexes: [Int] = []
        /// Armed: the next filter change will be reported.
        public var armed = true
    }

    let context: AnalysisContext
    var nics: [NIC] = []
    var queries: [Query] = []
    var pendingQuery: [Int: Int] = [:]   // command record -> index in `queries`

    public init(context: AnalysisContext) { self.context = context }

    mutating func nic(name: String?, path: String?) -> Int {
        if let k = nics.firstIndex(where: { (name != nil && $0.name == name) || (name == nil && path != nil && $0.path == path) }) {
            if nics[k].path.isEmpty, let path { nics[k].path = path }
            return k
        }
        nics.append(NIC(name: name ?? "", path: path ?? ""))
        return nics.count - 1
    }

    public mutating func consume(_ input: AnalysisInput) {
        // The latch itself is the VM model's (one rule for the shell and every analysis);
        // this analysis keeps the series: each event, each query, and who re-armed what.
        switch input {
        case .event(let e):
            let data = e.view.object("data")
            let name = data?.string("name"), path = data?.string("path")
            let armedBefore = context.vm.model.lastRxEventFoundArmed
            let k = nic(name: name, path: path)
            if !armedBefore, let last = nics[k].events.indices.last, nics[k].events[last].outcome == "never" {
                nics[k].events[last].outcome = "rearmed-unrecorded"
            }
            nics[k].events.append(Event(record: e.record, time: e.time, latchArmed: armedBefore))
            nics[k].armed = false
        case .command(let c):
            queries.append(Query(record: c.record, time: c.time, name: c.view.string("arguments", "name"), outcome: "unanswered"))
            pendingQuery[c.record] = queries.count - 1
        case .reply(let r):
            let model = context.vm.model
            guard let q = pendingQuery.removeValue(forKey: r.command.record) else { return }
            queries[q].replyRecord = r.record
            if r.isError {
                queries[q].outcome = "error"
                queries[q].error = (r.errorClass ?? "") + (r.errorDesc.map { ": " + $0 } ?? "")
                if let n = queries[q].name {
                    let k = nic(name: n, path: nil)
                    nics[k].queryIndexes.append(q)
                }
                return
            }
            queries[q].outcome = "ok"
            // The NICs the model re-armed with this query; latency is measured to the query.
            for k in nics.indices {
                let key = model.nicKey(name: nics[k].name.isEmpty ? nil : nics[k].name, path: nics[k].path.isEmpty ? nil : nics[k].path)
                guard model.state.nics[key]?.lastRearm?.record == r.command.record || (queries[q].name != nil && nics[k].name == queries[q].name)
                else { continue }
                nics[k].queryIndexes.append(q)
                if !nics[k].armed, let last = nics[k].events.indices.last, nics[k].events[last].outcome == "never" {
                    nics[k].events[last].outcome = "rearmed"
                    nics[k].events[last].rearmRecord = queries[q].record
                    nics[k].events[last].rearmTime = queries[q].time
                }
                nics[k].armed = true
            }
            if let n = queries[q].name, !nics.contains(where: { $0.name == n }) {
                nics.append(NIC(name: n, path: ""))
                nics[nics.count - 1].queryIndexes.append(q)
            }
        case .greeting(_, _, _, let newProcess):
            // A new QEMU process creates its NICs with the latch armed.
            if newProcess { for k in nics.indices { nics[k].armed = true } }
        case .close:
            break
        }
    }

    public func finish() -> NICRxFilterResult {
        NICRxFilterResult(context: context, nics: nics, queries: queries)
    }
}

public struct NICRxFilterResult: StreamedJSONResult {
    public let context: AnalysisContext
    public let nics: [NICRxFilterAnalysis.NIC]
    public let queries: [NICRxFilterAnalysis.Query]

    static func label(_ n: NICRxFilterAnalysis.NIC) -> String { n.name.isEmpty ? n.path : n.name }

    /// The queries that re-armed `n` or failed for it, in order.
    public func queries(of n: NICRxFilterAnalysis.NIC) -> [NICRxFilterAnalysis.Query] { n.queryIndexes.map { queries[$0] } }

    /// One line per NIC saying whether the client kept up with its filter changes.
    public func verdict(_ n: NICRxFilterAnalysis.NIC) -> String {
        let unexpected = n.events.filter { !$0.latchArmed }.count
        let never = n.events.filter { $0.outcome == "never" }.count
        let failed = n.queryIndexes.filter { queries[$0].outcome == "error" }.count
        let lat = n.events.compactMap(\.latency).sorted()
        var parts: [String] = []
        if n.events.isEmpty { parts.append("no events") }
        if never > 0 { parts.append("not re-armed after the last event (#\(n.events.last!.record)): later filter changes were invisible to the client") }
        if unexpected > 0 { parts.append("\(unexpected) event\(unexpected == 1 ? "" : "s") while the latch should have been disarmed (an unrecorded client queried, or the dedup failed)") }
        if failed > 0 { parts.append("\(failed) failed quer\(failed == 1 ? "y" : "ies")") }
        if parts.isEmpty {
            let med = lat.isEmpty ? "" : ", median re-arm latency \(DurationFormat.short(lat[lat.count / 2]))"
            return "ok: every event followed by a query\(med)"
        }
        return parts.joined(separator: "; ")
    }

    public var streamedMembers: [StreamedMember] {
        let nics = self.nics, queries = self.queries, context = self.context
        func q(_ x: NICRxFilterAnalysis.Query) -> JSONValue {
            var o = JSONObject(point: context, x.record, x.time)
            o["name"] = jopt(x.name)
            o["reply_record"] = jopt(x.replyRecord)
            o["outcome"] = .string(x.outcome)
            o["error"] = jopt(x.error)
            return .object(o)
        }
        return [
            .objects("nics", count: nics.count) { k in
                let n = nics[k]
                var o = JSONObject()
                o["name"] = .string(n.name)
                o["path"] = .string(n.path)
                o["verdict"] = .string(verdict(n))
                o["latch_armed_at_end"] = .bool(n.armed)
                var tail = JSONObject()
                tail["unexpected_events"] = .int(n.events.filter { !$0.latchArmed }.count)
                tail["never_rearmed"] = .int(n.events.filter { $0.outcome == "never" }.count)
                tail["failed_queries"] = .int(n.queryIndexes.filter { queries[$0].outcome == "error" }.count)
                return StreamedMember.values(o) + [.array("events", count: n.events.count) { i in
                    let e = n.events[i]
                    var p = JSONObject(point: context, e.record, e.time)
                    p["latch_armed"] = .bool(e.latchArmed)
                    p["outcome"] = .string(e.outcome)
                    p["rearm_record"] = jopt(e.rearmRecord)
                    p["rearm_latency_ns"] = jopt(e.latency)
                    return .object(p)
                }, .array("queries", count: n.queryIndexes.count) { q(queries[n.queryIndexes[$0]]) }] + StreamedMember.values(tail)
            },
            .array("queries", count: queries.count) { q(queries[$0]) },
        ]
    }

    public var findings: [AnalysisFinding] {
        var out: [AnalysisFinding] = []
        for n in nics {
            let l = Self.label(n)
            if let e = n.events.last, e.outcome == "never" {
                let span = context.rangeEnd - e.time
                out.append(AnalysisFinding(.warning, "nic-rx-filter", "invisible-changes",
                    "NIC \(l): filter changes after #\(e.record) invisible to the client (no query-rx-filter re-armed the latch for \(DurationFormat.short(span)))",
                    subject: l, records: [e.record], time: e.time, weight: Double(span) / 1e9, value: Double(span) / 1e9))
            }
            let unexpected = n.events.filter { !$0.latchArmed }
            if !unexpected.isEmpty {
                // Another monitor (a second management client) querying is normal; the
                // recording just did not see it. Worth knowing, not an incident.
                out.append(AnalysisFinding(.info, "nic-rx-filter", "unrecorded-rearm",
                    "NIC \(l): \(unexpected.count) event\(unexpected.count == 1 ? "" : "s") with no recorded query-rx-filter since the previous one (an unrecorded client re-armed the latch, or the dedup failed)",
                    subject: l, records: unexpected.map(\.record), time: unexpected[0].time, weight: Double(unexpected.count)))
            }
        }
        for q in queries where q.outcome == "error" {
            out.append(AnalysisFinding(.warning, "nic-rx-filter", "failed-query",
                "query-rx-filter\(q.name.map { " \($0)" } ?? "") failed: \(q.error ?? "")", subject: q.name ?? "(all NICs)",
                records: [q.record] + (q.replyRecord.map { [$0] } ?? []), time: q.time))
        }
        return out
    }

    public func describe(_ g: FindingGroup) -> String? {
        switch g.code {
        case "invisible-changes":
            return "NIC \(g.subject): the client stopped hearing of filter changes \(times(g.count)) (no query-rx-filter after the event), \(seconds(g.totalValue)) in total"
        case "failed-query":
            let errors = g.distinct { $0.message.after("failed: ") }
            return "query-rx-filter \(g.subject) failed \(times(g.count)): " + errors.prefix(2).joined(separator: "; ") + (errors.count > 2 ? "; …" : "")
        default:
            return nil
        }
    }

    public func table(colors: Bool, width: Int) -> String {
        let st = TextStyle(colors)
        if nics.isEmpty && queries.isEmpty { return "  no NIC_RX_FILTER_CHANGED events or query-rx-filter commands\n" }
        var s = ""
        for n in nics {
            let v = verdict(n)
            s += st.bold("NIC \(Self.label(n))") + (n.path.isEmpty || n.name.isEmpty ? "" : "  " + st.dim(n.path)) + "\n"
            s += "  verdict: " + (v.hasPrefix("ok") ? st.green(v) : st.yellow(v)) + "\n"
            var t = TextTable(["record", "time", "what", "latch", "outcome"])
            var rows: [(Int, [String])] = []
            for e in n.events {
                rows.append((e.record, ["#\(e.record)", context.wallOrClock(e.time), "NIC_RX_FILTER_CHANGED",
                                        e.latchArmed ? "was armed" : st.yellow("was disarmed"),
                                        e.outcome + (e.rearmRecord.map { " by #\($0) after \(DurationFormat.short(e.latency!))" } ?? "")]))
            }
            for q in queries(of: n) {
                rows.append((q.record, ["#\(q.record)", context.wallOrClock(q.time), "query-rx-filter" + (q.name.map { " \($0)" } ?? " (all)"),
                                        q.outcome == "ok" ? "re-armed" : "", q.outcome == "error" ? st.red("error: " + (q.error ?? "")) : q.outcome]))
            }
            for r in rows.sorted(by: { $0.0 < $1.0 }) { t.row(r.1) }
            s += t.render(colors: colors, width: width) + "\n"
        }
        return s
    }

    public func csv() -> String {
        var c = CSV(["nic", "path", "record", "t_ns", "wall", "what", "query_name", "latch_armed", "outcome", "rearm_record", "rearm_latency_ns", "error"])
        for n in nics {
            for e in n.events {
                c.add([n.name, n.path, "\(e.record)", "\(e.time)", context.wall(e.time) ?? "", "event", "", e.latchArmed ? "true" : "false", e.outcome,
                       e.rearmRecord.map { "\($0)" } ?? "", e.latency.map { "\($0)" } ?? "", ""])
            }
            for q in queries(of: n) {
                c.add([n.name, n.path, "\(q.record)", "\(q.time)", context.wall(q.time) ?? "", "query", q.name ?? "", "", q.outcome, "", "", q.error ?? ""])
            }
        }
        return c.string
    }
}
