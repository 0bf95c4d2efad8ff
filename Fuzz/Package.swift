// swift-tools-version:6.0
import PackageDescription

// libFuzzer targets for qmpreplay's parsers (docs/FUZZING.md). Not part of the main build:
// Scripts/fuzz builds this package with -sanitize=fuzzer,address, which instruments the
// main package's modules too. One binary; QMPREPLAY_FUZZ_TARGET picks the entry point.
let package = Package(
    name: "qmpreplay-fuzz",
    dependencies: [.package(name: "qmpreplay", path: "..")],
    targets: [
        .executableTarget(
            name: "qmpreplay-fuzz",
            dependencies: [
                .product(name: "QMP", package: "qmpreplay"),
                .product(name: "Recording", package: "qmpreplay"),
                .product(name: "Shell", package: "qmpreplay"),
                .product(name: "Replay", package: "qmpreplay"),
                .product(name: "Transport", package: "qmpreplay"),
            ]
        ),
    ]
)
