import QMP
import Recording

/// Block jobs as libvirt drives them on QEMU 7.2 (docs/QEMU-FACTS.md, "Block jobs"): the job
/// starts with JOB_STATUS_CHANGE created and running before the command's reply, makes
/// progress that `query-block-jobs` shows, and ends completed (mirror: ready first, then
/// `block-job-complete`), cancelled, failed (BLOCK_JOB_ERROR then COMPLETED with `error`),
/// or pauses on an error until resumed. libvirt uses auto-dismiss off, so each job ends
/// with `job-dismiss` and status null; backups use auto-finalize off (BLOCK_JOB_PENDING,
/// then `job-finalize`).
extension SynthEngine {
    static let jobDisks = ["vda", "vdb"]

    var maxJobs: Int { profile == .blockJobs ? 2 : 1 }

    func freeJobDisk() -> Int? {
        guard vm.jobs.count < maxJobs else { return nil }
        return Self.jobDisks.indices.first { d in !vm.jobs.contains { $0.disk == d } }
    }

    func jobIndex(_ serial: Int) -> Int? { vm.jobs.firstIndex { $0.serial == serial } }

    mutating func jobStatus(_ i: Int, _ status: String) {
        vm.jobs[i].status = status
        raise("JOB_STATUS_CHANGE", synData(["id": .string(vm.jobs[i].id), "status": .string(status)]))
    }

    mutating func startJob() {
        guard let disk = freeJobDisk() else { return }
        jobSerial += 1
        let kind = SynthJob.Kind.allCases[rng.weighted([4, 2.5, 2, 1.5])]
        let plan: SynthJob.Plan
        if profile == .blockJobs && jobSerial % 4 == 2 {
            plan = .cancel  // every recording of this profile has cancelled jobs early on
        } else {
            plan = [SynthJob.Plan.complete, .cancel, .fail, .pauseOnError][rng.weighted([0.55, 0.2, 0.1, 0.15])]
        }
        let node = "libvirt-\(vm.diskNodes[disk])-format"
        let target = vm.nextNode
        vm.nextNode += 1
        let id = "\(kind.prefix)-\(Self.jobDisks[disk])-\(node)"
        let len = rng.int64(2...40) << 30
        let speed: Int64 = rng.chance(0.3) ? rng.int64(1...8) * (50 << 20) : 0
        let rate = speed > 0 ? speed : rng.int64(150...900) << 20
        let stopAt = len / 100 * rng.int64(15...85)
        let job = SynthJob(
            serial: jobSerial, id: id, kind: kind, plan: plan, disk: disk, node: node, target: target, len: len, speed: speed,
            rate: rate, autoFinalize: kind != .backup, stopAt: stopAt, lastTick: now)

        var args = JSONObject()
        switch kind {
        case .mirror, .backup:
            args = synData([
                "job-id": .string(id), "device": .string(node), "target": .string("libvirt-\(target)-format"),
                "sync": .string("full"),
            ])
        case .commit:
            args = synData([
                "device": .string(node), "job-id": .string(id), "top-node": .string("libvirt-\(target)-format"),
                "base-node": .string("libvirt-\(target + 1)-format"),
            ])
            vm.nextNode += 1
        case .stream:
            args = synData(["device": .string(node), "job-id": .string(id)])
        }
        if speed > 0 { args["speed"] = .int(speed) }
        args["auto-finalize"] = .bool(job.autoFinalize)
        args["auto-dismiss"] = .bool(false)
        let cid = send(kind.command, args)
        vm.jobs.append(job)
        let i = vm.jobs.count - 1
        advance(us(300, 4_000))
        jobStatus(i, "created")
        advance(us(20, 300))
        jobStatus(i, "running")
        replyEmpty(cid)
        schedule(in: ms(300, 1_500), .job(serial: job.serial, epoch: epoch))
    }

    /// Progress, and what happens when a job reaches its end or its error.
    mutating func jobTick(serial: Int) {
        guard let i = jobIndex(serial) else { return }
        var j = vm.jobs[i]
        let dt = now - j.lastTick
        j.lastTick = now
        switch j.status {
        case "running":
            j.offset = min(j.len, j.offset + j.rate / 1_000 * (dt / 1_000_000))
            if j.plan == .cancel { j.offset = min(j.offset, j.stopAt) }
        case "ready", "standby":
            // The guest keeps writing: the mirror's len grows and it keeps up.
            j.len += rng.int64(0...64) * 65_536
            j.offset = j.len
        case "paused":
            break
        default:
            vm.jobs[i] = j
            return
        }
        vm.jobs[i] = j
        if j.status == "running" {
            if j.plan == .cancel && j.offset >= j.stopAt && !j.cancelRequested {
                vm.jobs[i].cancelRequested = true
                schedule(in: seconds(0.1, 2), .intent(.cancelJob(serial: serial), epoch: epoch))
            } else if j.plan == .fail && j.offset >= j.stopAt {
                jobFails(i)
                return
            } else if j.plan == .pauseOnError && j.offset >= j.stopAt && !j.errorFired {
                vm.jobs[i].errorFired = true
                raise("BLOCK_JOB_ERROR", synData([
                    "device": .string(j.id), "operation": .string("write"), "action": .string("stop"),
                ]))
                advance(us(20, 300))
                jobStatus(i, "paused")
                schedule(in: seconds(1, 15), .intent(.resumeJob(serial: serial), epoch: epoch))
            } else if j.offset >= j.len && j.plan != .cancel {
                if j.kind == .mirror {
                    jobStatus(i, "ready")
                    advance(us(10, 200))
                    raise("BLOCK_JOB_READY", vm.jobs[i].progress)
                    schedule(in: seconds(0.3, 20), .intent(.completeJob(serial: serial), epoch: epoch))
                } else {
                    jobConcludes(i)
                    return
                }
            }
        }
        schedule(in: ms(400, 2_000), .job(serial: serial, epoch: epoch))
    }

    /// waiting -> pending -> BLOCK_JOB_COMPLETED -> concluded, or BLOCK_JOB_PENDING and
    /// the client's `job-finalize` when auto-finalize is off.
    mutating func jobConcludes(_ i: Int) {
        jobStatus(i, "waiting")
        advance(us(10, 200))
        jobStatus(i, "pending")
        advance(us(10, 300))
        let serial = vm.jobs[i].serial
        if vm.jobs[i].autoFinalize {
            raise("BLOCK_JOB_COMPLETED", vm.jobs[i].progress)
            advance(us(10, 200))
            jobStatus(i, "concluded")
            if vm.jobs[i].kind == .mirror { vm.diskNodes[vm.jobs[i].disk] = vm.jobs[i].target }
            schedule(in: ms(1, 60), .intent(.dismissJob(serial: serial), epoch: epoch))
        } else {
            raise("BLOCK_JOB_PENDING", synData([
                "type": .string(vm.jobs[i].kind.rawValue), "id": .string(vm.jobs[i].id),
            ]))
            schedule(in: ms(1, 80), .intent(.finalizeJob(serial: serial), epoch: epoch))
        }
    }

    mutating func jobFails(_ i: Int) {
        let j = vm.jobs[i]
        raise("BLOCK_JOB_ERROR", synData([
            "device": .string(j.id), "operation": .string(rng.chance(0.5) ? "read" : "write"), "action": .string("report"),
        ]))
        advance(us(50, 800))
        jobStatus(i, "aborting")
        advance(us(10, 300))
        var data = j.progress
        data["error"] = .string("Input/output error")
        raise("BLOCK_JOB_COMPLETED", data)
        advance(us(10, 200))
        jobStatus(i, "concluded")
        schedule(in: ms(1, 60), .intent(.dismissJob(serial: j.serial), epoch: epoch))
    }

    mutating func completeJob(serial: Int) {
        guard let i = jobIndex(serial) else { return }
        guard vm.jobs[i].status == "ready" else {
            if ["standby", "paused", "running"].contains(vm.jobs[i].status) {
                schedule(in: seconds(1, 5), .intent(.completeJob(serial: serial), epoch: epoch))
            }
            return
        }
        let id = send("block-job-complete", synData(["device": .string(vm.jobs[i].id)]))
        replyEmpty(id)
        advance(ms(1, 40))
        jobConcludes(i)
    }

    /// `block-job-cancel`: the reply, then aborting, BLOCK_JOB_CANCELLED, concluded.
    mutating func cancelJob(serial: Int) {
        guard let i = jobIndex(serial), ["running", "paused"].contains(vm.jobs[i].status) else { return }
        let id = send("block-job-cancel", synData(["device": .string(vm.jobs[i].id)]))
        replyEmpty(id)
        advance(us(200, 20_000))
        jobStatus(i, "aborting")
        advance(us(10, 300))
        raise("BLOCK_JOB_CANCELLED", vm.jobs[i].progress)
        advance(us(10, 200))
        jobStatus(i, "concluded")
        schedule(in: ms(1, 60), .intent(.dismissJob(serial: serial), epoch: epoch))
    }

    /// `job-finalize`: BLOCK_JOB_COMPLETED and concluded come before its reply.
    mutating func finalizeJob(serial: Int) {
        guard let i = jobIndex(serial), vm.jobs[i].status == "pending" else { return }
        let id = send("job-finalize", synData(["id": .string(vm.jobs[i].id)]))
        advance(us(50, 2_000))
        raise("BLOCK_JOB_COMPLETED", vm.jobs[i].progress)
        advance(us(10, 200))
        jobStatus(i, "concluded")
        replyEmpty(id)
        schedule(in: ms(1, 60), .intent(.dismissJob(serial: serial), epoch: epoch))
    }

    /// `job-dismiss`: status null before the reply; the job is gone.
    mutating func dismissJob(serial: Int) {
        guard let i = jobIndex(serial), vm.jobs[i].status == "concluded" else { return }
        let id = send("job-dismiss", synData(["id": .string(vm.jobs[i].id)]))
        advance(us(20, 400))
        jobStatus(i, "null")
        vm.jobs.remove(at: i)
        replyEmpty(id)
    }

    /// `block-job-pause`: the job pauses (standby when ready) at its next pause point.
    mutating func pauseJob() {
        guard let i = vm.jobs.firstIndex(where: { ($0.status == "running" || $0.status == "ready") && !$0.cancelRequested })
        else { return }
        let serial = vm.jobs[i].serial
        let id = send("block-job-pause", synData(["device": .string(vm.jobs[i].id)]))
        replyEmpty(id)
        advance(us(50, 5_000))
        jobStatus(i, vm.jobs[i].status == "ready" ? "standby" : "paused")
        schedule(in: seconds(1, 20), .intent(.resumeJob(serial: serial), epoch: epoch))
    }

    mutating func resumeJob(serial: Int) {
        guard let i = jobIndex(serial), ["paused", "standby"].contains(vm.jobs[i].status) else { return }
        let id = send("block-job-resume", synData(["device": .string(vm.jobs[i].id)]))
        advance(us(30, 500))
        vm.jobs[i].lastTick = now
        jobStatus(i, vm.jobs[i].status == "standby" ? "ready" : "running")
        replyEmpty(id)
    }

    mutating func queryBlockJobs() {
        let id = send("query-block-jobs")
        reply(.array(vm.jobs.map(\.info)), id, work: us(40, 500))
    }

    /// Cancelling a job that already went away: DeviceNotActive (blockdev.c, find_block_job).
    mutating func cancelMissingJob() {
        let disk = Self.jobDisks[rng.int(0...1)]
        let name = "copy-\(disk)-libvirt-\(rng.int(1...max(2, vm.nextNode)))-format"
        guard !vm.jobs.contains(where: { $0.id == name }) else { return }
        let id = send("block-job-cancel", synData(["device": .string(name)]))
        fail("DeviceNotActive", "Block job '\(name)' not found", id)
    }
}
