#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An output path that already holds a file, refused because `--force` was not given.
public struct OutputExistsError: Error, CustomStringConvertible, Sendable {
    public let path: String
    /// The option that allows the overwrite, named in the message (`--force`).
    public let flag: String
    public var description: String {
        "\(path) already exists; not overwriting it (recordings are evidence): choose another name or add \(flag)"
    }
}

/// The one rule for every command that writes a recording (`record`, `synth`, `import`,
/// the shell's `export -o`): an existing file is never replaced unless the user said
/// `--force`. Call `OutputGuard.check(path, force: force)` before creating the file.
///
/// Refused: an existing regular file (empty or not, through a symbolic link too).
/// Allowed: `-` (standard output), a path that does not exist (a dangling symbolic link
/// included: nothing is lost), and anything that is not a regular file, such as
/// `/dev/null` or a FIFO. A directory is left to fail when it is opened.
public enum OutputGuard {
    public static func check(_ path: String, force: Bool, flag: String = "--force") throws(OutputExistsError) {
        guard !force, exists(path) else { return }
        throw OutputExistsError(path: path, flag: flag)
    }

    /// Whether writing `path` would replace a regular file.
    public static func exists(_ path: String) -> Bool {
        guard path != "-" else { return false }
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        return (st.st_mode & S_IFMT) == S_IFREG
    }
}
