/// Shell-style name patterns for event and command names: `BALLOON*`, `BLOCK_JOB_?????`.
/// Case-sensitive, as QMP names are.
public struct Glob: Sendable, Hashable {
    public let pattern: String
    private let bytes: [UInt8]
    public let isLiteral: Bool

    public init(_ pattern: String) {
        self.pattern = pattern
        bytes = Array(pattern.utf8)
        isLiteral = !bytes.contains(UInt8(ascii: "*")) && !bytes.contains(UInt8(ascii: "?"))
    }

    public func matches(_ name: String) -> Bool {
        if isLiteral { return name == pattern }
        let s = Array(name.utf8)
        var p = 0, i = 0, star = -1, mark = 0
        while i < s.count {
            if p < bytes.count && (bytes[p] == UInt8(ascii: "?") || bytes[p] == s[i]) {
                p += 1; i += 1
            } else if p < bytes.count && bytes[p] == UInt8(ascii: "*") {
                star = p; mark = i; p += 1
            } else if star >= 0 {
                p = star + 1; mark += 1; i = mark
            } else {
                return false
            }
        }
        while p < bytes.count && bytes[p] == UInt8(ascii: "*") { p += 1 }
        return p == bytes.count
    }
}
