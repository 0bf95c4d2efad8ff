import QMP
import Recording

/// NIC_RX_FILTER_CHANGED and its per-NIC latch (docs/QEMU-FACTS.md): the guest changes a
/// filter; an event goes out only if the NIC's latch is armed, which disarms it;
/// `query-rx-filter` re-arms every NIC (no name) or the named one. libvirt answers each
/// event with `query-rx-filter {"name": alias}`; other clients do not, and only their
/// periodic unnamed query re-arms the latches.
extension SynthEngine {
    /// How often a client reacts to the event with a named query.
    var rxReactChance: Double { profile == .rxFilter ? 0.6 : 1.0 }

    mutating func rxChange(nic i: Int, loop: Bool = true) {
        guard i < vm.nics.count else { return }
        guard vm.running else {
            if loop { schedule(in: seconds(1, 4), .rxChange(nic: i, epoch: epoch)) }
            return
        }
        vm.nics[i].change(&rng)
        if vm.nics[i].armed {
            vm.nics[i].armed = false
            raise("NIC_RX_FILTER_CHANGED", vm.nics[i].eventData)
            if vm.nics[i].name != nil && rng.chance(rxReactChance) {
                schedule(in: us(200, 4_000), .intent(.queryRxFilter(nic: i), epoch: epoch))
            }
        }
        guard loop else { return }
        if rng.chance(0.1) {
            // An interface change touching every NIC at once: a burst across NICs.
            for j in vm.nics.indices where j != i {
                schedule(in: us(100, 20_000), .guestDone(.nicInit(j), epoch: epoch))
            }
        }
        let gap = profile == .rxFilter ? seconds(0.3, 12) : seconds(20, 400)
        schedule(in: gap, .rxChange(nic: i, epoch: epoch))
    }

    /// `query-rx-filter`, with no name (every NIC) or one NIC's name; it re-arms their latches.
    mutating func queryRxFilter(nic: Int?) {
        if let nic {
            guard nic < vm.nics.count else { return }
            let id = send("query-rx-filter", synData(["name": .string(vm.nics[nic].clientName)]))
            vm.nics[nic].armed = true
            reply(.array([vm.nics[nic].filterInfo]), id, work: us(60, 600))
        } else {
            let id = send("query-rx-filter")
            for i in vm.nics.indices { vm.nics[i].armed = true }
            reply(.array(vm.nics.map(\.filterInfo)), id, work: us(80, 900))
        }
    }

    /// The errors of `query-rx-filter` (net/net.c).
    mutating func queryRxFilterBad() {
        if rng.chance(0.5) {
            let id = send("query-rx-filter", synData(["name": .string("hostnet0")]))
            fail("GenericError", "net client(hostnet0) isn't a NIC", id)
        } else {
            let name = "net\(vm.nics.count + rng.int(0...3))"
            let id = send("query-rx-filter", synData(["name": .string(name)]))
            fail("GenericError", "invalid net client name: \(name)", id)
        }
    }
}
