"""What the Python checks under infra/ share (sam-local/walkthrough.py,
full-disk, soak): free ports, waiting for a child to listen, and a check that
stops the run with what was expected and what came."""
import os
import socket
import sys
import time

NAME = os.path.basename(sys.argv[0]).removesuffix(".py")


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, host="127.0.0.1", seconds=30):
    """Waits until `proc` (or anything, when None) listens on host:port."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"{NAME}: {what} exited with {proc.returncode}")
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{NAME}: {what} did not listen on {host}:{port} within {seconds}s")


def check(ok, what, got=None):
    if not ok:
        sys.exit(f"{NAME}: FAILED: {what}" + (f"\n  got: {got}" if got is not None else ""))
    print(f"  ok: {what}", flush=True)
