import QMP
import Recording

/// One delivery of a rate-limited event, as a recording shows it.
public struct Delivery: Sendable, Hashable {
    /// When the recorder received it: ns since the recording's start (receive clock).
    public var receive: Int64
    /// QEMU's timestamp: µs since the epoch, host wall clock when QEMU *created* the event
    /// (QEMU's clock); `nil` when the message has none.
    public var qemuMicros: Int64?

    public init(receive: Int64, qemuMicros: Int64?) {
        self.receive = receive
        self.qemuMicros = qemuMicros
    }
}

/// The one rule for "this delivery was held by QEMU's event throttle, and may stand for
/// events it replaced" (docs/QEMU-FACTS.md, "Event throttling"). `balloon`, `rtc` and
/// `throttle` all decide with it, so they agree on every recording.
///
/// QEMU's throttle, per key: the first event goes out at once and opens a 1 s window; an
/// event created while the window is open is stored, replacing any event stored before it
/// (with its own timestamp, taken when it was created); when the window ends the stored
/// event is sent and a new window opens; a window that ends with nothing stored closes.
/// Hence, for two consecutive deliveries P and C of one key:
///
/// - C created less than 1 s after P was created (QEMU clock) was created inside the
///   window P's sending opened or renewed (P was sent no earlier than it was created, and C
///   would have replaced P had it been created before P went out): C was **held**, and
///   events created before it in that window were replaced and never delivered.
/// - C created 1 s or more after P: if P went out at once, P's window had closed and C
///   went out at once, not held. If P was itself held, it went out later than it was
///   created, so its window ended later too and C may still have been held: then the
///   receive gap decides, as below.
/// - Without QEMU timestamps, only the receive clock can tell: a held delivery goes out
///   when the window ends, so it arrives at the throttle cadence, 1 s after the previous
///   delivery (0.95–1.05 s for the recorder's scheduling and the socket). A delivery that
///   arrives at the cadence may also have been sent at once just after a window closed;
///   "held" is then a "possibly", which is what every user of the rule reports
///   (`possibly_merged`).
///
/// The receive gap means something only when receive times are delivery times: not in
/// recordings imported from formats whose times come from QEMU's timestamps or are made
/// up (`AnalysisContext.receiveTimesAreDeliveryTimes`); there only the QEMU timestamps
/// decide.
///
/// Example: deliveries received at 10.000 s and 11.000 s created (QEMU clock) at
/// 10.000 s and 10.600 s: the second was held (0.6 s < 1 s); anything the guest did
/// between 10.000 s and 10.600 s was replaced by it.
public enum ThrottleRule {
    /// QEMU's throttle window (the same for every throttled event).
    public static let window: Int64 = 1_000_000_000
    /// Receive gaps at which a held delivery arrives: the window, ±50 ms.
    public static let cadence: ClosedRange<Int64> = 950_000_000...1_050_000_000

    /// Whether `current` was held by the throttle window that `previous` (the key's
    /// previous delivery, `nil` for its first) opened or renewed. `previousHeld` is this
    /// rule's answer for `previous`; `receiveIsDelivery` whether receive times are
    /// delivery times.
    public static func held(previous: Delivery?, current: Delivery, previousHeld: Bool, receiveIsDelivery: Bool = true) -> Bool {
        guard let p = previous else { return false }   // the first delivery goes out at once
        if let q = current.qemuMicros, let pq = p.qemuMicros, q >= pq {
            // Timestamps are whatever the file holds: the gap saturates instead of trapping.
            if q.subtractingSaturating(pq).multipliedSaturating(by: 1000) < window { return true }
            // A window after P was created: only a held P can have moved its window past that.
            guard previousHeld else { return false }
        }
        // No timestamps (or QEMU's clock went back): the receive cadence.
        return receiveIsDelivery && cadence.contains(current.receive - p.receive)
    }

    /// Follows the deliveries of one throttle key through `held(previous:current:...)`.
    ///
    /// Example: `var k = ThrottleRule.Key(receiveIsDelivery: true)`, then
    /// `k.deliver(Delivery(receive: t, qemuMicros: q))` for each delivery, in order.
    public struct Key: Sendable {
        public let receiveIsDelivery: Bool
        public private(set) var previous: Delivery?
        public private(set) var previousHeld = false

        public init(receiveIsDelivery: Bool) { self.receiveIsDelivery = receiveIsDelivery }

        /// Records `d` as the key's latest delivery; whether it was held.
        public mutating func deliver(_ d: Delivery) -> Bool {
            let h = ThrottleRule.held(previous: previous, current: d, previousHeld: previousHeld, receiveIsDelivery: receiveIsDelivery)
            previous = d
            previousHeld = h
            return h
        }
    }
}

extension AnalysisContext {
    /// Whether the recording's receive times are when QEMU's messages arrived, so that gaps
    /// between deliveries can be measured: the very test `commands` uses for
    /// `latency_measured` (not for recordings imported from plain QMP lines, whose times are
    /// QEMU's event timestamps, nor libvirt `.replies` or virsh output). A libvirt debug
    /// log's times are libvirt's receive times, so they count as measured (1 ms resolution).
    var receiveTimesAreDeliveryTimes: Bool {
        CommandsResult(context: self, commands: []).latencyMeasured
    }
}
