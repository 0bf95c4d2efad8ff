// The shell module; see ShellSession.swift (staged while its parts are written).
enum ShellModule {}
