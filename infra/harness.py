"""What the Python checks under infra/ share (sam-local/walkthrough.py,
full-disk, soak, soak-aws): free ports, waiting for a child to listen, a check
that stops the run with what was expected and what came, and the soaks' flaky
receiver."""
import asyncio
import os
import random
import socket
import subprocess
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


FAIL, HANG = 0.30, 0.01


def flaky_receiver(port, out_path):
    """Starts `serve_flaky` in a process of its own on 127.0.0.1:`port`."""
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "flaky-receiver", str(port), out_path])
    wait_port(port, proc, "the receiver")
    return proc


def serve_flaky(port, out_path):
    """Answers 500 to 30 % of requests, never answers 1 %, 204 to the rest,
    and writes the event id of each 204 to `out_path`, one a line."""
    rng = random.Random(7)
    out = open(out_path, "w", buffering=1)

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                r = rng.random()
                if r < HANG:
                    await asyncio.sleep(3600)
                if r < HANG + FAIL:
                    writer.write(b"HTTP/1.1 500 Failing\r\ncontent-length: 0\r\n\r\n")
                else:
                    at = body.find(b'"event_id":"')
                    end = body.find(b'"', at + 12)
                    out.write(body[at + 12:end].decode() + "\n")
                    writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def serve():
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__" and sys.argv[1:2] == ["flaky-receiver"]:
    serve_flaky(int(sys.argv[2]), sys.argv[3])
