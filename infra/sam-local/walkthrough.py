#!/usr/bin/env python3
"""Hookline's four functions under `sam local`, checked end to end.

Run by infra/sam-local/run, which starts Docker, builds the image and the
functions. This starts moto's server on docker0's address (the host as the
containers see it), creates the table, queues, KMS key and ingest-token
secret there, a tenant with `hookline-aws tenant create`, and a receiver
(`hookline receive`, which verifies every signature); then:

1. `sam local start-api` on a free loopback port: a rule is created through it.
2. `sam local invoke` each function on its sample event in infra/events/:
   ingest answers 202, admin 200 with the rule, the router and the deliverer
   report no batch item failure, and the receiver gets the signed delivery.
3. The README's walkthrough through start-api: an event is posted, the router
   and the deliverer are invoked on the messages really in the queues (as
   Lambda's event source mapping would), the receiver verifies the delivery,
   and `GET /v1/deliveries` shows it succeeded with its attempt.

Any check that fails stops the run with what was expected and what came.
"""
import argparse
import copy
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "infra" / "events"
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "infra"))
import env_vars  # noqa: E402  (beside this file)
from harness import check, free_port, wait_port  # noqa: E402  (infra/harness.py)

INGEST_TOKEN = "example-ingest-token"  # what the sample ingest event carries
TENANT = "shop_1"  # the tenant the sample events name


class Receiver:
    """`hookline receive` on the bridge's gateway: one JSON line per verified
    delivery on stdout; an unverified one is answered 400 and not printed."""

    def __init__(self, hookline, host, webhook_key, log):
        port = free_port(host)
        self.url = f"http://{host}:{port}/hook"
        self.proc = subprocess.Popen(
            [hookline, "receive", "--listen", f"{host}:{port}"],
            env={**os.environ, "HOOKLINE_WEBHOOK_KEY": webhook_key},
            stdout=subprocess.PIPE, stderr=log, text=True)
        wait_port(port, self.proc, "hookline receive", host=host)
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(json.loads(line))
                self.cond.notify_all()

    def wait_for(self, count, seconds=10):
        with self.cond:
            self.cond.wait_for(lambda: len(self.lines) >= count, seconds)
            return list(self.lines)


class Sam:
    def __init__(self, template, image, env_file, log):
        # The template's Architecture defaults to arm64, for deploys; it
        # chooses the emulator SAM mounts, so it must match the build.
        self.common = ["-t", template, "--invoke-image", image, "--skip-pull-image",
                       "--env-vars", env_file, "--parameter-overrides", "Architecture=x86_64"]
        self.log = log

    def invoke(self, function, event):
        """The function's answer to one event (a dict), as its JSON."""
        event_file = Path(self.log.name).with_name(f"event-{function}.json")
        event_file.write_text(json.dumps(event))
        r = subprocess.run(["sam", "local", "invoke", function, "-e", str(event_file), *self.common],
                           capture_output=True, text=True, timeout=300)
        self.log.write(f"--- sam local invoke {function}\n{r.stderr}\n")
        self.log.flush()
        lines = [line for line in r.stdout.splitlines() if line.strip()]
        if r.returncode != 0 or not lines:
            raise SystemExit(f"sam-local: sam local invoke {function} failed ({r.returncode}):\n"
                             f"{r.stderr[-3000:]}")
        return json.loads(lines[-1])

    def start_api(self, port):
        proc = subprocess.Popen(["sam", "local", "start-api", "--host", "127.0.0.1", "--port", str(port),
                                 *self.common], stdout=self.log, stderr=self.log)
        wait_port(port, proc, "sam local start-api", host="127.0.0.1", seconds=120)
        return proc


def http(method, url, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        "authorization": f"Bearer {token}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def sample(name):
    return json.loads((EVENTS / name).read_text())


def receive_all(sqs, queue_url, count, seconds=10):
    """`count` messages from the queue, as an SQS event's records."""
    records, deadline = [], time.time() + seconds
    while len(records) < count and time.time() < deadline:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                  AttributeNames=["All"]).get("Messages", [])
        for m in got:
            records.append({
                "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "attributes": m.get("Attributes", {}), "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:" + queue_url.rsplit("/", 1)[1],
                "awsRegion": "eu-west-1"})
    check(len(records) == count, f"{count} message(s) in {queue_url.rsplit('/', 1)[1]}", len(records))
    return records


def settle(sqs, queue_url, records, answer):
    """What the event source mapping does with a batch's answer: the
    messages not reported as failures are deleted."""
    failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
    for r in records:
        if r["messageId"] not in failed:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=r["receiptHandle"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gateway", required=True, help="docker0's address")
    p.add_argument("--image", required=True)
    p.add_argument("--template", required=True, help="sam build's template")
    p.add_argument("--hookline", required=True, help="the hookline binary")
    p.add_argument("--hookline-aws", required=True, help="the hookline-aws binary")
    p.add_argument("--work", required=True, help="a folder for logs and files")
    a = p.parse_args()
    work = Path(a.work)
    log = open(work / "sam.log", "w")
    children = []
    try:
        run(a, work, log, children)
    finally:
        for c in children:
            c.terminate()
        for c in children:
            try:
                c.wait(10)
            except subprocess.TimeoutExpired:
                c.kill()


def run(a, work, log, children):
    print(f"  logs: {work}/sam.log, {work}/moto.log", flush=True)
    # moto where the containers reach it.
    port = free_port(a.gateway)
    endpoint = f"http://{a.gateway}:{port}"
    moto = subprocess.Popen(["moto_server", "-H", a.gateway, "-p", str(port)],
                            stdout=open(work / "moto.log", "w"), stderr=subprocess.STDOUT)
    children.append(moto)
    wait_port(port, moto, "moto_server", host=a.gateway)
    env_file = work / "env-vars.json"
    created = subprocess.run([sys.executable, str(ROOT / "infra/local-aws/create.py"), "--endpoint", endpoint,
                              "--prefix", "hookline-sam", "--ingest-token", INGEST_TOKEN, "--json",
                              "--sam-env-vars", str(env_file)],
                             capture_output=True, text=True, check=True)
    env = json.loads(created.stdout)
    session = boto3.session.Session(region_name=env["AWS_REGION"])
    sqs = session.client("sqs", endpoint_url=endpoint)
    check_env_vars_from_stack(session, endpoint)

    tenant = subprocess.run([a.hookline_aws, "tenant", "create", TENANT],
                            env={**os.environ, **env}, capture_output=True, text=True)
    check(tenant.returncode == 0, "hookline-aws tenant create shop_1", tenant.stderr)
    tenant = json.loads(tenant.stdout)
    receiver = Receiver(a.hookline, a.gateway, tenant["webhook_key"], log)
    children.append(receiver.proc)

    sam = Sam(a.template, a.image, str(env_file), log)
    api_port = free_port("127.0.0.1")
    children.append(sam.start_api(api_port))
    api = f"http://127.0.0.1:{api_port}"
    print(f"start-api on {api}", flush=True)
    status, rule = http("POST", f"{api}/v1/rules", tenant["api_key"],
                        {"name": "paid orders", "trigger": "order.paid", "url": receiver.url})
    check(status == 201, "POST /v1/rules through start-api answers 201", (status, rule))

    print("sam local invoke, each function on its sample event", flush=True)
    answer = sam.invoke("IngestFunction", sample("apigw-ingest-event.json"))
    check(answer.get("statusCode") == 202
          and json.loads(answer["body"]) == {"id": "evt_123", "duplicate": False},
          "IngestFunction answers 202 {id: evt_123, duplicate: false}", answer)

    admin_event = sample("apigw-admin-list-rules.json")
    admin_event["headers"]["authorization"] = f"Bearer {tenant['api_key']}"
    answer = sam.invoke("AdminFunction", admin_event)
    rules = json.loads(answer.get("body") or "{}").get("data", [])
    check(answer.get("statusCode") == 200 and [r["id"] for r in rules] == [rule["id"]],
          "AdminFunction answers 200 with the rule", answer)

    router_event = sample("sqs-router-batch.json")
    queued = receive_all(sqs, env["HOOKLINE_EVENTS_QUEUE_URL"], 1)
    # The sample names its event, as every version's message does; the one
    # ingest queued also carries the event itself.
    body = json.loads(queued[0]["body"])
    check({k: body.get(k) for k in ("tenant_id", "event_id")} == json.loads(router_event["Records"][0]["body"])
          and body.get("event", {}).get("id") == "evt_123",
          "ingest queued the event the router's sample names, and carries it", queued[0]["body"])
    answer = sam.invoke("RouterFunction", router_event)
    check(answer == {"batchItemFailures": []}, "RouterFunction reports no batch item failure", answer)
    settle(sqs, env["HOOKLINE_EVENTS_QUEUE_URL"], queued, answer)

    # The deliver sample names rule rul_example; the rule made above has its
    # own id, so the sample's record carries the message really queued.
    records = receive_all(sqs, env["HOOKLINE_DELIVERIES_QUEUE_URL"], 1)
    deliver_event = sample("sqs-deliver-batch.json")
    shape = deliver_event["Records"][0]
    deliver_event["Records"] = [{**copy.deepcopy(shape), **{k: records[0][k] for k in
                                 ("messageId", "receiptHandle", "body", "attributes")}}]
    answer = sam.invoke("DeliverFunction", deliver_event)
    check(answer == {"batchItemFailures": []}, "DeliverFunction reports no batch item failure", answer)
    settle(sqs, env["HOOKLINE_DELIVERIES_QUEUE_URL"], records, answer)
    delivery_id = json.loads(records[0]["body"])["delivery_id"]
    got = receiver.wait_for(1)
    check([g["webhook_id"] for g in got] == [delivery_id] and got[0]["verified"],
          "the receiver verified the signed delivery of evt_123", got)

    print("the walkthrough through start-api", flush=True)
    event = {"id": "evt_walk", "tenant_id": TENANT, "type": "order.paid",
             "occurred_at": "2026-11-29T12:00:00Z", "lines": [{"id": "line_1", "product_id": "prod_1"}],
             "data": {"order_id": "ord_1", "amount": 4900}}
    status, body = http("POST", f"{api}/v1/events", INGEST_TOKEN, event)
    check((status, body) == (202, {"id": "evt_walk", "duplicate": False}),
          "POST /v1/events answers 202", (status, body))
    status, body = http("POST", f"{api}/v1/events", INGEST_TOKEN, event)
    check((status, body.get("duplicate")) == (200, True), "the same event again is a duplicate", (status, body))
    # A repeat is queued again (its first message may be lost), marked so;
    # the router makes the event's deliveries once.
    records = receive_all(sqs, env["HOOKLINE_EVENTS_QUEUE_URL"], 2)
    answer = sam.invoke("RouterFunction", {"Records": records})
    check(answer == {"batchItemFailures": []}, "the router routes the queued event", answer)
    settle(sqs, env["HOOKLINE_EVENTS_QUEUE_URL"], records, answer)
    records = receive_all(sqs, env["HOOKLINE_DELIVERIES_QUEUE_URL"], 1)
    check(len({json.loads(r["body"])["delivery_id"] for r in records}) == 1,
          "one delivery for the event sent twice", [r["body"] for r in records])
    answer = sam.invoke("DeliverFunction", {"Records": records})
    check(answer == {"batchItemFailures": []}, "the deliverer delivers the queued delivery", answer)
    settle(sqs, env["HOOKLINE_DELIVERIES_QUEUE_URL"], records, answer)
    got = receiver.wait_for(2)
    check(len(got) == 2 and got[1]["verified"] and got[1]["payload"]["event_id"] == "evt_walk",
          "the receiver verified the delivery of evt_walk", got[1:])
    status, body = http("GET", f"{api}/v1/deliveries?event_id=evt_walk", tenant["api_key"])
    listed = body.get("data", []) if status == 200 else []
    check(len(listed) == 1 and listed[0]["id"] == got[1]["webhook_id"] and listed[0]["status"] == "succeeded",
          "GET /v1/deliveries lists it as succeeded", (status, body))
    status, body = http("GET", f"{api}/v1/deliveries/{listed[0]['id']}", tenant["api_key"])
    attempts = body.get("attempts", []) if status == 200 else []
    check(len(attempts) == 1 and attempts[0]["status_code"] == 204,
          "its one attempt is recorded with the receiver's 204", (status, body))


def check_env_vars_from_stack(session, endpoint):
    """env_vars.py reads a stack's outputs: checked on a stack made in moto's
    CloudFormation with the outputs Hookline's template declares."""
    cfn = session.client("cloudformation", endpoint_url=endpoint)
    outputs = {key: {"Value": f"value-of-{key}"} for key in env_vars.FROM_OUTPUTS}
    template = {"Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
                "Outputs": outputs}
    cfn.create_stack(StackName="hookline-outputs", TemplateBody=json.dumps(template))
    got = env_vars.from_stack(cfn, "hookline-outputs")
    check(got == {var: f"value-of-{key}" for key, var in env_vars.FROM_OUTPUTS.items()},
          "env_vars.py maps every stack output to its variable", got)
    declared = set(yaml_outputs())
    check(set(env_vars.FROM_OUTPUTS) <= declared, "template.yaml declares every output env_vars.py reads",
          sorted(set(env_vars.FROM_OUTPUTS) - declared))


def yaml_outputs():
    """The output names in template.yaml (the block under `Outputs:`, read
    by indentation: the template's tags need no YAML library)."""
    names, inside = [], False
    for line in (ROOT / "template.yaml").read_text().splitlines():
        if not line.startswith(" "):
            inside = line.startswith("Outputs:")
        elif inside and line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":"):
            names.append(line.strip()[:-1])
    return names


if __name__ == "__main__":
    main()
