import QMP
import Recording

/// One request of the control API (docs/REPLAY.md, "Control API"), parsed from one JSON
/// line (`serve --control`) or built by the shell's `replay` commands.
///
/// Example: `{"cmd": "step", "n": 2, "id": 7}` is `.step(2)` with the tag 7 (echoed in the reply).
public enum ControlRequest: Sendable, Equatable {
    case status
    case pause
    case resume
    /// Pause, then release the next N events at once.
    case step(Int)
    /// Release the next N events at once; a playing replay goes on from there.
    case burst(Int)
    /// Jump to a position in the recording's time syntax (`12.5s`, `#42`, `-2s`, ...).
    case seek(TimeSpec)
    /// `nil` is max speed.
    case speed(Double?)
    case hold(ControlHold.Target)
    /// Release one hold, or (nil) every hold.
    case release(Int?)
    /// Stop the server (clients get SHUTDOWN, as on SIGTERM); `serve` then exits.
    case stop
    /// Answer once the condition holds (or fail with `timeout` after so many ns).
    case wait(WaitCondition, timeout: Int64)

    /// What `wait` waits for.
    public enum WaitCondition: String, Sendable, CaseIterable {
        /// Some hold is holding a timeline or a reply.
        case held
        /// A client has negotiated (its timeline has started).
        case negotiated
    }

    /// The requests' names, for errors and help.
    public static let names = ["status", "pause", "resume", "step", "burst", "seek", "speed", "hold", "release", "wait", "stop"]

    /// A request line and its tag (`id`, any JSON value, echoed in the reply).
    public static func parse(line: String) throws(ControlError) -> (ControlRequest, tag: JSONValue?) {
        let v: JSONValue
        do { v = try JSONParser.parse(line) } catch {
            throw ControlError(.badRequest, "not JSON: \(error)")
        }
        guard case .object(let o) = v else { throw ControlError(.badRequest, "a request is a JSON object, e.g. {\"cmd\": \"status\"}") }
        let tag = o["id"]
        do { return (try parse(o), tag) } catch {
            var e = error
            e.tag = tag
            throw e
        }
    }

    static func parse(_ o: JSONObject) throws(ControlError) -> ControlRequest {
        guard let cmd = o["cmd"]?.stringValue else {
            throw ControlError(.badRequest, "a request needs \"cmd\": one of \(names.joined(separator: ", "))")
        }
        let allowed: [String: Set<String>] = [
            "step": ["n"], "burst": ["n"], "seek": ["to"], "speed": ["speed"],
            "hold": ["before_event", "before_reply"], "release": ["hold"], "wait": ["until", "timeout"],
        ]
        guard names.contains(cmd) else {
            throw ControlError(.unknownCommand, "unknown cmd '\(cmd)'; the commands are \(names.joined(separator: ", "))")
        }
        for k in o.keys where k != "cmd" && k != "id" && !(allowed[cmd]?.contains(k) ?? false) {
            throw ControlError(.badRequest, "'\(cmd)' takes no member '\(k)'")
        }
        switch cmd {
        case "status": return .status
        case "pause": return .pause
        case "resume": return .resume
        case "stop": return .stop
        case "wait":
            let conds = WaitCondition.allCases.map(\.rawValue).joined(separator: ", ")
            guard let u = o["until"]?.stringValue, let c = WaitCondition(rawValue: u) else {
                throw ControlError(.badRequest, "wait needs \"until\": one of \(conds)")
            }
            var secs = 10.0
            if let t = o["timeout"] {
                guard let v = t.doubleValue, v > 0, v <= 600 else { throw ControlError(.badRequest, "wait: timeout is seconds, more than 0 and at most 600") }
                secs = v
            }
            return .wait(c, timeout: Int64(secs * 1e9))
        case "step": return .step(try count(o))
        case "burst": return .burst(try count(o))
        case "seek":
            guard let to = o["to"] else { throw ControlError(.badRequest, "seek needs \"to\": a position like \"12.5s\", \"#42\" or \"-2s\"") }
            let text = to.stringValue ?? to.numberValue.map { "\($0.text)s" } ?? ""
            do { return .seek(try TimeSpec.parse(text)) } catch {
                throw ControlError(.badRequest, "seek: \(error)")
            }
        case "speed":
            guard let sp = o["speed"] else { throw ControlError(.badRequest, "speed needs \"speed\": a number (0.1 to 1000) or \"max\"") }
            return .speed(try speed(sp))
        case "hold":
            if let r = o["before_event"] {
                guard let n = r.int64Value ?? r.stringValue.flatMap({ Int64($0.hasPrefix("#") ? String($0.dropFirst()) : $0) }), n >= 0 else {
                    throw ControlError(.badRequest, "hold: before_event is a record number, e.g. 42 or \"#42\"")
                }
                return .hold(.event(record: Int(n)))
            }
            if let c = o["before_reply"] {
                guard let name = c.stringValue, !name.isEmpty else { throw ControlError(.badRequest, "hold: before_reply is a command name, e.g. \"query-status\"") }
                return .hold(.reply(command: name))
            }
            throw ControlError(.badRequest, "hold needs \"before_event\": RECORD or \"before_reply\": COMMAND")
        default:  // release
            guard let h = o["hold"] else { return .release(nil) }
            guard let n = h.int64Value, n > 0 else { throw ControlError(.badRequest, "release: hold is a hold number, as hold answered") }
            return .release(Int(n))
        }
    }

    private static func count(_ o: JSONObject) throws(ControlError) -> Int {
        guard let v = o["n"] else { return 1 }
        guard let n = v.int64Value, n >= 1, n <= 1_000_000_000 else {
            throw ControlError(.badRequest, "n is a count of events, 1 or more (got \(v.serialized(.compact)))")
        }
        return Int(n)
    }

    /// A number in `ReplayOptions.speedRange`, or "max" (as `--speed` takes them).
    static func speed(_ v: JSONValue) throws(ControlError) -> Double? {
        if let s = v.stringValue?.lowercased(), s == "max" { return nil }
        let text = v.stringValue.map { $0.hasSuffix("x") ? String($0.dropLast()) : $0 }
        guard let f = v.doubleValue ?? text.flatMap(Double.init), ReplayOptions.speedRange.contains(f) else {
            throw ControlError(.badRequest, "speed must be between 0.1 and 1000, or \"max\" (got \(v.serialized(.compact)))")
        }
        return f
    }
}

/// A control request that could not be done: a code a script can test and a message a
/// person can act on (docs/REPLAY.md, "Control API", lists the codes).
public struct ControlError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// Not JSON, not an object, a missing or wrong member.
        case badRequest = "bad-request"
        case unknownCommand = "unknown-command"
        /// A hold or record that does not exist.
        case notFound = "not-found"
        /// The server has stopped.
        case stopped
        /// A `wait` whose condition did not come true in time.
        case timeout
    }

    public var code: Code
    public var message: String
    /// The request's `id`, when it had one.
    public var tag: JSONValue?

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
