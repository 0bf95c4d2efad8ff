import ArgumentParser
import Foundation
import Recording

/// `--no-cache` for the commands that read recordings: whether they keep and use the
/// persistent index (docs/INDEX.md). `QMPREPLAY_NO_CACHE=1` does the same for every command.
struct CacheOptions: ParsableArguments {
    @Flag(name: .customLong("no-cache"),
          help: "Neither use nor write the persistent index (also: QMPREPLAY_NO_CACHE=1; docs/INDEX.md).")
    var noCache = false

    /// The cache to use: nil when switched off.
    var cache: IndexCache? {
        noCache ? nil : IndexCache.standard(environment: ProcessInfo.processInfo.environment)
    }
}
