import QMP
import Recording

/// One way a strict-mode client departed from the recorded command sequence.
///
/// Example: `{"kind": "unexpected", "sequence": 3, "received": {"execute": "balloon", ...},
/// "expected": {...}, "line": 9, "diff": [{"path": "arguments.value", ...}]}`.
public struct Divergence: Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The command matches no recorded command at this point or later.
        case unexpected
        /// The command is recorded, but later: the ones in between were skipped.
        case outOfOrder = "out-of-order"
        /// The session ended before the client sent these recorded commands.
        case missing
        /// A fault rule never fired in the session (`--strict` with fault rules).
        case ruleNeverFired = "rule-never-fired"
    }

    public var kind: Kind
    /// The client's n-th command (1-based); 0 for `missing`.
    public var sequence: Int
    public var received: JSONValue?
    /// The recorded command that was expected next (or the closest one), with its file line.
    public var expected: JSONValue?
    public var expectedLine: Int?
    public var diff: [JSONDiff.Difference]
    public var message: String

    public var description: String { message }

    public var json: JSONValue {
        var o = JSONObject()
        o["kind"] = .string(kind.rawValue)
        o["sequence"] = .int(sequence)
        if let r = received { o["received"] = r }
        if let e = expected { o["expected"] = e }
        if let l = expectedLine { o["line"] = .int(l) }
        o["diff"] = .array(diff.map(\.json))
        o["message"] = .string(message)
        return .object(o)
    }
}

/// What happened in one client session: the fidelity summary printed after it and written
/// to `--report`. The JSON schema is documented in docs/REPLAY.md.
public struct SessionReport: Sendable, CustomStringConvertible {
    public var client: Int
    public var peer: String
    public var connectedAtMicros: Int64
    public var durationNanos: Int64 = 0
    public var negotiated = false
    public var eventsSent = 0
    /// Of `eventsSent`, those released with a command's reply (causality) rather than the clock.
    public var eventsWithReplies = 0
    /// Scheduled releases' lateness in ns (clock releases at a finite speed only), measured at
    /// the server: the time the event's bytes were queued for the client minus the time it was
    /// due. What the client sees is later by the socket write and the client's own wake-up.
    public var lateness: [Int64] = []
    /// Where `lateness` is measured, as the report says it.
    public static let latenessMeasuredAt = "server, when the event was queued for the client (before the socket write)"
    /// Lateness of the last release minus that of the first: how far the replay drifted.
    public var driftNanos: Int64 = 0
    public var commandsReceived = 0
    public var commandsMatched = 0
    /// Matched, but beyond the recorded occurrences: the last recorded reply was repeated.
    public var commandsRepeated = 0
    public var commandsUnmatched = 0
    public var protocolErrors = 0
    public var bytesSent = 0
    public var closeReason = ""
    /// Why the server dropped the client, when it did.
    public var dropped: String?
    public var strict = false
    public var divergences: [Divergence] = []
    public var passes = 1
    /// Things the client should know about this session, e.g. why events were held back.
    public var notes: [String] = []
    /// The chaos schedule the client got (`ChaosSchedule.json`), when it got one.
    public var chaos: JSONValue?
    /// How often each fault rule fired, in rule order.
    public var faults: [FaultFiring] = []

    /// One fault rule's firings in a session.
    public struct FaultFiring: Sendable, Hashable {
        public var rule: String
        public var source: String
        public var fired: Int
    }

    public init(client: Int, peer: String, connectedAtMicros: Int64) {
        self.client = client; self.peer = peer; self.connectedAtMicros = connectedAtMicros
    }

    /// Percentile (0...1) of the lateness, in ns; 0 when there were no clock releases.
    public func latenessPercentile(_ p: Double) -> Int64 { SessionReport.percentile(lateness, p) }

    /// Nearest-rank percentile (0...1); 0 for no values.
    public static func percentile(_ xs: [Int64], _ p: Double) -> Int64 {
        guard !xs.isEmpty else { return 0 }
        let s = xs.sorted()
        return s[min(s.count - 1, max(0, Int((Double(s.count) * p).rounded(.up)) - 1))]
    }

    public var json: JSONValue {
        func us(_ ns: Int64) -> JSONValue { .number(JSONNumber(text: DurationFormat.fixed(Double(ns) / 1000, 1))) }
        var o = JSONObject()
        o["client"] = .int(client)
        o["peer"] = .string(peer)
        o["connected_at"] = .string(WallClock.iso8601(micros: connectedAtMicros))
        o["duration_s"] = .number(JSONNumber(text: DurationFormat.fixed(Double(durationNanos) / 1e9, 3)))
        o["negotiated"] = .bool(negotiated)
        o["events_sent"] = .int(eventsSent)
        o["events_with_replies"] = .int(eventsWithReplies)
        var l = JSONObject()
        l["count"] = .int(lateness.count)
        l["p50_us"] = us(latenessPercentile(0.5))
        l["p99_us"] = us(latenessPercentile(0.99))
        l["max_us"] = us(lateness.max() ?? 0)
        l["measured_at"] = .string(SessionReport.latenessMeasuredAt)
        o["lateness"] = .object(l)
        o["drift_us"] = us(driftNanos)
        var c = JSONObject()
        c["received"] = .int(commandsReceived)
        c["matched"] = .int(commandsMatched)
        c["repeated"] = .int(commandsRepeated)
        c["unmatched"] = .int(commandsUnmatched)
        o["commands"] = .object(c)
        o["protocol_errors"] = .int(protocolErrors)
        o["bytes_sent"] = .int(bytesSent)
        o["loop_passes"] = .int(passes)
        o["close_reason"] = .string(closeReason)
        o["dropped"] = dropped.map { .string($0) } ?? .null
        if !notes.isEmpty { o["notes"] = .array(notes.map { .string($0) }) }
        if let c = chaos { o["chaos"] = c }
        if !faults.isEmpty {
            o["faults"] = .array(faults.map { f in
                .object(JSONObject(["rule": .string(f.rule), "source": .string(f.source), "fired": .int(f.fired)]))
            })
        }
        if strict {
            o["strict"] = .object(JSONObject([
                "ok": .bool(divergences.isEmpty),
                "divergences": .array(divergences.map(\.json)),
            ]))
        }
        return .object(o)
    }

    /// The one-line summary for standard error.
    public var description: String {
        func ms(_ ns: Int64) -> String { DurationFormat.fixed(Double(ns) / 1e6, 2) + "ms" }
        var s = "client \(client) (\(peer)) \(dropped != nil ? "dropped" : "closed") after \(DurationFormat.fixed(Double(durationNanos) / 1e9, 2))s"
        if let d = dropped { s += " (\(d))" } else if !closeReason.isEmpty { s += " (\(closeReason))" }
        s += ": \(eventsSent) events sent"
        if eventsWithReplies > 0 { s += " (\(eventsWithReplies) with replies)" }
        if !lateness.isEmpty {
            s += ", lateness at the server p50 \(ms(latenessPercentile(0.5))) p99 \(ms(latenessPercentile(0.99))) max \(ms(lateness.max() ?? 0)), drift \(ms(driftNanos))"
        }
        s += "; commands \(commandsMatched) matched"
        if commandsRepeated > 0 { s += " (\(commandsRepeated) repeated)" }
        s += ", \(commandsUnmatched) unmatched"
        if protocolErrors > 0 { s += ", \(protocolErrors) protocol errors" }
        if !faults.isEmpty {
            s += "; fault rules fired: " + faults.map { "\($0.source) \($0.fired == 0 ? "never" : "\($0.fired)x")" }.joined(separator: ", ")
        }
        if strict { s += divergences.isEmpty ? "; strict: ok" : "; strict: \(divergences.count) divergence(s)" }
        if !notes.isEmpty { s += "; " + notes.joined(separator: "; ") }
        return s
    }
}
