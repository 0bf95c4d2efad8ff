import ArgumentParser
import QMP
import Recording

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Convert QMP traffic from another format into a .qmprec recording.",
        discussion: """
            Source formats (--format; default auto: told from the content):
              qmp-lines        plain QMP text (socat, -qmp stdio, pretty JSON); exact
                               bytes; times from QEMU's event timestamps.
              libvirt-replies  libvirt's tests/qemucapabilitiesdata/*.replies (command,
                               reply, blank line); records 1 ms apart.
              libvirt-log      libvirt debug logs (QEMU_MONITOR_* lines), also inside
                               virt-launcher's JSON lines; a connection per mon=;
                               IO_SEND_FD lines become notes.
              virsh-events     virsh qemu-monitor-event output; events rebuilt in
                               QEMU's layout.
              qmp-transcript   QMP pasted in bug reports and docs: -> and <- arrows,
                               \\ continuations, ... elisions, > quoting, prose.
              shell-session    $ echo '{...}' | socat - UNIX-CONNECT:... and QEMU's
                               output; a connection per command; other commands
                               ignored.
              qmp-shell        qmp-shell output: (QEMU) prompts, Python dict replies,
                               -v echoes; messages rebuilt as JSON.
              iotests          qemu-iotests reference output (*.out): masked
                               timestamps, echoed commands; synthetic times.
            What could not be read is reported with its line numbers and counted;
            lines without QMP in the format (log noise, narration, other shell
            commands) are counted as ignored. --json: the same as JSON. Details,
            and the QEMU facts behind each choice: docs/IMPORT.md.

            The output is written whole or not at all, and an existing file is
            never replaced without --force. With -o - the recording goes to
            standard output and the report to standard error.

            Exit status: 0 imported (warnings are printed); 2 the source cannot be
            read, is empty or already a recording, or holds no QMP message in the
            format (nothing is written), or the output exists (without --force) or
            cannot be written; 64 bad command line (an unknown format).
            """)

    @Argument(help: "The file to import ('-' for standard input; a pipe or a .gz file works too).", completion: .file())
    var source: String

    @Option(name: .shortAndLong, help: "The .qmprec file to write ('-' for standard output).")
    var output: String

    @Option(help: ArgumentHelp("Source format: \(ImportFormat.choices).", valueName: "format"))
    var format: String = ImportFormat.autoName

    /// Before --format existed the source format was --from; every other command's --from
    /// is a time, so it is only accepted here as a deprecated alias of --format.
    @Option(name: .customLong("from"), help: .hidden)
    var legacyFrom: String?

    @Flag(help: "Replace the output file if it exists.")
    var force = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    /// The format asked for, or nil for auto.
    private var requested: ImportFormat? {
        let name = legacyFrom ?? format
        return name == ImportFormat.autoName ? nil : ImportFormat(rawValue: name)
    }

    func validate() throws {
        if let legacyFrom {
            guard format == ImportFormat.autoName else {
                throw ValidationError("give the source format once: --from is the old name of --format")
            }
            guard legacyFrom == ImportFormat.autoName || ImportFormat(rawValue: legacyFrom) != nil else {
                throw ValidationError("--from is a time in the other commands; import names its source format with --format (\(ImportFormat.choices))")
            }
        }
        guard format == ImportFormat.autoName || ImportFormat(rawValue: format) != nil else {
            throw ValidationError("unknown import format '\(format)'; --format takes \(ImportFormat.choices)")
        }
    }

    func run() throws {
        if let legacyFrom {
            warn("--from \(legacyFrom) is deprecated for import; use --format \(legacyFrom) (--from is a time in every other command)")
        }
        let bytes: [UInt8]
        do {
            let loaded = try ImportSource.load(source)
            bytes = loaded.bytes
            if let remark = loaded.remark { warn("\(source): \(remark)") }
        } catch {
            throw fail(error.description)
        }
        if bytes.isEmpty { throw fail("\(source == "-" ? "standard input" : source) is empty; nothing to import") }
        if ImportSource.isRecording(bytes) { throw fail("\(source) is already a qmpreplay recording; nothing to import") }

        let chosen: ImportFormat
        var detection: ImportDetection?
        if let requested {
            chosen = requested
        } else {
            guard let d = ImportDetector.detect(bytes) else {
                throw fail("\(source): cannot tell the format: no QMP traffic recognised; name it with --format (\(ImportFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            detection = d
            chosen = d.format
        }

        let imported = Importer.parse(bytes, format: chosen)
        let asked = detection.map { "\(chosen.rawValue), detected from \($0.reason)" } ?? chosen.rawValue

        // Nothing read as QMP: say which format was tried and how to pick another; write nothing.
        guard imported.messageCount > 0 else {
            Output.stdout.flush()
            let s = Style(Output.stderr)
            let hint = detection != nil
                ? "if the source is in another format, name it with --format"
                : "try --format auto, or another format"
            Output.stderr.line("qmpreplay: \(s.red("error:")) \(source): no QMP message could be read as \(asked); nothing written (\(hint): \(ImportFormat.choices))")
            Output.stderr.flush()
            report(imported, chosen: chosen, detection: detection, written: false)
            throw ExitCode(Exit.unreadable)
        }

        try writeOutput(imported, format: chosen)
        report(imported, chosen: chosen, detection: detection, written: true)
    }

    // MARK: - Output file

    /// Writes the recording whole or not at all: into a temporary file next to the output,
    /// then moved into place. An existing file is replaced only with --force (the rule every
    /// command that writes a recording follows: `OutputGuard`).
    private func writeOutput(_ imported: ImportedRecording, format: ImportFormat) throws {
        do {
            try OutputGuard.check(output, force: force)
        } catch {
            throw fail(error.description)
        }
        var st = stat()
        let exists = output != "-" && stat(output, &st) == 0
        if exists && (st.st_mode & S_IFMT) == S_IFDIR { throw fail("\(output) is a directory") }
        var lst = stat()
        let isLink = output != "-" && lstat(output, &lst) == 0 && (lst.st_mode & S_IFMT) == S_IFLNK
        // Standard output, devices, FIFOs and (with --force) symbolic links are written
        // through, not replaced.
        if output == "-" || (exists && ((st.st_mode & S_IFMT) != S_IFREG || isLink)) {
            do {
                try imported.write(to: output, sourceName: source, format: format)
            } catch {
                throw fail(error.description)
            }
            return
        }
        let temp = temporaryPath(for: output)
        do {
            try imported.write(to: temp, sourceName: source, format: format)
        } catch {
            unlink(temp)
            throw fail(error.description.replacingAll(temp, with: output))
        }
        if exists {
            // --force: replace it in one step.
            guard rename(temp, output) == 0 else {
                let reason = String(cString: strerror(errno))
                unlink(temp)
                throw fail("\(output): cannot replace: \(reason)")
            }
            return
        }
        // link(2) never replaces a file that appeared meanwhile; rename(2) would.
        if link(temp, output) == 0 {
            unlink(temp)
            return
        }
        let e = errno
        if e == EEXIST && !force {
            unlink(temp)
            try writeOutputRefused()
        }
        guard rename(temp, output) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temp)
            throw fail("\(output): cannot create: \(reason)")
        }
    }

    /// The refusal for a file that appeared while the recording was being written.
    private func writeOutputRefused() throws {
        do {
            try OutputGuard.check(output, force: false)
        } catch {
            throw fail(error.description)
        }
        throw fail("\(output) appeared while importing; not overwriting it (add --force to replace it)")
    }

    private func temporaryPath(for path: String) -> String {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[...$0]) } ?? ""
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        return "\(dir).\(name).import-\(getpid())"
    }

    // MARK: - Report

    private func report(_ r: ImportedRecording, chosen: ImportFormat, detection: ImportDetection?, written: Bool) {
        // With the recording on standard output, everything else goes to standard error.
        let out = output == "-" ? Output.stderr : Output.stdout
        let name = source
        if written {
            for w in r.warnings.prefix(50) { warn(w.line > 0 ? "\(name):\(lineSpan(w)): \(w.message)" : "\(name): \(w.message)") }
            if r.warnings.count > 50 { warn("\(r.warnings.count - 50) more warnings (--json lists them all)") }
        } else {
            for w in r.warnings.prefix(20) {
                Output.stderr.line("  \(w.line > 0 ? "\(name):\(lineSpan(w)): " : "")\(w.message)")
            }
            if r.warnings.count > 20 { Output.stderr.line("  \(r.warnings.count - 20) more warnings (--json lists them all)") }
        }
        let unread = r.unread
        if written && !unread.isEmpty {
            var lines = LineRanges()
            for w in unread where w.line > 0 { lines.insert(w.line...w.endLine) }
            warn("\(name): \(count(r.unreadLineCount, "line")) could not be read as QMP (lines \(lines.label()))")
        }
        if !r.ignored.isEmpty {
            Output.stderr.line("qmpreplay: \(name): \(count(r.ignored.count, "line")) without QMP traffic ignored (lines \(r.ignored.label()))")
        }
        Output.stderr.flush()

        if json {
            var o = JSONObject()
            o["source"] = .string(source)
            o["output"] = .string(output)
            o["format"] = .string(chosen.rawValue)
            o["detected"] = .bool(detection != nil)
            o["detection"] = detection.map { .string($0.reason) } ?? .null
            o["written"] = .bool(written)
            o["records"] = .int(written ? r.records.count : 0)
            o["messages"] = .int(r.messageCount)
            o["unread"] = .object(JSONObject([
                "lines": .int(r.unreadLineCount),
                "items": .array(unread.map { warningJSON($0) }),
            ]))
            o["ignored"] = .object(JSONObject([
                "lines": .int(r.ignored.count),
                "ranges": .array(r.ignored.ranges.map { .array([.int($0.lowerBound), .int($0.upperBound)]) }),
            ]))
            o["warnings"] = .array(r.warnings.map { warningJSON($0) })
            out.line(JSONValue.object(o).serialized(.pretty(indent: 2)))
        } else if written {
            var parts: [String] = []
            if r.unreadLineCount > 0 { parts.append("\(count(r.unreadLineCount, "line")) not read") }
            if !r.ignored.isEmpty { parts.append("\(r.ignored.count) ignored") }
            let caveats = r.warnings.filter { !$0.isUnread }.count
            parts.append(count(caveats, "warning"))
            out.line("\(output): \(r.records.count) records (\(r.messageCount) QMP messages) imported from \(name) (\(detection != nil ? "\(chosen.rawValue), detected" : chosen.rawValue)); \(parts.joined(separator: ", "))")
        }
        out.flush()
    }

    private func warningJSON(_ w: ImportWarning) -> JSONValue {
        .object(JSONObject([
            "line": .int(w.line), "end_line": .int(w.endLine), "kind": .string(w.kind.rawValue),
            "message": .string(w.message),
        ]))
    }

    private func lineSpan(_ w: ImportWarning) -> String { w.endLine > w.line ? "\(w.line)-\(w.endLine)" : "\(w.line)" }

    private func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }
}

extension String {
    /// Every occurrence of `target` replaced (without Foundation).
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = ""
        var rest = Substring(self)
        while let r = rest.range(of: target) {
            out += rest[..<r.lowerBound]
            out += replacement
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}

private extension Substring {
    func range(of target: String) -> Range<Index>? {
        let t = Array(target.utf8)
        let u = utf8
        var i = u.startIndex
        while i != u.endIndex {
            var j = i
            var k = 0
            while k < t.count, j != u.endIndex, u[j] == t[k] { j = u.index(after: j); k += 1 }
            if k == t.count { return i..<j }
            i = u.index(after: i)
        }
        return nil
    }
}
