import QMP
import Recording

/// Hot-unplug and plug of a disk, and CD-ROM media changes.
///
/// `device_del` returns `{}` at once; DEVICE_DELETED comes when the guest acknowledges,
/// first for the virtio backend (no `device`), then for the device itself.
/// `blockdev-change-medium` opens the tray, swaps the medium and closes it before its
/// reply; a tray the guest has locked is refused until the guest opens it.
extension SynthEngine {
    mutating func deviceDel() {
        let id = send("device_del", synData(["id": .string("virtio-disk2")]))
        replyEmpty(id, work: us(200, 3_000))
        vm.hotplugPending = true
        schedule(in: seconds(0.2, 3), .guestDone(.deviceDeleted, epoch: epoch))
    }

    mutating func deviceAdd() {
        let add = send("blockdev-add", synData([
            "driver": .string("qcow2"), "node-name": .string("libvirt-3-format"), "read-only": .bool(false),
            "file": .string("libvirt-3-storage"),
        ]))
        replyEmpty(add, work: us(300, 6_000))
        advance(us(100, 2_000))
        let id = send("device_add", synData([
            "driver": .string("virtio-blk-pci"), "bus": .string("pci.7"), "addr": .string("0x0"),
            "drive": .string("libvirt-3-format"), "id": .string("virtio-disk2"),
        ]))
        replyEmpty(id, work: us(500, 8_000))
        vm.hotplugAttached = true
    }

    static let isoImages = [
        "/var/lib/libvirt/images/debian-12.8.0-amd64-netinst.iso",
        "/var/lib/libvirt/images/virtio-win-0.1.262.iso",
        "/var/lib/libvirt/images/Fedora-Workstation-Live-41.iso",
    ]

    mutating func changeMedium() {
        let args = synData([
            "id": .string("sata0-0-0"), "filename": .string(rng.pick(Self.isoImages)), "format": .string("raw"),
        ])
        let id = send("blockdev-change-medium", args)
        if !vm.trayOpen && vm.running && rng.chance(0.35) {
            fail("GenericError", "Device 'sata0-0-0' is locked and force was not specified, wait for tray to open and try again", id)
            schedule(in: ms(50, 800), .guestDone(.trayOpenForEject, epoch: epoch))
            schedule(in: seconds(1, 4), .intent(.changeMedium, epoch: epoch))
            return
        }
        advance(us(300, 4_000))
        if !vm.trayOpen {
            trayMoved(open: true)
            advance(us(200, 3_000))
        }
        trayMoved(open: false)
        replyEmpty(id)
    }
}
