#!/usr/bin/env python3
"""Integration suite runner: real binaries under the shim, real servers on loopback.

Discovers tests/integration/test_*.py and runs every function named test_* in it, each with
a fresh harness.Context (own temp dir; collectors and servers it starts are stopped after).
Prints one line per test (PASS, FAIL or SKIP with its reason), the skipped tests again, and
a final line `N passed, N failed, N skipped`.

A test skips by raising harness.Skip (harness.skip("why")). In strict mode (--strict, or
SPANSHIM_TEST_STRICT=1 in the environment, as CI sets it) a skip is a failure, unless the
test is marked @harness.ci_may_skip("why").
Usage: run.py [--build DIR] [-k SUBSTRING] [-v] [--strict]
"""
import argparse
import importlib.util
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout("test timed out")


def strict_from_env():
    v = os.environ.get("SPANSHIM_TEST_STRICT", "")
    return v not in ("", "0", "false", "no")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("-k", default="")
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--timeout", type=int, default=180)
    ap.add_argument("--recap", default="",
                    help="also write one line per failed test (name and the start of its "
                         "reason) to this file, for a summary printed after other suites")
    ap.add_argument("--strict", action="store_true", default=strict_from_env(),
                    help="a skip is a failure unless the test is marked ci_may_skip "
                         "(default: SPANSHIM_TEST_STRICT)")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    tests = []
    for fn in sorted(os.listdir(HERE)):
        if not (fn.startswith("test_") and fn.endswith(".py")):
            continue
        spec = importlib.util.spec_from_file_location(fn[:-3], os.path.join(HERE, fn))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for name in sorted(vars(mod)):
            if name.startswith("test_") and callable(getattr(mod, name)):
                full = "%s.%s" % (fn[:-3], name)
                if a.k in full:
                    tests.append((full, getattr(mod, name)))
    passed = failed = 0
    skipped = []  # (name, reason)
    failures = []  # (name, reason)
    # The tests check what programs do with the kernel's default actions. A runner started
    # with signals ignored (nohup: SIGHUP; `cmd &` in a script: SIGINT, SIGQUIT) would pass
    # the ignoring on through every exec: give the tests the defaults back, and say so.
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM,
                signal.SIGUSR1, signal.SIGUSR2):
        if signal.getsignal(sig) == signal.SIG_IGN:
            print("run: %s was ignored when the runner started; restored to its default "
                  "for the tests" % sig.name, flush=True)
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT
                          else signal.SIG_DFL)
    signal.signal(signal.SIGALRM, _alarm)
    for full, fn in tests:
        ctx = harness.Context(build, full, verbose=a.v)
        t0 = time.monotonic()
        failed_here = False
        try:
            signal.alarm(max(a.timeout, getattr(fn, "timeout", 0)))
            fn(ctx)
            signal.alarm(0)
            passed += 1
            print("PASS %s (%.1fs)" % (full, time.monotonic() - t0), flush=True)
        except harness.Skip as e:
            signal.alarm(0)
            allowed = getattr(fn, "ci_may_skip", None)
            if a.strict and not allowed:
                failed += 1
                failed_here = True
                print("FAIL %s (%.1fs): skipped in strict mode: %s" % (
                    full, time.monotonic() - t0, e), flush=True)
                failures.append((full, "skipped in strict mode: %s" % e))
            else:
                why = str(e) + ("; allowed in CI: %s" % allowed if allowed else "")
                skipped.append((full, why))
                print("SKIP %s (%.1fs): %s" % (full, time.monotonic() - t0, why), flush=True)
        except BaseException as e:  # noqa: B902 - a test failing in any way is a failure
            signal.alarm(0)
            failed += 1
            failed_here = True
            print("FAIL %s (%.1fs): %s" % (full, time.monotonic() - t0, e), flush=True)
            traceback.print_exc(file=sys.stdout)
            failures.append((full, "%s: %s" % (type(e).__name__, e)))
            if isinstance(e, KeyboardInterrupt):
                break
        finally:
            ctx.close(keep=failed_here and a.v)
    for full, why in skipped:
        print("skipped: %s: %s" % (full, why))
    for full, why in failures:
        print("failed: %s" % full)
    if a.recap:
        with open(a.recap, "w") as f:
            for full, why in failures:
                why = " ".join(why.split())
                f.write("integration: FAIL %s: %s\n" % (
                    full, why if len(why) <= 700 else why[:700] + "..."))
    print("%d passed, %d failed, %d skipped" % (passed, failed, len(skipped)))
    return 1 if failed or not tests else 0

if __name__ == "__main__":
    sys.exit(main())
