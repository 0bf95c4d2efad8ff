import QMP
import Recording

/// The real `query-qmp-schema` replies shipped in Recordings/schemas/ (QEMU 5.2.0, 7.2.22,
/// 10.0.2, x86_64), for tests of the schema model and of validation against it.
///
/// Example: `SchemaFixtures.schema("7.2")` is QEMU 7.2.22's model.
public enum SchemaFixtures {
    /// The reply's exact bytes (`{"return": [...]}` with QEMU's CR LF).
    public static func reply(_ release: String) -> [UInt8] {
        guard let e = ShippedSchemas.entry(named: release) else { fatalError("no shipped schema for \(release)") }
        return try! ShippedSchemas.reply(e)
    }

    public static func schema(_ release: String) -> QAPISchema {
        guard let e = ShippedSchemas.entry(named: release) else { fatalError("no shipped schema for \(release)") }
        return try! ShippedSchemas.schema(e)
    }
}
