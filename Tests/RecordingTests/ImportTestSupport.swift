import Foundation
import QMP
import Recording
import Testing
import TestSupport

// MARK: - Helpers

struct ImportedMessage {
    var time: Int64
    var connection: UInt32
    var from: Direction
    var message: QMPMessage
    var text: String { String(decoding: message.bytes, as: UTF8.self) }
}

func importedMessages(_ r: ImportedRecording) -> [ImportedMessage] {
    r.records.compactMap { rec in
        guard case .message(let from, let m) = rec.body else { return nil }
        return ImportedMessage(time: rec.time, connection: rec.connection, from: from, message: m)
    }
}

func importedNotes(_ r: ImportedRecording) -> [String] {
    r.records.compactMap { rec in
        if case .note(let text, _) = rec.body { return text } else { return nil }
    }
}

/// `peer` of each open record, in order, with its connection.
func importedOpens(_ r: ImportedRecording) -> [(UInt32, String)] {
    r.records.compactMap { rec in
        if case .open(let peer, _) = rec.body { return (rec.connection, peer) } else { return nil }
    }
}

func importBytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Times never go backwards and every message's connection was opened before it.
func checkWellFormed(_ r: ImportedRecording, sourceLocation: SourceLocation = #_sourceLocation) {
    var last: Int64 = 0
    var opened: Set<UInt32> = []
    for rec in r.records {
        #expect(rec.time >= last, "time goes back at \(rec)", sourceLocation: sourceLocation)
        last = rec.time
        switch rec.body {
        case .open: opened.insert(rec.connection)
        case .close: opened.remove(rec.connection)
        case .message: #expect(opened.contains(rec.connection), "message before open", sourceLocation: sourceLocation)
        case .note: break
        }
    }
}

func importTestsRoot() -> String {
    PackageRoot.path
}

func loadExample(_ name: String) throws -> [UInt8] {
    let data = try Data(contentsOf: URL(fileURLWithPath: importTestsRoot() + "/Recordings/sources/" + name))
    return [UInt8](data)
}

/// A sample written for the import tests, in Tests/Fixtures/import/.
func loadFixture(_ name: String) throws -> [UInt8] {
    let data = try Data(contentsOf: URL(fileURLWithPath: importTestsRoot() + "/Tests/Fixtures/import/" + name))
    return [UInt8](data)
}

