#!/usr/bin/env python3
"""Creates Hookline's DynamoDB table, SQS queues, KMS key (webhook keys are
sealed under it) and ingest-token secret on an AWS endpoint (moto's server
locally) with the keys, index, TTL and redrive policies the adapters and the
SAM template use, and prints the environment that points Hookline at them,
as JSON (--json) or as export lines.

Usage: create.py --endpoint http://127.0.0.1:5005 [--prefix hookline] [--max-attempts 8] [--json]
                 [--sam-env-vars FILE]

--sam-env-vars also writes the file `sam local invoke/start-api --env-vars`
takes, pointing the functions at the same endpoint (infra/sam-local).
"""
import argparse
import json
import os

import boto3

# One table, single-table design; see crates/aws/src/items.rs.
TABLE_KEYS = {"pk": "S", "sk": "S", "gsi1pk": "S", "gsi1sk": "S", "gsi2pk": "S", "gsi2sk": "S"}
TTL_ATTRIBUTE = "ttl"
# The longest retry delay is 10 h; SQS visibility can reach 12 h. Messages
# live 14 days, well beyond the whole default schedule (about 28 h).
RETENTION_SECONDS = 14 * 24 * 3600
VISIBILITY_SECONDS = 60


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--prefix", default="hookline")
    p.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    p.add_argument("--max-attempts", type=int, default=8,
                   help="deliveries' maxReceiveCount: the retry schedule's attempts")
    p.add_argument("--visibility", type=int, default=VISIBILITY_SECONDS,
                   help="the queues' visibility timeout in seconds")
    p.add_argument("--ingest-token", help="the ingest token secret's value (random when not given)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--sam-env-vars", metavar="FILE",
                   help="also write an env-vars file for sam local (the endpoint must be one "
                        "the containers reach: docker0's address)")
    a = p.parse_args()
    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        region_name=a.region,
    )
    ddb = session.client("dynamodb", endpoint_url=a.endpoint)
    sqs = session.client("sqs", endpoint_url=a.endpoint)
    kms = session.client("kms", endpoint_url=a.endpoint)
    secrets = session.client("secretsmanager", endpoint_url=a.endpoint)
    key_id = kms.create_key(Description=f"{a.prefix} webhook keys")["KeyMetadata"]["KeyId"]
    token = a.ingest_token or secrets.get_random_password(
        PasswordLength=48, ExcludePunctuation=True)["RandomPassword"]
    secret_arn = secrets.create_secret(Name=f"{a.prefix}-ingest-token", SecretString=token,
                                       KmsKeyId=key_id)["ARN"]

    table = f"{a.prefix}-table"
    ddb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": t} for k, t in TABLE_KEYS.items()],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{
            "IndexName": "gsi1",
            "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"},
                          {"AttributeName": "gsi1sk", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }, {
            "IndexName": "gsi2",
            "KeySchema": [{"AttributeName": "gsi2pk", "KeyType": "HASH"},
                          {"AttributeName": "gsi2sk", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }],
    )
    ddb.update_time_to_live(TableName=table,
                            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE})

    def queue(name, dlq_arn=None, max_receive=None):
        attrs = {"MessageRetentionPeriod": str(RETENTION_SECONDS), "VisibilityTimeout": str(a.visibility)}
        if dlq_arn:
            attrs["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)})
        url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    events_dlq, events_dlq_arn = queue(f"{a.prefix}-events-dlq")
    events, _ = queue(f"{a.prefix}-events", events_dlq_arn, 5)
    deliveries_dlq, deliveries_dlq_arn = queue(f"{a.prefix}-deliveries-dlq")
    deliveries, _ = queue(f"{a.prefix}-deliveries", deliveries_dlq_arn, a.max_attempts)

    env = {
        "AWS_ENDPOINT_URL": a.endpoint,
        "AWS_REGION": a.region,
        "AWS_ACCESS_KEY_ID": session.get_credentials().access_key,
        "AWS_SECRET_ACCESS_KEY": session.get_credentials().secret_key,
        "HOOKLINE_TABLE": table,
        "HOOKLINE_EVENTS_QUEUE_URL": events,
        "HOOKLINE_EVENTS_DLQ_URL": events_dlq,
        "HOOKLINE_DELIVERIES_QUEUE_URL": deliveries,
        "HOOKLINE_DELIVERIES_DLQ_URL": deliveries_dlq,
        "HOOKLINE_KMS_KEY_ID": key_id,
        "HOOKLINE_INGEST_TOKEN_SECRET": secret_arn,
    }
    if a.sam_env_vars:
        with open(a.sam_env_vars, "w") as f:
            json.dump({"Parameters": sam_variables(env)}, f, indent=2, sort_keys=True)
    if a.json:
        print(json.dumps(env))
    else:
        for k, v in env.items():
            print(f"export {k}={v}")


def sam_variables(env):
    """The functions' variables for `sam local`: every resource on the
    endpoint, which they reach through HOOKLINE_AWS_ENDPOINT (the template
    declares it; SAM overrides only declared variables, and the "Parameters"
    section applies to every function). Local receivers are on private
    addresses, so private targets are allowed."""
    variables = {k: v for k, v in env.items() if k.startswith("HOOKLINE_")}
    variables["HOOKLINE_AWS_ENDPOINT"] = env["AWS_ENDPOINT_URL"]
    variables["HOOKLINE_ALLOW_PRIVATE_TARGETS"] = "1"
    return variables


if __name__ == "__main__":
    main()
