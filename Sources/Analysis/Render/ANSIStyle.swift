/// ANSI text styles, or plain text when `on` is false (a pipe, NO_COLOR, TERM=dumb). The CLI,
/// the shell and the analyses' tables all colour through this one type.
///
/// Example: `ANSIStyle(true).red("error:")` is `"\u{1B}[31merror:\u{1B}[0m"`.
public struct ANSIStyle: Sendable {
    public let on: Bool
    public init(_ on: Bool) { self.on = on }
    private func wrap(_ code: String, _ s: String) -> String { on ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }
    public func bold(_ s: String) -> String { wrap("1", s) }
    public func dim(_ s: String) -> String { wrap("2", s) }
    public func red(_ s: String) -> String { wrap("31", s) }
    public func green(_ s: String) -> String { wrap("32", s) }
    public func yellow(_ s: String) -> String { wrap("33", s) }
    public func blue(_ s: String) -> String { wrap("34", s) }
    public func magenta(_ s: String) -> String { wrap("35", s) }
    public func cyan(_ s: String) -> String { wrap("36", s) }
}
