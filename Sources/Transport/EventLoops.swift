import NIOCore
import NIOPosix

/// The event loops every socket of the process runs on. One loop serves a recorder's or a
/// fake QEMU's sockets (QMP traffic is small; one thread keeps ordering simple and leaves
/// the other core to the recorder's encoder and disk workers or to the clients under test).
///
/// Example: `ClientBootstrap(group: EventLoops.shared).connect(...)`.
public enum EventLoops {
    /// Created on first use and never shut down (it lives as long as the process).
    public static let shared: MultiThreadedEventLoopGroup = .singleton
}
