#!/usr/bin/env python3
"""A small QMP client with a real ordering bug, written for docs/TESTING-CLIENTS.md.

It checks a VM: its status, then waits for the guest's clock to be set (RTC_CHANGE),
then asks for the VM's name and QEMU's version. The bug: while it waits for a reply,
it throws away the events it reads on the way (it only wanted the reply). When the
RTC_CHANGE arrives before the reply to query-status -- which QEMU may well do -- the
event is gone, and waiting for it hangs (the pattern of go-qemu issue #158, where an
event ahead of a reply deadlocked the client).

Usage: vmstatus_naive.py SOCKET   (or $QMP_SOCKET). Exit 0 when all went well.
"""
import json
import os
import socket
import sys


class Monitor:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(float(os.environ.get("VMSTATUS_TIMEOUT", "2")))
        self.sock.connect(path)
        self.reader = self.sock.makefile("rb")
        self.next_id = 1
        self.events = []

    def read(self):
        line = self.reader.readline()
        if not line:
            raise ConnectionError("QEMU closed the connection")
        return json.loads(line)

    def negotiate(self):
        assert "QMP" in self.read()
        self.sock.sendall(b'{"execute": "qmp_capabilities"}\n')
        while True:
            msg = self.read()
            if "event" in msg:
                self.events.append(msg)  # kept: nothing is lost here
                continue
            if "error" in msg:
                raise RuntimeError(msg["error"]["desc"])
            return

    def execute(self, name):
        ident = self.next_id
        self.next_id += 1
        self.sock.sendall(json.dumps({"execute": name, "id": ident}).encode() + b"\n")
        while True:
            msg = self.read()
            if "event" in msg:
                continue  # BUG: the event is dropped; wait_event() may wait for it forever
            if "error" in msg:
                raise RuntimeError(msg["error"]["desc"])
            return msg["return"]

    def wait_event(self, name):
        for i, msg in enumerate(self.events):
            if msg["event"] == name:
                return self.events.pop(i)
        while True:
            msg = self.read()  # times out ($VMSTATUS_TIMEOUT, 2 s): the "hang", made visible
            if msg.get("event") == name:
                return msg
            if "event" in msg:
                self.events.append(msg)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.environ["QMP_SOCKET"]
    mon = Monitor(path)
    mon.negotiate()
    status = mon.execute("query-status")
    rtc = mon.wait_event("RTC_CHANGE")
    name = mon.execute("query-name")
    version = mon.execute("query-version")
    print(f"{name['name']}: {status['status']}, guest clock offset {rtc['data']['offset']} s, "
          f"QEMU {version['qemu']['major']}.{version['qemu']['minor']}")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        print(f"vmstatus: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
