// swift-tools-version:6.0
import PackageDescription

// Layering (see docs/ARCHITECTURE.md): QMP (no I/O) <- Recording (files) <- Capture (sockets) <- Replay (fake QEMU);
// Recording <- Analysis (streaming analyses); all of them <- Shell (REPL) <- qmpreplay (CLI).
let package = Package(
    name: "qmpreplay",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "qmpreplay", targets: ["qmpreplay"]),
        .library(name: "QMP", targets: ["QMP"]),
        .library(name: "Recording", targets: ["Recording"]),
        .library(name: "Replay", targets: ["Replay"]),
        .library(name: "Analysis", targets: ["Analysis"]),
        .library(name: "Shell", targets: ["Shell"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "QMP"),
        .target(name: "Recording", dependencies: ["QMP", "CZlib"]),
        .target(name: "Capture", dependencies: ["QMP", "Recording"]),
        .target(name: "Replay", dependencies: ["QMP", "Recording", "Capture"]),
        .target(name: "Analysis", dependencies: ["QMP", "Recording"]),
        // The option grammar shared by the CLI and the shell: value types, option groups.
        .target(name: "Options", dependencies: [
            "QMP", "Recording", "Capture", "Replay",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .systemLibrary(name: "CReadline", path: "Sources/CReadline", providers: [.apt(["libreadline-dev"])]),
        // GNU readline is process-global C state (callbacks, line buffer, history), which
        // Swift 6's strict concurrency checking cannot express; the shell is single-threaded.
        .target(name: "Shell", dependencies: ["QMP", "Recording", "Capture", "CReadline", "Analysis", "Replay", "Options",
                                                .product(name: "ArgumentParser", package: "swift-argument-parser")], swiftSettings: [.swiftLanguageMode(.v5)]),
        .executableTarget(
            name: "qmpreplay",
            dependencies: [
                "QMP", "Recording", "Capture", "Replay", "Analysis", "Shell", "Options",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "QMPTests", dependencies: ["QMP"]),
        .testTarget(name: "RecordingTests", dependencies: ["Recording", "QMP"]),
        .testTarget(name: "CaptureTests", dependencies: ["Capture", "Recording", "QMP"]),
        .testTarget(name: "ReplayTests", dependencies: ["Replay", "Recording", "QMP"]),
        .testTarget(name: "AnalysisTests", dependencies: ["Analysis", "Recording", "QMP"]),
        .testTarget(name: "ShellTests", dependencies: ["Shell", "Recording", "QMP", "Options"]),
        .testTarget(name: "OptionsTests", dependencies: ["Options", "Replay", "Recording", "Capture"]),
        .testTarget(name: "CLITests", dependencies: ["Recording", "QMP", "qmpreplay"]),
    ]
)
