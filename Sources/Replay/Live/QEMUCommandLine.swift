import QMP
import Recording

/// The command line of the real QEMU that `diff-qemu` and `serve --record-missing` start:
/// the words of `--qemu CMDLINE` (split as sh splits them: quotes and backslashes, no
/// expansion), or a machine suggested by the recording (docs/DIFF-QEMU.md, "The machine").
/// `LiveQEMU` adds `-qmp` on a private socket to either.
///
/// Example: for `guest-balloon.qmprec` the suggestion is `qemu-system-x86_64 -nodefaults
/// -no-user-config -display none -accel tcg -machine q35 -smp 1 -m 256M -device
/// virtio-balloon-pci,id=balloon0`, with the reasons "-m 256M: query-balloon's actual" and
/// "virtio-balloon-pci: the recording uses the balloon".
public struct QEMUCommandLine: Sendable {
    public var argv: [String]
    /// Why each suggested option is there (empty for a command line given by the user).
    public var reasons: [String]

    /// The installed QEMU for the recordings of this project (x86_64).
    public static let defaultBinary = "qemu-system-x86_64"

    /// `--qemu`'s words; throws on an unterminated quote or an empty line.
    public static func parse(_ text: String) throws(LiveQEMUError) -> QEMUCommandLine {
        var words: [String] = []
        var cur = ""
        var inWord = false
        var quote: Character?
        var escape = false
        for ch in text {
            if escape { cur.append(ch); escape = false; inWord = true; continue }
            if let q = quote {
                if ch == q { quote = nil } else if ch == "\\" && q == "\"" { escape = true } else { cur.append(ch) }
                continue
            }
            switch ch {
            case "\\": escape = true
            case "'", "\"": quote = ch; inWord = true
            case " ", "\t", "\n":
                if inWord { words.append(cur); cur = ""; inWord = false }
            default: cur.append(ch); inWord = true
            }
        }
        if quote != nil || escape { throw LiveQEMUError("--qemu: unterminated quote or trailing backslash in '\(text)'") }
        if inWord { words.append(cur) }
        guard !words.isEmpty else { throw LiveQEMUError("--qemu: an empty command line") }
        return QEMUCommandLine(argv: words, reasons: [])
    }

    /// A machine like the recorded one, from what the recording shows of it: TCG on q35 (the
    /// guest lab's machine), no default devices, memory from `query-balloon` or
    /// `query-memory-size-summary`, the name from `query-name`, a balloon when the recording
    /// uses one, a virtio NIC for every NIC it names (`query-rx-filter`, NIC_RX_FILTER_CHANGED).
    public static func suggested(for script: ReplayScript, binary: String = defaultBinary) -> QEMUCommandLine {
        var a = [binary, "-nodefaults", "-no-user-config", "-display", "none", "-accel", "tcg", "-machine", "q35", "-smp", "1"]
        var why: [String] = ["-machine q35 -accel tcg -smp 1 -nodefaults: the guest lab's machine (the recording does not say)"]
        func reply(_ name: String) -> JSONObject? {
            script.commands.first { $0.name == name && $0.reply?["return"] != nil }?.reply?["return"]?.objectValue
        }
        if let bytes = reply("query-memory-size-summary")?["base-memory"]?.int64Value ?? reply("query-balloon")?["actual"]?.int64Value,
           bytes >= 1 << 20 {
            a += ["-m", "\(bytes >> 20)M"]
            why.append("-m \(bytes >> 20)M: the recorded memory size")
        }
        if let n = reply("query-name")?["name"]?.stringValue {
            a += ["-name", n]
            why.append("-name \(n): query-name")
        }
        let names = Set(script.commands.map(\.name))
        let events = Set(script.events.map(\.name))
        if names.contains("balloon") || names.contains("query-balloon") || events.contains("BALLOON_CHANGE") {
            a += ["-device", "virtio-balloon-pci,id=balloon0"]
            why.append("virtio-balloon-pci: the recording uses the balloon")
        }
        var nics: [String] = []
        for c in script.commands where c.name == "query-rx-filter" {
            if let n = c.arguments?["name"]?.stringValue, !nics.contains(n) { nics.append(n) }
        }
        for e in script.events where e.name == "NIC_RX_FILTER_CHANGED" {
            if let n = (try? JSONParser.parse(e.bytes))?.value(atPath: "data.name")?.stringValue, !nics.contains(n) { nics.append(n) }
        }
        // The recorded MAC of each NIC (query-rx-filter's main-mac), so that it is not a difference.
        var macs: [String: String] = [:]
        for c in script.commands where c.name == "query-rx-filter" {
            for f in c.reply?["return"]?.arrayValue ?? [] {
                if let n = f["name"]?.stringValue, let m = f["main-mac"]?.stringValue, macs[n] == nil { macs[n] = m }
            }
        }
        for n in nics {
            a += ["-netdev", "user,id=host-\(n)", "-device", "virtio-net-pci,netdev=host-\(n),id=\(n)" + (macs[n].map { ",mac=\($0)" } ?? "")]
        }
        if !nics.isEmpty { why.append("virtio-net-pci \(nics.joined(separator: ", ")): NICs the recording names") }
        let devices = peripherals(script).filter { !nics.contains($0.id) && !($0.type == "virtio-balloon-pci") }
        var chassis = 0
        for d in devices {
            var opt = "\(d.type),id=\(d.id)"
            // Each PCIe root port needs a chassis of its own.
            if d.type == "pcie-root-port" { chassis += 1; opt += ",chassis=\(chassis)" }
            a += ["-device", opt]
        }
        if !devices.isEmpty {
            why.append("\(devices.map { "\($0.type) \($0.id)" }.joined(separator: ", ")): in the first qom-list of /machine/peripheral, not added by device_add before it")
        }
        return QEMUCommandLine(argv: a, reasons: why)
    }

    /// The devices of the machine's command line: the first recorded `qom-list` of
    /// /machine/peripheral, less those a recorded `device_add` made before it.
    static func peripherals(_ script: ReplayScript) -> [(type: String, id: String)] {
        guard let k = script.commands.firstIndex(where: {
            $0.name == "qom-list" && $0.arguments?["path"]?.stringValue == "/machine/peripheral" && $0.reply?["return"]?.arrayValue != nil
        }) else { return [] }
        let added = Set(script.commands[..<k].filter { $0.name == "device_add" }.compactMap { $0.arguments?["id"]?.stringValue })
        return (script.commands[k].reply?["return"]?.arrayValue ?? []).compactMap { child in
            guard let name = child["name"]?.stringValue, !added.contains(name),
                  let t = child["type"]?.stringValue, t.hasPrefix("child<"), t.hasSuffix(">") else { return nil }
            return (String(t.dropFirst(6).dropLast()), name)
        }
    }
}
