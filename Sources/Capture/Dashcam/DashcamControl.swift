import Foundation
import NIOCore
import NIOPosix
import QMP
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// The dashcam's control socket (`record --ring-control PATH`): JSON lines in, one JSON
/// line out per request. A script asks for an incident file, or reads the ring's figures.
///
/// ```
/// {"trigger": "operator saw the VM hang"}   -> {"return": {"triggered": "operator saw the VM hang"}}
/// {"status": null}                          -> {"return": {"ring_records": 600, "ring_bytes": 88000, "incidents": 1, "files": [...]}}
/// anything else                             -> {"error": "..."}
/// ```
public final class DashcamControl: Sendable {
    private let listener: Channel
    private let path: String

    /// Listens on the unix socket `path` (mode 0600); requests go to `recorder`.
    public init(path: String, recorder: CaptureRecorder, group: EventLoopGroup = EventLoops.shared) throws(SocketError) {
        self.path = path
        listener = try Bootstraps.listen(.unix(path), mode: 0o600, group: group) { ch in
            ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(Handler(recorder: recorder)) }
        }
    }

    /// Stops listening and removes the socket.
    public func close() {
        try? listener.close().wait()
        unlink(path)
    }

    /// The answer to one request line (a pure function of the line and the recorder).
    static func answer(_ line: [UInt8], recorder: CaptureRecorder) -> JSONValue {
        guard let request = try? JSONParser.parse(line), let o = request.objectValue else {
            return .object(JSONObject(["error": .string("a request is one JSON object per line: {\"trigger\": \"REASON\"} or {\"status\": null}")]))
        }
        if let t = o["trigger"] {
            let reason = t.stringValue ?? "control"
            recorder.trigger(IncidentTrigger(source: "control", name: "control", detail: reason))
            return .object(JSONObject(["return": .object(JSONObject(["triggered": .string(reason)]))]))
        }
        if o["status"] != nil {
            let s = recorder.progress?.stats ?? CaptureStats()
            return .object(JSONObject(["return": .object(JSONObject([
                "ring_records": .int(Int64(s.ringRecords)), "ring_bytes": .int(Int64(s.ringBytes)),
                "ring_peak_bytes": .int(Int64(s.ringPeakBytes)), "incidents": .int(Int64(s.incidents)),
                "files": .array(s.parts.map { .string($0.path) }),
            ]))]))
        }
        return .object(JSONObject(["error": .string("unknown request: expected \"trigger\" or \"status\"")]))
    }

    /// Splits the input into lines and answers each.
    final class Handler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        private let recorder: CaptureRecorder
        private var pending: [UInt8] = []
        /// A request longer than this is refused (the socket is for short commands).
        static let lineLimit = 64 << 10

        init(recorder: CaptureRecorder) { self.recorder = recorder }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buf = unwrapInboundIn(data)
            pending += buf.readBytes(length: buf.readableBytes) ?? []
            while let nl = pending.firstIndex(of: 0x0A) {
                let line = Array(pending[..<nl])
                pending.removeFirst(nl + 1)
                guard !line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) else { continue }
                reply(context, DashcamControl.answer(line, recorder: recorder))
            }
            if pending.count > Self.lineLimit {
                reply(context, .object(JSONObject(["error": .string("request line too long")])))
                context.close(promise: nil)
            }
        }

        private func reply(_ context: ChannelHandlerContext, _ v: JSONValue) {
            var out = context.channel.allocator.buffer(capacity: 128)
            out.writeString(v.serialized() + "\n")
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        }

        /// The client finished sending (`nc -N`, `socat`): its answers are written, then the
        /// connection closes.
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if case ChannelEvent.inputClosed = event { context.close(promise: nil) }
        }
    }
}
