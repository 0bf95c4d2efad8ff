import QMP
import Testing
@testable import Recording

/// The index's id keys (docs/INDEX.md, "Reply pairing"): for every command and reply of
/// every shipped recording, the key read from the end of the line is the key of the decoded
/// message's `id`, and lines in other shapes are left to the member walk, never guessed.
@Suite("Indexed id keys")
struct LineIDKeyTests {
    static func truth(_ r: Recording, _ i: Int) -> IDKey {
        IDKey(value: (try? r.record(at: i))?.message?.json?["id"])
    }

    @Test("every command and reply of the shipped recordings: the indexed key is the decoded id's", arguments: DamageTests.shipped)
    func shipped(path: String) throws {
        let r = try Recording(path: path)
        let keys = r.idKeys()
        #expect(keys.count == r.count)
        var paired = 0, pairable = 0
        for i in 0..<r.count {
            let k = r.kind(i)
            guard (k == .command && r.direction(i) == .client) || ((k == .return || k == .error) && r.direction(i) == .qemu) else {
                #expect(keys[i] == IDKey(raw: 0), "\(path) #\(i): only commands and replies carry a key")
                continue
            }
            pairable += 1
            if let key = keys[i] {
                #expect(key == Self.truth(r, i), "\(path) #\(i)")
                paired += 1
            }
        }
        // Recorded traffic is in the common shape: the index answers for nearly all of it.
        #expect(paired * 10 >= pairable * 9, "\(path): \(paired) of \(pairable) keys indexed")
    }

    @Test("read by the index scan (one thread or two): the keys the separate pass makes", arguments: DamageTests.shipped)
    func scanned(path: String) throws {
        let r = try Recording(path: path)
        let pass = IDKeys.compute(r)
        let fb = try FileBytes(path: path)  // as the recording maps it
        for threshold in [Int.max, 1] {
            var b = IndexBuilder.build(fb, parallelThreshold: threshold, idKeys: true)
            let taken = b.takeIDKeys()
            let keys = try #require(taken, "\(path): the scan read keys")
            #expect(keys.count == pass.count)
            #expect((0..<min(keys.count, pass.count)).allSatisfy { keys.keys[$0] == pass.keys[$0] }, "\(path), threshold \(threshold)")
        }
        // Opened for pairing replies, the recording holds them without another pass.
        let paired = try Recording(path: path, options: RecordingOptions(pairsReplies: true))
        #expect((0..<paired.count).allSatisfy { paired.idKeys().keys[$0] == pass.keys[$0] })
    }

    /// Lines written by hand in the shapes that must not be read from the end.
    @Test("ids elsewhere, nested, escaped or missing", arguments: [
        (#"{"execute":"x","id":"libvirt-4"}"#, true),
        (#"{"execute": "x", "arguments": {"a": [1, {"b": 2}]}, "id": 17}"#, true),
        (#"{"id":"first","execute":"x"}"#, false),
        (#"{"execute":"device_del","arguments":{"id":"net0"}}"#, false),
        (#"{"execute":"x","arguments":{"id":"inner"},"id":{"deep":["a",1]}}"#, true),
        (#"{"execute":"x","id":"a\"b"}"#, true),
        (#"{"execute":"x","arguments":{"s":"\",\"id\":\"fake\"}"}}"#, false),
        (#"{"return": {}, "id": "libvirt-9"}"#, true),
        (#"{"return": {"id": "not-this"}}"#, false),
    ])
    func shapes(message: String, fromTheEnd: Bool) throws {
        let line = #"{"t":1,"c":1,"from":"client","k":"command","n":"x","msg":"# + message + "}"
        let bytes = Array(line.utf8)
        let fast = bytes.withUnsafeBufferPointer { LineIDKey.fast($0) }
        let truth = IDKey(value: try JSONParser.parse(Array(message.utf8))["id"])
        if fromTheEnd {
            #expect(fast == truth, "\(message)")
        } else {
            #expect(fast == nil, "\(message): must be left to the member walk")
        }
    }
}
