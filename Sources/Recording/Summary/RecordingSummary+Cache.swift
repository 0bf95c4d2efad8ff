import QMP

/// The `info` summary kept with the persistent index (docs/INDEX.md): the parts that need
/// the file's bytes (counts by name, connections, QEMU timestamps) are computed once, stored
/// as the `--json` document plus the two receive times it does not show, and read back on
/// the next `info` instead of touching every event again. Header, trailer, counts and
/// warnings always come from the index itself.
extension RecordingSummary {
    /// The summary from `r`'s cached index when it holds one, else computed and stored there.
    public static func of(_ r: Recording) -> RecordingSummary {
        if let stored = r.cachedSummary, let v = try? JSONParser.parse(stored), let s = RecordingSummary(cached: v, of: r) {
            return s
        }
        let s = RecordingSummary(r)
        if r.indexCache != nil { r.storeSummary(s.cacheForm.serializedBytes()) }
        return s
    }

    /// What is stored: the `--json` document and the receive times of the first and last
    /// timestamped event (the document shows only their difference).
    var cacheForm: JSONValue {
        guard case .object(var o) = json else { return json }
        o["schema"] = nil
        if let k = skew {
            o["cache_receive_first_ns"] = .int(k.firstReceive)
            o["cache_receive_last_ns"] = .int(k.lastReceive)
        }
        return .object(o)
    }

    /// Reads `cacheForm` back; nil when anything is missing (the summary is then computed).
    init?(cached v: JSONValue, of r: Recording) {
        guard let o = v.objectValue, o["records"]?.int64Value == Int64(r.count) else { return nil }
        func counts(_ key: String) -> [(String, Int)]? {
            guard let c = o[key]?.objectValue else { return nil }
            var out: [(String, Int)] = []
            for m in c {
                guard let n = m.value.int64Value else { return nil }
                out.append((m.key, Int(n)))
            }
            return out
        }
        guard let byDirection = counts("by_direction"), let byKind = counts("by_kind"), let events = counts("events"),
              let commands = counts("commands"), let errors = counts("errors"), let cs = o["connections"]?.arrayValue
        else { return nil }
        self.init(indexOf: r)
        self.byDirection = byDirection
        self.byKind = byKind
        self.events = events
        self.commands = commands
        self.errors = errors
        var conns: [Connection] = []
        for c in cs {
            guard let n = c["connection"]?.int64Value, let first = c["first_ns"]?.int64Value, let last = c["last_ns"]?.int64Value,
                  let count = c["records"]?.int64Value
            else { return nil }
            var x = Connection(number: UInt32(truncatingIfNeeded: n), firstTime: first)
            x.lastTime = last
            x.records = Int(count)
            x.peer = c["peer"]?.stringValue
            x.openedAt = c["opened_ns"]?.int64Value
            x.closedAt = c["closed_ns"]?.int64Value
            x.closedBy = c["closed_by"]?.stringValue
            x.closeReason = c["close_reason"]?.stringValue
            conns.append(x)
        }
        connections = conns
        if let k = o["qemu_timestamps"]?.objectValue {
            guard let events = k["events"]?.int64Value, let fq = k["qemu_first_us"]?.int64Value, let lq = k["qemu_last_us"]?.int64Value,
                  let mn = k["skew_min_us"]?.int64Value, let md = k["skew_median_us"]?.int64Value, let mx = k["skew_max_us"]?.int64Value,
                  let fr = o["cache_receive_first_ns"]?.int64Value, let lr = o["cache_receive_last_ns"]?.int64Value
            else { return nil }
            skew = Skew(events: Int(events), firstQEMUMicros: fq, lastQEMUMicros: lq, firstReceive: fr, lastReceive: lr,
                        minMicros: mn, medianMicros: md, maxMicros: mx)
        }
    }
}
