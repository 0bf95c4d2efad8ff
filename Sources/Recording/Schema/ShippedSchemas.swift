import QMP
import Synchronization

/// The `query-qmp-schema` replies qmpreplay carries, captured from real QEMU builds
/// (Recordings/schemas/index.tsv says which and how; Scripts/capture-schema captures one,
/// Scripts/embed-schemas embeds them in ShippedSchemaData.swift). A recording that holds no
/// schema of its own is checked against the one for its QEMU's major.minor version:
/// stable releases (7.2.0 ... 7.2.22) keep the schema of their release.
///
/// Example: `ShippedSchemas.entry(for: QEMUVersion(major: 7, minor: 2, micro: 0))` is the
/// 7.2.22 capture.
public enum ShippedSchemas {
    public struct Entry: Sendable {
        /// The file in Recordings/schemas/.
        public let file: String
        /// The QEMU version that answered (`7.2.22`).
        public let version: String
        /// The QEMU target (`x86_64`): other targets add and drop a few commands.
        public let target: String
        /// The greeting's `package` string.
        public let package: String
        let gzipBase64: String

        /// `7.2`.
        public var release: String { version.split(separator: ".").prefix(2).joined(separator: ".") }
    }

    public static var all: [Entry] { embedded }

    /// The shipped schema for this version's major.minor, if any.
    public static func entry(for version: QEMUVersion) -> Entry? {
        embedded.first { $0.release == "\(version.major).\(version.minor)" }
    }

    /// The entry for a version written `7.2`, `7.2.22` (major.minor decides).
    public static func entry(named version: String) -> Entry? {
        let parts = version.split(separator: ".").prefix(2).joined(separator: ".")
        return embedded.first { $0.release == parts }
    }

    private static let cache = Mutex<[String: QAPISchema]>([:])

    /// The schema model of an entry, built once per process.
    public static func schema(_ e: Entry) throws(SchemaError) -> QAPISchema {
        if let s = cache.withLock({ $0[e.file] }) { return s }
        let bytes = try reply(e)
        let s = try bytes.withUnsafeBufferPointer { b throws(SchemaError) in try QAPISchema(bytes: b) }
        cache.withLock { $0[e.file] = s }
        return s
    }

    /// The reply's exact bytes as QEMU sent them.
    public static func reply(_ e: Entry) throws(SchemaError) -> [UInt8] {
        guard let gz = Base64.decode(e.gzipBase64) else { throw SchemaError("\(e.file): damaged embedded data") }
        do {
            return try ImportSource.gunzip(gz, path: e.file).bytes
        } catch {
            throw SchemaError("\(e.file): \(error)")
        }
    }
}
