import QMP
import Recording

/// `throttle`: for QEMU's rate-limited events (docs/QEMU-FACTS.md, "Event throttling"; the table
/// is `EventCatalog`'s), whether deliveries respect one per second per key, and floods.
///
/// The first event for a key goes out at once and opens a 1 s window; later ones in the
/// window replace each other and the last goes out when it closes. So, by receive time,
/// deliveries for one key are never less than 1 s apart; a gap under 0.9 s is a violation
/// (an older QEMU, a proxy re-ordering, or an event that is not throttled there). A flood
/// is a stretch of deliveries at the 1 s cadence. QEMU timestamps of two deliveries can be
/// much closer than 1 s (the event was created early in the window): that is not a
/// violation. Deliveries the throttle held are counted as `possibly_merged`, by
/// `ThrottleRule` (the rule `balloon` and `rtc` use). Copies of one event on several
/// monitors are counted once (the throttle is global to QEMU).
///
/// Receive gaps are delivery gaps only when the recorder saw the deliveries: in recordings
/// imported from plain QMP lines (times are QEMU's event timestamps), libvirt `.replies`
/// or virsh output (`AnalysisContext.receiveTimesAreDeliveryTimes`, the test `commands`
/// uses for `latency_measured`), two events 0.3 s apart were *created* 0.3 s apart, which
/// the throttle allows; no violation is looked for there.
public struct ThrottleAnalysis: Analysis {
    public static let name = "throttle"
    public static let summary = "rate-limited events: one delivery per second per key respected or not, and floods at the 1 s cadence"
    public static let clock = AnalysisClock.receive
    public static let interest = Interest(events: EventCatalog.names.filter { EventCatalog.entry(for: $0)?.throttle != nil })

    /// Receive gaps under this are violations (when receive times are delivery times).
    static let minGap: Int64 = 900_000_000
    /// Receive gaps that continue a flood.
    static let cadence: ClosedRange<Int64> = 950_000_000...1_100_000_000
    static let floodMin = 10

    public struct Violation: Sendable, Hashable {
        public var record: Int
        public var previousRecord: Int
        public var time: Int64
        public var gap: Int64
    }

    public struct Flood: Sendable, Hashable {
        public var firstRecord: Int
        public var lastRecord: Int
        public var start: Int64
        public var end: Int64
        public var deliveries: Int
    }

    public struct Key: Sendable {
        public var event: String
        /// The throttle key: the event name, or `NAME|value` for keyed events.
        public var key: String
        public var deliveries = 0
        public var firstRecord: Int
        public var first: Int64
        public var lastRecord: Int
        public var last: Int64
        public var lastQemu: Int64?
        public var minGap: Int64?
        public var minQemuGap: Int64?
        /// Deliveries held by the throttle (`ThrottleRule`): they may stand for events it replaced.
        public var merged = 0
        public var violationCount = 0
        public var violations: [Violation] = []
        public var floods: [Flood] = []
        var run: (first: Int, start: Int64, count: Int)?
        var rule = ThrottleRule.Key(receiveIsDelivery: true)
    }

    let context: AnalysisContext
    /// Whether receive gaps are delivery gaps (violations are looked for only then).
    let measured: Bool
    var keys: [Key] = []
    var slots: [String: Int] = [:]
    var exempt = 0

    public init(context: AnalysisContext) {
        self.context = context
        measured = context.receiveTimesAreDeliveryTimes
    }

    func key(_ e: EventInput, _ t: Throttle) -> String? {
        for (member, value) in t.exemptWhen {
            if member == "action", e.view.string("data", "action") == value { return nil }
        }
        if t.keyPaths.isEmpty { return e.name }
        var parts: [String] = []
        for p in t.keyPaths {
            let v: JSONValue?
            switch p {
            case "qom-path": v = e.view.value("data", "qom-path")
            case "id": v = e.view.value("data", "id")
            case "node-name": v = e.view.value("data", "node-name")
            default: v = e.view.record().flatMap { r -> JSONValue? in
                if case .event(let ev)? = r.message?.body { return JSONValue.object(ev.data ?? JSONObject()).value(atPath: p) }
                return nil
            }
            }
            // No key member (BLOCK_IO_ERROR before qom-path existed): not throttled there.
            guard let v else { return nil }
            parts.append(v.serialized())
        }
        return e.name + "|" + parts.joined(separator: "|")
    }

    public mutating func consume(_ input: AnalysisInput) {
        guard case .event(let e) = input, let th = EventCatalog.entry(for: e.name)?.throttle else { return }
        guard let k = key(e, th) else { exempt += 1; return }
        let q = e.qemuMicros
        guard let slot = slots[k] else {
            var n = Key(event: e.name, key: k, firstRecord: e.record, first: e.time, lastRecord: e.record, last: e.time, lastQemu: q)
            n.deliveries = 1
            n.run = (e.record, e.time, 1)
            n.rule = ThrottleRule.Key(receiveIsDelivery: measured)
            _ = n.rule.deliver(Delivery(receive: e.time, qemuMicros: q))
            slots[k] = keys.count
            keys.append(n)
            return
        }
        Self.deliver(&keys[slot], e, q, measured: measured)
    }

    static func deliver(_ s: inout Key, _ e: EventInput, _ q: Int64?, measured: Bool) {
        let gap = e.time - s.last
        s.deliveries += 1
        s.minGap = min(s.minGap ?? gap, gap)
        if let q, let lq = s.lastQemu {
            // QEMU timestamps come from the file: any Int64, so the gap saturates.
            let g = q.subtractingSaturating(lq).multipliedSaturating(by: 1000)
            s.minQemuGap = min(s.minQemuGap ?? g, g)
        }
        if measured, gap < Self.minGap {
            s.violationCount += 1
            if s.violations.count < 100 { s.violations.append(Violation(record: e.record, previousRecord: s.lastRecord, time: e.time, gap: gap)) }
        }
        if s.rule.deliver(Delivery(receive: e.time, qemuMicros: q)) { s.merged += 1 }
        if Self.cadence.contains(gap) {
            if let r = s.run { s.run = (r.first, r.start, r.count + 1) } else { s.run = (s.lastRecord, s.last, 2) }
        } else {
            Self.closeRun(&s)
            s.run = (e.record, e.time, 1)
        }
        s.lastRecord = e.record
        s.last = e.time
        s.lastQemu = q
    }

    static func closeRun(_ s: inout Key) {
        if let r = s.run, r.count >= floodMin {
            s.floods.append(Flood(firstRecord: r.first, lastRecord: s.lastRecord, start: r.start, end: s.last, deliveries: r.count))
        }
        s.run = nil
    }

    public func finish() -> ThrottleResult {
        var list = keys
        for k in list.indices { Self.closeRun(&list[k]) }
        return ThrottleResult(context: context, keys: list, exempt: exempt, deliveryTimesMeasured: measured)
    }
}

public struct ThrottleResult: StreamedJSONResult {
    public let context: AnalysisContext
    public let keys: [ThrottleAnalysis.Key]
    /// Events exempt from throttling (BLOCK_IO_ERROR with action "stop", or no key member).
    public let exempt: Int
    /// Whether receive times are delivery times; when not, no violation is looked for.
    public let deliveryTimesMeasured: Bool

    public var streamedMembers: [StreamedMember] {
        let keys = self.keys, context = self.context, deliveryTimesMeasured = self.deliveryTimesMeasured
        return [
            .value("delivery_times_measured", .bool(deliveryTimesMeasured)),
            .objects("keys", count: keys.count) { n in
                let k = keys[n]
                var o = JSONObject()
                o["event"] = .string(k.event)
                o["key"] = .string(k.key)
                o["deliveries"] = .int(k.deliveries)
                o["first_record"] = .int(k.firstRecord)
                o["last_record"] = .int(k.lastRecord)
                o["min_gap_ns"] = jopt(k.minGap)
                o["min_qemu_gap_ns"] = jopt(k.minQemuGap)
                o["possibly_merged"] = .int(k.merged)
                o["respects_throttle"] = deliveryTimesMeasured ? .bool(k.violationCount == 0) : .null
                o["violation_count"] = deliveryTimesMeasured ? .int(k.violationCount) : .null
                return StreamedMember.values(o) + [.array("violations", count: k.violations.count) { i in
                    let v = k.violations[i]
                    var p = JSONObject(point: context, v.record, v.time)
                    p["previous_record"] = .int(v.previousRecord)
                    p["gap_ns"] = .int(v.gap)
                    return .object(p)
                }, .array("floods", count: k.floods.count) { i in
                    let f = k.floods[i]
                    var p = JSONObject()
                    p["first_record"] = .int(f.firstRecord)
                    p["last_record"] = .int(f.lastRecord)
                    p["start_ns"] = .int(f.start)
                    p["end_ns"] = .int(f.end)
                    p["start_wall"] = jopt(context.wall(f.start))
                    p["duration_ns"] = .int(f.end - f.start)
                    p["deliveries"] = .int(f.deliveries)
                    return .object(p)
                }]
            },
            .value("exempt", .int(exempt)),
        ]
    }

    public var findings: [AnalysisFinding] {
        var out: [AnalysisFinding] = []
        for k in keys {
            if k.violationCount > 0, let v = k.violations.first {
                out.append(AnalysisFinding(.warning, "throttle", "violation",
                    "\(k.key): \(k.violationCount) deliver\(k.violationCount == 1 ? "y" : "ies") less than 1 s after the previous one (min gap \(DurationFormat.short(k.minGap ?? 0))): not throttled as QEMU documents",
                    subject: k.key, records: k.violations.prefix(10).flatMap { [$0.previousRecord, $0.record] }.uniqued(), time: v.time,
                    weight: Double(k.violationCount)))
            }
            for f in k.floods {
                out.append(AnalysisFinding(.warning, "throttle", "flood",
                    "\(k.key) flood: \(f.deliveries) deliveries at the 1 s throttle cadence for \(DurationFormat.short(f.end - f.start)) (intermediate values lost)",
                    subject: k.key, records: [f.firstRecord, f.lastRecord], time: f.start, weight: Double(f.end - f.start) / 1e9,
                    value: Double(f.end - f.start) / 1e9))
            }
        }
        return out
    }

    /// "BALLOON_CHANGE: 20 floods at the 1 s throttle cadence, 3h10m in total (longest: ...)".
    public func describe(_ g: FindingGroup) -> String? {
        guard g.code == "flood" else { return nil }
        let l = g.largest
        return "\(g.subject): \(g.count) floods at the 1 s throttle cadence, \(seconds(g.totalValue)) in total (longest \(seconds(l.value ?? 0)), #\(l.records.first ?? 0))"
    }

    public func table(colors: Bool, width: Int) -> String {
        let st = TextStyle(colors)
        var s = ""
        if keys.isEmpty {
            s = "  no rate-limited events\n"
        } else {
            s = keysTable(st, colors: colors, width: width)
        }
        if !deliveryTimesMeasured {
            s += "  violations not looked for: this recording was imported from a format whose times are not delivery times\n"
        }
        if exempt > 0 { s += "\n  \(exempt) event\(exempt == 1 ? "" : "s") exempt from throttling (BLOCK_IO_ERROR action stop, or no key member)\n" }
        return s
    }

    func keysTable(_ st: TextStyle, colors: Bool, width: Int) -> String {
        var t = TextTable(["key", "deliveries", "min gap", "min QEMU gap", "held (merged?)", "violations", "floods"])
        for k in keys {
            let violations = !deliveryTimesMeasured ? "n/a" : k.violationCount > 0 ? st.red("\(k.violationCount)") : st.green("0")
            t.row([k.key, "\(k.deliveries)", k.minGap.map { DurationFormat.short($0) } ?? "", k.minQemuGap.map { DurationFormat.short($0) } ?? "",
                   "\(k.merged)", violations,
                   k.floods.map { "#\($0.firstRecord)..#\($0.lastRecord) (\($0.deliveries), \(DurationFormat.short($0.end - $0.start)))" }.joined(separator: ", ")])
        }
        var s = t.render(colors: colors, width: width)
        s += "\n  gaps by receive time; 'min QEMU gap' by QEMU's event timestamps (docs/QEMU-FACTS.md, \"Event throttling\");\n"
        s += "  'held': deliveries QEMU's throttle held to the end of a window, which may stand for events it replaced\n"
        return s
    }

    public func csv() -> String {
        var c = CSV(["event", "key", "deliveries", "min_gap_ns", "min_qemu_gap_ns", "possibly_merged", "violations", "floods"])
        for k in keys {
            c.add([k.event, k.key, "\(k.deliveries)", k.minGap.map { "\($0)" } ?? "", k.minQemuGap.map { "\($0)" } ?? "", "\(k.merged)",
                   deliveryTimesMeasured ? "\(k.violationCount)" : "", "\(k.floods.count)"])
        }
        return c.string
    }
}
