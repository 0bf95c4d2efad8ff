import QMP
import Recording

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `triage` as a picture: one timeline of the incident (`qmpreplay analyze triage FILE --svg
/// OUT.svg`, the shell's `plot triage`).
///
/// From the top: the findings as numbered flags at their first occurrence (numbered as in
/// the triage table, coloured by severity; a group's flag carries a bar to its last
/// occurrence), the run-state band (from the runstate part of the result), every event in
/// lanes by topic (lifecycle, block I/O and jobs, balloon, RTC, network, devices, displays,
/// migration, other; one row per event name, lanes without events left out), the error
/// replies by command and error class with the commands sent as a thin density row, the
/// time axis (wall clock when the header gives the start; receive clock), and under it
/// the legends: run states, how markers read, and the findings as "1 error  10:00:07.887
/// runstate: ...".
///
/// Events and commands are read from the recording's index (kind, name, time), not by
/// decoding records; only error replies read their `id` to find the command they answer.
/// A row keeps counts in `bins` slots over the range, so memory does not grow with the
/// recording; rows with many markers are drawn as a density strip (bar height ∝ log count
/// per pixel column), sparse rows as diamonds with a count where several share a place.
struct TriageTimeline {
    /// Time slots per row (about 4 per pixel of the SVG's plot).
    static let bins = 4096
    /// Rows per lane before the rest are merged into one "+N more" row.
    static let rowsPerLane = 8

    struct Finding {
        var number: Int
        var severity: FindingSeverity
        var analysis: String
        var message: String
        var time: Int64
        var end: Int64
        var count: Int
    }

    struct Segment {
        var state: String
        var start: Int64
        var end: Int64
        var cause: String
    }

    struct Row {
        /// What the row shows: an event name, `query-balloon → DeviceNotActive`, `commands sent`, `+3 more`.
        var label: String
        /// The event name (event rows).
        var event: String?
        /// The command and error class (error rows; the command is `nil` when unknown).
        var command: String?
        var errorClass: String?
        /// Names folded into a "+N more" row.
        var names: [String] = []
        var color: String
        /// Drawn thin and grey (the commands sent).
        var thin = false
        var alarm = false
        /// Sort key within the lane (the catalogue order of `knownOrder`, else first appearance).
        var order: Int
        var firstTime: Int64
        var count = 0
        var counts: [Int32]
        var firstRecord: [Int32]

        init(label: String, color: String, order: Int, firstTime: Int64) {
            self.label = label; self.color = color; self.order = order; self.firstTime = firstTime
            counts = [Int32](repeating: 0, count: TriageTimeline.bins)
            firstRecord = [Int32](repeating: -1, count: TriageTimeline.bins)
        }

        mutating func add(bin: Int, record: Int) {
            count += 1
            counts[bin] &+= 1
            if firstRecord[bin] < 0 { firstRecord[bin] = Int32(truncatingIfNeeded: record) }
        }

        mutating func merge(_ other: Row) {
            count += other.count
            firstTime = min(firstTime, other.firstTime)
            for b in 0..<TriageTimeline.bins where other.counts[b] > 0 {
                counts[b] &+= other.counts[b]
                if firstRecord[b] < 0 || other.firstRecord[b] < firstRecord[b] { firstRecord[b] = other.firstRecord[b] }
            }
        }
    }

    struct Lane {
        var name: String
        var rows: [Row]
        var count: Int { rows.filter { !$0.thin }.reduce(0) { $0 + $1.count } }
    }

    let context: AnalysisContext
    let file: String
    let t0: Int64
    let t1: Int64
    let segments: [Segment]
    let lanes: [Lane]
    let findings: [Finding]

    // MARK: Lanes

    static let laneNames = ["lifecycle", "block I/O and jobs", "balloon", "RTC", "network", "devices", "displays",
                            "migration", "other", "commands"]
    static let commandsLane = 9
    static let laneColors = ["#444444", "#8c564b", "#1f77b4", "#9467bd", "#17a2b8", "#7f7f00", "#c2569b", "#e67e00",
                             "#7f7f7f", "#d62728"]

    /// The lane of an event name.
    static func lane(of name: String) -> Int {
        switch name {
        case "STOP", "RESUME", "RESET", "SHUTDOWN", "POWERDOWN", "WAKEUP", "GUEST_PANICKED", "GUEST_CRASHLOADED",
             "WATCHDOG":
            return 0
        case "JOB_STATUS_CHANGE", "QUORUM_FAILURE", "QUORUM_REPORT_BAD":
            return 1
        case "BALLOON_CHANGE": return 2
        case "RTC_CHANGE": return 3
        case "NIC_RX_FILTER_CHANGED", "FAILOVER_NEGOTIATED": return 4
        case "DEVICE_DELETED", "DEVICE_TRAY_MOVED", "DEVICE_UNPLUG_GUEST_ERROR", "ACPI_DEVICE_OST", "MEMORY_DEVICE_SIZE_CHANGE",
             "VSERPORT_CHANGE", "MEM_UNPLUG_ERROR":
            return 5
        case "MIGRATION", "MIGRATION_PASS": return 7
        default:
            if name.hasPrefix("SUSPEND") { return 0 }
            if name.hasPrefix("BLOCK_") { return 1 }
            if name.hasPrefix("NETDEV_STREAM_") { return 4 }
            if name.hasPrefix("VNC_") || name.hasPrefix("SPICE_") { return 6 }
            return 8
        }
    }

    /// Rows in this order within their lane; other names after them, by first appearance.
    static let knownOrder: [String: Int] = {
        let names = ["GUEST_PANICKED", "GUEST_CRASHLOADED", "WATCHDOG", "STOP", "RESUME", "RESET", "POWERDOWN", "SHUTDOWN",
                     "SUSPEND", "SUSPEND_DISK", "WAKEUP",
                     "BLOCK_IO_ERROR", "BLOCK_IMAGE_CORRUPTED", "BLOCK_JOB_ERROR", "BLOCK_WRITE_THRESHOLD", "JOB_STATUS_CHANGE",
                     "BLOCK_JOB_READY", "BLOCK_JOB_PENDING", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED",
                     "BALLOON_CHANGE", "RTC_CHANGE",
                     "NIC_RX_FILTER_CHANGED", "NETDEV_STREAM_CONNECTED", "NETDEV_STREAM_DISCONNECTED",
                     "DEVICE_UNPLUG_GUEST_ERROR", "DEVICE_DELETED", "DEVICE_TRAY_MOVED", "ACPI_DEVICE_OST",
                     "MEMORY_DEVICE_SIZE_CHANGE", "VSERPORT_CHANGE",
                     "VNC_CONNECTED", "VNC_INITIALIZED", "VNC_DISCONNECTED", "SPICE_CONNECTED", "SPICE_INITIALIZED",
                     "SPICE_DISCONNECTED", "SPICE_MIGRATE_COMPLETED",
                     "MIGRATION", "MIGRATION_PASS"]
        var d: [String: Int] = [:]
        for (k, n) in names.enumerated() { d[n] = k }
        return d
    }()

    /// Events that mean something went wrong: drawn red, never folded into "+N more".
    static let alarms: Set<String> = ["GUEST_PANICKED", "GUEST_CRASHLOADED", "WATCHDOG", "BLOCK_IO_ERROR", "BLOCK_IMAGE_CORRUPTED",
                                      "BLOCK_JOB_ERROR", "DEVICE_UNPLUG_GUEST_ERROR", "MEM_UNPLUG_ERROR", "QUORUM_FAILURE"]

    static func color(ofEvent name: String, lane: Int) -> String {
        if alarms.contains(name) { return "#d62728" }
        switch name {
        case "STOP": return "#ff7f0e"
        case "RESUME", "WAKEUP": return "#2ca02c"
        case "RESET": return "#1f77b4"
        case "SHUTDOWN", "POWERDOWN": return "#555555"
        default: return name.hasPrefix("SUSPEND") ? "#9467bd" : laneColors[lane]
        }
    }

    // MARK: Run states

    static let stateColors: [String: String] = [
        "running": "#2ca02c", "paused": "#ff7f0e", "suspended": "#9467bd", "shutdown": "#d62728",
        "panicked": "#1a1a1a", "unknown": "#d9d9d9",
    ]
    static let stateOrder = ["running", "paused", "suspended", "shutdown", "panicked", "unknown"]
    /// For states this renderer does not know (`prelaunch`, `inmigrate`, ...), in order of appearance.
    static let extraStateColors = ["#8c564b", "#e377c2", "#17becf", "#bcbd22", "#1f77b4", "#7f7f7f", "#393b79", "#637939"]

    /// Each state present, in a fixed order (known ones first), with its colour.
    var stateLegend: [(state: String, color: String)] {
        var present: [String] = []
        for s in segments where !present.contains(s.state) { present.append(s.state) }
        let known = Self.stateOrder.filter { present.contains($0) }
        let other = present.filter { Self.stateColors[$0] == nil }
        return known.map { ($0, Self.stateColors[$0]!) }
            + other.enumerated().map { ($0.element, Self.extraStateColors[$0.offset % Self.extraStateColors.count]) }
    }

    static func severityColor(_ s: FindingSeverity) -> String {
        switch s {
        case .error: return "#c62828"
        case .warning: return "#e69500"
        case .info: return "#1f6fb4"
        }
    }

    // MARK: Building

    init(context: AnalysisContext, file: String, t0: Int64, t1: Int64, segments: [Segment], lanes: [Lane], findings: [Finding]) {
        self.context = context; self.file = file; self.t0 = t0; self.t1 = max(t1, t0 + 1)
        self.segments = segments; self.lanes = lanes; self.findings = findings
    }

    init(_ result: TriageResult) {
        let ctx = result.context
        context = ctx
        file = ctx.recording.path.split(separator: "/").last.map(String.init) ?? ctx.recording.path
        t0 = ctx.rangeStart
        t1 = max(ctx.rangeEnd, ctx.rangeStart + 1)
        if let rs = result.parts.first(where: { $0.name == "runstate" })?.result as? RunstateResult {
            segments = rs.segments.map { Segment(state: $0.state, start: $0.start, end: $0.end, cause: $0.cause) }
        } else {
            segments = []
        }
        findings = result.groupedFindings.enumerated().map { n, f in
            Finding(number: n + 1, severity: f.severity, analysis: f.analysis, message: f.message, time: f.time,
                    end: max(f.end, f.time), count: f.count)
        }
        lanes = Self.scan(ctx, t0: t0, t1: t1)
    }

    func bin(_ t: Int64) -> Int { Self.bin(t, t0, t1) }

    static func bin(_ t: Int64, _ t0: Int64, _ t1: Int64) -> Int {
        let f = Double(t - t0) / Double(max(t1 - t0, 1))
        return min(bins - 1, max(0, Int(f * Double(bins))))
    }

    /// One pass over the range: events into their lane's rows, error replies (paired with
    /// the command they answer) and commands into the commands lane. Records go through
    /// `InputDriver`, the analyses' own pairing of replies and recognition of event copies on
    /// several monitors, so the picture counts what the analyses count; it reads kinds,
    /// names and times from the index and only ids (and QEMU timestamps of events) from the
    /// records.
    static func scan(_ ctx: AnalysisContext, t0: Int64, t1: Int64) -> [Lane] {
        let r = ctx.recording
        var rows: [[Row]] = Array(repeating: [], count: laneNames.count)
        var eventSlot: [String: Int] = [:]
        var errorSlot: [String: Int] = [:]
        var sentRow = -1
        let interest = Interest(events: Array(r.names.dropFirst()), allCommands: true, errorReplies: true)
        let selection = Selection(recording: r, interests: [(1, interest)])
        var driver = InputDriver()

        for i in ctx.firstRecord..<ctx.endRecord {
            driver.step(r, i, selection) { _, input in
                switch input {
                case .event(let ev):
                    let name = ev.name.isEmpty ? "?" : ev.name
                    let s: Int
                    if let found = eventSlot[name] {
                        s = found
                    } else {
                        let lane = Self.lane(of: name)
                        var row = Row(label: name, color: color(ofEvent: name, lane: lane),
                                      order: knownOrder[name] ?? 10_000 + rows[lane].count, firstTime: ev.time)
                        row.event = name
                        row.alarm = alarms.contains(name)
                        rows[lane].append(row)
                        s = lane << 16 | (rows[lane].count - 1)
                        eventSlot[name] = s
                    }
                    rows[s >> 16][s & 0xFFFF].add(bin: bin(ev.time, t0, t1), record: ev.record)
                case .command(let c):
                    if sentRow < 0 {
                        var row = Row(label: "commands sent", color: "#8a8a8a", order: -1, firstTime: c.time)
                        row.thin = true
                        rows[commandsLane].append(row)
                        sentRow = rows[commandsLane].count - 1
                    }
                    rows[commandsLane][sentRow].add(bin: bin(c.time, t0, t1), record: c.record)
                case .reply(let reply):
                    guard let cls = reply.errorClass else { return }
                    let cmd = reply.command
                    let command: String? = cmd.name.isEmpty ? nil : cmd.name
                    // An empty name with a record: QEMU answered a line that was not a command.
                    let label = command.map { "\($0) → \(cls)" } ?? (cmd.record >= 0 ? "\(cls) (not a command)" : cls)
                    let s: Int
                    if let found = errorSlot[label] {
                        s = found
                    } else {
                        var row = Row(label: label, color: "#d62728", order: 10_000 + rows[commandsLane].count, firstTime: reply.time)
                        row.command = command
                        row.errorClass = cls
                        row.alarm = true
                        rows[commandsLane].append(row)
                        s = rows[commandsLane].count - 1
                        errorSlot[label] = s
                    }
                    rows[commandsLane][s].add(bin: bin(reply.time, t0, t1), record: reply.record)
                default:
                    break
                }
            }
        }

        var lanes: [Lane] = []
        for (k, var list) in rows.enumerated() where !list.isEmpty {
            let thin = list.filter(\.thin)
            list.removeAll(where: \.thin)
            let cap = rowsPerLane - thin.count
            if list.count > cap {
                // Keep the alarms and the known names first; fold the rest into one row.
                let byPriority = list.sorted { ($0.alarm ? 0 : 1, $0.order, $0.firstTime) < ($1.alarm ? 0 : 1, $1.order, $1.firstTime) }
                var kept = Array(byPriority.prefix(cap - 1))
                let rest = byPriority.dropFirst(cap - 1)
                var more = Row(label: "", color: laneColors[k], order: Int.max, firstTime: rest.first!.firstTime)
                for r in rest { more.merge(r); more.names.append(r.label) }
                more.label = "+\(rest.count) more (\(k == commandsLane ? "errors" : "events"))"
                kept.append(more)
                list = kept
            }
            list.sort { ($0.order, $0.firstTime) < ($1.order, $1.firstTime) }
            if list.isEmpty && thin.allSatisfy({ $0.count == 0 }) { continue }
            lanes.append(Lane(name: laneNames[k], rows: thin + list))
        }
        return lanes
    }

    // MARK: Text

    /// Wall clock of t = 0 (µs since the epoch) when the header gives one; importers without
    /// times write 0 (1970-01-01), which is no start time either.
    var startMicros: Int64? { context.startMicros.flatMap { $0 > 0 ? $0 : nil } }

    /// `10:00:07.887` (wall clock) or `+00:00:07.887`.
    func timeText(_ t: Int64, digits: Int = 3) -> String {
        if let s = startMicros { return WallClock.timeOfDay(micros: s.addingSaturating(t / 1000), fractionDigits: digits) }
        let c = DurationFormat.clock(t)
        return digits == 0 ? String(c.dropLast(4)) : c
    }

    /// An axis label: `10:00:05`, `10:00:05.250`; over 20 hours of wall clock, with the date
    /// (`11-21 00:00`), so that days are told apart.
    func tickLabel(_ t: Int64, step: Int64) -> String {
        if let s = startMicros, t1 - t0 >= 72_000_000_000_000 {
            let iso = WallClock.iso8601(micros: s.addingSaturating(t / 1000), fractionDigits: 0)   // 2025-11-21T00:00:00Z
            let chars = Array(iso)
            guard chars.count >= 16 else { return iso }
            return String(chars[5..<10]) + " " + String(chars[11..<16])
        }
        return timeText(t, digits: step < 1_000_000_000 ? 3 : 0)
    }

    var axisTitle: String {
        (startMicros != nil ? "time of day (UTC)" : "time since start") + ", receive clock"
    }

    /// Axis ticks at round times: of the wall clock when there is one (10:00:05, not 5 s after
    /// a start at 10:00:00.414), else since the start.
    func ticks(count: Int) -> [Int64] {
        let offset = startMicros.map { ($0 % 86_400_000_000) * 1000 } ?? 0
        return TimePlot.timeTicks(t0 + offset, t1 + offset, count: count).map { $0 - offset }
    }

    var severitySummary: String {
        FindingSeverity.allCases.map { sev in
            let n = findings.filter { $0.severity == sev }.count
            return "\(n) \(sev.rawValue)\(n == 1 || sev == .info ? "" : "s")"
        }.joined(separator: ", ")
    }

    // MARK: SVG

    /// The band in `pixels` columns: per column the state with the most time in it, runs of
    /// one state merged (with how many segments started in the run).
    func bandColumns(pixels: Int) -> [(state: String, from: Int, to: Int, start: Int64, end: Int64, changes: Int)] {
        var out: [(state: String, from: Int, to: Int, start: Int64, end: Int64, changes: Int)] = []
        var k = 0
        let span = Double(t1 - t0)
        for c in 0..<pixels {
            let a = t0 + Int64(Double(c) / Double(pixels) * span), b = t0 + Int64(Double(c + 1) / Double(pixels) * span)
            while k < segments.count - 1, segments[k].end <= a { k += 1 }
            var time: [String: Int64] = [:]
            var changes = 0
            var j = k
            while j < segments.count, segments[j].start < b || j == k {
                let s = segments[j]
                time[s.state, default: 0] += max(0, min(s.end, b) - max(s.start, a))
                if s.start >= a { changes += 1 }
                j += 1
            }
            let state = time.max { $0.value != $1.value ? $0.value < $1.value : $0.key > $1.key }?.key ?? segments[k].state
            if let last = out.last, last.state == state, last.to == c {
                out[out.count - 1].to = c + 1
                out[out.count - 1].end = b
                out[out.count - 1].changes += changes
            } else {
                out.append((state, c, c + 1, a, b, changes))
            }
        }
        return out
    }

    /// Pixel columns of a row: (column, count, first record), columns of the plot's width.
    func columns(_ row: Row, width: Int) -> [(col: Int, count: Int, first: Int)] {
        var out: [(col: Int, count: Int, first: Int)] = []
        let scale = Double(width) / Double(Self.bins)
        for b in 0..<Self.bins where row.counts[b] > 0 {
            let c = min(width - 1, Int((Double(b) + 0.5) * scale))
            let first = Int(row.firstRecord[b])
            if let last = out.last, last.col == c {
                out[out.count - 1].count += Int(row.counts[b])
                out[out.count - 1].first = min(last.first, first)
            } else {
                out.append((c, Int(row.counts[b]), first))
            }
        }
        return out
    }

    /// Numbered flags drawn at most (the legend lists as many); more findings become pins.
    static let flagLimit = 40

    /// Where the numbered flags go, in rank order (the most important first, so they get the
    /// top rows): per finding its row and head's left edge, or `nil` when it found no place
    /// within `maxShift` px of its time in `maxRows` rows (it is then drawn as a pin). A
    /// finding's bar to its last occurrence (`end`) keeps its row free up to there when
    /// that is possible.
    static func placeFlags(_ xs: [(x: Double, w: Double, end: Double)], left: Double, right: Double,
                           maxRows: Int = 5, maxShift: Double = 24) -> (places: [(row: Int, left: Double)?], rowCount: Int) {
        // Per row, the heads' and the bars' extents: a head may sit on another's bar (it is
        // drawn over it) but never on another head.
        var heads: [[(lo: Double, hi: Double)]] = []
        var bars: [[(lo: Double, hi: Double)]] = []
        var out: [(row: Int, left: Double)?] = []
        var offsets: [Double] = [0]
        var d = 3.0
        while d <= maxShift { offsets += [d, -d]; d += 3 }
        func free(_ list: [[(lo: Double, hi: Double)]], _ r: Int, _ lo: Double, _ hi: Double) -> Bool {
            r >= list.count || !list[r].contains { $0.lo < hi + 3 && lo < $0.hi + 3 }
        }
        for item in xs {
            let want = min(max(item.x - item.w / 2, left), right - item.w)
            var found: (row: Int, left: Double, withSpan: Bool)?
            search: for withSpan in [true, false] {
                for off in offsets {
                    let l = min(max(want + off, left), right - item.w)
                    let hi = max(l + item.w, item.end)
                    for r in 0..<maxRows where free(heads, r, l, withSpan ? hi : l + item.w) && (!withSpan || free(bars, r, l, hi)) {
                        found = (r, l, withSpan)
                        break search
                    }
                }
            }
            guard let f = found else { out.append(nil); continue }
            while heads.count <= f.row { heads.append([]); bars.append([]) }
            heads[f.row].append((f.left, f.left + item.w))
            if item.end > f.left + item.w { bars[f.row].append((f.left, item.end)) }
            out.append((f.row, f.left))
        }
        return (out, heads.count)
    }

    func svg(width: Int = 1280) -> String {
        let W = Double(width)
        let margin = 16.0
        // The label column as wide as the longest row label needs (within limits).
        let labelFont = 10.5
        let labelCW = SVGText.monoWidth(1, fontSize: labelFont)
        let longest = lanes.flatMap(\.rows).map { $0.label.count + " ×\($0.count)".count }.max() ?? 10
        let plotLeft = min(max(margin + 12 + Double(longest) * labelCW + 10, 200), (W * 0.3).rounded())
        let plotRight = W - 28
        let pw = plotRight - plotLeft
        let pwInt = max(1, Int(pw))
        func x(_ t: Int64) -> Double { plotLeft + Double(min(max(t, t0), t1) - t0) / Double(t1 - t0) * pw }
        func f(_ v: Double) -> String { fmt(v, 1) }
        let e = SVGText.escape
        var body = ""

        // Title and the line under it.
        var y = 26.0
        body += "<text x=\"\(f(margin))\" y=\"\(f(y))\" font-size=\"17\" font-weight=\"bold\">\(e("Triage timeline — " + file))</text>\n"
        y += 18
        var sub = findings.isEmpty ? "no findings" : "\(findings.count) finding\(findings.count == 1 ? "" : "s"): \(severitySummary)"
        sub += " · records #\(context.firstRecord)..#\(max(context.firstRecord, context.endRecord - 1))"
        if let s = startMicros {
            sub += " · " + WallClock.iso8601(micros: s.addingSaturating(t0 / 1000), fractionDigits: 3) + " to "
                + WallClock.iso8601(micros: s.addingSaturating(t1 / 1000), fractionDigits: 3)
        } else {
            sub += " · " + DurationFormat.clock(t0) + " to " + DurationFormat.clock(t1) + " (no start time in the header)"
        }
        if let q = context.recording.header?.qemuVersion { sub += " · QEMU \(q)" }
        sub += " · receive clock"
        body += "<text x=\"\(f(margin))\" y=\"\(f(y))\" font-size=\"12\" fill=\"#555\">\(e(SVGText.truncate(sub, toWidth: W - 2 * margin, fontSize: 12)))</text>\n"
        y += 12

        // Flags: placed now, drawn after the lanes (their poles cross them).
        let flagFont = 11.0
        let flagH = 16.0, flagPitch = 20.0
        let heads = findings.prefix(Self.flagLimit).map {
            (x: x($0.time), w: 8 + SVGText.monoWidth("\($0.number)".count, fontSize: flagFont) + 2, end: x($0.end))
        }
        let placed = Self.placeFlags(Array(heads), left: plotLeft - 6, right: W - 4)
        // Findings without a flag (beyond the limit, or no room near their time): pins.
        let pinned = findings.indices.filter { $0 >= placed.places.count || placed.places[$0] == nil }
        let flagTop = y
        if !findings.isEmpty {
            body += "<text x=\"\(f(plotLeft - 16))\" y=\"\(f(flagTop + 12))\" text-anchor=\"end\" font-size=\"12\" font-weight=\"bold\" fill=\"#333\">findings</text>\n"
        }
        y += Double(placed.rowCount) * flagPitch + (findings.isEmpty ? 0 : 6)
        let pinY = y
        if !pinned.isEmpty { y += 10 }
        let flagBottom = y

        // Run-state band.
        let bandY = y, bandH = 22.0
        let stateColor = Dictionary(stateLegend.map { ($0.state, $0.color) }, uniquingKeysWith: { a, _ in a })
        body += "<text x=\"\(f(plotLeft - 8))\" y=\"\(f(bandY + 15))\" text-anchor=\"end\" font-size=\"12\" font-weight=\"bold\" fill=\"#333\">run state</text>\n"
        body += "<g class=\"runstate\">\n"
        if segments.isEmpty {
            body += "<rect x=\"\(f(plotLeft))\" y=\"\(f(bandY))\" width=\"\(f(pw))\" height=\"\(f(bandH))\" fill=\"#f2f2f2\" stroke=\"#ccc\"/>\n"
            body += "<text x=\"\(f(plotLeft + 6))\" y=\"\(f(bandY + 15))\" font-size=\"11\" fill=\"#777\">no run-state result</text>\n"
        }
        if segments.count <= 1500 {
            for s in segments {
                let x0 = x(s.start), x1 = x(max(s.end, s.start))
                let c = stateColor[s.state] ?? "#999999"
                body += "<rect class=\"state\" data-state=\"\(e(s.state))\" x=\"\(f(x0))\" y=\"\(f(bandY))\" width=\"\(f(max(x1 - x0, 0.8)))\" height=\"\(f(bandH))\" fill=\"\(c)\">"
                body += "<title>\(e("\(s.state) from \(timeText(s.start)) for \(DurationFormat.short(s.end - s.start)): \(s.cause)"))</title></rect>\n"
            }
        } else {
            // Thousands of changes: per pixel column the state the VM spent most of it in,
            // columns of one state merged.
            for run in bandColumns(pixels: pwInt) {
                let c = stateColor[run.state] ?? "#999999"
                body += "<rect class=\"state\" data-state=\"\(e(run.state))\" x=\"\(f(plotLeft + Double(run.from)))\" y=\"\(f(bandY))\" width=\"\(f(Double(run.to - run.from)))\" height=\"\(f(bandH))\" fill=\"\(c)\">"
                body += "<title>\(e("mostly \(run.state) from \(timeText(run.start)) to \(timeText(run.end)) (\(run.changes) state change\(run.changes == 1 ? "" : "s"))"))</title></rect>\n"
            }
        }
        body += "</g>\n"
        y = bandY + bandH + 8

        // Lanes.
        let rowH = 15.0, headerH = 16.0
        let labelChars = Int((plotLeft - 8 - margin - 12) / labelCW)
        var denseShown = false
        var lanesSVG = ""
        for (k, lane) in lanes.enumerated() {
            let laneTop = y
            let laneH = headerH + Double(lane.rows.count) * rowH + 4
            if k % 2 == 0 {
                lanesSVG += "<rect x=\"\(f(margin / 2))\" y=\"\(f(laneTop))\" width=\"\(f(W - margin))\" height=\"\(f(laneH))\" fill=\"#f6f6f6\"/>\n"
            }
            lanesSVG += "<g class=\"lane\" data-lane=\"\(e(lane.name))\">\n"
            let total = lane.name == "commands" ? lane.rows.filter { !$0.thin }.reduce(0) { $0 + $1.count } : lane.count
            let what = lane.name == "commands" ? "error repl\(total == 1 ? "y" : "ies")" : "event\(total == 1 ? "" : "s")"
            lanesSVG += "<text xml:space=\"preserve\" x=\"\(f(margin))\" y=\"\(f(laneTop + 12))\" font-size=\"12\" font-weight=\"bold\" fill=\"#222\">\(e(lane.name))<tspan font-weight=\"normal\" fill=\"#666\"> · \(total) \(what)</tspan></text>\n"
            y += headerH
            for row in lane.rows {
                let countText = " ×\(row.count)"
                let name = SVGText.truncate(row.label, toCharacters: max(6, labelChars - countText.count))
                var attrs = "class=\"row\" data-count=\"\(row.count)\""
                if let ev = row.event { attrs += " data-event=\"\(e(ev))\"" }
                if let c = row.command { attrs += " data-command=\"\(e(c))\"" }
                if let c = row.errorClass { attrs += " data-error-class=\"\(e(c))\"" }
                if row.thin { attrs += " data-commands-sent=\"true\"" }
                lanesSVG += "<g \(attrs)>\n"
                let labelTitle = row.names.isEmpty ? "" : "<title>\(e(row.names.joined(separator: ", ")))</title>"
                lanesSVG += "<text xml:space=\"preserve\" x=\"\(f(plotLeft - 8))\" y=\"\(f(y + 11))\" text-anchor=\"end\" font-family=\"monospace\" font-size=\"\(f(labelFont))\" fill=\"\(row.alarm ? "#b71c1c" : "#333")\">\(labelTitle)\(e(name))<tspan fill=\"#777\">\(e(countText))</tspan></text>\n"
                lanesSVG += "<line x1=\"\(f(plotLeft))\" y1=\"\(f(y + rowH / 2))\" x2=\"\(f(plotRight))\" y2=\"\(f(y + rowH / 2))\" stroke=\"#e2e2e2\" stroke-width=\"1\"/>\n"
                let cols = columns(row, width: pwInt)
                let dense = row.thin || cols.count > pwInt / 14
                let what = row.event ?? row.label
                if dense {
                    denseShown = denseShown || !row.thin
                    // A density strip: one bar per pixel column, its height ∝ log(1 + count) so
                    // that one event and a thousand both show, drawn as one path (a dense row
                    // of a million-record recording stays a few kilobytes).
                    let maxN = cols.map(\.count).max() ?? 1
                    let base = y + rowH - 1.5
                    var d = ""
                    for c in cols {
                        let h = (row.thin ? rowH - 6 : rowH - 3) * (0.3 + 0.7 * log(1 + Double(c.count)) / log(1 + Double(max(maxN, 1))))
                        d += "M\(f(plotLeft + Double(c.col))),\(f(base))v-\(f(h))h1.5v\(f(h))z"
                    }
                    let first = cols.map(\.first).filter { $0 >= 0 }.min() ?? 0
                    let tip = "\(what): \(row.count) in \(cols.count) pixel column\(cols.count == 1 ? "" : "s"), up to \(maxN) in one; the first at \(timeText(context.recording.time(min(first, context.recording.count - 1)))) (#\(first))"
                    lanesSVG += "<path class=\"density\" data-count=\"\(row.count)\" data-columns=\"\(cols.count)\" d=\"\(d)\" fill=\"\(row.color)\"><title>\(e(tip))</title></path>\n"
                } else {
                    // Diamonds; markers closer than 6 px merge into one with a count.
                    var groups: [(col: Int, count: Int, first: Int, last: Int)] = []
                    for c in cols {
                        if let g = groups.last, c.col - g.last < 6 {
                            groups[groups.count - 1].count += c.count
                            groups[groups.count - 1].last = c.col
                        } else {
                            groups.append((c.col, c.count, c.first, c.col))
                        }
                    }
                    let cy = y + rowH / 2
                    for (gi, g) in groups.enumerated() {
                        let cx = plotLeft + Double(g.col) + 0.5
                        let when = timeText(context.recording.time(max(0, min(g.first, context.recording.count - 1))))
                        let tip = g.count == 1 ? "\(what) at \(when) (#\(g.first))" : "\(what) ×\(g.count) from \(when) (first #\(g.first))"
                        lanesSVG += "<path class=\"marker\" data-count=\"\(g.count)\" d=\"M\(f(cx)),\(f(cy - 5.5)) L\(f(cx + 4.5)),\(f(cy)) L\(f(cx)),\(f(cy + 5.5)) L\(f(cx - 4.5)),\(f(cy)) Z\" fill=\"\(row.color)\" stroke=\"white\" stroke-width=\"0.8\"><title>\(e(tip))</title></path>\n"
                        if g.count > 1 {
                            let label = "\(g.count)"
                            let lw = SVGText.width(label, fontSize: 9) + 2
                            let next = gi + 1 < groups.count ? plotLeft + Double(groups[gi + 1].col) - 6 : W - 2
                            if cx + 6 + lw <= next {
                                lanesSVG += "<text x=\"\(f(cx + 6))\" y=\"\(f(cy + 3.5))\" font-size=\"9\" fill=\"#333\">\(label)</text>\n"
                            }
                        }
                    }
                }
                lanesSVG += "</g>\n"
                y += rowH
            }
            lanesSVG += "</g>\n"
            y = laneTop + laneH + 2
        }
        if lanes.isEmpty {
            lanesSVG += "<text x=\"\(f(plotLeft + 6))\" y=\"\(f(y + 12))\" font-size=\"11\" fill=\"#777\">no events or commands in the range</text>\n"
            y += 18
        }
        let axisY = y + 2

        // Grid lines behind everything drawn after the band.
        let ticks = self.ticks(count: max(2, Int(pw / 130)))
        let step = ticks.count > 1 ? ticks[1] - ticks[0] : max(t1 - t0, 1)
        var grid = "<g stroke=\"#e4e4e4\" stroke-width=\"1\">\n"
        for t in ticks { grid += "<line x1=\"\(f(x(t)))\" y1=\"\(f(bandY + bandH))\" x2=\"\(f(x(t)))\" y2=\"\(f(axisY))\"/>\n" }
        grid += "</g>\n"
        body += grid + lanesSVG

        // Axis.
        body += "<g class=\"axis\" fill=\"#333\">\n"
        body += "<line x1=\"\(f(plotLeft))\" y1=\"\(f(axisY))\" x2=\"\(f(plotRight))\" y2=\"\(f(axisY))\" stroke=\"#333\"/>\n"
        for t in ticks {
            body += "<line x1=\"\(f(x(t)))\" y1=\"\(f(axisY))\" x2=\"\(f(x(t)))\" y2=\"\(f(axisY + 4))\" stroke=\"#333\"/>"
            body += "<text x=\"\(f(x(t)))\" y=\"\(f(axisY + 17))\" text-anchor=\"middle\" font-size=\"11.5\">\(e(tickLabel(t, step: step)))</text>\n"
        }
        body += "<text x=\"\(f(plotLeft + pw / 2))\" y=\"\(f(axisY + 35))\" text-anchor=\"middle\" font-size=\"12\">\(e(axisTitle))</text>\n"
        body += "</g>\n"

        // Flags: poles down to the axis, a bar to the last occurrence, the numbered head.
        if !findings.isEmpty {
            var poles = "<g class=\"poles\" fill=\"none\" stroke-width=\"1\" stroke-opacity=\"0.55\" stroke-dasharray=\"3 2\">\n"
            var spans = "<g class=\"spans\" stroke-width=\"3\" stroke-opacity=\"0.45\">\n"
            var flags = ""
            for (k, fnd) in findings.enumerated() {
                let c = Self.severityColor(fnd.severity)
                let xt = x(fnd.time)
                let tip = "\(fnd.number). \(fnd.severity.rawValue) at \(timeText(fnd.time))\(fnd.end > fnd.time ? " to \(timeText(fnd.end))" : ""): \(fnd.analysis): \(fnd.message)"
                guard k < placed.places.count, let place = placed.places[k] else {
                    // A pin: a small triangle over the band, the number in its tooltip.
                    flags += "<path class=\"finding-pin\" data-number=\"\(fnd.number)\" data-severity=\"\(fnd.severity.rawValue)\" d=\"M\(f(xt - 3.5)),\(f(pinY)) h7 l-3.5,7 z\" fill=\"\(c)\"><title>\(e(tip))</title></path>\n"
                    continue
                }
                let hx = place.left, hw = heads[k].w
                let hy = flagTop + Double(place.row) * flagPitch
                let hc = hx + hw / 2
                poles += "<path d=\"M\(f(hc)),\(f(hy + flagH)) L\(f(xt)),\(f(flagBottom - 2)) L\(f(xt)),\(f(axisY))\" stroke=\"\(c)\"/>\n"
                let xe = x(fnd.end)
                if xe - xt >= 2 {
                    let sy = hy + flagH / 2
                    spans += "<path d=\"M\(f(xt)),\(f(sy)) H\(f(xe)) M\(f(xe)),\(f(sy - 4)) V\(f(sy + 4))\" stroke=\"\(c)\"/>\n"
                }
                flags += "<g class=\"finding\" data-number=\"\(fnd.number)\" data-severity=\"\(fnd.severity.rawValue)\"><title>\(e(tip))</title>"
                flags += "<rect x=\"\(f(hx))\" y=\"\(f(hy))\" width=\"\(f(hw))\" height=\"\(f(flagH))\" rx=\"3\" fill=\"\(c)\" stroke=\"white\" stroke-width=\"1\"/>"
                flags += "<text x=\"\(f(hc))\" y=\"\(f(hy + 12))\" text-anchor=\"middle\" font-family=\"monospace\" font-size=\"\(f(flagFont))\" font-weight=\"bold\" fill=\"\(fnd.severity == .warning ? "#222" : "white")\">\(fnd.number)</text></g>\n"
            }
            body += poles + "</g>\n" + spans + "</g>\n" + "<g class=\"flags\">\n" + flags + "</g>\n"
        }

        // Legends under the axis.
        y = axisY + 56
        var legend = "<g class=\"legend\" fill=\"#333\">\n"
        // Run states.
        let states = stateLegend
        if !states.isEmpty {
            let heading = "run state:"
            let hw = SVGText.width(heading, fontSize: 12) + 10
            let labels = states.map(\.state)
            let lay = TimePlot.layoutLegend(labels, width: W - 2 * margin - hw)
            legend += "<text x=\"\(f(margin))\" y=\"\(f(y + 11))\" font-weight=\"bold\">\(heading)</text>\n"
            for (k, s) in states.enumerated() {
                let lx = margin + hw + lay.positions[k].x, ly = y + lay.positions[k].y
                legend += "<g class=\"state-key\" data-state=\"\(e(s.state))\"><rect x=\"\(f(lx))\" y=\"\(f(ly + 2))\" width=\"12\" height=\"10\" fill=\"\(s.color)\" stroke=\"#888\" stroke-width=\"0.5\"/><text x=\"\(f(lx + 16))\" y=\"\(f(ly + 11))\">\(e(labels[k]))</text></g>\n"
            }
            y += Double(lay.rows) * 16 + 6
        }
        // How to read the markers.
        var keys: [(String, String)] = [("◆", "an event (a number beside it: that many within a few pixels)")]
        if denseShown || lanes.contains(where: { $0.rows.contains(where: \.thin) }) {
            keys.append(("▮", "many events: bar height grows with the count per pixel (log scale)"))
        }
        if !findings.isEmpty { keys.append(("■", "finding, numbered as in the triage table; colour = severity, bar = first to last occurrence")) }
        if !pinned.isEmpty { keys.append(("▼", "\(pinned.count) more finding\(pinned.count == 1 ? "" : "s") without room for a flag (number and text in the tooltip)")) }
        let keyText = keys.map { "\($0.0) \($0.1)" }.joined(separator: "   ")
        let keyLines = FindingsTable.wrap(keyText, width: max(20, Int((W - 2 * margin) / (0.62 * 11))))
        for line in keyLines {
            legend += "<text x=\"\(f(margin))\" y=\"\(f(y + 11))\" font-size=\"11\" fill=\"#555\">\(e(line))</text>\n"
            y += 15
        }
        // Findings, as in the triage table.
        if !findings.isEmpty {
            y += 8
            legend += "<text x=\"\(f(margin))\" y=\"\(f(y + 12))\" font-size=\"13\" font-weight=\"bold\">Findings, most important first (numbered as in the triage table)</text>\n"
            y += 20
            let font = 11.0, lineH = 14.5
            let cw = SVGText.monoWidth(1, fontSize: font)
            let numW = "\(findings.count)".count
            let times = findings.map { timeText($0.time) }
            let timeW = times.map(\.count).max() ?? 12
            let textCol = numW + 10 + timeW + 2
            let chars = max(30, Int((W - 2 * margin) / cw) - textCol)
            for (k, fnd) in findings.prefix(Self.flagLimit).enumerated() {
                let c = Self.severityColor(fnd.severity)
                var lines = FindingsTable.wrap("\(fnd.analysis): \(fnd.message)", width: chars)
                if lines.count > 2 {
                    lines = [lines[0], SVGText.truncate(lines[1...].joined(separator: " "), toCharacters: chars)]
                }
                lines = lines.map { SVGText.truncate($0, toCharacters: chars) }
                legend += "<g class=\"finding-legend\" data-number=\"\(fnd.number)\" font-family=\"monospace\" font-size=\"\(f(font))\">"
                legend += "<text x=\"\(f(margin + Double(numW) * cw))\" y=\"\(f(y + 11))\" text-anchor=\"end\" font-weight=\"bold\" fill=\"\(c)\">\(fnd.number)</text>"
                legend += "<text x=\"\(f(margin + Double(numW + 1) * cw))\" y=\"\(f(y + 11))\" font-weight=\"bold\" fill=\"\(c)\">\(fnd.severity.rawValue)</text>"
                legend += "<text x=\"\(f(margin + Double(numW + 10) * cw))\" y=\"\(f(y + 11))\" fill=\"#555\">\(e(times[k]))</text>"
                for (li, line) in lines.enumerated() {
                    legend += "<text x=\"\(f(margin + Double(textCol) * cw))\" y=\"\(f(y + 11 + Double(li) * lineH))\" fill=\"#222\">\(e(line))</text>"
                }
                legend += "</g>\n"
                y += Double(lines.count) * lineH + 3
            }
            if findings.count > Self.flagLimit {
                let more = findings.count - Self.flagLimit
                legend += "<text x=\"\(f(margin))\" y=\"\(f(y + 11))\" font-size=\"11.5\" fill=\"#555\">\(e("… \(more) more finding\(more == 1 ? "" : "s") (\(Self.flagLimit + 1) to \(findings.count)): the triage table lists them all"))</text>\n"
                y += 16
            }
        }
        legend += "</g>\n"
        body += legend
        let H = Int((y + 14).rounded(.up))
        return """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(H)" viewBox="0 0 \(width) \(H)" font-family="sans-serif" font-size="12">
        <title>\(e("Triage timeline — " + file))</title>
        <rect x="0" y="0" width="\(width)" height="\(H)" fill="white"/>

        """ + body + "</svg>\n"
    }

    // MARK: Terminal

    /// The same timeline in a terminal: findings' numbers, the run-state band, one line per
    /// event row (`•` one event, `2`–`9` that many, `#` ten or more in one column), the
    /// time range, then the findings one line each.
    func terminal(width: Int) -> String {
        let labelW = min(36, max(12, width / 3))
        let cols = max(10, width - labelW - 2)
        func pad(_ s: String) -> String {
            let t = SVGText.truncate(s, toCharacters: labelW)
            return t + String(repeating: " ", count: max(0, labelW - t.count)) + " │"
        }
        func col(_ t: Int64) -> Int { min(cols - 1, max(0, Int(Double(min(max(t, t0), t1) - t0) / Double(t1 - t0) * Double(cols)))) }
        var out = "triage timeline — \(file) (\(findings.isEmpty ? "no findings" : severitySummary); receive clock)\n"
        if !findings.isEmpty {
            var line = [Character](repeating: " ", count: cols)
            var hidden = 0
            for fnd in findings.sorted(by: { $0.time != $1.time ? $0.time < $1.time : $0.number < $1.number }) {
                let label = Array("\(fnd.number)")
                var c = col(fnd.time)
                if c + label.count > cols { c = cols - label.count }
                // The nearest free place to its column (a space on either side of a number).
                var placedAt: Int?
                for d in 0..<cols {
                    for k in (d == 0 ? [c] : [c + d, c - d]) where k >= 0 && k + label.count <= cols {
                        let lo = max(0, k - 1), hi = min(cols - 1, k + label.count)
                        if (lo...hi).allSatisfy({ line[$0] == " " }) { placedAt = k; break }
                    }
                    if placedAt != nil || d > 12 { break }
                }
                if let p = placedAt { for (j, ch) in label.enumerated() { line[p + j] = ch } } else { hidden += 1 }
            }
            out += pad("findings") + String(line) + "\n"
            if hidden > 0 { out += pad("") + "(\(hidden) more numbers did not fit)\n" }
        }
        // Band.
        var band = ""
        var k = 0
        let glyph: [String: Character] = ["running": "█", "paused": "▒", "suspended": "░", "shutdown": "▁", "panicked": "✖", "unknown": "·"]
        for c in 0..<cols {
            let t = t0 + Int64((Double(c) + 0.5) / Double(cols) * Double(t1 - t0))
            while k + 1 < segments.count, segments[k].end <= t { k += 1 }
            band.append(segments.isEmpty ? " " : glyph[segments[k].state] ?? "?")
        }
        out += pad("run state") + band + "\n"
        for lane in lanes {
            out += SVGText.truncate(lane.name, toCharacters: labelW) + String(repeating: " ", count: max(0, labelW - lane.name.count)) + " │\n"
            for row in lane.rows {
                var line = [Character](repeating: " ", count: cols)
                var n = [Int](repeating: 0, count: cols)
                for c in columns(row, width: cols) { n[c.col] += c.count }
                for c in 0..<cols where n[c] > 0 { line[c] = n[c] == 1 ? "•" : n[c] < 10 ? Character("\(n[c])") : "#" }
                let countText = " ×\(row.count)"
                out += pad(" " + SVGText.truncate(row.label, toCharacters: max(4, labelW - 1 - countText.count)) + countText) + String(line) + "\n"
            }
        }
        let a = timeText(t0), b = timeText(t1)
        out += String(repeating: " ", count: labelW + 1) + "└" + String(repeating: "─", count: cols) + "\n"
        out += String(repeating: " ", count: labelW + 2) + a + String(repeating: " ", count: max(1, cols - a.count - b.count)) + b + "\n"
        var key = " █ running  ▒ paused  ░ suspended  ▁ shutdown  ✖ panicked  · unknown"
        let extra = stateLegend.map(\.state).filter { glyph[$0] == nil }
        if !extra.isEmpty { key += "  ? " + extra.joined(separator: ", ") }
        let marks = " • one event, 2-9 that many, # ten or more per column (\(axisTitle))"
        let pieces = key.count + 2 + marks.count <= width ? [key + "  " + marks] : [key, marks]
        for piece in pieces {
            for line in FindingsTable.wrap(String(piece.dropFirst()), width: max(20, width - 1)) { out += " " + line + "\n" }
        }
        for fnd in findings {
            let head = "\(fnd.number).".padded("\(findings.count).".count) + " " + fnd.severity.rawValue.padded(7) + " " + timeText(fnd.time) + "  "
            out += " " + head + SVGText.truncate("\(fnd.analysis): \(fnd.message)", toCharacters: max(10, width - head.count - 2)) + "\n"
        }
        return out
    }
}

extension TriageResult {
    /// The incident as one picture: run state, every event in lanes, error replies, and the
    /// findings as numbered flags (numbered as in the table), as standalone SVG.
    public func svg() -> String? { TriageTimeline(self).svg() }

    /// The same timeline for a terminal (the shell's `plot triage`, `analyze triage --chart`).
    public func terminalChart(width: Int, height: Int) -> String? { TriageTimeline(self).terminal(width: width) }
}
