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

    func run(progress: ((Int, Int) -> Void)?) {
        let r = context.recording
        // Bit 63 is the VM model's, folded once per pass before the analyses see an input.
        let modelBit: UInt64 = 1 << 63
        var interests = boxes.map { (UInt64(1) << UInt64($0.index), $0.interest) }
        if boxes.contains(where: \.usesModel) { interests.append((modelBit, VMModel.interest)) }
        var sel = Selection(recording: r, interests: interests)
        // Pairing replies needs each command's and reply's id: read once, kept in the index.
        if sel.anyCommands { sel.idKeys = r.idKeys() }
        var driver = InputDriver()
        let total = context.endRecord - context.firstRecord
        let boxes = self.boxes
        let vm = context.vm
        var i = context.firstRecord
        let end = context.endRecord
        // The records passed are decoded into values: their pages can go (docs/INDEX.md).
        var pages = PassedPages(r.bytes)
        while i < end {
            if (i - context.firstRecord) & 0xFFFF == 0 {
                progress?(i - context.firstRecord, total)
                pages.passed(r.offset(i))
            }
            driver.step(r, i, sel) { mask, input in
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
            i += 1
        }
        progress?(total, total)
    }
}
