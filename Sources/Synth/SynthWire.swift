import QMP
import Recording

/// The exact bytes of each synthetic message, written the way each side writes them
/// (docs/QEMU-FACTS.md, "Wire protocol"): QEMU uses its own spacing (`JSONLayout.qemu`) and ends
/// every message with `\r\n`; the libvirt-like client sends compact JSON and `\n`.
///
/// Messages are built from the `JSONValue` that was serialized, so nothing is parsed again.
///
/// Example: `SynthWire.reply(.object(JSONObject()), id: "libvirt-1")` is
/// `{"return": {}, "id": "libvirt-1"}\r\n`.
enum SynthWire {
    static func fromQEMU(_ v: JSONValue) -> QMPMessage {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(192)
        JSONWriter.write(v, layout: .qemu, level: 0, into: &bytes)
        let n = bytes.count
        bytes.append(0x0D)
        bytes.append(0x0A)
        return QMPMessage(json: v, bytes: bytes, payload: 0..<n)
    }

    static func fromClient(_ v: JSONValue) -> QMPMessage {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(96)
        JSONWriter.write(v, layout: .compact, level: 0, into: &bytes)
        let n = bytes.count
        bytes.append(0x0A)
        return QMPMessage(json: v, bytes: bytes, payload: 0..<n)
    }

    /// QEMU 7.2.0's greeting on a monitor served by the I/O thread (hence `oob`).
    static let greeting: QMPMessage = fromQEMU(synObj([
        "QMP": synObj([
            "version": synObj([
                "qemu": synObj(["micro": .int(0), "minor": .int(2), "major": .int(7)]),
                "package": .string("Debian 1:7.2+dfsg-7+deb12u7"),
            ]),
            "capabilities": .array([.string("oob")]),
        ])
    ]))

    /// libvirt's layout: `{"execute":NAME,"arguments":{...},"id":"libvirt-N"}`.
    static func command(_ name: String, _ arguments: JSONObject?, id: String) -> QMPMessage {
        var o = JSONObject()
        o.members.reserveCapacity(3)
        o.members.append(.init(key: "execute", value: .string(name)))
        if let arguments { o.members.append(.init(key: "arguments", value: .object(arguments))) }
        o.members.append(.init(key: "id", value: .string(id)))
        return fromClient(.object(o))
    }

    static func reply(_ value: JSONValue, id: String) -> QMPMessage {
        fromQEMU(.object(JSONObject([.init(key: "return", value: value), .init(key: "id", value: .string(id))])))
    }

    static func error(_ errorClass: String, _ desc: String, id: String) -> QMPMessage {
        fromQEMU(synObj(["error": synObj(["class": .string(errorClass), "desc": .string(desc)]), "id": .string(id)]))
    }

    /// `{"timestamp": {"seconds": S, "microseconds": US}, "event": NAME, "data": {...}}`;
    /// `data` left out when `nil` (STOP, RESUME, POWERDOWN, ...).
    static func event(_ name: String, _ data: JSONObject?, micros: Int64) -> QMPMessage {
        var seconds = micros / 1_000_000
        var us = micros % 1_000_000
        if us < 0 { us += 1_000_000; seconds -= 1 }
        var o = JSONObject()
        o.members.reserveCapacity(3)
        o.members.append(.init(key: "timestamp", value: synObj(["seconds": .int(seconds), "microseconds": .int(us)])))
        o.members.append(.init(key: "event", value: .string(name)))
        if let data { o.members.append(.init(key: "data", value: .object(data))) }
        return fromQEMU(.object(o))
    }
}

/// `synObj(["a": .int(1)])`: a JSON object value with members in the written order.
@inline(__always) func synObj(_ pairs: KeyValuePairs<String, JSONValue>) -> JSONValue { .object(JSONObject(pairs)) }

/// The same, as a `JSONObject` (event data, command arguments).
@inline(__always) func synData(_ pairs: KeyValuePairs<String, JSONValue>) -> JSONObject { JSONObject(pairs) }
