import QMP
import Recording

/// "Did you mean ...?": the closest known words to a mistyped one (shell commands, analysis
/// names, event and command names, filter fields, options), for the shell and the CLI.
///
/// Closeness is the edit distance with transpositions (`nxet` is one edit from `next`),
/// ignoring case; a word is offered when it is within about a third of the typed word's
/// length. Failing that, known words that start with the typed one (`BALLOON` ->
/// `BALLOON_CHANGE`) are offered.
public enum Suggestions {
    /// The best candidates (at most `limit`), closest first; empty when nothing is close.
    public static func closest(to word: String, among candidates: [String], limit: Int = 3) -> [String] {
        let w = Array(word.lowercased())
        guard !w.isEmpty else { return [] }
        let allowed = w.count <= 3 ? 1 : w.count <= 8 ? 2 : 3
        var scored: [(String, Int)] = []
        var seen = Set<String>()
        for c in candidates where !c.isEmpty && c != word && seen.insert(c).inserted {
            let d = distance(w, Array(c.lowercased()), cap: allowed)
            if d <= allowed { scored.append((c, d)) }
        }
        if scored.isEmpty, w.count >= 3 {
            let prefixed = candidates.filter { $0.lowercased().hasPrefix(String(w)) && $0 != word }
            return Array(Set(prefixed).sorted { ($0.count, $0) < ($1.count, $1) }.prefix(limit))
        }
        // Only the closest tier: 'nxet' is one edit from 'next' and two from 'set'.
        let best = scored.map(\.1).min() ?? 0
        return scored.filter { $0.1 == best }.sorted { ($0.0.count, $0.0) < ($1.0.count, $1.0) }.prefix(limit).map(\.0)
    }

    /// `; did you mean 'next'?` (or `'a' or 'b'`), or the empty string.
    public static func didYouMean(_ word: String, among candidates: [String], quote: Bool = true) -> String {
        let best = closest(to: word, among: candidates, limit: 2)
        guard !best.isEmpty else { return "" }
        let q = best.map { quote ? "'\($0)'" : $0 }
        return "; did you mean \(q.joined(separator: " or "))?"
    }

    /// Optimal string alignment distance (Damerau-Levenshtein without repeated edits of a
    /// substring); stops early once every entry of a row exceeds `cap`.
    static func distance(_ a: [Character], _ b: [Character], cap: Int) -> Int {
        if abs(a.count - b.count) > cap { return cap + 1 }
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev2 = [Int](repeating: 0, count: b.count + 1)
        var prev = Array(0...b.count)
        var cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            var rowMin = cur[0]
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                var v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { v = min(v, prev2[j - 2] + 1) }
                cur[j] = v
                rowMin = min(rowMin, v)
            }
            if rowMin > cap { return cap + 1 }
            (prev2, prev, cur) = (prev, cur, prev2)
        }
        return prev[b.count]
    }

    /// Event names a user may mean: the catalog's and the recording's (UPPER_CASE names).
    public static func eventNames(in recording: Recording) -> [String] {
        var names = EventCatalog.names
        for (id, n) in recording.names.enumerated() where id > 0 && isEventName(n) { names.append(n) }
        return names
    }

    /// Command names of the recording (lower-case names).
    public static func commandNames(in recording: Recording) -> [String] {
        recording.names.enumerated().compactMap { id, n in id > 0 && !isEventName(n) && !n.isEmpty ? n : nil }
    }

    /// QMP's naming: events are UPPER_CASE, commands lower-case.
    public static func isEventName(_ n: String) -> Bool { n.uppercased() == n && n.contains(where: \.isLetter) }
}
