"""`qmpreplay record --listen ... --upstream ...`: qmpreplay sits between a QMP client and
QEMU, opens its own upstream connection per client, passes bytes both ways unchanged and
records them. The client is qemu.qmp (QEMU's own library) or a raw socket client that
keeps every byte, for the byte-exactness checks."""
from __future__ import annotations

import json
import signal
import time

from guestlab.lab import _free_port
from guestlab.qmp import QMP
from guestlab.rawclient import RawClient
from guestlab.recorder import check_well_formed, qmpreplay, read_qmprec


def message_conns(r):
    return r.message_connections()


def test_qemu_qmp_client_through_proxy(plab, recorders):
    rec, path = recorders.start_proxy(plab)
    q = QMP(path, name="through-proxy")
    greeting = q.greeting
    assert q.cmd("query-status")["status"] == "running"
    q.cmd("stop")
    q.wait_event("STOP", 5)
    assert q.cmd("query-status")["status"] == "paused"
    q.cmd("cont")
    q.wait_event("RESUME", 5)
    got = list(q.events)
    q.close()
    time.sleep(0.3)
    assert rec.running, "the proxy exited when its client left (no --once given)"
    assert rec.stop(signal.SIGINT) == 0, rec.describe()
    r = rec.read()
    check_well_formed(r, "proxy")
    (conn,) = message_conns(r)
    assert r.messages("qemu", "greeting")[0].msg == greeting
    cmds = r.commands(conn=conn)
    assert [c.get("n") for c in cmds] == ["qmp_capabilities", "query-status", "stop", "query-status", "cont"]
    assert cmds[0].msg.get("arguments") == {"enable": ["oob"]}          # qemu.qmp enables oob
    assert "id" not in cmds[0].msg                                       # qemu.qmp negotiates without id
    assert all(str(c.msg["id"]).startswith("__qmp#") for c in cmds[1:])
    for c in cmds:
        reply = r.reply_to(c)
        assert reply is not None and reply.kind == "return", c.line
    assert r.events(conn=conn) == got
    # RESUME is written before cont's reply
    cont = cmds[-1]
    resume = r.messages("qemu", "event", conn)[-1]
    assert cont.line_no < resume.line_no < r.reply_to(cont).line_no
    assert r.header["qemu"] and r.header["source"]
    assert any(x.kind == "open" and x.get("c") == conn for x in r.records)
    assert qmpreplay("validate", str(r.path)).returncode == 0


def test_bytes_pass_unchanged_and_are_recorded_exactly(plab, recorders):
    rec, path = recorders.start_proxy(plab)
    c = RawClient(path)
    c.greeting()
    c.send(b'{"execute":"qmp_capabilities"}\n')                       # no id, LF
    c.wait_reply(None)
    c.send(b'{"execute": "query-status", "id": 1}')                   # no terminator at all
    assert c.wait_reply(1)["return"]["status"] == "running"
    c.send(b'{"execute":"stop","id":"s"}\r\n')                        # CR LF
    c.wait_reply("s")
    c.wait_for(lambda m: m.get("event") == "STOP")
    c.send(b'{ "execute" : "cont",\n  "id" : [1, "x", {"y": null}] }\n')   # spans lines, odd id
    assert c.wait_reply([1, "x", {"y": None}])["return"] == {}
    c.send('{"execute":"query-name","id":"é✓"}\n'.encode())          # non-ASCII id
    c.wait_reply("é✓")
    c.send(b'  {"execute":"query-kvm","id":2}\n')                     # leading whitespace
    c.wait_reply(2)
    c.send(b'{"execute":"no-such-command","id":3}\n')                 # error reply
    assert c.wait_reply(3)["error"]["class"] == "CommandNotFound"
    c.drain(0.3)
    c.close()
    time.sleep(0.3)
    assert rec.stop(signal.SIGINT) == 0, rec.describe()
    r = rec.read()
    check_well_formed(r, "proxy")
    (conn,) = message_conns(r)
    assert r.stream("qemu", conn) == c.received, "recorded QEMU->client bytes differ from what the client received"
    assert r.stream("client", conn) == c.sent, "recorded client->QEMU bytes differ from what the client sent"
    # the unterminated command is one record without eol; the CRLF one keeps its CR
    qs = [x for x in r.commands(conn=conn) if x.msg.get("id") == 1][0]
    assert "eol" not in qs.data and qs.exact_bytes() == b'{"execute": "query-status", "id": 1}'
    stop = r.commands("stop", conn=conn)[0]
    assert stop.get("eol") == "\r\n"
    assert r.reply_to(r.commands("cont", conn=conn)[0]).msg["id"] == [1, "x", {"y": None}]
    assert r.messages("qemu", "error", conn)[0].get("n") == "CommandNotFound"
    # qmpreplay cat --format raw gives back every message's bytes, in file order
    raw = qmpreplay("cat", str(r.path), "--format", "raw", check=True).stdout
    assert raw == b"".join(x.exact_bytes() for x in r.records)


def test_garbage_from_client_is_recorded_and_answered(plab, recorders):
    rec, path = recorders.start_proxy(plab)
    c = RawClient(path)
    c.greeting()
    c.send(b'{"execute":"qmp_capabilities","id":0}\n')
    c.wait_reply(0)
    c.send(b"\xff\xfe not json at all\n")
    c.wait_for(lambda m: "error" in m)                                 # QEMU's JSON parse error
    c.send(b'{"execute":"query-status","id":9}\n')
    c.wait_reply(9)
    c.drain(0.3)
    c.close()
    time.sleep(0.3)
    assert rec.stop() == 0, rec.describe()
    r = rec.read()
    (conn,) = message_conns(r)
    assert r.stream("client", conn) == c.sent and r.stream("qemu", conn) == c.received
    assert any("b64" in x.data for x in r.messages("client", "other", conn)), "non-UTF-8 bytes must be stored as b64"


def test_client_disconnects_mid_command(plab, recorders):
    rec, path = recorders.start_proxy(plab)
    # 1: negotiates, sends half a command, leaves
    c1 = RawClient(path)
    c1.greeting()
    c1.send(b'{"execute":"qmp_capabilities","id":1}\n')
    c1.wait_reply(1)
    c1.send(b'{"execute":"query-st')
    c1.close()
    # 2: sends a whole command and leaves before the reply
    c2 = RawClient(path)
    c2.greeting()                       # only possible once the proxy let go of upstream 1
    c2.send(b'{"execute":"qmp_capabilities","id":1}\n{"execute":"query-qmp-schema","id":2}\n')
    c2.close()
    time.sleep(0.3)
    assert rec.running, "proxy stopped listening after a client left:\n" + rec.describe()
    # 3: a normal client still works
    q = QMP(path, name="after")
    assert q.cmd("query-status")["status"] == "running"
    q.close()
    time.sleep(0.3)
    assert rec.running
    assert rec.stop() == 0, rec.describe()
    r = rec.read()
    check_well_formed(r, "proxy")
    conns = message_conns(r)
    assert len(conns) == 3, conns
    for conn in conns[:2]:
        closes = [x for x in r.records if x.kind == "close" and x.get("c") == conn]
        assert closes and closes[0].get("by") == "client", [x.line for x in closes]
    # the torn command is kept as the bytes that came (an "other" record, or a command without reply)
    assert r.stream("client", conns[0]).endswith(b'{"execute":"query-st')
    assert r.commands("query-status", conn=conns[2])


def test_once_exits_after_the_client(plab, recorders):
    rec, path = recorders.start_proxy(plab, "--once")
    q = QMP(path, name="once")
    q.cmd("query-status")
    q.close()
    assert rec.wait(15) == 0, rec.describe()
    r = rec.read()
    check_well_formed(r, "proxy")
    assert len(message_conns(r)) == 1


def test_tcp_listen(plab, recorders):
    port = _free_port(20000, 30000)
    rec = recorders.proxy(f"tcp:127.0.0.1:{port}", plab.qmp_path("up"), None, "--once")
    rec.start()
    rec.wait_listening()
    q = QMP(("127.0.0.1", port), name="tcp")
    assert q.cmd("query-name") == {"name": "lab"}
    q.close()
    assert rec.wait(15) == 0, rec.describe()
    r = rec.read()
    check_well_formed(r, "proxy")
    assert r.commands("query-name")


def test_secrets_are_redacted_unless_no_redact(plab, recorders, tmp_path):
    secret = "hunter2-Very-Secret"
    cmd = json.dumps({"execute": "object-add", "id": 5,
                      "arguments": {"qom-type": "secret", "id": "sec0", "data": secret}}).encode() + b"\n"
    for extra, visible in (((), False), (("--no-redact",), True)):
        rec, path = recorders.start_proxy(plab, "--once", *extra, out=tmp_path / f"redact{visible}.qmprec")
        c = RawClient(path)
        c.greeting()
        c.send(b'{"execute":"qmp_capabilities","id":0}\n')
        c.wait_reply(0)
        c.send(cmd)
        c.wait_reply(5)
        c.send(b'{"execute":"object-del","id":6,"arguments":{"id":"sec0"}}\n')
        c.wait_reply(6)
        c.close()
        assert rec.wait(15) == 0, rec.describe()
        text = (tmp_path / f"redact{visible}.qmprec").read_text()
        r = read_qmprec(tmp_path / f"redact{visible}.qmprec")
        assert (secret in text) == visible
        assert r.header["redacted"] is (not visible)
        assert r.commands("object-add"), "the command itself must still be recorded"
