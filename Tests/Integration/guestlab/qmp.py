"""A synchronous QMP client built on qemu.qmp's asyncio QMPClient.

qemu.qmp is QEMU's own Python QMP library (PyPI ``qemu.qmp``). Tests are synchronous,
so :class:`QMP` runs a QMPClient on a private event loop in a background thread and
exposes blocking calls::

    q = QMP("/tmp/gl-x/ctl.sock")            # connects and negotiates
    q.cmd("stop")                            # -> {} ; raises QMPError on an error reply
    ev = q.wait_event("STOP", timeout=5)     # every event is kept in q.events
    q.close()

For asyncio code use qemu.qmp directly::

    from qemu.qmp import QMPClient
    client = QMPClient("mine"); await client.connect(lab.qmp_path("ctl"))
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any, Callable, Optional

try:
    from qemu.qmp import QMPClient, ExecuteError  # type: ignore
    HAVE_QEMU_QMP = True
except ImportError:  # pragma: no cover - reported by the tests' fixtures
    QMPClient = None  # type: ignore
    ExecuteError = Exception  # type: ignore
    HAVE_QEMU_QMP = False


class QMPError(Exception):
    """An error reply: ``.error_class`` and ``.desc`` as QEMU sent them."""

    def __init__(self, command: str, error_class: str, desc: str):
        super().__init__(f"{command}: {error_class}: {desc}")
        self.command = command
        self.error_class = error_class
        self.desc = desc


def _to_dict(msg: Any) -> dict:
    raw = getattr(msg, "_raw", None)      # qemu.qmp models (Greeting) keep the message here
    if raw is not None:
        msg = raw
    try:
        return json.loads(bytes(msg))
    except Exception:
        return dict(msg)


class QMP:
    """Blocking wrapper around one qemu.qmp QMPClient connection.

    ``address`` is a unix socket path or a ``(host, port)`` tuple. Events are collected
    from the moment of connection (``events``, a list of dicts as QEMU sent them).
    """

    def __init__(self, address, name: str = "guestlab", timeout: float = 10.0,
                 negotiate: bool = True):
        if not HAVE_QEMU_QMP:
            raise RuntimeError("the Python package qemu.qmp is missing (pip install qemu.qmp; "
                               "Scripts/integration-test sets up .venv with it)")
        self.address = address
        self.name = name
        self.events: list[dict] = []
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"qmp-{name}", daemon=True)
        self._thread.start()
        self._client = None
        self._event_task = None
        self.disconnected = False
        try:
            self._run(self._connect(negotiate), timeout)
        except TimeoutError:
            self.close()
            raise TimeoutError(f"QMP {address}: no greeting within {timeout}s (a QEMU monitor serves "
                               "one client at a time: is another connection still open?)") from None
        except BaseException:
            self.close()
            raise

    # -- plumbing
    def _run(self, coro, timeout: Optional[float]):
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise

    async def _connect(self, negotiate: bool):
        self._client = QMPClient(self.name)
        self._client.negotiate = negotiate
        # Start listening before connecting so no event can be missed.
        self._event_task = asyncio.ensure_future(self._pump())
        await self._client.connect(self.address)

    async def _pump(self):
        # Wait until the client exists, then forward every event.
        while self._client is None:
            await asyncio.sleep(0.001)
        try:
            async for ev in self._client.events:
                with self._cond:
                    self.events.append(_to_dict(ev))
                    self._cond.notify_all()
        except asyncio.CancelledError:
            pass

    # -- API
    @property
    def client(self):
        """The underlying qemu.qmp QMPClient (use only via :meth:`run_async`)."""
        return self._client

    def run_async(self, coro_factory: Callable, timeout: float = 30.0):
        """Run ``coro_factory(client)`` on this client's loop and return its result."""
        return self._run(coro_factory(self._client), timeout)

    @property
    def greeting(self) -> dict:
        return _to_dict(self._client.greeting)

    def cmd(self, command: str, args: Optional[dict] = None, timeout: float = 30.0, **kwargs) -> Any:
        """Execute a command, return its ``return`` value; raise QMPError on an error reply.
        Keyword arguments become arguments with ``_`` turned into ``-`` (job_id -> job-id)."""
        if self._loop.is_closed():
            raise RuntimeError(f"QMP {self.address}: closed")
        arguments = dict(args or {}, **{k.replace("_", "-"): v for k, v in kwargs.items()})

        async def go():
            try:
                return await self._client.execute(command, arguments or None)
            except ExecuteError as e:  # type: ignore[misc]
                err = e.error.error
                raise QMPError(command, err.class_, err.desc) from None

        return self._run(go(), timeout)

    def cmd_raw(self, msg: dict, timeout: float = 30.0) -> dict:
        """Send a message as given (an id is added); return the whole reply as a dict."""
        async def raw():
            return _to_dict(await self._client._raw(msg, assign_id=True))  # noqa: SLF001
        return self._run(raw(), timeout)

    def quit(self, timeout: float = 10.0) -> None:
        """Send ``quit``; tolerate QEMU closing the connection as it exits."""
        try:
            self.cmd("quit", timeout=timeout)
        except Exception:
            pass
        self.disconnected = True

    def event_count(self, name: Optional[str] = None) -> int:
        with self._cond:
            return sum(1 for e in self.events if name is None or e.get("event") == name)

    def mark(self) -> int:
        """An index into ``events``; pass it as ``since`` to wait only for later events."""
        with self._cond:
            return len(self.events)

    def events_since(self, since: int = 0, name: Optional[str] = None) -> list[dict]:
        with self._cond:
            return [e for e in self.events[since:] if name is None or e.get("event") == name]

    def wait_event(self, name: Optional[str], timeout: float = 10.0, since: int = 0,
                   where: Optional[Callable[[dict], bool]] = None) -> dict:
        """Wait for an event named ``name`` (any event if None) at index >= since that
        satisfies ``where``; raise TimeoutError naming the events seen otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events[since:]:
                    if (name is None or e.get("event") == name) and (where is None or where(e)):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [e.get("event") for e in self.events[since:]]
                    raise TimeoutError(f"no {name} event within {timeout}s (saw {seen})")
                self._cond.wait(left)

    def no_event(self, name: str, within: float, since: int = 0) -> bool:
        """True when no ``name`` event arrives (after ``since``) during ``within`` seconds."""
        try:
            self.wait_event(name, timeout=within, since=since)
            return False
        except TimeoutError:
            return True

    def close(self) -> None:
        self.disconnected = True
        if self._loop.is_closed():
            return

        async def go():
            try:
                if self._client is not None:
                    await self._client.disconnect()
            except Exception:
                pass
            if self._event_task is not None:
                self._event_task.cancel()
                await asyncio.gather(self._event_task, return_exceptions=True)

        try:
            self._run(go(), 5)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        try:
            self._loop.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
