import QMP
import Recording

/// `sessions`: VNC and SPICE client sessions (docs/QEMU-FACTS.md, "Other events": CONNECTED →
/// INITIALIZED → DISCONNECTED describe one client session keyed by the client's host and
/// port/service), with durations, authentication, and sessions that never completed.
///
/// A session open when QEMU itself closed the monitor ends there: QEMU exited and its
/// clients with it (docs/QEMU-FACTS.md, "Clients that a replay must satisfy": libvirt treats a
/// closed monitor as QEMU having died); such sessions are `ended-with-qemu`, not `open`.
public struct SessionsAnalysis: Analysis {
    public static let name = "sessions"
    public static let summary = "VNC and SPICE client sessions: connected → initialised → disconnected, durations, auth, incomplete ones"
    public static let clock = AnalysisClock.receive
    public static let interest = Interest(events: [
        "VNC_CONNECTED", "VNC_INITIALIZED", "VNC_DISCONNECTED", "SPICE_CONNECTED", "SPICE_INITIALIZED", "SPICE_DISCONNECTED",
    ], closes: true)

    public struct Session: Sendable, Hashable {
        public var protocolName: String
        public var host: String
        public var service: String
        public var family: String?
        public var auth: String?
        public var user: String?
        public var connectedRecord: Int?
        public var connected: Int64?
        public var initializedRecord: Int?
        public var initialized: Int64?
        public var disconnectedRecord: Int?
        public var disconnected: Int64?
        /// SPICE channels initialised in this connection.
        public var channels = 0
        /// QEMU closed the monitor (exited) while the session was open; `disconnected` is then
        /// the time of that close.
        public var endedWithQEMU = false

        /// `complete`, `open` (still connected at the end), `never-initialized`
        /// (disconnected before the handshake finished), `started-before` (no CONNECTED seen).
        public var state: String {
            if endedWithQEMU { return "ended-with-qemu" }
            if connected == nil { return "started-before" }
            if initialized == nil && disconnected != nil { return "never-initialized" }
            if disconnected == nil { return "open" }
            return "complete"
        }
        var firstRecord: Int { connectedRecord ?? initializedRecord ?? disconnectedRecord ?? 0 }
        var firstTime: Int64 { connected ?? initialized ?? disconnected ?? 0 }
    }

    let context: AnalysisContext
    var sessions: [Session] = []
    /// Sessions not yet disconnected, by protocol, host and service.
    var open: [String: Int] = [:]

    public init(context: AnalysisContext) { self.context = context }

    public mutating func consume(_ input: AnalysisInput) {
        if case .close(let record, let time, _, _) = input {
            // Only QEMU's side closing means QEMU went away (a client reconnecting does not).
            guard case .close(let by, _)? = try? context.recording.record(at: record).body, by == "qemu" else { return }
            for (_, k) in open where sessions[k].disconnected == nil {
                sessions[k].endedWithQEMU = true
                sessions[k].disconnected = time
                sessions[k].disconnectedRecord = record
            }
            open.removeAll()
            return
        }
        guard case .event(let e) = input else { return }
        let proto = e.name.hasPrefix("VNC") ? "vnc" : "spice"
        // One lookup of each object, then its members (VNC: service; SPICE: port).
        let client = e.view.object("data", "client")
        let host = client?.string("host") ?? "?"
        let service = client?.string("service") ?? client?.string("port") ?? "?"
        let key = proto + " " + host + " " + service
        var k = open[key]
        if e.name.hasSuffix("_CONNECTED") || k == nil {
            // The same client address again without a disconnect in between starts a new
            // session; the old one stays open (its disconnect was not recorded).
            sessions.append(Session(protocolName: proto, host: host, service: service))
            k = sessions.count - 1
            open[key] = k
        }
        let i = k!
        if sessions[i].family == nil { sessions[i].family = client?.string("family") }
        if let a = e.view.object("data", "server")?.string("auth") { sessions[i].auth = a }
        if let u = client?.string("sasl_username") ?? client?.string("x509_dname") { sessions[i].user = u }
        switch e.name {
        case "VNC_CONNECTED", "SPICE_CONNECTED":
            sessions[i].connected = e.time
            sessions[i].connectedRecord = e.record
        case "VNC_INITIALIZED", "SPICE_INITIALIZED":
            if sessions[i].initialized == nil {
                sessions[i].initialized = e.time
                sessions[i].initializedRecord = e.record
            }
            sessions[i].channels += 1
        default:
            open[key] = nil
            sessions[i].disconnected = e.time
            sessions[i].disconnectedRecord = e.record
        }
    }

    public func finish() -> SessionsResult { SessionsResult(context: context, sessions: sessions) }
}

public struct SessionsResult: StreamedJSONResult {
    public let context: AnalysisContext
    public let sessions: [SessionsAnalysis.Session]

    func duration(_ s: SessionsAnalysis.Session) -> Int64 {
        (s.disconnected ?? context.rangeEnd) - (s.connected ?? context.rangeStart)
    }

    public var streamedMembers: [StreamedMember] {
        let sessions = self.sessions, context = self.context
        return [.array("sessions", count: sessions.count) { k in
            let s = sessions[k]
            var o = JSONObject()
            o["protocol"] = .string(s.protocolName)
            o["host"] = .string(s.host)
            o["service"] = .string(s.service)
            o["family"] = jopt(s.family)
            o["auth"] = jopt(s.auth)
            o["user"] = jopt(s.user)
            o["state"] = .string(s.state)
            o["connected_record"] = jopt(s.connectedRecord)
            o["connected_ns"] = jopt(s.connected)
            o["connected_wall"] = jopt(s.connected.flatMap { context.wall($0) })
            o["initialized_record"] = jopt(s.initializedRecord)
            o["initialized_ns"] = jopt(s.initialized)
            o["disconnected_record"] = jopt(s.disconnectedRecord)
            o["disconnected_ns"] = jopt(s.disconnected)
            o["duration_ns"] = .int(duration(s))
            o["handshake_ns"] = (s.connected != nil && s.initialized != nil) ? .int(s.initialized! - s.connected!) : .null
            if s.protocolName == "spice" { o["channels"] = .int(s.channels) }
            return .object(o)
        }]
    }

    public var findings: [AnalysisFinding] {
        sessions.compactMap { s in
            let client = "\(s.protocolName.uppercased()) client \(s.host):\(s.service)"
            // Grouped per protocol: client ports (and often hosts) differ for every session.
            let subject = s.protocolName.uppercased()
            switch s.state {
            case "never-initialized":
                return AnalysisFinding(.info, "sessions", "never-initialized",
                    "\(client) disconnected after \(DurationFormat.short(duration(s))) without finishing the handshake (auth \(s.auth ?? "?"))",
                    subject: subject, records: [s.connectedRecord, s.disconnectedRecord].compactMap { $0 }, time: s.firstTime)
            case "open":
                return AnalysisFinding(.info, "sessions", "open",
                    "\(client) still connected at the end (\(DurationFormat.short(duration(s))))",
                    subject: subject, records: [s.firstRecord], time: s.firstTime)
            case "started-before":
                return AnalysisFinding(.info, "sessions", "started-before",
                    "\(client) connected before the recording started",
                    subject: subject, records: [s.firstRecord], time: s.firstTime)
            default:
                return nil
            }
        }
    }

    /// The client host in a finding's message ("VNC client ::1:5901 still ..." -> "::1").
    static func host(ofClient message: String) -> String {
        let address = message.after(" client ").split(separator: " ").first ?? ""
        guard let colon = address.lastIndex(of: ":") else { return String(address) }
        return String(address[..<colon])
    }

    /// Per protocol: "VNC: 12 client sessions disconnected without finishing the handshake (3 client hosts)".
    public func describe(_ g: FindingGroup) -> String? {
        let hosts = g.distinct { f -> String in Self.host(ofClient: f.message) }
        let from = "from \(counted(hosts.count, "client host", "client hosts"))"
        switch g.code {
        case "never-initialized": return "\(g.subject): \(g.count) client sessions disconnected without finishing the handshake (\(from))"
        case "open": return "\(g.subject): \(g.count) client sessions still connected at the end (\(from))"
        case "started-before": return "\(g.subject): \(g.count) client sessions connected before the recording started (\(from))"
        default: return nil
        }
    }

    public func table(colors: Bool, width: Int) -> String {
        let st = TextStyle(colors)
        if sessions.isEmpty { return "  no VNC or SPICE sessions\n" }
        var t = TextTable(["protocol", "client", "auth", "connected", "handshake", "duration", "state", "records"])
        for s in sessions {
            let state = s.state == "complete" ? st.green(s.state) : st.yellow(s.state)
            t.row([s.protocolName, "\(s.host):\(s.service)", s.auth ?? "?" + (s.user.map { " (\($0))" } ?? ""),
                   s.connected.map { context.wallOrClock($0) } ?? "",
                   (s.connected != nil && s.initialized != nil) ? DurationFormat.short(s.initialized! - s.connected!) : "",
                   DurationFormat.short(duration(s)), state,
                   [s.connectedRecord, s.initializedRecord, s.disconnectedRecord].compactMap { $0 }.map { "#\($0)" }.joined(separator: " ")])
        }
        return t.render(colors: colors, width: width)
    }

    public func csv() -> String {
        var c = CSV(["protocol", "host", "service", "auth", "state", "connected_record", "connected_ns", "initialized_ns", "disconnected_ns", "duration_ns"])
        for s in sessions {
            c.add([s.protocolName, s.host, s.service, s.auth ?? "", s.state, s.connectedRecord.map { "\($0)" } ?? "",
                   s.connected.map { "\($0)" } ?? "", s.initialized.map { "\($0)" } ?? "", s.disconnected.map { "\($0)" } ?? "", "\(duration(s))"])
        }
        return c.string
    }
}
