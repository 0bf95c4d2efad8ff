import ArgumentParser
import QMP
import Recording

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct RecoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recover",
        abstract: "Write a new, valid recording from a damaged one, keeping every intact record.",
        usage: HelpText.usage("qmpreplay recover DAMAGED -o OUT [--force] [--no-redact] [--json]"),
        discussion: HelpText.format("""
            Reads DAMAGED (never changed) and writes OUT with every record the reader accepts:
            torn lines, garbage inside or between lines, NUL runs, carriage returns, mixed line
            ends, a lost or wrong trailer, a damaged header (one is made up, its start estimated
            from the first event's timestamp). A line holding garbage glued to a record, or two
            records joined, is cut at each {"t": and every record in it is kept. What was
            dropped is listed (line, byte offset, bytes, reason) and also noted in OUT as a
            note record at its place. Times out of order are settled changing as few as
            possible: the longest run of times in order is kept, and each other record takes
            the time of the kept record before it (each change is listed). OUT gets a new trailer (reason "recovered") and header labels naming
            the source and its old trailer. Secrets are redacted unless --no-redact.

            OUT is written beside its name, read back (it must open with no problem at all,
            with a trailer counting every record, and every record must decode), and only
            then renamed into place: a failed check leaves nothing behind.

            Exit status: 0 recovered and verified (what was dropped is printed); 2 DAMAGED
            cannot be read or is not a recording, OUT exists (without --force) or is DAMAGED,
            or OUT failed its check; 64 bad command line.
            """))

    @Argument(help: "The damaged recording (.qmprec or .qmprec.gz); only read.", completion: .file(extensions: ["qmprec", "gz"]))
    var damaged: String

    @Option(name: .shortAndLong, help: "The recording to write.")
    var output: String

    @Flag(help: "Replace OUT if it exists (never DAMAGED itself).")
    var force = false

    @Flag(name: .customLong("no-redact"), help: "Keep secrets the damaged recording holds.")
    var noRedact = false

    @Flag(help: "Print the report as JSON.")
    var json = false

    func run() throws {
        guard output != "-" else { throw fail("recover writes a file it can read back: give -o a path", code: Exit.usage) }
        if sameFile(damaged, output) { throw fail("\(output) is the damaged recording itself; recover never modifies its input") }
        do { try OutputGuard.check(output, force: force) } catch { throw fail(error.description) }
        let r = try openRecording(damaged, strict: false)
        let plan = RecordingRecovery.plan(r.bytes, path: damaged)
        let result: RecordingRecovery.Result
        do {
            result = try RecordingRecovery.write(plan, source: damaged, to: output, redact: !noRedact)
        } catch {
            throw fail(error.description)
        }
        let out = Output.stdout
        if json {
            var o = JSONObject()
            o["input"] = .string(damaged)
            o["output"] = .string(output)
            o["records"] = .int(plan.records.count)
            o["notes"] = .int(result.notes)
            o["dropped_bytes"] = .int(plan.droppedBytes)
            o["dropped"] = .array(plan.dropped.map { d in
                var x = JSONObject()
                x["line"] = .int(d.line)
                x["offset"] = .int(d.offset)
                x["bytes"] = .int(d.bytes)
                x["reason"] = .string(d.reason)
                return .object(x)
            })
            o["header_lost"] = .bool(plan.header == nil)
            o["old_trailers"] = .int(plan.oldTrailers.count)
            o["crlf_lines"] = .int(plan.crlfLines)
            o["adjusted_times"] = .array(plan.adjustedTimes.map { c in
                var x = JSONObject()
                x["line"] = .int(c.line)
                x["from"] = .int(c.from)
                x["to"] = .int(c.to)
                return .object(x)
            })
            o["redactions"] = .int(result.redactions)
            o["verified"] = .bool(true)
            out.line(JSONValue.object(o).serialized(.pretty(indent: 2)))
        } else {
            for d in plan.dropped {
                out.line("\(damaged):\(d.line): dropped \(plural(d.bytes, "byte")) at offset \(d.offset): \(d.reason)")
            }
            var facts: [String] = []
            if plan.header == nil { facts.append("header lost (one made up)") }
            if plan.oldTrailers.isEmpty { facts.append("trailer added") } else if plan.oldTrailers.count > 1 { facts.append("\(plan.oldTrailers.count) trailers replaced by one") }
            if plan.crlfLines > 0 { facts.append("\(plural(plan.crlfLines, "CR LF line end")) normalised") }
            for c in plan.adjustedTimes {
                out.line("\(damaged):\(c.line): time \(c.from) ns out of order with the records around it; written as \(c.to) ns")
            }
            if !plan.adjustedTimes.isEmpty { facts.append("\(plural(plan.adjustedTimes.count, "time")) set in order") }
            if result.redactions > 0 { facts.append("\(plural(result.redactions, "secret")) redacted") }
            let dropped = plan.dropped.filter { $0.bytes > 0 }
            out.line("\(output): \(plural(plan.records.count, "record")) kept, \(plural(dropped.count, "piece")) dropped (\(plural(plan.droppedBytes, "byte"))); "
                     + (facts.isEmpty ? "" : facts.joined(separator: ", ") + "; ") + "read back clean")
        }
        out.flush()
    }

    /// Whether two paths name the same file (the same device and inode).
    func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        guard stat(a, &sa) == 0, stat(b, &sb) == 0 else { return false }
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }
}
