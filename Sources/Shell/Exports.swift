// The shell's `state` is the VM model's (module Analysis): re-exported so that users of
// the shell see `VMState` without importing Analysis themselves.
@_exported import Analysis
