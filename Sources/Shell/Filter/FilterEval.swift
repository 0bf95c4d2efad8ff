import QMP
import Recording
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A filter compiled against one recording: name patterns turned into tables indexed by
/// the recording's name ids, times resolved to nanoseconds since its start, the whole
/// tree flattened into plain structs in memory of its own so that the evaluator touches
/// no reference counts (only JSON conditions allocate, when they decode). Immutable once built, so it is shared freely between threads.
final class BoundFilter: @unchecked Sendable {
    struct Node {
        var op: Op
        /// Kind bits (`kinds`, `name`).
        var mask: UInt16 = 0
        /// `name`: table offset; `json`: condition index; `not`: child; `and`/`or`: first child slot.
        var a: Int32 = 0
        /// `name`: table length; `and`/`or`: number of children; `direction`: 0x40 qemu, 0x80 client.
        var b: Int32 = 0
        /// `time`: bounds `lo <= t < hi`; `connection`: the number in `lo`; `name`: pattern index in `lo`.
        var lo: Int64 = 0
        var hi: Int64 = 0
    }

    enum Op: UInt8 {
        case kinds, name, direction, connection, time, json, not, and, or
    }

    private let nodes: UnsafeMutableBufferPointer<Node>
    private let children: UnsafeMutableBufferPointer<Int32>
    private let tables: UnsafeMutableBufferPointer<Bool>
    private let root: Int32
    private let patterns: [NamePattern]
    private let conditions: [JSONCondition]
    private let file: FileSpan
    /// Records outside this range never match (from top-level time conditions).
    let candidates: Range<Int>
    /// When every match carries one of these name ids (the filter requires a name), the
    /// names' record lists hold all the candidates (docs/INDEX.md); nil otherwise.
    let nameIDs: [UInt16]?

    init(_ node: FilterNode, _ recording: Recording) {
        var b = Builder(recording: recording)
        root = b.compile(node)
        nodes = .allocate(capacity: max(1, b.nodes.count))
        _ = nodes.initialize(from: b.nodes)
        children = .allocate(capacity: max(1, b.children.count))
        _ = children.initialize(from: b.children)
        tables = .allocate(capacity: max(1, b.tables.count))
        _ = tables.initialize(from: b.tables)
        patterns = b.patterns
        conditions = b.conditions
        file = FileSpan(recording)
        candidates = BoundFilter.candidates(node, recording)
        nameIDs = BoundFilter.requiredNames(node, recording).map { $0.sorted() }
    }

    /// The name ids one of which any record matching `node` must carry, or nil when a
    /// match may have any name (or the name table overflowed: names past it have no id).
    static func requiredNames(_ node: FilterNode, _ r: Recording) -> Set<UInt16>? {
        guard r.names.count < Int(UInt16.max) else { return nil }
        switch node {
        case .name(_, let pattern):
            return Set(r.names.indices.dropFirst().filter { pattern.matches(r.names[$0]) }.map { UInt16($0) })
        case .and(let items):
            // Every item must hold: the narrowest requirement of any one will do.
            return items.compactMap { requiredNames($0, r) }.min { $0.count < $1.count }
        case .or(let items):
            var all = Set<UInt16>()
            for item in items {
                guard let s = requiredNames(item, r) else { return nil }
                all.formUnion(s)
            }
            return all
        default:
            return nil
        }
    }

    deinit {
        nodes.deallocate()
        children.deallocate()
        tables.deallocate()
    }

    @inline(__always)
    func matches(_ recording: Recording, _ i: Int) -> Bool {
        var state = FilterEvalState()
        return evaluate(root, recording, i, &state)
    }

    private func evaluate(_ n: Int32, _ r: Recording, _ i: Int, _ state: inout FilterEvalState) -> Bool {
        let node = nodes[Int(n)]
        switch node.op {
        case .kinds:
            return state.kindBits(r, i) & node.mask != 0
        case .name:
            guard state.kindBits(r, i) == node.mask else { return false }
            let id = Int(r.nameID(i))
            if id < Int(node.b) { return tables[Int(node.a) + id] }
            return overflowName(r, i, Int(node.lo))
        case .direction:
            switch r.direction(i) {
            case .qemu?: return node.b == 0x40
            case .client?: return node.b == 0x80
            case nil: return false
            }
        case .connection:
            return Int64(r.connection(i)) == node.lo
        case .time:
            let t = r.time(i)
            return t >= node.lo && t < node.hi
        case .json:
            return conditions[Int(node.a)].evaluate(r, i, &state, file)
        case .not:
            return !evaluate(node.a, r, i, &state)
        case .and:
            for k in Int(node.a)..<Int(node.a + node.b) where !evaluate(children[k], r, i, &state) { return false }
            return true
        case .or:
            for k in Int(node.a)..<Int(node.a + node.b) where evaluate(children[k], r, i, &state) { return true }
            return false
        }
    }

    /// A name id past the table (the index's overflow id): read the name from the record.
    /// Kept out of `evaluate`, whose frame would otherwise make room for a `Regex` (a type
    /// of resilient size) on every call.
    @inline(never)
    private func overflowName(_ r: Recording, _ i: Int, _ pattern: Int) -> Bool {
        guard let name = r.name(i) else { return false }
        return patterns[pattern].matches(name)
    }

    /// Flattens a `FilterNode` tree for one recording.
    private struct Builder {
        let recording: Recording
        var nodes: [Node] = []
        var children: [Int32] = []
        var tables: [Bool] = []
        var patterns: [NamePattern] = []
        var conditions: [JSONCondition] = []

        mutating func add(_ n: Node) -> Int32 {
            nodes.append(n)
            return Int32(nodes.count - 1)
        }

        mutating func compile(_ node: FilterNode) -> Int32 {
            switch node {
            case .kinds(let ks):
                return add(Node(op: .kinds, mask: ks.reduce(0) { $0 | kindBit($1) }))
            case .name(let kind, let pattern):
                // Index 0 is "no name": a record the index gives no name matches no name pattern.
                let names = recording.names
                let offset = tables.count
                tables.append(false)
                for name in names.dropFirst() { tables.append(pattern.matches(name)) }
                patterns.append(pattern)
                return add(Node(op: .name, mask: kindBit(kind), a: Int32(offset), b: Int32(names.count), lo: Int64(patterns.count - 1)))
            case .direction(let d):
                return add(Node(op: .direction, b: d == .qemu ? 0x40 : 0x80))
            case .connection(let c):
                return add(Node(op: .connection, lo: Int64(c)))
            case .time(let t):
                let (lo, hi) = t.bounds(in: recording)
                let n = add(Node(op: .time, lo: lo, hi: hi))
                if case .compare(.ne, _) = t { return add(Node(op: .not, a: n)) }
                return n
            case .compare, .has:
                conditions.append(JSONCondition(node))
                return add(Node(op: .json, a: Int32(conditions.count - 1)))
            case .not(let inner):
                let c = compile(inner)
                return add(Node(op: .not, a: c))
            case .and(let items), .or(let items):
                // Index-only conditions first, so that and/or short-circuit before decoding.
                let ordered = items.filter { !$0.needsDecode } + items.filter { $0.needsDecode }
                let compiled = ordered.map { compile($0) }
                let first = children.count
                children += compiled
                let isAnd: Bool
                if case .and = node { isAnd = true } else { isAnd = false }
                return add(Node(op: isAnd ? .and : .or, a: Int32(first), b: Int32(compiled.count)))
            }
        }
    }

    /// The records that top-level time conditions allow (binary search on the index).
    static func candidates(_ node: FilterNode, _ r: Recording) -> Range<Int> {
        var lo = Int64.min, hi = Int64.max
        func narrow(_ n: FilterNode) {
            guard case .time(let t) = n else { return }
            if case .compare(.ne, _) = t { return }
            let b = t.bounds(in: r)
            lo = max(lo, b.lo)
            hi = min(hi, b.hi)
        }
        if case .and(let ns) = node { ns.forEach(narrow) } else { narrow(node) }
        if lo >= hi { return 0..<0 }
        let start = lo == Int64.min ? 0 : r.firstIndex(atOrAfter: lo)
        let end = hi == Int64.max ? r.count : r.firstIndex(atOrAfter: hi)
        return start..<max(start, end)
    }
}

/// Where a recording's bytes are, read once per binding (the recording's accessors are
/// not free, and a scan asks for every record).
struct FileSpan {
    let base: UnsafePointer<UInt8>?
    let count: Int
    let records: Int

    init(_ r: Recording) {
        base = r.bytes.base?.assumingMemoryBound(to: UInt8.self)
        count = r.bytes.count
        records = r.count
    }

    /// Record `i`'s line, or a little more (up to the next record: skipped lines, the
    /// trailer), found without searching for the newline. More bytes only make
    /// `JSONCondition.definitelyMissing` more cautious.
    @inline(__always)
    func region(_ r: Recording, _ i: Int) -> UnsafeBufferPointer<UInt8> {
        guard let base else { return UnsafeBufferPointer(start: nil, count: 0) }
        let start = r.offset(i)
        let end = i + 1 < records ? r.offset(i + 1) : count
        return UnsafeBufferPointer(start: base + start, count: max(0, end - start))
    }
}

/// Per-record evaluation state: the record's kind (read once) and its decoded message,
/// so that several JSON conditions on the same record decode it once.
struct FilterEvalState {
    private var kinds: UInt16 = 0
    var decoded = false
    var json: JSONValue?

    @inline(__always)
    mutating func kindBits(_ r: Recording, _ i: Int) -> UInt16 {
        if kinds == 0 { kinds = kindBit(r.kind(i)) }
        return kinds
    }

    mutating func message(_ recording: Recording, _ i: Int) -> JSONValue? {
        if !decoded {
            decoded = true
            json = (try? recording.record(at: i))?.message?.json
        }
        return json
    }
}

@inline(__always) func kindBit(_ k: RecordKind) -> UInt16 {
    switch k {
    case .greeting: return 1 << 0
    case .command: return 1 << 1
    case .return: return 1 << 2
    case .error: return 1 << 3
    case .event: return 1 << 4
    case .other: return 1 << 5
    case .open: return 1 << 6
    case .close: return 1 << 7
    case .note: return 1 << 8
    }
}

/// `PATH OP VALUE` or `has PATH`, evaluated on the decoded message.
final class JSONCondition: @unchecked Sendable {
    let path: JSONPathSpec
    /// nil for `has`.
    let op: CompareOp?
    let value: FilterValue?
    /// Member names of the path whose bytes must all occur in the record line for the path
    /// to exist (see `definitelyMissing`); empty when no component is safe to use.
    let keys: [ByteNeedle]
    /// A key contains `K`, which the Kelvin sign (U+212A) is canonically equivalent to.
    let keyNeedsASCIILine: Bool

    init(_ node: FilterNode) {
        switch node {
        case .compare(let p, let o, let v): path = p; op = o; value = v
        case .has(let p): path = p; op = nil; value = nil
        default: preconditionFailure("not a JSON condition")
        }
        // Plain member names (array indexes may also be written as digits), longest first.
        let eligible = path.components.filter { c in
            !c.allSatisfy(\.isNumber)
                && c.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x5F || $0 == 0x2D }
        }
        var seen = Set<String>()
        keys = eligible.sorted { $0.utf8.count > $1.utf8.count }.filter { seen.insert($0).inserted }.map { ByteNeedle(Array($0.utf8)) }
        keyNeedsASCIILine = eligible.contains { $0.contains("K") }
    }

    static let messageKinds: UInt16 = [RecordKind.greeting, .command, .return, .error, .event, .other].reduce(0) { $0 | kindBit($1) }

    /// The result when the path does not exist: false, except for `!=` and `!~`.
    var missingResult: Bool { op?.isNegation ?? false }

    func evaluate(_ r: Recording, _ i: Int, _ state: inout FilterEvalState, _ file: FileSpan) -> Bool {
        guard state.kindBits(r, i) & JSONCondition.messageKinds != 0 else { return missingResult }
        if !state.decoded, !keys.isEmpty, definitelyMissing(file.region(r, i)) { return missingResult }
        guard let message = state.message(r, i), let v = path.resolve(message) else { return missingResult }
        guard let op else { return true }
        return JSONCondition.test(v, op, value!)
    }

    /// True when the record line cannot hold the path: the bytes of one of its member
    /// names do not occur in it, and nothing could hide them (a `\u` escape, a base64
    /// message, or for names with `K` any non-ASCII byte). Exact: never true for a record
    /// whose message has the path.
    func definitelyMissing(_ line: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = line.baseAddress, line.count > 0 else { return false }
        if keys.allSatisfy({ $0.occurs(in: base, line.count) }) { return false }
        if JSONCondition.mayHideNames(base, line.count) { return false }
        if keyNeedsASCIILine && line.contains(where: { $0 >= 0x80 }) { return false }
        return true
    }

    /// Whether the bytes hold a `\u` escape or a `"b64"` member (one vector pass).
    static func mayHideNames(_ base: UnsafePointer<UInt8>, _ n: Int) -> Bool {
        let raw = UnsafeRawPointer(base)
        let backslash = SIMD16<UInt8>(repeating: 0x5C)
        let b = SIMD16<UInt8>(repeating: UInt8(ascii: "b")), four = SIMD16<UInt8>(repeating: UInt8(ascii: "4"))
        func exact(_ j: Int) -> Bool {
            if base[j] == 0x5C { return j + 1 < n && base[j + 1] == UInt8(ascii: "u") }
            return j + 5 <= n && base[j] == 0x22 && base[j + 1] == UInt8(ascii: "b") && base[j + 2] == UInt8(ascii: "6")
                && base[j + 3] == UInt8(ascii: "4") && base[j + 4] == 0x22
        }
        var i = 0
        while i + 19 <= n {
            let x = raw.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self)
            let y = raw.loadUnaligned(fromByteOffset: i + 1, as: SIMD16<UInt8>.self)
            let z = raw.loadUnaligned(fromByteOffset: i + 3, as: SIMD16<UInt8>.self)
            let hits = (x .== backslash) .| ((y .== b) .& (z .== four))
            if any(hits) {
                for k in 0..<16 where hits[k] && exact(i + k) { return true }
            }
            i += 16
        }
        while i < n {
            if (base[i] == 0x5C || base[i] == UInt8(ascii: "\"")) && exact(i) { return true }
            i += 1
        }
        return false
    }

    static func test(_ v: JSONValue, _ op: CompareOp, _ value: FilterValue) -> Bool {
        switch op {
        case .eq: return equal(v, value)
        case .ne: return !equal(v, value)
        case .lt: return order(v, value).map { $0 < 0 } ?? false
        case .le: return order(v, value).map { $0 <= 0 } ?? false
        case .gt: return order(v, value).map { $0 > 0 } ?? false
        case .ge: return order(v, value).map { $0 >= 0 } ?? false
        case .match, .noMatch:
            guard case .regex(let re) = value else { return false }
            let hit = v.stringValue.map(re.matches) ?? false
            return op == .match ? hit : !hit
        }
    }

    static func equal(_ v: JSONValue, _ value: FilterValue) -> Bool {
        switch (v, value) {
        case (.number(let n), .number(let lit)): return compare(n, lit) == 0
        case (.string(let s), .string(let lit)): return s == lit
        case (.bool(let b), .bool(let lit)): return b == lit
        case (.null, .null): return true
        default: return false
        }
    }

    /// -1, 0, 1, or nil when the types do not compare.
    static func order(_ v: JSONValue, _ value: FilterValue) -> Int? {
        switch (v, value) {
        case (.number(let n), .number(let lit)): return compare(n, lit)
        case (.string(let s), .string(let lit)): return s < lit ? -1 : (s == lit ? 0 : 1)
        default: return nil
        }
    }

    /// Integers compare exactly at any size; anything with a fraction or exponent as Double.
    static func compare(_ n: JSONNumber, _ lit: NumberLiteral) -> Int? {
        if n.isInteger, let li = lit.integer {
            if let b = lit.int64, let a = Int64(n.text) { return a < b ? -1 : (a == b ? 0 : 1) }
            return NumberLiteral.compareIntegers(NumberLiteral.normalize(integerText: n.text), li)
        }
        guard let a = n.double else { return nil }
        let b = lit.double
        return a < b ? -1 : (a == b ? 0 : 1)
    }
}

/// A byte string to look for in record lines.
struct ByteNeedle: Sendable {
    let bytes: [UInt8]
    /// Two positions in `bytes` holding the bytes least likely to occur in a QMP record
    /// line (JSON lines are full of quotes, digits and common letters); the vector scan
    /// tests these two, `memcmp` confirms.
    let probe1: Int
    let probe2: Int

    /// From common to rare in QMP record lines; bytes not listed count as rarest.
    private static let commonness: [UInt8] = Array(" \":,{}0123456789etaosnirlcdumph-_gfbyvwkxqjzETAOSNIRLCDUMPHGFBYVWKXQJZ".utf8)

    init(_ bytes: [UInt8]) {
        precondition(!bytes.isEmpty)
        self.bytes = bytes
        func rank(_ b: UInt8) -> Int { ByteNeedle.commonness.firstIndex(of: b) ?? Int.max }
        let byRarity = bytes.indices.sorted { rank(bytes[$0]) > rank(bytes[$1]) }
        probe1 = byRarity[0]
        probe2 = byRarity.count > 1 ? byRarity[1] : byRarity[0]
    }

    /// Whether the bytes occur in `base[0..<n]`: 16 positions at a time (SIMD on the two
    /// probe bytes), then `memcmp` on candidates.
    func occurs(in base: UnsafePointer<UInt8>, _ n: Int) -> Bool {
        let m = bytes.count
        guard m <= n else { return false }
        return bytes.withUnsafeBufferPointer { needle in
            let np = needle.baseAddress!
            let raw = UnsafeRawPointer(base)
            let p1 = probe1, p2 = probe2
            let v1 = SIMD16<UInt8>(repeating: np[p1])
            let v2 = SIMD16<UInt8>(repeating: np[p2])
            let reach = max(p1, p2) + 16
            var i = 0
            while i + reach <= n {
                let a = raw.loadUnaligned(fromByteOffset: i + p1, as: SIMD16<UInt8>.self)
                let b = raw.loadUnaligned(fromByteOffset: i + p2, as: SIMD16<UInt8>.self)
                let hits = (a .== v1) .& (b .== v2)
                if any(hits) {
                    for k in 0..<16 where hits[k] && i + k + m <= n {
                        if memcmp(base + i + k, np, m) == 0 { return true }
                    }
                }
                i += 16
            }
            while i + m <= n {
                if base[i + p1] == np[p1] && memcmp(base + i, np, m) == 0 { return true }
                i += 1
            }
            return false
        }
    }
}

/// Compiled filters per recording, keyed by the recording's identity.
///
/// Thread-safe: a mutex guards the table. The recording used last is held strongly (so
/// that its identity cannot be reused while it is the fast-path key); every other entry
/// holds its recording weakly, so a recording freed and another allocated at the same
/// address is never confused with it. A filter therefore keeps at most one recording
/// alive: the one it was last used on.
final class FilterBindingCache: @unchecked Sendable {
    private struct Entry {
        weak var recording: Recording?
        let bound: BoundFilter
    }

    private struct Table {
        var entries: [ObjectIdentifier: Entry] = [:]
        var lastRecording: Recording?
        var lastID: ObjectIdentifier?
        var lastBound: BoundFilter?
    }

    private let table = Mutex(Table())
    private let node: FilterNode

    init(_ node: FilterNode) { self.node = node }

    @inline(__always)
    func bound(for recording: Recording) -> BoundFilter {
        let id = ObjectIdentifier(recording)
        // lastRecording is strong: while it is set, lastID names it and nothing else.
        if let b = table.withLock({ $0.lastID == id ? $0.lastBound : nil }) { return b }
        return slowBound(for: recording, id)
    }

    private func slowBound(for recording: Recording, _ id: ObjectIdentifier) -> BoundFilter {
        let found = table.withLock { $0.entries[id].flatMap { $0.recording === recording ? $0.bound : nil } }
        // Built outside the lock (matching patterns against every name takes a moment);
        // two threads racing build the same thing.
        let b = found ?? BoundFilter(node, recording)
        table.withLock { t in
            t.entries = t.entries.filter { $0.value.recording != nil }
            t.entries[id] = Entry(recording: recording, bound: b)
            t.lastRecording = recording
            t.lastID = id
            t.lastBound = b
        }
        return b
    }
}
