import NIOCore
import QMP

/// The QMP framer as a NIO inbound decoder: bytes from a socket in, one `Frame` per QMP
/// message out (pretty JSON, several messages per read, garbage and oversize runs as their
/// own frames, exactly as `QMPFramer` cuts them).
///
/// A message whose JSON is complete but whose line end has not arrived yet is passed on at
/// the end of each read (`QMPFramer.drain`), so a peer that sends no newline is not held
/// back; at end of stream whatever is held becomes a last (truncated or garbage) frame.
///
/// Example: `channel.pipeline.addHandler(ByteToMessageHandler(QMPFrameDecoder()))`, then a
/// handler whose `InboundIn` is `Frame` sees `{"return": {}}` as one `.json` frame.
public struct QMPFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Frame

    private var framer: QMPFramer

    public init(limit: Int = QMPFramer.defaultLimit) { framer = QMPFramer(limit: limit) }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard buffer.readableBytes > 0 else { return .needMoreData }
        let frames = buffer.readWithUnsafeReadableBytes { raw -> (Int, [Frame]) in
            (raw.count, framer.push(raw))
        }
        for f in frames + framer.drain() { context.fireChannelRead(wrapInboundOut(f)) }
        return .needMoreData
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        _ = try decode(context: context, buffer: &buffer)
        for f in framer.finish() { context.fireChannelRead(wrapInboundOut(f)) }
        return .needMoreData
    }
}
