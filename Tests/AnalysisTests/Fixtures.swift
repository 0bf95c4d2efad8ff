import TestSupport
/// Paths of the recordings shipped in Recordings/.
enum Fixtures {
    static func recording(_ name: String) -> String {
        PackageRoot.recording(name)
    }
}
