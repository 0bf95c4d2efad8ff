#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The recordings a fleet command reads, from what the user typed: files as given,
/// directories walked recursively for `*.qmprec` and `*.qmprec.gz` (sorted, so that runs
/// are repeatable), and glob patterns the shell left unexpanded (quoted, or from a script).
///
/// Example: `FleetInputs.expand(["/var/log/qmp/", "old/*.qmprec.gz"])`.
public struct FleetInputs: Sendable {
    /// One input that names no readable recording: reported as one error line.
    public struct Problem: Sendable, Equatable {
        public var path: String
        public var message: String
    }

    /// Files to read, in order: each argument's files in the order given.
    public var files: [String] = []
    public var problems: [Problem] = []
    /// Whether an argument was a directory or a pattern (then even one file is a fleet).
    public var expanded = false

    /// Whether `name` is a recording by its suffix (what a directory walk picks up).
    public static func isRecordingName(_ name: String) -> Bool {
        name.hasSuffix(".qmprec") || name.hasSuffix(".qmprec.gz")
    }

    public static func expand(_ arguments: [String]) -> FleetInputs {
        var result = FleetInputs()
        for arg in arguments {
            if arg == "-" || arg.hasPrefix("/dev/") || arg.hasPrefix("/proc/") {
                result.files.append(arg)
                continue
            }
            var st = stat()
            if stat(arg, &st) == 0 {
                if (st.st_mode & S_IFMT) == S_IFDIR {
                    result.expanded = true
                    let before = result.files.count
                    walk(arg, into: &result)
                    if result.files.count == before {
                        result.problems.append(Problem(path: arg, message: "no .qmprec or .qmprec.gz files in this directory"))
                    }
                } else {
                    result.files.append(arg)
                }
                continue
            }
            if arg.contains(where: { $0 == "*" || $0 == "?" || $0 == "[" }) {
                result.expanded = true
                let matches = globMatches(arg)
                if matches.isEmpty { result.problems.append(Problem(path: arg, message: "no file matches this pattern")) }
                for m in matches {
                    var ms = stat()
                    if stat(m, &ms) == 0, (ms.st_mode & S_IFMT) == S_IFDIR { walk(m, into: &result) } else { result.files.append(m) }
                }
                continue
            }
            result.problems.append(Problem(path: arg, message: String(cString: strerror(errno))))
        }
        return result
    }

    private static func walk(_ dir: String, into result: inout FleetInputs) {
        guard let d = opendir(dir) else {
            result.problems.append(Problem(path: dir, message: String(cString: strerror(errno))))
            return
        }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." || name.hasPrefix(".") { continue }
            names.append(name)
        }
        closedir(d)
        let base = dir.hasSuffix("/") ? dir : dir + "/"
        for name in names.sorted() {
            let path = base + name
            var st = stat()
            // lstat: a symlinked directory is not followed (no loops); a symlinked file is read.
            guard lstat(path, &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFDIR: walk(path, into: &result)
            case S_IFREG, S_IFLNK: if isRecordingName(name) { result.files.append(path) }
            default: continue
            }
        }
    }

    private static func globMatches(_ pattern: String) -> [String] {
        var g = glob_t()
        defer { globfree(&g) }
        guard glob(pattern, 0, nil, &g) == 0 else { return [] }
        return (0..<Int(g.gl_pathc)).compactMap { g.gl_pathv[$0].map { String(cString: $0) } }
    }
}
