import Foundation
import NIOCore
import NIOEmbedded
import QMP
import Testing
import Transport

/// The framer as a NIO decoder, driven on an `EmbeddedChannel` (no socket, no sleeping).
@Suite struct FrameDecoderTests {
    private func channel() throws -> EmbeddedChannel {
        let ch = EmbeddedChannel()
        try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(QMPFrameDecoder()))
        return ch
    }

    private func write(_ ch: EmbeddedChannel, _ s: String) throws {
        var b = ch.allocator.buffer(capacity: s.utf8.count)
        b.writeString(s)
        try ch.writeInbound(b)
    }

    private func frames(_ ch: EmbeddedChannel) throws -> [Frame] {
        var out: [Frame] = []
        while let f = try ch.readInbound(as: Frame.self) { out.append(f) }
        return out
    }

    @Test func messagesSplitAcrossReadsComeOutWhole() throws {
        let ch = try channel()
        try write(ch, #"{"return": {}}"# + "\r\n" + #"{"event""#)
        let first = try frames(ch)
        #expect(first.count == 1)
        #expect(String(decoding: first[0].bytes[first[0].payload], as: UTF8.self) == #"{"return": {}}"#)
        try write(ch, #": "STOP"}"# + "\n")
        let second = try frames(ch)
        #expect(second.map(\.kind) == [.json])
        #expect(String(decoding: second[0].bytes[second[0].payload], as: UTF8.self) == #"{"event": "STOP"}"#)
        _ = try ch.finish()
    }

    @Test func aMessageWithoutItsLineEndIsNotHeldBack() throws {
        let ch = try channel()
        try write(ch, #"{"execute": "query-status"}"#)
        let got = try frames(ch)
        #expect(got.map(\.kind) == [.json])
        _ = try ch.finish()
    }

    @Test func garbageAndATruncatedTailAreFramesOfTheirOwn() throws {
        let ch = try channel()
        try write(ch, "hello\n" + #"{"return": {}}"# + "\n" + #"{"event": "ST"#)
        let got = try frames(ch)
        #expect(got.map(\.kind) == [.garbage, .json])
        ch.pipeline.fireChannelInactive()
        let tail = try frames(ch)
        #expect(tail.map(\.kind) == [.truncated])
        #expect(String(decoding: tail[0].bytes[tail[0].payload], as: UTF8.self) == #"{"event": "ST"#)
    }
}
