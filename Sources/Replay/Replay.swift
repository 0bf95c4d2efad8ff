// The replay module: a clock, a scheduler and a fake-QEMU server (see docs/REPLAY.md).
