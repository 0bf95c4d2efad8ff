// swift-tools-version:6.0
import PackageDescription

// Layering (docs/ARCHITECTURE.md): QMP (no I/O) <- Recording (files) <- Transport (sockets,
// swift-nio) <- Capture (recorder) and Replay (fake QEMU); Recording <- Analysis; Synth makes
// synthetic recordings; all of them <- Shell (REPL) <- ShellTerminal (readline, pager) <-
// qmpreplay (CLI). Benchmarks and TestSupport are scaffolding, apart from the product.
//
// Linux only: the code calls Glibc directly (sockets, mmap, signals, termios), so no Apple
// platform is declared.
let package = Package(
    name: "qmpreplay",
    products: [
        .executable(name: "qmpreplay", targets: ["qmpreplay"]),
        .library(name: "QMP", targets: ["QMP"]),
        .library(name: "Recording", targets: ["Recording"]),
        .library(name: "Transport", targets: ["Transport"]),
        .library(name: "Replay", targets: ["Replay"]),
        .library(name: "Analysis", targets: ["Analysis"]),
        .library(name: "Shell", targets: ["Shell"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
    ],
    targets: [
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "QMP"),
        .target(name: "Recording", dependencies: ["QMP", "CZlib"]),
        .target(name: "Synth", dependencies: ["QMP", "Recording"]),
        .target(name: "Transport", dependencies: [
            "QMP",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Capture", dependencies: [
            "QMP", "Recording", "Transport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Replay", dependencies: [
            "QMP", "Recording", "Transport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Analysis", dependencies: ["QMP", "Recording"]),
        .target(name: "Fleet", dependencies: ["QMP", "Recording", "Transport"]),
        .target(name: "Benchmarks", dependencies: [
            "QMP", "Recording", "Synth", "Transport", "Capture", "Replay", "TestSupport", "Shell",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The option grammar shared by the CLI and the shell: value types, option groups.
        .target(name: "Options", dependencies: [
            "QMP", "Recording", "Transport", "Replay",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .systemLibrary(name: "CReadline", path: "Sources/CReadline", providers: [.apt(["libreadline-dev"])]),
        .target(name: "Shell", dependencies: [
            "QMP", "Recording", "Transport", "Capture", "Analysis", "Replay", "Options",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The terminal side of the shell: readline, the pager, stdout. GNU readline is
        // process-global C state (callbacks, line buffer, history) that Swift 6's strict
        // concurrency checking cannot express; this small target is the only Swift 5 code.
        .target(name: "ShellTerminal", dependencies: ["Shell", "Recording", "Analysis", "Transport", "CReadline"],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        .executableTarget(
            name: "qmpreplay",
            dependencies: [
                "QMP", "Recording", "Synth", "Transport", "Capture", "Replay", "Analysis", "Shell", "ShellTerminal", "Options", "Benchmarks", "Fleet",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Test fakes (a fast QMP peer, a line client) and fixture paths, shared by the tests and
        // the benchmarks: scaffolding, kept out of the library targets.
        .target(name: "TestSupport", dependencies: [
            "QMP", "Recording", "Transport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
        ], path: "Tests/TestSupport"),
        .testTarget(name: "QMPTests", dependencies: ["QMP", "TestSupport"]),
        .testTarget(name: "RecordingTests", dependencies: ["Recording", "Synth", "QMP", "TestSupport"]),
        .testTarget(name: "TransportTests", dependencies: [
            "Transport", "QMP",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
        ]),
        .testTarget(name: "CaptureTests", dependencies: [
            "Capture", "Transport", "Recording", "QMP", "TestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "ReplayTests", dependencies: [
            "Replay", "Transport", "Recording", "QMP", "TestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "AnalysisTests", dependencies: ["Analysis", "Recording", "Synth", "QMP", "TestSupport"]),
        .testTarget(name: "ShellTests", dependencies: ["Shell", "Recording", "QMP", "Options", "TestSupport"]),
        .testTarget(name: "OptionsTests", dependencies: ["Options", "Replay", "Recording", "Transport"]),
        .testTarget(name: "FleetTests", dependencies: ["Fleet"]),
        .testTarget(name: "CLITests", dependencies: ["Recording", "QMP", "TestSupport", "qmpreplay"]),
    ]
)
