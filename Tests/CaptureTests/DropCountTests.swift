import Foundation
import QMP
@testable import Recording
import Testing
@testable import Capture

import Transport

#if canImport(Glibc)
import Glibc
#endif

// The recorder's count of what it did not record, edge by edge (docs/RECORDER.md, "Spans not
// recorded"): every message sent is a record or counted once in a gap note, and the bytes
// add up. Each test drives one edge directly, without depending on a slow disk's timing:
// a chunk larger than the input queue's limit is dropped before framing wherever it cuts
// the stream, and an observer that holds the encoder makes a stop run out of time.

/// One message as QEMU sends it (ends with CR LF); 130 to 140 bytes.
private func event(_ i: Int) -> [UInt8] {
    Array(#"{"timestamp": {"seconds": 1763632800, "microseconds": \#(i)}, "event": "BALLOON_CHANGE", "data": {"actual": \#(1_073_741_824 - i * 4096)}}"#.utf8) + [13, 10]
}

/// One message longer than the sink's input queue may hold: a chunk holding it is dropped
/// before it is framed.
private let oversize: [UInt8] = Array(#"{"timestamp": {"seconds": 1763632800, "microseconds": 1}, "event": "PAD", "data": {"s": ""#.utf8)
    + [UInt8](repeating: 0x78, count: 16 << 20) + Array(#""}}"#.utf8) + [13, 10]

/// What a recording holds of the traffic: messages recorded and counted lost, and their
/// bytes. A record of blanks (a late line end alone at a stream's end) keeps the stream's
/// bytes but is no message.
private struct Accounted {
    var recorded = 0
    var lost = 0
    var recordedBytes: Int64 = 0
    var lostBytes: Int64 = 0
    var gaps = 0
    var garbage = 0
    var trailerDropped: Int?
    var gapRecords = 0

    init(_ r: Recording, connection: UInt32? = nil) throws {
        for i in 0..<r.count where connection == nil || r.connection(i) == connection {
            if r.kind(i).isMessage {
                let raw = try r.rawBytes(i) ?? []
                let blank = raw.allSatisfy { [0x20, 0x09, 0x0D, 0x0A].contains($0) }
                if r.kind(i) == .other && !blank { garbage += 1 }
                recorded += blank ? 0 : 1
                recordedBytes += Int64(raw.count)
            } else if r.kind(i) == .note, case .note(_, let data) = try r.record(at: i).body, let m = data["gap_messages"]?.int64Value {
                gaps += 1
                lost += Int(m)
                lostBytes += data["gap_bytes"]?.int64Value ?? 0
                gapRecords += Int(data["gap_records"]?.int64Value ?? 0)
            }
        }
        trailerDropped = r.trailer?.dropped
    }
}

/// Holds the encoder on the first message it records until `release()`, so that the test
/// decides what is still queued when a stop begins.
private final class EncoderGate: CaptureObserver, @unchecked Sendable {
    private let entered = DispatchSemaphore(value: 0)
    private let go = DispatchSemaphore(value: 0)
    private let first = Guarded(true)

    func recorded(_ message: QMPMessage, from direction: Direction, connection: UInt32) {
        guard first.withLock({ f -> Bool in defer { f = false }; return f }) else { return }
        entered.signal()
        go.wait()
    }

    /// Waits until the encoder is held.
    func held() { entered.wait() }
    func release() { go.signal() }
}

@Suite("the sink's drop accounting, edge by edge", .serialized)
struct DropCountTests {
    /// Feeds one QEMU stream on connection 1 in the given chunks (an oversized chunk is
    /// dropped before framing), stops, and returns what the recording accounts for and the
    /// bytes sent. `queueLimit` 1 drops every message record for a disk too slow.
    private func run(_ chunks: [[UInt8]], close: Bool = false, queueLimit: Int = 1 << 20) throws -> (Accounted, wire: Int64) {
        let d = scratchDir("dropcount")
        var o = CaptureOptions(output: d + "/out.qmprec")
        o.queueLimitBytes = queueLimit  // the input queue's limit is then its least, 16 MiB
        let sink = try CaptureSink(header: RecordingHeader(startMicros: 1_763_632_800_000_000, source: "unix:/fake", mode: .proxy, redacted: true), options: o)
        sink.open(0, 1, peer: "unix")
        for (i, c) in chunks.enumerated() { sink.data(Int64(i + 1) * 1000, 1, .qemu, c) }
        if close { sink.close(Int64(chunks.count + 1) * 1000, 1, by: "qemu", reason: "eof") }
        let end = sink.finish(reason: "signal", time: 1_000_000_000)
        #expect(end.trailerWritten)
        let r = try Recording(path: d + "/out.qmprec")
        return (try Accounted(r), Int64(chunks.reduce(0) { $0 + $1.count }))
    }

    private func expectExact(_ a: Accounted, sent: Int, wire: Int64, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(a.gaps > 0, "a span was dropped", sourceLocation: sourceLocation)
        #expect(a.recorded + a.lost == sent, "recorded \(a.recorded) + lost \(a.lost)", sourceLocation: sourceLocation)
        #expect(a.recordedBytes + a.lostBytes == wire, sourceLocation: sourceLocation)
        #expect(a.garbage == 0, "no half message is recorded", sourceLocation: sourceLocation)
        #expect(a.trailerDropped == a.gapRecords, sourceLocation: sourceLocation)
    }

    @Test("a message split between the framer and a dropped chunk counts once")
    func splitAtFramer() throws {
        let (a, wire) = try run([
            event(0) + event(1).prefix(40),
            Array(event(1).dropFirst(40)) + oversize + event(2),
            event(3) + event(4),
        ])
        expectExact(a, sent: 6, wire: wire)
    }

    @Test("a drop that begins with the line end of a message already recorded does not count it")
    func dropBeginsWithLineEnd() throws {
        let (a, wire) = try run([
            Array(event(0).dropLast(2)),
            [13, 10] + oversize,
            event(2) + event(3),
        ])
        expectExact(a, sent: 4, wire: wire)
    }

    @Test("CR in the recorded chunk, LF in the dropped one")
    func crlfSplit() throws {
        let (a, wire) = try run([
            Array(event(0).dropLast(1)),
            [10] + oversize + event(1),
            event(2) + event(3),
        ])
        expectExact(a, sent: 5, wire: wire)
    }

    @Test("a drop that ends inside a message whose rest holds braces counts that message once")
    func dropEndsInsideMessage() throws {
        let e1 = event(1)
        for cut in [1, 16, 30, 60, 100, e1.count - 3, e1.count - 1] {
            let (a, wire) = try run([
                event(0),
                oversize + e1.prefix(cut),
                Array(e1.dropFirst(cut)) + event(2) + event(3),
            ])
            expectExact(a, sent: 5, wire: wire)
        }
    }

    @Test("a drop that ends exactly at a line end")
    func dropEndsAtLineEnd() throws {
        let (a, wire) = try run([event(0), oversize, event(1) + event(2)])
        expectExact(a, sent: 4, wire: wire)
    }

    @Test("a drop still open when the connection closes or the recorder stops", arguments: [false, true])
    func dropOpenAtEnd(close: Bool) throws {
        let (a, wire) = try run([event(0) + event(1).prefix(40), Array(event(1).dropFirst(40)) + oversize], close: close)
        expectExact(a, sent: 3, wire: wire)
        // The stream ends inside a message: it is counted once as well.
        let (b, wireB) = try run([event(0) + event(1).prefix(40), Array(event(1).dropFirst(40)) + oversize + event(2).prefix(20)], close: close)
        expectExact(b, sent: 4, wire: wireB)
    }

    @Test("the stream's last chunk is the line end of a message already recorded: a record of blanks, never a lost message",
          arguments: [false, true])
    func lateLineEndAtEnd(close: Bool) throws {
        // Every chunk ends at a closing brace, so each line end leads the next chunk and the
        // last one comes alone. A queue that holds nothing drops every record (as a disk
        // too slow does when the stop comes), the blank one too.
        var chunks: [[UInt8]] = [Array(event(0).dropLast(2))]
        for i in 1..<5 { chunks.append([13, 10] + event(i).dropLast(2)) }
        chunks.append([13, 10])
        for limit in [1, 1 << 20] {
            let (a, wire) = try run(chunks, close: close, queueLimit: limit)
            #expect(a.recorded + a.lost == 5, "recorded \(a.recorded) + lost \(a.lost), queue limit \(limit)")
            #expect(a.recordedBytes + a.lostBytes == wire)
            #expect(a.garbage == 0)
        }
    }

    @Test("two connections interleaved: a drop on one leaves the other's count alone")
    func twoConnections() throws {
        let d = scratchDir("dropcount2")
        var o = CaptureOptions(output: d + "/out.qmprec")
        o.queueLimitBytes = 1 << 20
        let sink = try CaptureSink(header: RecordingHeader(startMicros: 1_763_632_800_000_000, source: "unix:/fake", mode: .proxy, redacted: true), options: o)
        sink.open(0, 1, peer: "unix")
        sink.open(0, 2, peer: "unix")
        let one: [[UInt8]] = [event(0) + event(1).prefix(50), Array(event(1).dropFirst(50)) + oversize + event(2).prefix(7), Array(event(2).dropFirst(7)) + event(3)]
        let two: [[UInt8]] = [event(10).prefix(70) + [], Array(event(10).dropFirst(70)) + event(11).prefix(3), Array(event(11).dropFirst(3)) + event(12)]
        for i in 0..<3 {
            sink.data(Int64(i) * 10 + 1, 1, .qemu, one[i])
            sink.data(Int64(i) * 10 + 2, 2, .qemu, two[i])
        }
        #expect(sink.finish(reason: "signal", time: 1_000_000_000).trailerWritten)
        let r = try Recording(path: d + "/out.qmprec")
        let a1 = try Accounted(r, connection: 1), a2 = try Accounted(r, connection: 2)
        #expect(a1.recorded + a1.lost == 5)
        #expect(a1.recordedBytes + a1.lostBytes == Int64(one.joined().count))
        #expect(a2.recorded == 3 && a2.lost == 0)
    }

    @Test("a stop that runs out of time while the encoder is behind: what it had not framed is counted once, and noted")
    func stopWhileBehind() throws {
        let d = scratchDir("dropcount3")
        let gate = EncoderGate()
        var o = CaptureOptions(output: d + "/out.qmprec")
        o.stopBudget = 1
        o.observer = gate
        let sink = try CaptureSink(header: RecordingHeader(startMicros: 1_763_632_800_000_000, source: "unix:/fake", mode: .proxy, redacted: true), options: o)
        sink.open(0, 1, peer: "unix")
        let chunks = [event(0) + event(1).prefix(40), Array(event(1).dropFirst(40)) + event(2) + event(3).prefix(9), Array(event(3).dropFirst(9)) + event(4)]
        sink.data(1000, 1, .qemu, chunks[0])
        gate.held()
        sink.data(2000, 1, .qemu, chunks[1])
        sink.data(3000, 1, .qemu, chunks[2])
        let end = Guarded<CaptureEnd?>(nil)
        let stopper = JoinableThread { let e = sink.finish(reason: "signal", time: 1_000_000_000); end.withLock { $0 = e } }
        while !sink.isStopping { usleep(1000) }
        gate.release()
        stopper.join()
        #expect(end.withLock { $0?.trailerWritten } == true)
        let a = try Accounted(try Recording(path: d + "/out.qmprec"))
        #expect(a.gaps > 0)
        #expect(a.recorded + a.lost == 5, "recorded \(a.recorded) + lost \(a.lost)")
        #expect(a.recordedBytes + a.lostBytes == Int64(chunks.joined().count))
    }
}

@Suite("LostLines: messages in lost bytes, counted where each begins")
struct LostLinesTests {
    private func count(_ pieces: [ArraySlice<UInt8>]) -> Int {
        var total = LostLines()
        for p in pieces {
            var l = LostLines()
            l.scan(p)
            total.append(l)
        }
        return total.messages
    }

    @Test("cut anywhere into pieces counted apart, the count is that of the whole")
    func anyCut() {
        let stream = Array("{\"a\": 1}\r\n{\"b\": {\"c\": 2}}\r\n\r\n  {\"d\": 3}\n{\"e\"".utf8)
        #expect(count([stream[...]]) == 4)
        for i in 0...stream.count {
            #expect(count([stream[..<i], stream[i...]]) == 4, "cut at \(i)")
            for j in i...stream.count {
                #expect(count([stream[..<i], stream[i..<j], stream[j...]]) == 4, "cut at \(i), \(j)")
            }
        }
    }

    @Test("the line end of a message already recorded counts nothing; its rest counts once")
    func boundaries() {
        #expect(count([Array("\r\n".utf8)[...]]) == 0)
        #expect(count([Array("\n".utf8)[...]]) == 0)
        #expect(count([Array("}}\r\n{\"x\"".utf8)[...]]) == 2)
        #expect(count([Array("".utf8)[...]]) == 0)
    }
}
