import QMP
import Recording

/// VNC and SPICE client sessions (docs/QEMU-FACTS.md, "Other events"): VNC_CONNECTED ->
/// VNC_INITIALIZED -> VNC_DISCONNECTED for one client host and port (a failed
/// authentication skips INITIALIZED); a SPICE client opens several channels, each with
/// its own port, all CONNECTED and INITIALIZED in a burst and DISCONNECTED together.
extension SynthEngine {
    mutating func displayTick() {
        schedule(in: seconds(20, 240), .display(epoch: epoch))
        guard vm.sessions.count < 2 else { return }
        if rng.chance(0.5) { startVNCSession() } else { startSPICESession() }
    }

    /// Where a viewer connects from: the host itself, or a remote machine.
    mutating func clientAddress() -> (host: String, family: String) {
        switch rng.int(0...5) {
        case 0, 1, 2: return ("127.0.0.1", "ipv4")
        case 3: return ("::1", "ipv6")
        default: return ("192.168.122.\(rng.int(2...254))", "ipv4")
        }
    }

    mutating func startVNCSession() {
        let (host, family) = clientAddress()
        let auth = ["none", "none", "vnc", "sasl"][rng.int(0...3)]
        let server = synObj([
            "host": .string(family == "ipv6" ? "::1" : "127.0.0.1"), "service": .string("5900"),
            "family": .string(family), "websocket": .bool(false), "auth": .string(auth),
        ])
        let client = synObj([
            "host": .string(host), "service": .string(String(rng.int(32_768...60_999))), "family": .string(family),
            "websocket": .bool(false),
        ])
        raise("VNC_CONNECTED", synData(["server": server, "client": client]))
        if auth != "none" && rng.chance(0.15) {
            // Wrong password: the server drops the client before it is initialized.
            advance(ms(200, 3_000))
            raise("VNC_DISCONNECTED", synData(["server": server, "client": client]))
            return
        }
        advance(ms(5, 400))
        var initialized = client.objectValue ?? JSONObject()
        if auth == "sasl" { initialized["sasl_username"] = .string("alice") }
        raise("VNC_INITIALIZED", synData(["server": server, "client": .object(initialized)]))
        sessionSerial += 1
        vm.sessions.append(SynthDisplaySession(serial: sessionSerial, spice: false, server: server, clients: [.object(initialized)]))
        schedule(in: seconds(5, 900), .displayEnd(session: sessionSerial, epoch: epoch))
    }

    mutating func startSPICESession() {
        let (host, family) = clientAddress()
        let server = synObj([
            "host": .string(family == "ipv6" ? "::1" : "127.0.0.1"), "port": .string("5901"), "family": .string(family),
        ])
        var serverInit = server.objectValue ?? JSONObject()
        serverInit["auth"] = .string(rng.chance(0.7) ? "none" : "spice")
        let connectionID = rng.int64(1...0x7FFF_FFFF)
        let tls = rng.chance(0.2)
        // main, display, inputs, cursor, playback, record, usbredir x2 (channel type, id)
        let all = [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0), (9, 0), (9, 1)]
        let channels = Array(all.prefix(rng.int(4...8)))
        var port = rng.int(32_768...60_000)
        var clients: [JSONValue] = []
        var clientsInit: [JSONValue] = []
        for (type, cid) in channels {
            port += rng.int(1...3)
            let basic = synData(["host": .string(host), "port": .string(String(port)), "family": .string(family)])
            var extended = basic
            extended["connection-id"] = .int(connectionID)
            extended["channel-type"] = .int(type)
            extended["channel-id"] = .int(cid)
            extended["tls"] = .bool(tls)
            clients.append(.object(basic))
            clientsInit.append(.object(extended))
        }
        // The main channel first; the others once it is up, nearly at once.
        raise("SPICE_CONNECTED", synData(["server": server, "client": clients[0]]))
        advance(ms(2, 60))
        raise("SPICE_INITIALIZED", synData(["server": .object(serverInit), "client": clientsInit[0]]))
        advance(ms(5, 80))
        for k in 1..<clients.count {
            raise("SPICE_CONNECTED", synData(["server": server, "client": clients[k]]))
            advance(us(100, 3_000))
        }
        for k in 1..<clients.count {
            raise("SPICE_INITIALIZED", synData(["server": .object(serverInit), "client": clientsInit[k]]))
            advance(us(50, 2_000))
        }
        sessionSerial += 1
        vm.sessions.append(SynthDisplaySession(serial: sessionSerial, spice: true, server: server, clients: clients))
        schedule(in: seconds(5, 900), .displayEnd(session: sessionSerial, epoch: epoch))
    }

    mutating func endDisplaySession(serial: Int) {
        guard let i = vm.sessions.firstIndex(where: { $0.serial == serial }) else { return }
        let s = vm.sessions.remove(at: i)
        if s.spice {
            for c in s.clients.reversed() {
                raise("SPICE_DISCONNECTED", synData(["server": s.server, "client": c]))
                advance(us(30, 1_500))
            }
        } else {
            raise("VNC_DISCONNECTED", synData(["server": s.server, "client": s.clients[0]]))
        }
    }
}
