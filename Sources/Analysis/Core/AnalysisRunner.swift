import QMP
import Recording

/// A type-erased analysis the runner can feed (one box per analysis in a pass).
class AnalysisBox {
    let index: Int
    init(index: Int) { self.index = index }
    func consume(_ input: AnalysisInput) {}
    func finish() -> any AnalysisResult { fatalError("abstract") }
    var interest: Interest { Interest() }
    var usesModel: Bool { false }
}

final class TypedBox<A: Analysis>: AnalysisBox {
    var analysis: A
    init(_ a: A, index: Int) { analysis = a; super.init(index: index) }
    override func consume(_ input: AnalysisInput) { analysis.consume(input) }
    override func finish() -> any AnalysisResult { analysis.finish() }
    override var interest: Interest { A.interest }
    override var usesModel: Bool { A.usesModel }
}

/// One pass over a range of a recording, feeding several analyses at once.
///
/// Filtering happens on the index: a record is looked at only when its kind and interned
/// name are of interest to some analysis, so most records cost a couple of array reads.
/// Records become inputs through `InputDriver`, the one place that pairs replies with
/// commands (by id value, per connection), recognises an event's copies on several
/// monitors and detects a new QEMU process; the shell's state tracker uses it too.
struct AnalysisRunner {
    let context: AnalysisContext
    let boxes: [AnalysisBox]
    /// Whether a pass over a whole recording whose reply partners are known visits only the
    /// records it needs (`SparseWalk`); false reads every record (the tests compare the two).
    var sparse = true

    func run(progress: ((Int, Int) -> Void)?) {
        let r = context.recording
        // Bit 63 is the VM model's, folded once per pass before the analyses see an input.
        let modelBit: UInt64 = 1 << 63
        var interests = boxes.map { (UInt64(1) << UInt64($0.index), $0.interest) }
        if boxes.contains(where: \.usesModel) { interests.append((modelBit, VMModel.interest)) }
        var sel = Selection(recording: r, interests: interests)
        // Pairing replies needs each command's and reply's id: read once, kept in the index.
        if sel.anyCommands { sel.idKeys = r.idKeys() }
        let boxes = self.boxes
        let vm = context.vm
        let deliver = { (mask: UInt64, input: AnalysisInput) in
            var m = mask
            if m & modelBit != 0 {
                vm.apply(input)
                m &= ~modelBit
            }
            while m != 0 {
                boxes[m.trailingZeroBitCount].consume(input)
                m &= m - 1
            }
        }
        let total = context.endRecord - context.firstRecord
        // The records passed are decoded into values: their pages can go (docs/INDEX.md).
        var pages = PassedPages(r.bytes)
        let whole = context.firstRecord == 0 && context.endRecord == r.count
        if whole, sparse, var walk = SparseWalk(r, sel) {
            walk.run(r, passed: { i in
                progress?(i, total)
                if i < r.count { pages.passed(r.offset(i)) }
                r.releaseIndex(below: i)
            }, deliver)
            progress?(total, total)
            return
        }
        var driver = InputDriver()
        // The first pass over a whole recording that pairs replies keeps what pairing
        // decided, so that later passes can be sparse (docs/INDEX.md, "Reply partners").
        if whole, sel.idKeys != nil, r.replyPartners == nil { driver.partners = PartnerSink(count: r.count) }
        var i = context.firstRecord
        let end = context.endRecord
        while i < end {
            if (i - context.firstRecord) & 0xFFFF == 0 {
                progress?(i - context.firstRecord, total)
                pages.passed(r.offset(i))
                r.releaseIndex(below: i)
            }
            driver.step(r, i, sel, deliver)
            i += 1
        }
        if let sink = driver.partners { r.storeReplyPartners(ReplyPartners(array: sink.values)) }
        progress?(total, total)
    }
}
