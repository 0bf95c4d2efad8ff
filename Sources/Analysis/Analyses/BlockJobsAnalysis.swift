import QMP
import Recording

/// `block-jobs`: each block job's life (docs/QEMU-FACTS.md, "Other events": JOB_STATUS_CHANGE
/// walks created → running → (paused, ready, standby) → waiting → pending → (aborting) →
/// concluded → null; BLOCK_JOB_READY / COMPLETED / CANCELLED carry type, device, len,
/// offset, speed, and COMPLETED may carry `error`; `device` is the job id in newer QEMU).
/// Progress also comes from `query-block-jobs` replies.
public struct BlockJobsAnalysis: Analysis {
    public static let name = "block-jobs"
    public static let summary = "per block job: status transitions, BLOCK_JOB_* events, progress, throughput, duration, errors, cancellations"
    public static let clock = AnalysisClock.receive
    public static let interest = Interest(
        events: ["JOB_STATUS_CHANGE", "BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_ERROR", "BLOCK_JOB_PENDING"],
        commands: ["query-block-jobs"], closes: true)

    public struct Step: Sendable, Hashable {
        public var record: Int
        public var time: Int64
        /// A JOB_STATUS_CHANGE status, or the BLOCK_JOB_* event name.
        public var what: String
        public var offset: Int64?
        public var len: Int64?
        public var detail: String?
    }

    public struct Job: Sendable {
        public var id: String
        public var type: String?
        public var steps: [Step] = []
        public var status: String?
        public var firstRecord: Int
        public var start: Int64
        /// When it concluded (or the final BLOCK_JOB_* event when no status events came).
        public var end: Int64?
        public var offset: Int64?
        public var len: Int64?
        public var errors: [String] = []
        /// `completed`, `failed`, `cancelled`, `unfinished`.
        public var outcome: String = "unfinished"
        /// Whether JOB_STATUS_CHANGE events came (QEMU 3.0+); without them BLOCK_JOB_* ends the job.
        var sawStatus = false
        public var duration: Int64? { end.map { $0 - start } }
        public var throughput: Double? {
            guard let d = duration, d > 0, let o = offset else { return nil }
            return Double(o) / (Double(d) / 1e9)
        }
    }

    let context: AnalysisContext
    var jobs: [Job] = []
    var byID: [String: Int] = [:]
    /// The first job of the current QEMU process: the jobs before it were ended (or had
    /// already finished) when their process was, and no outcome becomes `unfinished` again.
    var processFirstJob = 0

    public init(context: AnalysisContext) { self.context = context }

    mutating func job(_ id: String, _ record: Int, _ t: Int64, event: String = "", status: String? = nil) -> Int {
        // A finished job's id may be reused by a new job (the VM model's rule).
        if let k = byID[id] {
            let finished = jobs[k].status == "null" || jobs[k].status == "concluded" || (!jobs[k].sawStatus && jobs[k].outcome != "unfinished")
            if !VMModel.startsNewJob(previousFinished: finished, event: event, status: status) && jobs[k].status != "null" { return k }
        }
        jobs.append(Job(id: id, firstRecord: record, start: t))
        byID[id] = jobs.count - 1
        return jobs.count - 1
    }

    public mutating func consume(_ input: AnalysisInput) {
        switch input {
        case .event(let e):
            if e.name == "JOB_STATUS_CHANGE" {
                guard let data = e.view.object("data"), let id = data.string("id"), let status = data.string("status") else { return }
                let k = job(id, e.record, e.time, event: e.name, status: status)
                jobs[k].steps.append(Step(record: e.record, time: e.time, what: status))
                jobs[k].status = status
                jobs[k].sawStatus = true
                if status == "concluded" || (status == "null" && jobs[k].end == nil) { jobs[k].end = e.time }
                if status == "aborting", jobs[k].outcome == "unfinished" { jobs[k].outcome = "failed" }
                return
            }
            guard let id = e.view.string("data", "device") ?? e.view.string("data", "id") else { return }
            let k = job(id, e.record, e.time, event: e.name)
            let off = e.view.int("data", "offset"), len = e.view.int("data", "len")
            var detail: String?
            if let t = e.view.string("data", "type") { jobs[k].type = t }
            if let off { jobs[k].offset = off }
            if let len { jobs[k].len = len }
            switch e.name {
            case "BLOCK_JOB_COMPLETED":
                if let err = e.view.string("data", "error") {
                    jobs[k].errors.append(err)
                    jobs[k].outcome = "failed"
                    detail = err
                } else {
                    jobs[k].outcome = "completed"
                }
                if !jobs[k].sawStatus { jobs[k].end = e.time }
            case "BLOCK_JOB_CANCELLED":
                jobs[k].outcome = "cancelled"
                if !jobs[k].sawStatus { jobs[k].end = e.time }
            case "BLOCK_JOB_ERROR":
                let op = e.view.string("data", "operation") ?? "?"
                let action = e.view.string("data", "action") ?? "?"
                detail = "\(op) error, action \(action)"
                jobs[k].errors.append(detail!)
            default:
                break
            }
            jobs[k].steps.append(Step(record: e.record, time: e.time, what: e.name, offset: off, len: len, detail: detail))
        case .reply(let r):
            guard !r.isError, let v = r.view.value("return"), let list = v.arrayValue else { return }
            for info in list {
                guard let id = info["device"]?.stringValue ?? info["id"]?.stringValue else { continue }
                let k = job(id, r.record, r.time)
                if let t = info["type"]?.stringValue { jobs[k].type = t }
                let off = info["offset"]?.int64Value, len = info["len"]?.int64Value
                if let off { jobs[k].offset = off }
                if let len { jobs[k].len = len }
                jobs[k].steps.append(Step(record: r.record, time: r.time, what: "query-block-jobs", offset: off, len: len,
                                          detail: info["status"]?.stringValue))
            }
        case .greeting(let record, let time, _, true):
            // A new QEMU process: the old one's jobs ended with it; ids start afresh.
            for k in processFirstJob..<jobs.count where jobs[k].outcome == "unfinished" {
                jobs[k].outcome = "ended-with-qemu"
                jobs[k].end = time
                jobs[k].steps.append(Step(record: record, time: time, what: "QEMU exited (new process greeted)"))
            }
            byID.removeAll()
            processFirstJob = jobs.count
        default:
            break
        }
    }

    public func finish() -> BlockJobsResult { BlockJobsResult(context: context, jobs: jobs) }
}

public struct BlockJobsResult: StreamedJSONResult {
    public let context: AnalysisContext
    public let jobs: [BlockJobsAnalysis.Job]

    public var streamedMembers: [StreamedMember] {
        let jobs = self.jobs, context = self.context
        return [.objects("jobs", count: jobs.count) { k in
            let j = jobs[k]
            var o = JSONObject()
            o["id"] = .string(j.id)
            o["type"] = jopt(j.type)
            o["outcome"] = .string(j.outcome)
            o["final_status"] = jopt(j.status)
            o["first_record"] = .int(j.firstRecord)
            o["start_ns"] = .int(j.start)
            o["start_wall"] = jopt(context.wall(j.start))
            o["end_ns"] = jopt(j.end)
            o["duration_ns"] = jopt(j.duration)
            o["offset"] = jopt(j.offset)
            o["len"] = jopt(j.len)
            o["progress"] = (j.offset != nil && (j.len ?? 0) > 0) ? jnum(Double(j.offset!) / Double(j.len!), 4) : .null
            o["throughput_bytes_per_s"] = j.throughput.map { jnum($0, 0) } ?? .null
            o["errors"] = .array(j.errors.map { .string($0) })
            return StreamedMember.values(o) + [.array("steps", count: j.steps.count) { i in
                let s = j.steps[i]
                var p = JSONObject(point: context, s.record, s.time)
                p["what"] = .string(s.what)
                p["offset"] = jopt(s.offset)
                p["len"] = jopt(s.len)
                p["detail"] = jopt(s.detail)
                return .object(p)
            }]
        }]
    }

    public var findings: [AnalysisFinding] {
        var out: [AnalysisFinding] = []
        for j in jobs {
            let recs = [j.firstRecord] + j.steps.filter { $0.what.hasPrefix("BLOCK_JOB") || $0.what == "aborting" }.map(\.record)
            // Job ids are usually unique per job (libvirt numbers them): group by job type.
            let subject = j.type ?? "block"
            switch j.outcome {
            case "failed":
                out.append(AnalysisFinding(.error, "block-jobs", "job-failed",
                    "block job \(j.id)\(j.type.map { " (\($0))" } ?? "") failed: \(errorText(j))",
                    subject: subject, records: recs, time: j.start, weight: 1))
            case "cancelled":
                out.append(AnalysisFinding(.info, "block-jobs", "job-cancelled",
                    "block job \(j.id)\(j.type.map { " (\($0))" } ?? "") cancelled at \(progressText(j))",
                    subject: subject, records: recs, time: j.start))
            case "unfinished":
                out.append(AnalysisFinding(.info, "block-jobs", "job-unfinished",
                    "block job \(j.id)\(j.type.map { " (\($0))" } ?? "") still \(j.status ?? "running") at the end (\(progressText(j)))",
                    subject: subject, records: recs, time: j.start))
            case "ended-with-qemu":
                out.append(AnalysisFinding(.warning, "block-jobs", "job-ended-with-qemu",
                    "block job \(j.id)\(j.type.map { " (\($0))" } ?? "") never finished: QEMU exited first (\(progressText(j)))",
                    subject: subject, records: recs, time: j.start, weight: 1))
            default:
                break
            }
            // Errors matter whatever came after: a job that erred and was then cancelled hid them.
            if !j.errors.isEmpty && j.outcome != "failed" {
                out.append(AnalysisFinding(.warning, "block-jobs", "job-errors",
                    "block job \(j.id) \(j.outcome == "completed" ? "completed" : j.outcome == "cancelled" ? "was cancelled" : "ran on") after errors: \(j.errors.joined(separator: "; "))",
                    subject: subject, records: recs, time: j.start, weight: 1))
            }
        }
        return out
    }

    func errorText(_ j: BlockJobsAnalysis.Job) -> String { j.errors.isEmpty ? "aborted" : j.errors.joined(separator: "; ") }

    /// "93 mirror jobs failed (read error, action report; Input/output error, and 3 other errors)".
    public func describe(_ g: FindingGroup) -> String? {
        func reasons() -> String {
            let r = g.distinct { $0.message.after(g.code == "job-errors" ? "after errors: " : "failed: ") }
            return "(\(r[0])" + (r.count > 1 ? ", and \(r.count - 1) other error\(r.count == 2 ? "" : "s"))" : ")")
        }
        let jobs = "\(g.count) \(g.subject) jobs"
        switch g.code {
        case "job-failed": return "\(jobs) failed \(reasons())"
        case "job-cancelled": return "\(jobs) cancelled"
        case "job-unfinished": return "\(jobs) still running at the end"
        case "job-errors": return "\(jobs) had errors \(reasons())"
        case "job-ended-with-qemu": return "\(jobs) never finished: QEMU exited first"
        default: return nil
        }
    }

    func progressText(_ j: BlockJobsAnalysis.Job) -> String {
        guard let o = j.offset, let l = j.len, l > 0 else { return "unknown progress" }
        return "\(fmt(Double(o) / Double(l) * 100, 1))% (\(bytesText(o)) of \(bytesText(l)))"
    }

    public func table(colors: Bool, width: Int) -> String {
        let st = TextStyle(colors)
        if jobs.isEmpty { return "  no block jobs\n" }
        var t = TextTable(["job", "type", "outcome", "started", "duration", "progress", "throughput", "statuses"])
        for j in jobs {
            let outcome: String
            switch j.outcome {
            case "completed": outcome = st.green(j.outcome)
            case "failed": outcome = st.red(j.outcome)
            case "cancelled": outcome = st.yellow(j.outcome)
            default: outcome = j.outcome
            }
            let statuses = j.steps.filter { $0.what.first?.isLowercase == true && $0.what != "query-block-jobs" }.map(\.what).joined(separator: "→")
            t.row([j.id, j.type ?? "?", outcome, "#\(j.firstRecord) " + context.wallOrClock(j.start), j.duration.map { DurationFormat.short($0) } ?? "",
                   progressText(j), j.throughput.map { bytesText(Int64(saturating: $0)) + "/s" } ?? "", statuses])
        }
        return t.render(colors: colors, width: width)
    }

    public func csv() -> String {
        var c = CSV(["job", "type", "record", "t_ns", "wall", "what", "offset", "len", "detail"])
        for j in jobs {
            for s in j.steps {
                c.add([j.id, j.type ?? "", "\(s.record)", "\(s.time)", context.wall(s.time) ?? "", s.what, s.offset.map { "\($0)" } ?? "",
                       s.len.map { "\($0)" } ?? "", s.detail ?? ""])
            }
        }
        return c.string
    }
}
