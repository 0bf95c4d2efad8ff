/// Gives back a mapped file's pages behind a reader that moves forward through it
/// (`FileBytes.release`), a step at a time: resident memory then follows what the reader is
/// looking at, not the size of the file (docs/INDEX.md, "Memory").
public struct PassedPages {
    let bytes: FileBytes
    var released: Int

    public init(_ bytes: FileBytes, from start: Int = 0) {
        self.bytes = bytes
        released = start
    }

    /// The reader is at byte `offset`: everything before it may go.
    @inline(__always)
    public mutating func passed(_ offset: Int) {
        if offset - released >= Recording.releaseStep {
            bytes.release(released..<offset)
            released = offset
        }
    }
}
