"""Calls with bad arguments, and connects made while others are pending: the program must
get exactly libc's answers (never a crash of the shim's), and every connect must be a span."""
import harness
from harness import parse_kv

CLIENT = 3
ERROR = 2


def test_bad_pointers_get_efault_not_a_crash(ctx):
    """connect(s, (void *)8, 16) and accept(l, &a, (socklen_t *)8): libc answers EFAULT;
    the shim reads the app's arguments only after the kernel did, so it answers the same."""
    port = str(ctx.closed_port())
    plain = ctx.run([ctx.prog("bad_args"), port], preload=False)
    c = ctx.collector()
    traced = ctx.run([ctx.prog("bad_args"), port], collector=c)
    assert plain.returncode == 0, plain
    assert (traced.returncode, traced.stdout, traced.stderr) == (
        plain.returncode, plain.stdout, plain.stderr), (traced, plain)
    out = parse_kv(traced.stdout)
    assert out["connect_bad_addr"] == "-1" and "errno=EFAULT" in traced.stdout.decode(), out
    # No address, no connection attempt: no span (as for any address the shim cannot read).
    bad = [s for s in c.spans() if s.name == "connect" and s.attrs.get("error.type") == "EFAULT"]
    assert bad == [], bad


def test_concurrent_nonblocking_connects_each_get_their_span(ctx):
    """Four non-blocking connects pending at once (one refused): four connect spans, the
    refused one an error, none swallowed because another was pending."""
    port = ctx.closed_port()
    c = ctx.collector()
    r = ctx.run([ctx.prog("bad_args"), str(port)], collector=c)
    assert r.returncode == 0, r
    out = r.stdout.decode()
    assert "nb3_outcome=ECONNREFUSED" in out, out
    spans = [s for s in c.spans() if s.name == "connect" and s.kind == CLIENT]
    refused = [s for s in spans if s.attrs.get("network.peer.port") == port]
    assert len(refused) == 1 and refused[0].status_code == ERROR, spans
    assert refused[0].attrs.get("error.type") == "ECONNREFUSED", refused
    ok = [s for s in spans if s.status_code != ERROR]
    # the loopback connect before accept, and the three pending ones that succeeded
    assert len(ok) == 4, spans
