import QMP
import Recording

/// The steps of an outgoing migration on the source QEMU, as 7.2 writes them
/// (docs/QEMU-FACTS.md, "Migration"): passes while the guest runs, then the switch-over
/// stops it, then `completed` (the source stays paused until libvirt kills it) or `failed`
/// (the source resumes: RESUME).
enum SynthMigrationStep: Sendable {
    case pass(Int)
    case switchOver
    case finish(failed: Bool)
}

extension SynthEngine {
    /// libvirt turns on the `events` capability before migrating, or QEMU writes no
    /// MIGRATION / MIGRATION_PASS events.
    mutating func enableMigrationEvents() {
        let id = send("migrate-set-capabilities", synData(["capabilities": .array([synObj(["capability": .string("events"), "state": .bool(true)])])]))
        replyEmpty(id)
    }

    /// `migrate` returns at once; `setup` then `active` follow, and the first pass.
    mutating func migrate() {
        vm.migrating = true
        let id = send("migrate", synData(["uri": .string("tcp:10.0.\(rng.int(0...9)).\(rng.int(2...250)):49152")]))
        replyEmpty(id)
        advance(us(300, 3_000))
        raise("MIGRATION", synData(["status": .string("setup")]))
        advance(ms(2, 40))
        raise("MIGRATION", synData(["status": .string("active")]))
        schedule(in: ms(5, 60), .migration(.pass(1), epoch: epoch))
    }

    mutating func migrationStep(_ step: SynthMigrationStep) {
        switch step {
        case .pass(let n):
            raise("MIGRATION_PASS", synData(["pass": .int(n)]))
            // Each pass sends what the guest dirtied during the last one; most converge in a few.
            if n < 2 || (n < 30 && rng.chance(0.6)) {
                schedule(in: seconds(0.3, 6), .migration(.pass(n + 1), epoch: epoch))
            } else {
                schedule(in: ms(20, 900), .migration(.switchOver, epoch: epoch))
            }
        case .switchOver:
            // STOP while the status is still `active`; the VM is in finish-migrate.
            raise("STOP")
            vm.run = .finishMigrate
            // The downtime: usually well under a second, sometimes several.
            let downtime = rng.chance(0.75) ? ms(30, 900) : seconds(1, 6)
            schedule(in: downtime, .migration(.finish(failed: rng.chance(0.3)), epoch: epoch))
        case .finish(let failed):
            vm.migrating = false
            if failed {
                raise("MIGRATION", synData(["status": .string("failed")]))
                advance(us(200, 2_000))
                raise("RESUME")
                vm.run = .running
            } else {
                raise("MIGRATION", synData(["status": .string("completed")]))
                vm.run = .postmigrate
                // libvirt confirms on the destination and then ends the source process.
                schedule(in: ms(40, 400), .intent(.kill, epoch: epoch))
            }
        }
    }
}
