"""What the Lambda service does for Hookline's four functions, on one machine,
for the checks under infra/ that run the AWS form end to end (cost,
soak-aws): each function's real binary in a process of its own behind a
Runtime API on 127.0.0.1, invoked with the event shapes API Gateway (payload
2.0) and SQS's event source mapping send, and the event source mapping itself
(receive with a batching window, invoke, delete what the function did not
report as failed, leave the rest to come back when their visibility ends).

A function whose process dies mid-invocation fails that invocation, as on
Lambda; the next invocation starts a new process (a cold start).
"""
import base64
import http.server
import itertools
import json
import os
import queue
import signal
import subprocess
import threading
import time
import uuid

ACCOUNT = "123456789012"


class InvocationFailed(Exception):
    pass


class Function:
    """One function: its binary, its environment, and a Runtime API that
    hands it one invocation at a time."""

    def __init__(self, name, binary, env, log, memory_mb, timeout_s):
        self.name, self.binary, self.env, self.log = name, binary, env, log
        self.memory_mb, self.timeout_s = memory_mb, timeout_s
        self.events = queue.Queue()   # (request id, event) waiting for /next
        self.answers = {}             # request id -> (ok, body, started, ended)
        self.started = {}             # request id -> when /next handed it out
        self.done = threading.Condition()
        self.proc, self.generation = None, 0
        self.ready = threading.Event()
        self.invocations, self.billed_ms = 0, 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self):
        function = self

        class RuntimeApi(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    return self._answer(404, b"")
                generation = function.generation
                function.ready.set()
                while True:
                    try:
                        request_id, event = function.events.get(timeout=0.1)
                        break
                    except queue.Empty:
                        if function.generation != generation:
                            return  # the process this poll came from is gone
                with function.done:
                    function.started[request_id] = time.monotonic()
                body = json.dumps(event).encode()
                self.send_response(200)
                self.send_header("lambda-runtime-aws-request-id", request_id)
                self.send_header("lambda-runtime-deadline-ms",
                                 str(int((time.time() + function.timeout_s) * 1000)))
                self.send_header("lambda-runtime-invoked-function-arn",
                                 f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{function.name}")
                self.send_header("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000")
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                parts = self.path.split("/")
                if "invocation" in parts and parts[-1] in ("response", "error"):
                    request_id = parts[-2]
                    with function.done:
                        started = function.started.pop(request_id, time.monotonic())
                        function.answers[request_id] = (parts[-1] == "response", body,
                                                        started, time.monotonic())
                        function.done.notify_all()
                self._answer(202, b"{}")

            def _answer(self, status, body):
                self.send_response(status)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return RuntimeApi

    def start(self):
        self.ready.clear()
        self.generation += 1
        env = {**self.env,
               "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.server.server_port}",
               "AWS_LAMBDA_FUNCTION_NAME": self.name,
               "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
               "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST"}
        self.proc = subprocess.Popen([self.binary], env=env, stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while not self.ready.wait(0.1):
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"{self.name} did not start (exit {self.proc.returncode}); see its log")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        """SIGKILL, as a crashed or timed-out Lambda environment; whatever it
        was doing fails, and the next invocation starts a new process."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.generation += 1

    def stop(self):
        self.kill9()
        self.server.shutdown()

    def invoke(self, event):
        """Runs one invocation; answers the function's response, parsed.
        Raises InvocationFailed when the function reports an error, dies or
        runs past its timeout."""
        if not self.alive():
            self.start()
        request_id = str(uuid.uuid4())
        proc = self.proc
        self.events.put((request_id, event))
        deadline = time.monotonic() + self.timeout_s
        with self.done:
            while request_id not in self.answers:
                self.done.wait(0.05)
                if proc.poll() is not None or time.monotonic() > deadline:
                    self.started.pop(request_id, None)
                    if proc.poll() is None:
                        self.kill9()  # Lambda stops a function at its timeout
                    raise InvocationFailed(f"{self.name}: the process died or timed out")
            ok, body, started, ended = self.answers.pop(request_id)
        self.invocations += 1
        self.billed_ms += max(1, int((ended - started) * 1000 + 0.999))
        if not ok:
            raise InvocationFailed(f"{self.name}: {body[:300]!r}")
        return json.loads(body)


_request_ids = itertools.count()


def http_event(method, path, token, body=None, query=""):
    """An API Gateway HTTP API (payload format 2.0) event."""
    text = None if body is None else json.dumps(body)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json",
               "host": "api.example.com"}
    if text is not None:
        headers["content-length"] = str(len(text.encode()))
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": headers,
        "queryStringParameters": dict(p.split("=", 1) for p in query.split("&") if "=" in p) or None,
        "requestContext": {
            "accountId": ACCOUNT, "apiId": "local", "domainName": "api.example.com",
            "domainPrefix": "api",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "infra"},
            "requestId": f"req-{next(_request_ids)}", "routeKey": "$default", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": int(time.time() * 1000),
        },
        "body": text, "isBase64Encoded": False,
    }


def call(function, method, path, token, body=None, query=""):
    """An HTTP request through API Gateway to `function`: (status, JSON body)."""
    answer = function.invoke(http_event(method, path, token, body, query))
    text = answer.get("body") or "null"
    if answer.get("isBase64Encoded"):
        text = base64.b64decode(text)
    return answer["statusCode"], json.loads(text)


class SqsMapping:
    """An SQS event source mapping: batches of up to `batch_size`, gathered
    for up to `window_s`, handed to `functions` (its concurrency: one batch
    in flight per function process) with ReportBatchItemFailures. Counts the
    SQS requests it makes, which AWS bills to the account like any other."""

    def __init__(self, sqs, queue_url, functions, batch_size=10, window_s=1.0, wait_s=1):
        self.sqs, self.queue_url, self.functions = sqs, queue_url, functions
        self.batch_size, self.window_s, self.wait_s = batch_size, window_s, wait_s
        self.arn = f"arn:aws:sqs:us-east-1:{ACCOUNT}:{queue_url.rsplit('/', 1)[1]}"
        self.receives = self.empty_receives = self.deletes = 0
        self.failed_invocations = 0
        self.lock = threading.Lock()
        self.running = threading.Event()
        self.threads = []

    def start(self):
        self.running.set()
        self.threads = [threading.Thread(target=self._poll, args=(f,), daemon=True)
                        for f in self.functions]
        for t in self.threads:
            t.start()

    def stop(self):
        self.running.clear()
        for t in self.threads:
            t.join()

    def _count(self, what, n=1):
        with self.lock:
            setattr(self, what, getattr(self, what) + n)

    def _poll(self, function):
        while self.running.is_set():
            batch, first = [], None
            while len(batch) < self.batch_size and self.running.is_set():
                wait = self.wait_s if first is None else max(0, self.window_s - (time.monotonic() - first))
                got = self.sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size - len(batch),
                    WaitTimeSeconds=int(wait + 0.999), AttributeNames=["All"]).get("Messages", [])
                self._count("receives" if got else "empty_receives")
                if got and first is None:
                    first = time.monotonic()
                batch.extend(got)
                if first is not None and (not got or time.monotonic() - first >= self.window_s):
                    break
            if batch:
                self._invoke(function, batch)

    def _invoke(self, function, messages):
        records = [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": m.get("Attributes", {}), "messageAttributes": {},
            "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs", "eventSourceARN": self.arn,
            "awsRegion": "us-east-1"} for m in messages]
        try:
            answer = function.invoke({"Records": records})
        except InvocationFailed:
            # Nothing is deleted: the whole batch comes back after its visibility.
            self._count("failed_invocations")
            return
        failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures") or []}
        done = [m for m in messages if m["MessageId"] not in failed]
        for i in range(0, len(done), 10):
            chunk = done[i:i + 10]
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)])
            self._count("deletes")


def binaries(root, release=False):
    """Builds the four functions and the `hookline` and `hookline-aws` CLIs
    (one build, one feature resolution) and answers where each binary is."""
    args = ["cargo", "build", "--quiet", "-p", "hookline", "-p", "hookline-aws-cli",
            "-p", "hookline-lambda", "--bins"]
    subprocess.run(args + (["--release"] if release else []), cwd=root, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    folder = os.path.join(target, "release" if release else "debug")
    names = {"ingest": "hookline-ingest", "admin": "hookline-admin", "router": "hookline-router",
             "deliver": "hookline-deliver", "hookline": "hookline",
             "hookline-aws": "hookline-aws"}
    return {k: os.path.join(folder, v) for k, v in names.items()}


def queue_is_empty(sqs, queue_url):
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed"])["Attributes"]
    return all(int(v) == 0 for v in attrs.values())
