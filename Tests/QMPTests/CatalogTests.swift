import Foundation
import QMP
import Testing
import TestSupport

// MARK: - Reading the seed documents

/// One `- "name": description` entry of a "Data:" list.
struct DocMember: Sendable, CustomStringConvertible {
    var name: String
    /// `string`, `int`, `number`, `bool`, `object` from "(json-…", when the description gives one.
    var type: String?
    var optional: Bool
    /// Quoted values the description lists for a json-string member ("read" or "write", ...).
    var values: [String]
    var description_: String
    var children: [DocMember]

    var description: String { name }
}

/// One event section: a heading line followed by a line of dashes.
struct DocSection: Sendable {
    /// The heading's event names (`SPICE_CONNECTED, SPICE_DISCONNECTED` names two).
    var names: [String]
    /// `nil` when the section has no "Data:" line; empty for "Data: None.".
    var members: [DocMember]?
    var example: String?
    /// How many closing braces had to be appended to balance the example.
    var bracesAdded: Int
    var notes: String
}

struct SeedDocument: Sendable {
    var label: String
    var sections: [DocSection]

    var eventNames: [String] { sections.flatMap(\.names) }

    func section(for name: String) -> DocSection? { sections.first { $0.names.contains(name) } }
}

enum SeedDocuments {
    static let newerFile = "000_5d6fb442a800517d.txt"
    static let olderFile = "002_7feaaf30e3635ee6.txt"

    /// QMPREPLAY_SEEDS, else the folder `shared/seeds` in the parent of the package root (this file is
    /// `<package root>/Tests/QMPTests/CatalogTests.swift`).
    static var directory: URL {
        if let env = ProcessInfo.processInfo.environment["QMPREPLAY_SEEDS"], !env.isEmpty {
            return URL(fileURLWithPath: env, isDirectory: true)
        }
        return URL(fileURLWithPath: PackageRoot.sharedSeeds, isDirectory: true)
    }

    /// Both documents, parsed once. `nil` when the folder or a file is missing.
    static let loaded: (newer: SeedDocument, older: SeedDocument)? = {
        let dir = directory
        guard let newer = try? String(contentsOf: dir.appendingPathComponent(newerFile), encoding: .utf8),
              let older = try? String(contentsOf: dir.appendingPathComponent(olderFile), encoding: .utf8)
        else { return nil }
        return (SeedDocument(label: "newer", sections: parseSections(contentLines(newer))),
                SeedDocument(label: "older", sections: parseSections(contentLines(older))))
    }()

    /// The documents, or `nil` after reporting why not: under CI a missing folder is a
    /// failure; elsewhere the calling test is skipped (returns early) with a note.
    static func require(sourceLocation: SourceLocation = #_sourceLocation) -> (newer: SeedDocument, older: SeedDocument)? {
        if let loaded { return loaded }
        let message = "seed documents not found in \(directory.path) (set QMPREPLAY_SEEDS to the folder holding \(newerFile) and \(olderFile))"
        if ProcessInfo.processInfo.environment["CI"] != nil {
            Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
        } else {
            print("note: skipping: \(message)")
        }
        return nil
    }

    // MARK: Text layout

    /// The document's own text lines, whatever the web viewer did to them:
    /// - newer file: `N text` per line (blank lines left out), a few header lines without
    ///   numbers, and every space inside the text is a no-break space (U+00A0);
    /// - older file: header lines, a block of bare line numbers, then the text without numbers,
    ///   blank lines or indentation.
    static func contentLines(_ raw: String) -> [String] {
        let lines = raw.replacingOccurrences(of: "\u{00A0}", with: " ")
            .split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasSuffix("\r") ? String($0.dropLast()) : String($0) }
        func isBareNumber(_ s: String) -> Bool { !s.isEmpty && s.allSatisfy(\.isASCIIDigitCharacter) }

        // Web-viewer dump: a run of bare numbers 1, 2, 3, ... precedes the text.
        var i = 0
        while i < lines.count {
            if lines[i] == "1" {
                var j = i
                while j < lines.count, lines[j] == String(j - i + 1) { j += 1 }
                if j - i >= 5 { return Array(lines[j...]) }
            }
            i += 1
        }
        // Numbered lines: strip "N " (exactly one separator; the rest is indentation).
        return lines.compactMap { line in
            let digits = line.prefix(while: \.isASCIIDigitCharacter)
            guard !digits.isEmpty else { return nil }
            let rest = line.dropFirst(digits.count)
            if rest.isEmpty { return "" }
            guard rest.first == " " else { return nil }
            return String(rest.dropFirst())
        }
    }

    static func isHeading(_ lines: [String], _ i: Int) -> [String]? {
        guard i + 1 < lines.count else { return nil }
        let dashes = lines[i + 1].trimmingCharacters(in: .whitespaces)
        guard !dashes.isEmpty, dashes.allSatisfy({ $0 == "-" }) else { return nil }
        let names = lines[i].trimmingCharacters(in: .whitespaces).components(separatedBy: ", ")
        let isName: (String) -> Bool = { n in
            !n.isEmpty && n.first!.isUppercase && n.allSatisfy { $0.isUppercase || $0.isASCIIDigitCharacter || $0 == "_" }
        }
        return names.allSatisfy(isName) ? names : nil
    }

    static func parseSections(_ lines: [String]) -> [DocSection] {
        var starts: [(Int, [String])] = []
        for i in lines.indices {
            if let names = isHeading(lines, i) { starts.append((i, names)) }
        }
        var out: [DocSection] = []
        for (k, (start, names)) in starts.enumerated() {
            let end = k + 1 < starts.count ? starts[k + 1].0 : lines.count
            out.append(parseSection(names: names, body: Array(lines[(start + 2)..<end])))
        }
        return out
    }

    static func parseSection(names: [String], body: [String]) -> DocSection {
        let trimmed = body.map { $0.trimmingCharacters(in: .whitespaces) }
        var members: [DocMember]?
        var i = 0
        if let dataLine = trimmed.firstIndex(where: { $0.hasPrefix("Data:") }) {
            members = []
            i = dataLine + 1
            if trimmed[dataLine] != "Data:" {
                // "Data: None."
            } else {
                // (indent, member) in document order; descriptions may continue on later lines.
                var flat: [(indent: Int, member: DocMember)] = []
                while i < body.count {
                    let t = trimmed[i]
                    if t.hasPrefix("Example:") || t.hasPrefix("{") || t.hasPrefix("Note:") { break }
                    if t.hasPrefix("- \"") {
                        let indent = body[i].prefix(while: { $0 == " " }).count
                        let afterDash = t.dropFirst(3)
                        let name = String(afterDash.prefix(while: { $0 != "\"" }))
                        let desc = String(afterDash.dropFirst(name.count + 1).drop(while: { $0 == ":" || $0 == " " }))
                        flat.append((indent, DocMember(name: name, type: nil, optional: false, values: [], description_: desc, children: [])))
                    } else if !t.isEmpty, !flat.isEmpty {
                        flat[flat.count - 1].member.description_ += " " + t
                    }
                    i += 1
                }
                for j in flat.indices { analyse(&flat[j].member) }
                members = nest(flat)
            }
        }
        // The example: the `{ ... }` after "Example:" or directly after the data list.
        var example: String?
        var added = 0
        if let open = trimmed[i...].firstIndex(where: { $0.hasPrefix("{") }) {
            var text: [String] = []
            var depth = 0
            var inString = false
            var escaped = false
            var j = open
            scan: while j < body.count {
                if trimmed[j].hasPrefix("Note:") { break }
                text.append(body[j])
                for c in body[j] {
                    if inString {
                        if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { inString = false }
                    } else if c == "\"" {
                        inString = true
                    } else if c == "{" || c == "[" {
                        depth += 1
                    } else if c == "}" || c == "]" {
                        depth -= 1
                    }
                }
                j += 1
                if depth == 0 { break scan }
            }
            // Some examples in the newer document stop before their closing braces (the SPICE
            // ones end after the "client" line: the lines with "}}" are missing). The text is
            // otherwise complete, so the missing braces are appended to balance it.
            added = max(depth, 0)
            example = text.joined(separator: "\n") + String(repeating: "}", count: added)
        }
        let notes = trimmed.drop { !$0.hasPrefix("Note:") }.joined(separator: " ")
        return DocSection(names: names, members: members, example: example, bracesAdded: added, notes: notes)
    }

    /// Type, optionality and listed values from a member's description.
    static func analyse(_ m: inout DocMember) {
        let d = m.description_
        if let r = d.range(of: "(json-") {
            m.type = String(d[r.upperBound...].prefix(while: { $0.isLetter }))
        }
        m.optional = d.contains(", optional)")
        if m.type == "string" {
            let parts = d.components(separatedBy: "\"")
            // Odd parts are inside quotes.
            m.values = stride(from: 1, to: parts.count, by: 2).map { parts[$0] }
        }
    }

    /// Builds the member tree. The newer document indents nested members (`  - "host"`);
    /// the older one lost all indentation, so there a member that follows a json-object
    /// member belongs to it, until the next json-object member (this is how its only
    /// nested lists, VNC's server and client, are laid out).
    static func nest(_ flat: [(indent: Int, member: DocMember)]) -> [DocMember] {
        var out: [DocMember] = []
        let indented = flat.contains { $0.indent > 0 }
        var openObject = false
        for (indent, m) in flat {
            let nested = indented ? indent > 0 : (openObject && m.type != "object")
            if nested, !out.isEmpty {
                out[out.count - 1].children.append(m)
            } else {
                out.append(m)
                openObject = m.type == "object"
            }
        }
        return out
    }
}

private extension Character {
    var isASCIIDigitCharacter: Bool { isASCII && isNumber }
}

// MARK: - Helpers

/// The event an example describes, as QEMU would deliver it.
private func exampleEvent(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> Event? {
    let m = QMPMessage(text: text)
    guard case .event(let e) = m.body else {
        Issue.record("example is not an event: \(m.body)\n\(text)", sourceLocation: sourceLocation)
        return nil
    }
    return e
}

private func event(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> Event? {
    exampleEvent(text, sourceLocation: sourceLocation)
}

private func renamed(_ e: Event, _ name: String) -> Event? {
    // Event's memberwise initialiser is internal; rebuild through the message classifier.
    var o = JSONObject()
    if let ts = e.timestamp {
        o["timestamp"] = .object(JSONObject(["seconds": .int(ts.seconds), "microseconds": .int(ts.microseconds)]))
    }
    o["event"] = .string(name)
    if let d = e.data { o["data"] = .object(d) }
    guard case .event(let out) = QMPMessage.classify(.object(o)) else { return nil }
    return out
}

private func catalogMember(_ members: [CatalogMember]?, _ name: String) -> CatalogMember? {
    members?.first { $0.name == name }
}

private func catalogType(_ t: MemberType) -> String {
    switch t {
    case .string: return "string"
    case .int: return "int"
    case .number: return "number"
    case .bool: return "bool"
    case .object: return "object"
    case .any: return "any"
    }
}

private func nestedMembers(_ m: CatalogMember) -> [CatalogMember]? {
    if case .object(let inner) = m.type { return inner }
    return nil
}

/// The 26 events of the newer document, as the seeds README lists them.
let newerSeedEvents = [
    "BALLOON_CHANGE", "BLOCK_IMAGE_CORRUPTED", "BLOCK_IO_ERROR", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_COMPLETED",
    "BLOCK_JOB_ERROR", "BLOCK_JOB_READY", "DEVICE_DELETED", "DEVICE_TRAY_MOVED", "NIC_RX_FILTER_CHANGED", "RESET",
    "RESUME", "RTC_CHANGE", "SHUTDOWN", "SPICE_CONNECTED", "SPICE_DISCONNECTED", "SPICE_INITIALIZED", "STOP",
    "SUSPEND", "SUSPEND_DISK", "VNC_CONNECTED", "VNC_DISCONNECTED", "VNC_INITIALIZED", "WAKEUP", "WATCHDOG",
    "GUEST_PANICKED",
]

/// The older document's ten.
let olderSeedEvents = [
    "BLOCK_IO_ERROR", "RESET", "RESUME", "RTC_CHANGE", "SHUTDOWN", "STOP", "VNC_CONNECTED", "VNC_DISCONNECTED",
    "VNC_INITIALIZED", "WATCHDOG",
]

// MARK: - The catalog against the documents

@Suite("EventCatalog against the seed documents")
struct CatalogSeedTests {
    @Test("the documents parse into the expected sections")
    func documentsParse() throws {
        guard let docs = SeedDocuments.require() else { return }
        // 26 names in 25 sections (one heading names SPICE_CONNECTED and SPICE_DISCONNECTED).
        #expect(docs.newer.sections.count == 25)
        #expect(docs.newer.eventNames == newerSeedEvents)
        #expect(docs.newer.section(for: "SPICE_DISCONNECTED")?.names == ["SPICE_CONNECTED", "SPICE_DISCONNECTED"])
        #expect(docs.older.sections.count == 10)
        #expect(docs.older.eventNames == olderSeedEvents)
        for doc in [docs.newer, docs.older] {
            for s in doc.sections {
                #expect(s.members != nil, "\(doc.label) \(s.names): no Data: line found")
                #expect(s.example != nil, "\(doc.label) \(s.names): no example found")
            }
        }
        // Spot checks of the member parser, including continuation lines and nesting.
        let corrupted = docs.newer.section(for: "BLOCK_IMAGE_CORRUPTED")?.members
        #expect(corrupted?.map(\.name) == ["device", "msg", "offset", "size"])
        #expect(corrupted?.map(\.type) == ["string", "string", "int", "int"])
        let spice = docs.newer.section(for: "SPICE_INITIALIZED")?.members
        #expect(spice?.map(\.name) == ["server", "client"])
        #expect(spice?.first?.children.map(\.name) == ["host", "port", "family", "auth"])
        #expect(spice?.last?.children.map(\.name) == ["host", "port", "family", "connection-id", "channel-type", "channel-id", "tls"])
        for doc in [docs.newer, docs.older] {
            let vnc = doc.section(for: "VNC_DISCONNECTED")?.members
            #expect(vnc?.map(\.name) == ["server", "client"], "\(doc.label)")
            #expect(vnc?.first?.children.map(\.name) == ["host", "service", "family", "auth"], "\(doc.label)")
            #expect(vnc?.last?.children.map(\.name) == ["host", "service", "family", "x509_dname", "sasl_username"], "\(doc.label)")
            #expect(vnc?.last?.children.filter(\.optional).map(\.name) == ["x509_dname", "sasl_username"], "\(doc.label)")
            #expect(doc.section(for: "STOP")?.members?.isEmpty == true)
            #expect(doc.section(for: "WATCHDOG")?.members?.first?.values == ["reset", "shutdown", "poweroff", "pause", "debug", "none"])
        }
    }

    @Test("the newer document has exactly the 26 README events, all in the catalog")
    func eventNames() throws {
        guard let docs = SeedDocuments.require() else { return }
        let names = docs.newer.eventNames
        #expect(names.count == 26)
        #expect(Set(names).count == 26)
        #expect(Set(names) == Set(newerSeedEvents))
        for name in names {
            #expect(EventCatalog.entry(for: name) != nil, "\(name) is not in the catalog")
            #expect(EventCatalog.entry(for: name)?.sources.contains(.eventsDoc) == true, "\(name) does not cite the document")
        }
        // The list above is the README's; check it against the README itself when present.
        if let readme = try? String(contentsOf: SeedDocuments.directory.appendingPathComponent("README.md"), encoding: .utf8),
           let r = readme.range(of: "26 events:") {
            let listed = readme[r.upperBound...].prefix { $0 != "." }
                .components(separatedBy: ",")
                .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            #expect(listed == newerSeedEvents)
        }
        #expect(Set(EventCatalog.seedEventNames) == Set(names))
        #expect(EventCatalog.seedEventNames.count == 26)

        // The older document's events are a subset and are the ones citing it.
        #expect(Set(docs.older.eventNames).isSubset(of: Set(names)))
        let citingOlder = EventCatalog.all.filter { $0.sources.contains(.olderEventsDoc) }.map(\.name)
        #expect(Set(citingOlder) == Set(docs.older.eventNames))
    }

    /// Every member the documents list (top level and nested) is in the catalog entry with the
    /// documented type, optionality and values. Members the document marks "optional" must be
    /// optional in the catalog; the others must be required, with deliberate exceptions:
    /// docs/QEMU-FACTS.md says NIC_RX_FILTER_CHANGED `name` is optional, and BLOCK_IMAGE_CORRUPTED
    /// `offset`/`size` are conditional in the document's own words ("If the corruption resulted
    /// from an image access, ...") without the word "optional".
    @Test("documented members are in the catalog with the documented type and optionality")
    func members() throws {
        guard let docs = SeedDocuments.require() else { return }
        let optionalPerNotes: Set<String> = [
            "NIC_RX_FILTER_CHANGED.name", "BLOCK_IMAGE_CORRUPTED.offset", "BLOCK_IMAGE_CORRUPTED.size",
        ]
        var checked = 0
        for doc in [docs.newer, docs.older] {
            for section in doc.sections {
                for name in section.names {
                    guard let entry = EventCatalog.entry(for: name) else {
                        Issue.record("\(doc.label): \(name) is not in the catalog")
                        continue
                    }
                    let documented = section.members ?? []
                    if documented.isEmpty {
                        // "Data: None.": later additions may exist but nothing may be required.
                        let required = (entry.members ?? []).filter { !$0.optional }.map(\.name)
                        #expect(required.isEmpty, "\(doc.label) \(name) has no data but the catalog requires \(required)")
                    }
                    func check(_ docMembers: [DocMember], _ catMembers: [CatalogMember]?, path: String) {
                        for dm in docMembers {
                            let where_ = "\(doc.label) \(name).\(path)\(dm.name)"
                            guard let cm = catalogMember(catMembers, dm.name) else {
                                Issue.record("\(where_) is documented but not in the catalog")
                                continue
                            }
                            checked += 1
                            let key = "\(name).\(path)\(dm.name)"
                            if dm.optional {
                                #expect(cm.optional, "\(where_) is optional in the document")
                            } else if !optionalPerNotes.contains(key) {
                                #expect(!cm.optional, "\(where_) is required in the document")
                            }
                            #expect(dm.type != nil, "\(where_): no (json-...) type found")
                            if let t = dm.type { #expect(catalogType(cm.type) == t, "\(where_): catalog \(cm.type), document json-\(t)") }
                            for v in dm.values {
                                #expect(cm.allowed?.contains(v) == true, "\(where_): documented value \"\(v)\" not in \(cm.allowed ?? [])")
                            }
                            if !dm.children.isEmpty {
                                #expect(nestedMembers(cm) != nil, "\(where_) has nested members in the document")
                                check(dm.children, nestedMembers(cm), path: path + dm.name + ".")
                            }
                        }
                    }
                    check(documented, entry.members, path: "")
                }
            }
        }
        #expect(checked > 60)
        // The exceptions really are exceptions.
        #expect(docs.newer.section(for: "NIC_RX_FILTER_CHANGED")?.members?.first { $0.name == "name" }?.optional == false)
        #expect(catalogMember(EventCatalog.entry(for: "NIC_RX_FILTER_CHANGED")?.members, "name")?.optional == true)
        let corrupted = docs.newer.section(for: "BLOCK_IMAGE_CORRUPTED")?.members ?? []
        #expect(corrupted.filter { $0.description_.hasPrefix("If the corruption resulted") }.map(\.name) == ["offset", "size"])
    }

    /// The reverse direction: what the catalog attributes to the newer document is in it.
    @Test("catalog members credited to the document are documented")
    func noInventedMembers() throws {
        guard let docs = SeedDocuments.require() else { return }
        for name in newerSeedEvents {
            guard let entry = EventCatalog.entry(for: name), let section = docs.newer.section(for: name) else { continue }
            func check(_ cat: [CatalogMember], _ documented: [DocMember], path: String) {
                for cm in cat where cm.source == .eventsDoc {
                    guard let dm = documented.first(where: { $0.name == cm.name }) else {
                        Issue.record("\(name).\(path)\(cm.name) cites \(CatalogSource.eventsDoc.rawValue) but is not documented there")
                        continue
                    }
                    if let inner = nestedMembers(cm) { check(inner, dm.children, path: path + cm.name + ".") }
                }
            }
            check(entry.members ?? [], section.members ?? [], path: "")
        }
    }

    @Test("exactly two examples are mislabelled, and the parser finds them")
    func mislabelledExamples() throws {
        guard let docs = SeedDocuments.require() else { return }
        var mismatches: [String] = []
        for doc in [docs.newer, docs.older] {
            for section in doc.sections {
                guard let text = section.example, let e = exampleEvent(text) else { continue }
                if !section.names.contains(e.name) {
                    mismatches.append("\(doc.label) \(section.names.joined(separator: ", ")): \(e.name)")
                }
            }
        }
        #expect(mismatches.sorted() == ["newer WAKEUP: WATCHDOG", "older STOP: SHUTDOWN"])
    }

    @Test("only the SPICE examples needed closing braces")
    func unbalancedExamples() throws {
        guard let docs = SeedDocuments.require() else { return }
        let newer = docs.newer.sections.filter { $0.bracesAdded > 0 }.map { $0.names[0] }
        #expect(newer == ["SPICE_CONNECTED", "SPICE_INITIALIZED"])
        #expect(docs.newer.sections.filter { $0.bracesAdded > 0 }.map(\.bracesAdded) == [2, 2])
        #expect(docs.older.sections.allSatisfy { $0.bracesAdded == 0 })
    }

    /// Each example, with its event name corrected to the section heading, validates with no
    /// error or warning. GUEST_PANICKED's example has no timestamp in the document: exactly
    /// one `missing-timestamp` warning is accepted there, and only there.
    @Test("every example validates against the catalog")
    func examplesValidate() throws {
        guard let docs = SeedDocuments.require() else { return }
        var validated = 0
        for doc in [docs.newer, docs.older] {
            for section in doc.sections {
                guard let text = section.example, let original = exampleEvent(text) else { continue }
                // Multi-name headings: validate the example as every event the section describes.
                for name in section.names {
                    guard let e = renamed(original, name) else { continue }
                    let serious = EventValidator.validate(e, record: 3).filter { $0.severity >= .warning }
                    if name == "GUEST_PANICKED" {
                        #expect(original.timestamp == nil)
                        #expect(serious.map(\.code) == ["missing-timestamp"], "\(doc.label) \(name): \(serious)")
                        #expect(serious.map(\.severity) == [.warning])
                        #expect(serious.map(\.record) == [3])
                    } else {
                        #expect(serious.isEmpty, "\(doc.label) \(name): \(serious.map(\.message))")
                    }
                    validated += 1
                }
            }
        }
        #expect(validated == 26 + 10)
    }

    @Test("the notes' follow-ups are the catalog's follow-ups")
    func followUpsFromNotes() throws {
        guard let docs = SeedDocuments.require() else { return }
        for doc in [docs.newer, docs.older] {
            let withFollowUps = Set(doc.sections.filter { $0.notes.contains("follow") }.flatMap(\.names))
            #expect(withFollowUps == ["BLOCK_IO_ERROR", "SHUTDOWN", "WATCHDOG"], "\(doc.label)")
            let inCatalog = Set(doc.eventNames.filter { !(EventCatalog.entry(for: $0)?.followUps.isEmpty ?? true) })
            #expect(inCatalog == withFollowUps, "\(doc.label)")
        }
    }

    @Test("RTC_CHANGE remarks quote both documents' wording")
    func rtcRemarkAgainstDocuments() throws {
        guard let docs = SeedDocuments.require() else { return }
        let remarks = (EventCatalog.entry(for: "RTC_CHANGE")?.remarks ?? []).joined(separator: " ").lowercased()
        for doc in [docs.newer, docs.older] {
            guard let d = doc.section(for: "RTC_CHANGE")?.members?.first?.description_ else {
                Issue.record("\(doc.label): RTC_CHANGE offset not found")
                continue
            }
            let wording = d.replacingOccurrences(of: "(json-number)", with: "")
                .trimmingCharacters(in: .whitespaces).lowercased()
            #expect(!wording.isEmpty)
            #expect(remarks.contains(wording), "\(doc.label) wording \"\(wording)\" is not in the remarks")
        }
    }
}

// MARK: - Catalog facts that do not need the documents

@Suite("EventCatalog")
struct CatalogTests {
    @Test("names are unique and every entry can be looked up")
    func lookup() {
        #expect(Set(EventCatalog.names).count == EventCatalog.all.count)
        for e in EventCatalog.all {
            #expect(EventCatalog.entry(for: e.name)?.name == e.name)
            #expect(!e.summary.isEmpty)
            #expect(!e.sources.isEmpty)
        }
        #expect(EventCatalog.entry(for: "NO_SUCH_EVENT") == nil)
        #expect(EventCatalog.entry(for: "stop") == nil)  // names are case-sensitive
    }

    @Test("RTC_CHANGE has a remark with both wordings")
    func rtcRemark() {
        let remarks = EventCatalog.entry(for: "RTC_CHANGE")?.remarks ?? []
        let both = remarks.filter {
            $0.contains("delta against the host UTC in seconds")
                && $0.lowercased().contains("offset between base rtc clock (as specified by -rtc base), and new rtc clock value")
        }
        #expect(both.count == 1, "\(remarks)")
    }

    @Test("the mislabelled examples are remarked on")
    func exampleRemarks() {
        #expect(EventCatalog.entry(for: "STOP")?.remarks.contains { $0.contains("SHUTDOWN") } == true)
        #expect(EventCatalog.entry(for: "WAKEUP")?.remarks.contains { $0.contains("WATCHDOG") } == true)
    }

    @Test("BLOCK_IO_ERROR with action stop is followed by STOP")
    func blockIOErrorFollowUp() {
        let f = EventCatalog.entry(for: "BLOCK_IO_ERROR")?.followUps ?? []
        #expect(f.count == 1)
        #expect(f.first?.when?.member == "action")
        #expect(f.first?.when?.value == "stop")
        #expect(f.first?.then == "STOP")
        #expect(f.first?.onlyIf == nil)
    }

    @Test("WATCHDOG reset/shutdown/pause are followed by RESET/SHUTDOWN/STOP")
    func watchdogFollowUps() {
        let f = EventCatalog.entry(for: "WATCHDOG")?.followUps ?? []
        let pairs = f.map { "\($0.when?.member ?? "-")=\($0.when?.value ?? "-")→\($0.then)" }
        #expect(Set(pairs) == ["action=reset→RESET", "action=shutdown→SHUTDOWN", "action=pause→STOP"])
        #expect(f.count == 3)
        #expect(f.allSatisfy { $0.onlyIf == nil })
    }

    @Test("SHUTDOWN → STOP only under -no-shutdown")
    func shutdownFollowUp() {
        let f = EventCatalog.entry(for: "SHUTDOWN")?.followUps ?? []
        #expect(f.count == 1)
        #expect(f.first?.when == nil)
        #expect(f.first?.then == "STOP")
        #expect(f.first?.onlyIf == "-no-shutdown")
    }

    @Test("no other event has follow-ups")
    func onlyThreeFollowUps() {
        let names = EventCatalog.all.filter { !$0.followUps.isEmpty }.map(\.name)
        #expect(Set(names) == ["BLOCK_IO_ERROR", "WATCHDOG", "SHUTDOWN"])
    }

    @Test("FollowUp equality and hashing")
    func followUpEquality() {
        let a = EventCatalog.entry(for: "WATCHDOG")!.followUps
        #expect(a[0] == a[0])
        #expect(a[0] != a[1])
        #expect(Set(a).count == 3)
    }

    // Throttling (docs/QEMU-FACTS.md table, monitor/monitor.c).

    private func ev(_ name: String, _ data: String?) -> Event? {
        var text = #"{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "# + JSONWriter.quoted(name)
        if let data { text += ", \"data\": " + data }
        return event(text + "}")
    }

    private func key(_ name: String, _ data: String?) -> String? {
        guard let e = ev(name, data) else { return nil }
        return EventCatalog.entry(for: name)?.throttle?.key(for: e)
    }

    @Test("exactly the events of the notes' table are throttled")
    func throttledSet() {
        let throttled = Set(EventCatalog.all.filter { $0.throttle != nil }.map(\.name))
        #expect(throttled == [
            "RTC_CHANGE", "WATCHDOG", "BALLOON_CHANGE", "QUORUM_FAILURE", "HV_BALLOON_STATUS_REPORT", "VSERPORT_CHANGE",
            "QUORUM_REPORT_BAD", "MEMORY_DEVICE_SIZE_CHANGE", "BLOCK_IO_ERROR",
        ])
        for e in EventCatalog.all {
            if let t = e.throttle { #expect(t.windowNanoseconds == 1_000_000_000, "\(e.name)") }
        }
    }

    @Test("events keyed by name alone", arguments: [
        ("RTC_CHANGE", #"{"offset": 1}"#, #"{"offset": 2, "qom-path": "/machine/unattached/device[9]"}"#),
        ("WATCHDOG", #"{"action": "reset"}"#, #"{"action": "pause"}"#),
        ("BALLOON_CHANGE", #"{"actual": 1073741824}"#, #"{"actual": 536870912}"#),
        ("QUORUM_FAILURE", #"{"reference": "a", "sector-num": 1, "sectors-count": 2}"#, #"{"reference": "b", "sector-num": 3, "sectors-count": 4}"#),
        ("HV_BALLOON_STATUS_REPORT", #"{"committed": 1, "available": 2}"#, #"{"committed": 3, "available": 4}"#),
    ])
    func keyedByName(name: String, data1: String, data2: String) {
        let t = EventCatalog.entry(for: name)?.throttle
        #expect(t?.keyPaths == [])
        #expect(t?.exemptWhen == [:])
        let k1 = key(name, data1)
        #expect(k1 != nil)
        #expect(k1 == key(name, data2))
        #expect(k1 == key(name, nil))
    }

    @Test("events keyed by a member", arguments: [
        ("VSERPORT_CHANGE", "id", #"{"id": "channel0", "open": true}"#, #"{"id": "channel0", "open": false}"#, #"{"id": "channel1", "open": true}"#),
        ("QUORUM_REPORT_BAD", "node-name", #"{"node-name": "q0", "type": "read", "sector-num": 1, "sectors-count": 1}"#,
         #"{"node-name": "q0", "type": "flush", "sector-num": 9, "sectors-count": 2}"#, #"{"node-name": "q1", "type": "read", "sector-num": 1, "sectors-count": 1}"#),
        ("MEMORY_DEVICE_SIZE_CHANGE", "qom-path", #"{"id": "vm0", "size": 1, "qom-path": "/machine/peripheral/vm0"}"#,
         #"{"id": "vm0", "size": 2, "qom-path": "/machine/peripheral/vm0"}"#, #"{"id": "vm0", "size": 1, "qom-path": "/machine/peripheral/vm1"}"#),
        ("BLOCK_IO_ERROR", "qom-path", #"{"device": "", "qom-path": "/machine/peripheral/disk0/virtio-backend", "operation": "read", "action": "report"}"#,
         #"{"device": "x", "qom-path": "/machine/peripheral/disk0/virtio-backend", "operation": "write", "action": "ignore"}"#,
         #"{"device": "", "qom-path": "/machine/peripheral/disk1/virtio-backend", "operation": "read", "action": "report"}"#),
    ])
    func keyedByMember(name: String, member: String, same1: String, same2: String, other: String) {
        #expect(EventCatalog.entry(for: name)?.throttle?.keyPaths == [member])
        let k = key(name, same1)
        #expect(k != nil)
        #expect(k == key(name, same2), "other members must not change the key")
        #expect(k != key(name, other), "a different \(member) is a different key")
    }

    @Test("keys of different events never collide")
    func distinctEvents() {
        #expect(key("RTC_CHANGE", #"{"offset": 1}"#) != key("WATCHDOG", #"{"action": "reset"}"#))
        #expect(key("RTC_CHANGE", #"{"offset": 1}"#) != key("BALLOON_CHANGE", #"{"actual": 1}"#))
        #expect(key("VSERPORT_CHANGE", #"{"id": "x", "open": true}"#) != key("QUORUM_REPORT_BAD", #"{"node-name": "x"}"#))
    }

    @Test("BLOCK_IO_ERROR is exempt when its action is stop")
    func blockIOErrorExempt() {
        #expect(EventCatalog.entry(for: "BLOCK_IO_ERROR")?.throttle?.exemptWhen == ["action": "stop"])
        let stop = #"{"device": "", "qom-path": "/machine/peripheral/disk0/virtio-backend", "operation": "write", "action": "stop"}"#
        #expect(key("BLOCK_IO_ERROR", stop) == nil)
        let report = #"{"device": "", "qom-path": "/machine/peripheral/disk0/virtio-backend", "operation": "write", "action": "report"}"#
        #expect(key("BLOCK_IO_ERROR", report) != nil)
    }

    @Test("events not in the table are not throttled", arguments: ["STOP", "SHUTDOWN", "VNC_CONNECTED", "BLOCK_JOB_COMPLETED", "NIC_RX_FILTER_CHANGED", "GUEST_PANICKED"])
    func notThrottled(name: String) {
        #expect(EventCatalog.entry(for: name)?.throttle == nil)
    }

    @Test("unknown events give an unknown-event note, not an error")
    func unknownEvent() {
        guard let e = ev("SOMETHING_NEW", #"{"x": 1}"#) else { return }
        let findings = EventValidator.validate(e, record: 12)
        #expect(findings.count == 1)
        #expect(findings.first?.severity == .info)
        #expect(findings.first?.code == "unknown-event")
        #expect(findings.first?.record == 12)
        #expect(findings.first?.message.contains("SOMETHING_NEW") == true)
        // Even without a timestamp an unknown event is only a note.
        if let bare = event(#"{"event": "SOMETHING_NEW"}"#) {
            #expect(EventValidator.validate(bare).map(\.severity) == [.info])
        }
    }

    @Test("member types accept what they should")
    func memberTypes() throws {
        let i = JSONValue.int(1)
        let f = JSONValue.number(JSONNumber(text: "1.5"))
        let onePointZero = JSONValue.number(JSONNumber(text: "1.0"))
        #expect(MemberType.int.accepts(i))
        #expect(!MemberType.int.accepts(f))
        #expect(!MemberType.int.accepts(onePointZero))
        #expect(MemberType.number.accepts(i))
        #expect(MemberType.number.accepts(f))
        #expect(!MemberType.number.accepts(.string("1")))
        #expect(MemberType.string.accepts(.string("")))
        #expect(!MemberType.string.accepts(.null))
        #expect(MemberType.bool.accepts(.bool(false)))
        #expect(!MemberType.bool.accepts(.int(0)))
        #expect(MemberType.object([]).accepts(.object(JSONObject())))
        #expect(!MemberType.object([]).accepts(.array([])))
        #expect(MemberType.any.accepts(.null))
        #expect(MemberType.any.accepts(.array([])))
        #expect(MemberType.int.description == "json-int")
        #expect(MemberType.object([]).description == "json-object")
    }

    @Test("accepted values are the documented ones plus later ones")
    func acceptedValues() {
        let action = catalogMember(EventCatalog.entry(for: "WATCHDOG")?.members, "action")
        #expect(action?.acceptedValues == ["reset", "shutdown", "poweroff", "pause", "debug", "none", "inject-nmi"])
        #expect(action?.allowed?.contains("inject-nmi") == false)
        #expect(catalogMember(EventCatalog.entry(for: "BALLOON_CHANGE")?.members, "actual")?.acceptedValues == nil)
    }
}
