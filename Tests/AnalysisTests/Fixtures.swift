/// Paths of the recordings shipped in Recordings/.
enum Fixtures {
    static func recording(_ name: String) -> String {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        parts.removeLast(3)   // Tests/AnalysisTests/Fixtures.swift
        return parts.joined(separator: "/") + "/Recordings/" + name
    }
}
