import ArgumentParser
import Capture
import Options
import Recording
import Shell

import Transport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The command line's shared option handling: addresses, help text layout, plurals. The
// option values themselves (times, sizes, durations, ...) are parsed by the Options module.

/// A socket address on the command line (see `Address`); a bad one is a usage error.
func parseEndpoint(_ text: String, option: String) throws -> Endpoint {
    do { return try Address.endpoint(text, option: option) } catch { throw fail(error.description, code: Exit.usage) }
}

/// `--from`/`--to` in `r`; `--to` before `--from` is a usage error.
func resolveSpan(_ options: TimeSpanOptions, in r: Recording) throws -> ResolvedSpan {
    do { return try options.span.resolve(in: r) } catch { throw fail(error.description, code: Exit.usage) }
}

/// `1 record`, `2 records`.
func plural(_ n: Int, _ word: String, _ plural: String? = nil) -> String {
    "\(n) " + (n == 1 ? word : plural ?? word + "s")
}

/// The terminal's width as ArgumentParser sees it ($COLUMNS, else the terminal, else 80), so
/// that help texts laid out here are not re-wrapped raggedly by it.
func helpColumns() -> Int {
    if let c = getenv("COLUMNS").flatMap({ Int(String(cString: $0)) }), c > 0 { return c }
    var ws = winsize()
    if ioctl(1, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col > 0 { return Int(ws.ws_col) }
    return 80
}

/// Lays out a command's discussion for `--help` at the terminal's width.
///
/// The source text is written for people reading the code: paragraphs are separated by
/// blank lines and their lines are joined and re-wrapped; an indented line starts an item
/// of its own (a list entry, an example), and lines indented deeper than it continue that
/// item, wrapped with the deeper indentation (a hanging indent). Lines are kept one column
/// short of the width, because ArgumentParser breaks a line that fills it.
enum HelpText {
    /// Whether this run shows help: every command's configuration is made when the command
    /// tree is built, on every run, and laying out all the discussions costs a run about a
    /// millisecond that only `--help` (and `help`, completion scripts) needs.
    nonisolated(unsafe) static var shown: Bool = CommandLine.arguments.dropFirst().contains {
        $0 == "-h" || $0 == "--help" || $0 == "help" || $0.hasPrefix("--help") || $0.hasPrefix("--experimental-dump-help")
            || $0.hasPrefix("--generate-completion-script")
    }

    static func format(_ text: String) -> String {
        shown ? format(text, width: helpColumns()) : text
    }

    static func format(_ text: String, width: Int) -> String {
        let columns = max(40, width - 1)
        var out: [String] = []
        var words: [Substring] = []
        var indent = 0
        var hanging = 0
        // Every command's help is formatted when the command tree is built, on every run:
        // lengths are kept as counts (String.count walks the string each time).
        func flush() {
            guard !words.isEmpty else { return }
            var line = String(repeating: " ", count: indent)
            var length = indent
            var empty = true
            for w in words {
                let n = w.count
                if !empty, length + 1 + n > columns {
                    out.append(line)
                    line = String(repeating: " ", count: hanging)
                    length = hanging
                    empty = true
                }
                if !empty { line += " "; length += 1 }
                line += w
                length += n
                empty = false
            }
            out.append(line)
            words = []
        }
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let lead = raw.prefix { $0 == " " }.count
            let body = raw.dropFirst(lead)
            if body.isEmpty {
                flush()
                out.append("")
                continue
            }
            if words.isEmpty {
                indent = lead
                hanging = lead
            } else if lead == 0 && indent == 0 {
                // A paragraph goes on.
            } else if indent > 0 && lead > indent {
                // A continuation line of an item: its indentation is the hanging indent.
                if hanging == indent { hanging = lead }
            } else {
                flush()
                indent = lead
                hanging = lead
            }
            // A gap of two or more spaces inside an item ("pretty  one line per record")
            // separates a term from its text: the text's column is the hanging indent.
            if lead > 0, words.isEmpty, let gap = body.range(of: "  ") {
                let after = body[gap.upperBound...].prefix { $0 == " " }.count
                hanging = lead + body.distance(from: body.startIndex, to: gap.lowerBound) + 2 + after
                let term = body[..<gap.lowerBound]
                let rest = body[gap.upperBound...].drop { $0 == " " }
                words.append(Substring(term + String(repeating: " ", count: hanging - lead - term.count - 1)))
                words += rest.split(separator: " ")
                continue
            }
            words += body.split(separator: " ")
        }
        flush()
        while out.last == "" { out.removeLast() }
        return out.joined(separator: "\n")
    }
}

extension HelpText {
    /// A command's synopsis (one form per line) wrapped to the terminal: ArgumentParser
    /// prints it after "USAGE: " (and "Usage: " in errors) without wrapping it, so each form
    /// is wrapped here, continuing under the word after the command's name.
    static func usage(_ forms: String, width: Int = helpColumns()) -> String {
        let columns = max(40, width - 1) - "USAGE: ".count
        var out: [String] = []
        for form in forms.split(separator: "\n") {
            let words = form.split(separator: " ")
            // "qmpreplay cat FILE ...": continue under the word after the command's name.
            let hang = words.prefix(2).reduce(0) { $0 + $1.count + 1 }
            var line = ""
            for w in words {
                if !line.isEmpty, line.count + 1 + w.count > columns {
                    out.append(line)
                    line = String(repeating: " ", count: hang) + w
                    continue
                }
                line += (line.isEmpty ? "" : " ") + w
            }
            out.append(line)
        }
        // ArgumentParser indents the lines after the first by the width of "USAGE: ".
        return out.joined(separator: "\n")
    }
}

/// The hint added when a time option's value is missing: usually `#123` unquoted, which the
/// user's shell took as a comment.
let missingTimeHint = "(if you wrote #123, your shell took it as a comment: write @123 or '#123'; a time such as -2s is taken as the value)"
