import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import QMP
import Recording
import Testing

/// `qmpreplay analyze triage FILE --svg OUT.svg` and the shell's `plot triage`, through the
/// real binary: the incident's timeline written as SVG, findings numbered as in the table.
@Suite("qmpreplay analyze triage --svg, shell plot triage", .serialized)
struct TriageSVGCLITests {
    /// Collects the `data-number` of the finding flags and checks well-formedness.
    final class Flags: NSObject, XMLParserDelegate {
        var numbers: [String] = []
        var severities: [String] = []
        var lanes: [String] = []
        var ok = false

        init(_ data: Data) {
            super.init()
            let p = XMLParser(data: data)
            p.delegate = self
            // On Linux, parse() can return true after an error (an unclosed element).
            ok = p.parse() && p.parserError == nil && depth == 0
        }

        var depth = 0

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) { depth -= 1 }

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            depth += 1
            if attributes["class"] == "finding" {
                numbers.append(attributes["data-number"] ?? "?")
                severities.append(attributes["data-severity"] ?? "?")
            }
            if attributes["class"] == "lane" { lanes.append(attributes["data-lane"] ?? "?") }
        }
    }

    @Test("analyze triage --svg writes the timeline and exits 0; one flag per finding, in the JSON's order")
    func analyzeSVG() throws {
        let dir = CLI.tempDir()
        for name in ["lifecycle.qmprec", "synthetic-mixed.qmprec", "caps.qmprec", "vnc.qmprec"] {
            let file = "\(dir)/\(name).svg"
            let r = try CLI.run(["analyze", "triage", CLI.recording(name), "--svg", file])
            #expect(r.status == 0, "\(name): \(r.stderr)")
            #expect(r.out.contains("Findings, most important first"))
            let data = try #require(FileManager.default.contents(atPath: file), "\(name): no SVG written")
            let text = String(decoding: data, as: UTF8.self)
            #expect(text.hasPrefix("<?xml") && text.contains("<svg xmlns=\"http://www.w3.org/2000/svg\"") && text.hasSuffix("</svg>\n"))
            let flags = Flags(data)
            #expect(flags.ok, "\(name): not well-formed XML")
            let j = try JSONParser.parse(try CLI.run(["analyze", "triage", CLI.recording(name), "--format", "json"]).stdout)
            let findings = try #require(j["findings"]?.arrayValue)
            #expect(flags.numbers == findings.indices.map { "\($0 + 1)" }, "\(name)")
            #expect(flags.severities == findings.map { $0["severity"]!.stringValue! }, "\(name)")
            #expect(flags.lanes.last == "commands")
        }
        // lifecycle.qmprec: lifecycle and block lanes, nothing else.
        let lc = Flags(FileManager.default.contents(atPath: "\(dir)/lifecycle.qmprec.svg")!)
        #expect(lc.lanes == ["lifecycle", "block I/O and jobs", "commands"])
    }

    @Test("--svg is no longer refused for triage (64 only for analyses without a plot); --chart prints the timeline")
    func usage() throws {
        let dir = CLI.tempDir()
        let ok = try CLI.run(["analyze", "triage", CLI.recording("guest-balloon.qmprec"), "--svg", "\(dir)/t.svg", "--format", "json"])
        #expect(ok.status == 0 && ok.status != 64, "\(ok.stderr)")
        #expect(FileManager.default.fileExists(atPath: "\(dir)/t.svg"))
        let no = try CLI.run(["analyze", "sessions", CLI.recording("vnc.qmprec"), "--svg", "\(dir)/s.svg"])
        #expect(no.status == 64 && no.stderr.contains("plots: balloon, rtc, runstate, triage"))
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/s.svg"))
        let bad = try CLI.run(["analyze", "triage", CLI.recording("lifecycle.qmprec"), "--svg", "\(dir)/missing/dir/t.svg"])
        #expect(bad.status != 0 && bad.status != 64 && bad.stderr.contains("cannot write"))
        let chart = try CLI.run(["analyze", "triage", CLI.recording("lifecycle.qmprec"), "--chart"], env: ["COLUMNS": "100"])
        #expect(chart.status == 0, "\(chart.stderr)")
        #expect(chart.out.contains("run state") && chart.out.contains("BLOCK_IO_ERROR ×1") && chart.out.contains(" 1. error"))
    }

    @Test("shell: plot triage draws the timeline; plot triage --svg FILE writes it and says where; bad --svg is one line")
    func shell() throws {
        let dir = CLI.tempDir()
        let file = "\(dir)/incident.svg"
        let r = try CLI.run(["shell", CLI.recording("lifecycle.qmprec"), "-c", "plot triage; plot triage --svg \(file); plot runstate --svg \(dir)/rs.svg"],
                            env: ["COLUMNS": "100"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.out.contains("triage timeline — lifecycle.qmprec") && r.out.contains("STOP ×2"))
        #expect(r.out.contains("wrote the triage timeline (3 findings, numbered as in 'triage') to \(file)"))
        #expect(r.out.contains("wrote the runstate plot to \(dir)/rs.svg"))
        let flags = Flags(try #require(FileManager.default.contents(atPath: file)))
        #expect(flags.ok && flags.numbers == ["1", "2", "3"] && flags.severities == ["error", "info", "info"])
        #expect(FileManager.default.fileExists(atPath: "\(dir)/rs.svg"))

        let missing = try CLI.run(["shell", CLI.recording("lifecycle.qmprec"), "-c", "plot triage --svg"])
        #expect(missing.status == 1 && missing.stderr.contains("plot: --svg needs a file name"))
        let notPlot = try CLI.run(["shell", CLI.recording("lifecycle.qmprec"), "-c", "plot commands --svg \(dir)/c.svg"])
        #expect(notPlot.status == 1 && notPlot.stderr.contains("'commands' is not a series and has no plot"))
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/c.svg"))
    }
}
