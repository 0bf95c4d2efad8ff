#!/usr/bin/env python3
"""The check of vmstatus_naive.py written with qemu.qmp's QMPClient, whose event
listeners get every event however events and replies are interleaved
(docs/TESTING-CLIENTS.md).

Usage: vmstatus_qemu_qmp.py SOCKET   (or $QMP_SOCKET). Exit 0 when all went well.
"""
import asyncio
import os
import sys

from qemu.qmp import EventListener, QMPClient


async def main(path):
    qmp = QMPClient("vmstatus")
    rtc_events = EventListener("RTC_CHANGE")
    qmp.register_listener(rtc_events)  # before connecting: nothing can be missed
    await qmp.connect(path)
    try:
        status = await asyncio.wait_for(qmp.execute("query-status"), 5)
        rtc = await asyncio.wait_for(rtc_events.get(), 5)
        name = await asyncio.wait_for(qmp.execute("query-name"), 5)
        version = await asyncio.wait_for(qmp.execute("query-version"), 5)
        assert status["status"] == "running", status
        assert name["name"] == "vm1", name
        print(f"{name['name']}: {status['status']}, guest clock offset {rtc['data']['offset']} s, "
              f"QEMU {version['qemu']['major']}.{version['qemu']['minor']}")
    finally:
        await qmp.disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else os.environ["QMP_SOCKET"]))
