import Foundation

/// Where the package's files are, for tests that read shipped recordings and fixtures: the
/// one way every test target finds the package root (the directory holding Package.swift,
/// found upwards from this source file).
///
/// Example: `PackageRoot.recording("vnc.qmprec")` is `<root>/Recordings/vnc.qmprec`.
public enum PackageRoot {
    public static let path: String = {
        var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while url.path != "/" {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
            url.deleteLastPathComponent()
        }
        fatalError("package root not found above \(#filePath)")
    }()

    public static var url: URL { URL(fileURLWithPath: path) }

    /// A path below the root: `PackageRoot.file("Tests/Fixtures/import/x")`.
    public static func file(_ relative: String) -> String { path + "/" + relative }

    /// A recording shipped in Recordings/.
    public static func recording(_ name: String) -> String { file("Recordings/" + name) }

    /// The seed documents in the folder beside the repository root (override: QMPREPLAY_SEEDS),
    /// used by the catalog tests; see docs/CATALOG.md for what they are.
    public static var sharedSeeds: String { URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("shared/seeds").path }
}
