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
            Source formats:
              qmp-lines        plain QMP text (socat, -qmp stdio, QEMU's own -mon pretty=on output);
                               client lines are recognised by "execute"; times come from event
                               timestamps when there is nothing better.
              libvirt-replies  libvirt's tests/qemucapabilitiesdata/*.replies transcripts (command,
                               reply, blank line; no timing: records are 1 ms apart).
              libvirt-log      libvirt debug logs (QEMU_MONITOR_SEND_MSG, QEMU_MONITOR_RECV_EVENT,
                               QEMU_MONITOR_RECV_REPLY lines with their timestamps); one connection
                               per monitor (mon=0x...).
              virsh-events     virsh qemu-monitor-event output (event NAME at S.US for domain 'D':
                               DATA); each event is rebuilt in QEMU's layout (a note says the bytes
                               are a reconstruction); one connection per domain.
            Every message keeps its exact bytes from the source (virsh-events excepted). Lines that could not be imported
            are reported with their line number; everything else is kept.

            Exit status: 0 success (warnings are printed), 2 unreadable source or unwritable output.
            """)

    @Argument(help: "The file to import ('-' for standard input).", completion: .file())
    var source: String

    @Option(name: .shortAndLong, help: "The .qmprec file to write.")
    var output: String

    @Option(name: .customLong("from"), help: "Source format: qmp-lines, libvirt-replies, libvirt-log or virsh-events.")
    var format: ImportFormat

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let bytes: FileBytes
        do {
            bytes = try FileBytes(path: source == "-" ? "/dev/stdin" : source)
        } catch {
            throw fail(error.description)
        }
        let imported = Importer.parse(bytes.copyBytes(), format: format)
        do {
            try imported.write(to: output, sourceName: source, format: format)
        } catch {
            throw fail(error.description)
        }
        for w in imported.warnings.prefix(50) { warn(w.line > 0 ? "\(source):\(w.line): \(w.message)" : "\(source): \(w.message)") }
        if imported.warnings.count > 50 { warn("\(imported.warnings.count - 50) more warnings") }
        let out = Output.stdout
        if json {
            var o = JSONObject()
            o["source"] = .string(source)
            o["output"] = .string(output)
            o["format"] = .string(format.rawValue)
            o["records"] = .int(imported.records.count)
            o["warnings"] = .array(imported.warnings.map {
                .object(JSONObject(["line": .int($0.line), "message": .string($0.message)]))
            })
            out.line(JSONValue.object(o).serialized(.pretty(indent: 2)))
        } else {
            out.line("\(output): \(imported.records.count) records imported from \(source) (\(format.rawValue)), \(imported.warnings.count) warnings")
        }
        out.flush()
    }
}

extension ImportFormat: ExpressibleByArgument {}
