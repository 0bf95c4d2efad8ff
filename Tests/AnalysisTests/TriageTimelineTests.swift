import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import QMP
import Recording
import Testing
@testable import Analysis

/// An SVG document parsed with Foundation's XMLParser: parsing fails on anything that is not
/// well-formed XML (unescaped `<` or `&`, unbalanced tags, characters XML forbids).
final class SVGDocument: NSObject, XMLParserDelegate {
    struct Element {
        var name: String
        var attributes: [String: String]
        /// Classes of the enclosing elements, innermost last.
        var ancestors: [String]
        var text = ""
    }

    var elements: [Element] = []
    private var stack: [Int] = []
    var error: Error?

    init(_ text: String) {
        super.init()
        let p = XMLParser(data: Data(text.utf8))
        p.delegate = self
        // On Linux, parse() can return true after an error (an unclosed element): check the
        // error, and that every element was closed, too.
        let ok = p.parse()
        if !ok || p.parserError != nil || !stack.isEmpty || elements.isEmpty {
            error = p.parserError ?? NSError(domain: "xml", code: 1)
        }
    }

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        let ancestors = stack.compactMap { elements[$0].attributes["class"] }
        elements.append(Element(name: name, attributes: attributes, ancestors: ancestors))
        stack.append(elements.count - 1)
    }

    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        stack.removeLast()
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        for k in stack { elements[k].text += string }
    }

    func all(class c: String) -> [Element] { elements.filter { $0.attributes["class"] == c } }

    /// The marker elements (diamonds, or a row's density strip) inside the row group for `event`.
    func markers(event: String) -> [Element] {
        var out: [Element] = []
        var inside = false
        var depth = 0
        for e in elements {
            if e.attributes["class"] == "row" {
                inside = e.attributes["data-event"] == event
                depth = e.ancestors.count
                continue
            }
            if inside, e.ancestors.count <= depth { inside = false }
            if inside, e.attributes["class"] == "marker" || e.attributes["class"] == "density" { out.append(e) }
        }
        return out
    }

    func count(_ markers: [Element]) -> Int { markers.reduce(0) { $0 + Int($1.attributes["data-count"] ?? "0")! } }

    /// The first x coordinate of a marker (a rect's `x`, a path's first `M`).
    static func x(_ e: Element) -> Double? {
        if let x = e.attributes["x"] { return Double(x) }
        guard let d = e.attributes["d"], d.hasPrefix("M") else { return nil }
        return Double(d.dropFirst().prefix { $0 != "," })
    }
}

@Suite("triage timeline (SVG and terminal)")
struct TriageTimelineTests {
    /// A guest that panics three times (pause action: GUEST_PANICKED, then STOP), is
    /// resumed each time, plus failing commands with and without ids.
    static func panicky() throws -> Recording {
        var ss = Session()
        ss.event(s(1), "RESUME")
        for k in 0..<3 {
            let t = 10.0 + Double(k) * 20
            ss.event(s(t), "GUEST_PANICKED", "{\"action\": \"pause\", \"info\": {\"type\": \"hyper-v\"}}")
            ss.event(s(t + 0.001), "STOP")
            ss.command(s(t + 5), "cont", id: "\"c\(k)\"")
            ss.event(s(t + 5.001), "RESUME")
            ss.reply(s(t + 5.002), id: "\"c\(k)\"")
        }
        ss.command(s(70), "query-nope", id: "7")
        ss.error(s(70.001), "CommandNotFound", "The command query-nope has not been found", id: "7")
        ss.command(s(72), "device_del", "{\"id\": \"<disk&0>\"}")
        ss.error(s(72.5), "DeviceNotFound", "Device '<disk&0>' not found")
        ss.endTime = s(80)
        return try ss.open()
    }

    @Test("a guest that panicked three times: three panics, three STOPs, lanes only for what is there, error replies by command")
    func panics() throws {
        let rec = try Self.panicky()
        let report = try Analyses.run("triage", on: rec)
        let svg = try #require(report.svg())
        let doc = SVGDocument(svg)
        #expect(doc.error == nil, "not well-formed: \(String(describing: doc.error))")
        #expect(svg.hasPrefix("<?xml") && svg.hasSuffix("</svg>\n"))

        let panics = doc.markers(event: "GUEST_PANICKED")
        #expect(panics.count == 3 && doc.count(panics) == 3)
        let stops = doc.markers(event: "STOP")
        #expect(stops.count == 3 && doc.count(stops) == 3)
        #expect(doc.count(doc.markers(event: "RESUME")) == 4)
        // Markers are inside the plot, in time order.
        let xs = panics.compactMap(SVGDocument.x)
        #expect(xs.count == 3 && xs == xs.sorted() && xs.allSatisfy { $0 > 100 && $0 < 1280 })

        let lanes = doc.all(class: "lane").map { $0.attributes["data-lane"]! }
        #expect(lanes == ["lifecycle", "commands"])
        let rows = doc.all(class: "row")
        let errorRows = rows.filter { $0.attributes["data-error-class"] != nil }
        #expect(errorRows.map { $0.attributes["data-command"] ?? "?" } == ["query-nope", "device_del"])
        #expect(errorRows.map { $0.attributes["data-error-class"]! } == ["CommandNotFound", "DeviceNotFound"])
        #expect(rows.contains { $0.attributes["data-commands-sent"] == "true" && $0.attributes["data-count"] == "5" })
        #expect(doc.elements.contains { $0.name == "text" && $0.text.contains("device_del → DeviceNotFound") })

        // Wall clock axis, named clock.
        #expect(doc.elements.contains { $0.name == "text" && $0.text == "time of day (UTC), receive clock" })
        #expect(doc.elements.filter { $0.name == "text" && $0.ancestors.last == "axis" && $0.text.hasPrefix("08:00:") }.count >= 4)
    }

    @Test("one numbered flag per finding, numbered and coloured as in the triage table, and a legend line for each")
    func flags() throws {
        for name in ["synthetic-mixed.qmprec", "lifecycle.qmprec", "caps.qmprec"] {
            let report = try Analyses.run("triage", on: try Recording(path: Fixtures.recording(name)))
            let doc = SVGDocument(try #require(report.svg()))
            #expect(doc.error == nil, "\(name): \(String(describing: doc.error))")
            let findings = report.findings
            #expect(!findings.isEmpty)
            let flags = doc.all(class: "finding")
            #expect(flags.map { $0.attributes["data-number"]! } == findings.indices.map { "\($0 + 1)" }, "\(name)")
            #expect(flags.map { $0.attributes["data-severity"]! } == findings.map(\.severity.rawValue), "\(name)")
            for (flag, f) in zip(flags, findings) {
                #expect(flag.text.contains("\(f.analysis): \(f.message)"), "\(name): \(flag.text)")
            }
            let legend = doc.all(class: "finding-legend")
            #expect(legend.map { $0.attributes["data-number"]! } == findings.indices.map { "\($0 + 1)" })
            for (line, f) in zip(legend, findings) {
                #expect(line.text.contains(f.severity.rawValue) && line.text.contains("\(f.analysis): "))
            }
        }
    }

    @Test("every recording in Recordings/: well-formed, a flag per finding, a marker for every event (each panic, each STOP)")
    func allRecordings() throws {
        let dir = URL(fileURLWithPath: Fixtures.recording(""))
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".qmprec") }.sorted()
        #expect(files.count >= 10)
        for name in files {
            let rec = try Recording(path: dir.appendingPathComponent(name).path)
            let report = try Analyses.run("triage", on: rec)
            let doc = SVGDocument(try #require(report.svg()))
            #expect(doc.error == nil, "\(name): \(String(describing: doc.error))")
            let numbers = (doc.all(class: "finding") + doc.all(class: "finding-pin")).map { Int($0.attributes["data-number"]!)! }.sorted()
            #expect(numbers == (0..<report.findings.count).map { $0 + 1 }, "\(name)")
            var perName: [String: Int] = [:]
            var connections = Set<UInt32>()
            for i in 0..<rec.count where rec.kind(i) == .event {
                perName[rec.name(i) ?? "?", default: 0] += 1
                connections.insert(rec.connection(i))
            }
            for (event, n) in perName where ["GUEST_PANICKED", "STOP", "WATCHDOG", "BLOCK_IO_ERROR", "RESET", "SHUTDOWN"].contains(event) {
                let drawn = doc.count(doc.markers(event: event))
                // Copies of one event on several monitors are drawn once.
                if connections.count == 1 { #expect(drawn == n, "\(name): \(event)") } else { #expect(drawn >= 1 && drawn <= n, "\(name): \(event)") }
            }
            let lanes = doc.all(class: "lane").map { $0.attributes["data-lane"]! }
            #expect(lanes.contains("lifecycle") == perName.keys.contains { TriageTimeline.lane(of: $0) == 0 }, "\(name)")
        }
    }

    @Test("lanes only for events that are present; every run state in the band has a legend entry of its own colour")
    func lanesAndStates() throws {
        let report = try Analyses.run("triage", on: try Recording(path: Fixtures.recording("synthetic-mixed.qmprec")))
        let doc = SVGDocument(try #require(report.svg()))
        let lanes = doc.all(class: "lane").map { $0.attributes["data-lane"]! }
        #expect(lanes.contains("lifecycle") && lanes.contains("balloon") && lanes.contains("commands"))
        #expect(!lanes.contains("migration"))
        let rec = report.context.recording
        var perName: [String: Int] = [:]
        for i in 0..<rec.count where rec.kind(i) == .event { perName[rec.name(i)!, default: 0] += 1 }
        for (name, n) in perName where doc.all(class: "row").contains(where: { $0.attributes["data-event"] == name }) {
            #expect(doc.count(doc.markers(event: name)) == n, "\(name)")
        }
        // Every event is in some row ("+N more" rows included), once.
        let eventRows = doc.all(class: "row").filter { $0.attributes["data-commands-sent"] == nil && $0.attributes["data-error-class"] == nil }
        #expect(eventRows.reduce(0) { $0 + Int($1.attributes["data-count"]!)! } == perName.values.reduce(0, +))

        let bandStates = Set(doc.all(class: "state").map { $0.attributes["data-state"]! })
        let keys = doc.all(class: "state-key")
        #expect(Set(keys.map { $0.attributes["data-state"]! }) == bandStates)
        let fills = doc.all(class: "state").reduce(into: [String: String]()) { $0[$1.attributes["data-state"]!] = $1.attributes["fill"] }
        #expect(Set(fills.values).count == fills.count)
    }

    @Test("run states the renderer does not know get a colour and a legend entry; panicked is distinct")
    func states() throws {
        var ss = Session()
        ss.event(s(1), "RESUME")
        ss.endTime = s(10)
        let report = try Analyses.run("triage", on: try ss.open())
        let result = try #require(report.result as? TriageResult)
        var t = TriageTimeline(result)
        let known = ["running", "paused", "suspended", "shutdown", "panicked", "unknown"]
        #expect(Set(known.map { TriageTimeline.stateColors[$0]! }).count == known.count)
        t = TriageTimeline(context: t.context, file: "x<y>.qmprec", t0: 0, t1: s(10),
                           segments: [.init(state: "running", start: 0, end: s(2), cause: ""),
                                      .init(state: "panicked", start: s(2), end: s(4), cause: "GUEST_PANICKED"),
                                      .init(state: "inmigrate", start: s(4), end: s(6), cause: "query-status says inmigrate"),
                                      .init(state: "prelaunch & co", start: s(6), end: s(10), cause: "")],
                           lanes: t.lanes, findings: t.findings)
        let legend = t.stateLegend
        #expect(legend.map(\.state) == ["running", "panicked", "inmigrate", "prelaunch & co"])
        #expect(Set(legend.map(\.color)).count == 4)
        let doc = SVGDocument(t.svg())
        #expect(doc.error == nil)
        #expect(doc.all(class: "state-key").map { $0.attributes["data-state"]! } == legend.map(\.state))
        #expect(t.terminal(width: 120).contains("? inmigrate, prelaunch & co"))
    }

    @Test("dense rows: thousands of events become a density strip, at most one bar per pixel column, the count kept")
    func dense() throws {
        var ss = Session()
        for k in 0..<5000 {
            ss.event(s(Double(k) * 0.2), "BLOCK_IO_ERROR", "{\"device\": \"d0\", \"node-name\": \"n0\", \"operation\": \"write\", \"action\": \"report\", \"nospace\": false}")
        }
        ss.event(s(500), "GUEST_PANICKED", "{\"action\": \"pause\"}")
        ss.endTime = s(1000)
        let report = try Analyses.run("triage", on: try ss.open())
        let svg = try #require(report.svg())
        let doc = SVGDocument(svg)
        #expect(doc.error == nil)
        let strip = doc.markers(event: "BLOCK_IO_ERROR")
        #expect(strip.count == 1 && strip[0].attributes["class"] == "density")
        #expect(doc.count(strip) == 5000)
        // One bar per pixel column of the plot: hundreds, not thousands.
        let columns = Int(strip[0].attributes["data-columns"]!)!
        #expect(columns > 100 && columns <= 1100)
        #expect(strip[0].attributes["d"]!.components(separatedBy: "M").count - 1 == columns)
        #expect(doc.count(doc.markers(event: "GUEST_PANICKED")) == 1)
        #expect(svg.utf8.count < 200_000)
    }

    @Test("a range: markers only from it, on the axis; without a start time the axis is time since start")
    func range() throws {
        let rec = try Self.panicky()
        let report = try Analyses.run("triage", on: rec, from: s(20), to: s(45))
        let doc = SVGDocument(try #require(report.svg()))
        #expect(doc.count(doc.markers(event: "GUEST_PANICKED")) == 1)   // the one at 30 s
        let width = Double(doc.elements[0].attributes["width"]!)!
        #expect((doc.all(class: "marker") + doc.all(class: "density")).compactMap(SVGDocument.x).allSatisfy { $0 >= 0 && $0 <= width })

        let caps = try Analyses.run("triage", on: try Recording(path: Fixtures.recording("caps.qmprec")))
        let capsDoc = SVGDocument(try #require(caps.svg()))
        #expect(capsDoc.elements.contains { $0.name == "text" && $0.text == "time since start, receive clock" })
        #expect(capsDoc.all(class: "row").contains { $0.attributes["data-command"] == "query-balloon" && $0.attributes["data-error-class"] == "DeviceNotActive" })
    }

    @Test("text is escaped: XML specials and characters XML forbids")
    func escaping() {
        #expect(SVGText.escape("a<b & \"c\" 'd'>") == "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;")
        #expect(SVGText.escape("x\u{1}y\u{7F}z\tok") == "x\u{FFFD}y\u{FFFD}z\tok")
        #expect(SVGDocument("<svg><text>\(SVGText.escape("\u{0}\u{1B}[31m<&>"))</text></svg>").error == nil)
        // The checker does reject what is not well-formed.
        #expect(SVGDocument("<svg><g><text>x</text></svg>").error != nil)
        #expect(SVGDocument("<svg><text>a<b & c</text></svg>").error != nil)
        #expect(SVGDocument("<svg><text>\u{1B}</text></svg>").error != nil)
    }

    @Test("terminal: findings' numbers, the band, one line per event row, every line within the width")
    func terminal() throws {
        let report = try Analyses.run("triage", on: try Self.panicky())
        let chart = try #require(report.terminalChart(width: 90, height: 16))
        #expect(chart.contains("run state") && chart.contains("GUEST_PANICKED ×3") && chart.contains("STOP ×3"))
        let panicLine = try #require(chart.split(separator: "\n").first { $0.contains("GUEST_PANICKED ×3") })
        #expect(panicLine.filter { $0 == "•" }.count == 3)
        #expect(chart.split(separator: "\n").allSatisfy { $0.count <= 90 || $0.hasPrefix(" █ running") })
        for n in 1...report.findings.count { #expect(chart.contains(" \(n). ")) }
    }

    @Test("TimePlot legends: rows never wider than the plot, entries never overlapping, all above the plot")
    func timePlotLegend() throws {
        let labels = ["paused", "running", "shutdown", "suspended", "unknown", "run state", String(repeating: "long label ", count: 6)]
        let lay = TimePlot.layoutLegend(labels, width: 300)
        #expect(lay.rows >= 3)
        for (k, p) in lay.positions.enumerated() {
            let w = 16 + SVGText.width(labels[k], fontSize: 12)
            #expect(p.x == 0 || p.x + w <= 300)
            if k + 1 < lay.positions.count, lay.positions[k + 1].y == p.y { #expect(p.x + w < lay.positions[k + 1].x) }
        }
        let report = try Analyses.run("runstate", on: try Recording(path: Fixtures.recording("synthetic-mixed.qmprec")))
        let doc = SVGDocument(try #require(report.svg()))
        #expect(doc.error == nil)
        let legendTexts = doc.elements.filter { $0.name == "text" && $0.ancestors.last == "legend" }
        #expect(legendTexts.count >= 3)
        // The plot's top: the y axis line's upper end.
        let axis = try #require(doc.elements.first { $0.name == "line" && $0.attributes["x1"] == $0.attributes["x2"] && $0.attributes["x1"] == "90.0" })
        let plotTop = Double(axis.attributes["y1"]!)!
        #expect(legendTexts.allSatisfy { Double($0.attributes["y"]!)! < plotTop })
        // Band above the legend.
        let band = doc.elements.filter { $0.name == "rect" && $0.attributes["height"] == "26.0" }
        #expect(!band.isEmpty && band.allSatisfy { Double($0.attributes["y"]!)! + 26 < legendTexts.map { Double($0.attributes["y"]!)! - 12 }.min()! })
    }
}
