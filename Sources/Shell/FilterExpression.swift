import QMP
import Recording

/// A filter over the records of a recording, as `qmpreplay shell` takes it in
/// `filter EXPR`, `find EXPR` and `next FILTER`.
///
/// ```
/// STOP or RESUME                        bare ALL_CAPS word: an event name (glob: BLOCK_JOB_*)
/// query-status                          bare lower-case word: a command name
/// event=BALLOON* and data.actual < 1G   JSON path comparison; 1G = 1073741824
/// kind error and error.class != "GenericError"
/// command ~ /^query-/ and from client and conn 2
/// arguments.name ~ /^vnet/ or has data.offset
/// time 10:00:05..10:00:06 and not kind return
/// ```
///
/// Grammar (keywords are case-insensitive, names and paths case-sensitive):
/// ```
/// expr       = or ;
/// or         = and { ("or" | "||") and } ;
/// and        = unary { ("and" | "&&") unary } ;
/// unary      = ("not" | "!") unary | primary ;
/// primary    = "(" expr ")" | term ;
/// term       = name-term | kind-term | from-term | conn-term | time-term
///            | "has" path | path cmp value | bare-word ;
/// name-term  = ("event" | "command" | "error") [ name | ("=" | "==") name | "~" regex ] ;
/// name       = WORD (a glob: * and ?) | STRING (exact) ;
/// kind-term  = "kind" ["=" | "=="] KIND {"," KIND} ;
/// from-term  = ("from" | "direction") ["=" | "=="] ("qemu" | "client") ;
/// conn-term  = ("conn" | "connection") ["=" | "=="] INTEGER ;
/// time-term  = "time" ("==" | "=" | "!=" | "<" | "<=" | ">" | ">=") TIME
///            | "time" TIME ".." [TIME] | "time" ".." TIME ;
/// path       = ["msg."] MEMBER {"." (MEMBER | INDEX)} ;
/// cmp        = "==" | "=" | "!=" | "<" | "<=" | ">" | ">=" | "~" | "=~" | "!~" ;
/// value      = NUMBER [SUFFIX] | STRING | "true" | "false" | "null" | regex ;
/// regex      = "/" ... "/" ["i" | "s" | "m"]... | STRING ;
/// bare-word  = ALL_CAPS (event) | lower-case-with-hyphens (command) | KIND (kind) ;
/// ```
///
/// Semantics:
/// - `event NAME` matches event records with that name; `command NAME` command records
///   (`execute` and `exec-oob`) with that name, **not** their replies (kinds `return` and
///   `error`); `error CLASS` error replies with that class. Unquoted names are globs
///   (`*`, `?`), quoted names exact. Alone, `event`, `command` and `error` mean the kind.
///   Names come from the index: a record the index gives no name matches no name pattern.
/// - `kind K`, `from D`, `conn N`, `time ...` read only the index. Times use the project's
///   time syntax resolved against the recording: `#N` is record N's time (after every
///   record when N is past the end); wall-clock times use the header's start.
///   `A..B` includes A and excludes B. Relative times (`+5s`, `-2s`) are an error.
/// - A path is looked up in the message JSON: the first component is a top-level member
///   (`data`, `arguments`, `return`, `error`, `id`, `event`, `execute`, `exec-oob`,
///   `timestamp`, `QMP`; `msg.NAME` reaches any other member and `msg` is the whole
///   message); numeric components index arrays (`return.0.device`).
/// - Numbers compare numerically: two integers exactly at any size (ids such as
///   18446744073709551615), otherwise as Double. Suffixes K, M, G, T (also Ki, Mi, Gi, Ti,
///   any case) multiply by powers of 1024: 1G = 1Gi = 1073741824, 1.5K = 1536. Strings
///   compare as Swift strings (Unicode canonical equivalence; `<` orders by code points of
///   the normalised form). `~` matches a string anywhere (anchor with ^ and $).
/// - A type mismatch (a number against a string, `<` on a boolean member, `~` on a number)
///   makes `==`, `<`, `<=`, `>`, `>=` and `~` false. A path that does not exist makes
///   every comparison false except `!=` and `!~`, which are always the exact negations of
///   `==` and `~` (so `id != 5` holds for records without an id). `has PATH` is true when
///   the path exists, even with the value null.
/// - Records without a message (`open`, `close`, `note`) have no paths; they are never
///   decoded. Messages that are not JSON have no paths either.
///
/// Evaluation: conditions that read only the index are tried before JSON conditions, and
/// a record is decoded at most once per `matches` call, only when a JSON condition is
/// reached and the record line could contain the path (a quick byte search for the
/// path's member name rules most records out without parsing).
public struct FilterExpression: Sendable, CustomStringConvertible {
    /// The expression as typed.
    public let text: String
    let root: FilterNode
    private let cache: FilterBindingCache
    /// True when matching never needs a full decode (so callers can scan millions of records fast).
    /// (A recording with more than 65,534 distinct record names stores the rest without
    /// a name id; those records are decoded to read their name.)
    public let indexOnly: Bool

    public init(parsing text: String) throws(FilterParseError) {
        self.text = text
        root = try FilterParser.parse(text)
        indexOnly = !root.needsDecode
        cache = FilterBindingCache(root)
    }

    /// Whether record `i` matches. Uses only the index (kind, direction, name, connection,
    /// time) when the expression needs nothing else; decodes the record only for JSON-path
    /// conditions. Thread-safe. For long scans `matcher(for:)` saves a cache lookup per record.
    public func matches(_ recording: Recording, _ i: Int) -> Bool {
        cache.bound(for: recording).matches(recording, i)
    }

    /// The name ids a matching record of `recording` must carry (nil: any name may match):
    /// a search can walk those names' record lists instead of every record.
    public func requiredNameIDs(in recording: Recording) -> [UInt16]? {
        cache.bound(for: recording).nameIDs
    }

    /// The record kinds a matching record can have (nil: any): `GUEST_PANICKED or
    /// BLOCK_IO_ERROR` only events, `data.x > 1` only messages. A caller testing one record at a
    /// time (the dashcam's triggers) skips the others without building anything.
    public var possibleKinds: Set<RecordKind>? { root.possibleKinds }

    /// The normalised form: lower-case keywords, explicit `event`/`command`/`kind`,
    /// `==` for `=`, single spaces, only the parentheses precedence needs. It parses back
    /// to the same filter.
    public var description: String { root.render() }

    /// The filter compiled for one recording (cached per recording).
    public func matcher(for recording: Recording) -> FilterMatcher {
        FilterMatcher(recording: recording, bound: cache.bound(for: recording))
    }

    /// The first matching record at or after `start`, before `end` (default: the end).
    public func firstMatch(in recording: Recording, from start: Int = 0, before end: Int? = nil) -> Int? {
        matcher(for: recording).firstMatch(from: start, before: end)
    }

    /// The last matching record before `end`, at or after `start`.
    public func lastMatch(in recording: Recording, before end: Int, from start: Int = 0) -> Int? {
        matcher(for: recording).lastMatch(before: end, from: start)
    }

    /// All matching records in `range` (default: the whole recording), in order.
    public func matchingIndices(in recording: Recording, _ range: Range<Int>? = nil) -> [Int] {
        matcher(for: recording).matchingIndices(range)
    }
}

/// A filter bound to one recording: the fast way to test many records.
public struct FilterMatcher: Sendable {
    public let recording: Recording
    let bound: BoundFilter

    @inline(__always)
    public func matches(_ i: Int) -> Bool { bound.matches(recording, i) }

    /// Records outside this range cannot match (top-level time conditions, found by binary
    /// search); scans may start and stop there.
    public var candidates: Range<Int> { bound.candidates }

    public func firstMatch(from start: Int = 0, before end: Int? = nil) -> Int? {
        let c = bound.candidates
        var i = max(start, c.lowerBound)
        let stop = min(end ?? recording.count, c.upperBound)
        while i < stop {
            if matches(i) { return i }
            i += 1
        }
        return nil
    }

    public func lastMatch(before end: Int, from start: Int = 0) -> Int? {
        let c = bound.candidates
        var i = min(end, c.upperBound) - 1
        let stop = max(start, c.lowerBound)
        while i >= stop {
            if matches(i) { return i }
            i -= 1
        }
        return nil
    }

    public func matchingIndices(_ range: Range<Int>? = nil) -> [Int] {
        let r = range ?? 0..<recording.count
        let c = bound.candidates
        let lo = max(r.lowerBound, c.lowerBound), hi = min(r.upperBound, c.upperBound)
        var out: [Int] = []
        var i = lo
        while i < hi {
            if matches(i) { out.append(i) }
            i += 1
        }
        return out
    }
}

/// A filter that does not parse: where, what was wrong, and what would be right.
public struct FilterParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 1-based column (in characters) of the problem in the input.
    public let column: Int
    /// What was wrong and what would be right.
    public let message: String

    public init(column: Int, message: String) {
        self.column = column
        self.message = message
    }

    /// `column 12: expected a value after '<' (a number like 1G or a "string")`
    public var description: String { "column \(column): \(message)" }

    /// Two lines: the input, and a caret under the column — for the shell to print.
    /// Tabs in the input are repeated in the padding so that the caret lines up.
    public func pointing(at input: String) -> String {
        var pad = ""
        var n = 0
        for c in input where n < column - 1 {
            pad.append(c == "\t" ? "\t" : " ")
            n += 1
        }
        if n < column - 1 { pad += String(repeating: " ", count: column - 1 - n) }
        return input + "\n" + pad + "^"
    }
}
