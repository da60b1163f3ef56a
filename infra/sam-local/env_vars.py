#!/usr/bin/env python3
"""Writes an env-vars file for `sam local invoke/start-api --env-vars FILE`
that points the functions at a deployed stack's resources, from its outputs:

    infra/sam-local/env_vars.py --stack hookline-prod [--region eu-west-1] > env.json

(Against a local endpoint, infra/local-aws/create.py --sam-env-vars writes it.)
SAM overrides only the variables the template declares; the "Parameters"
section applies to every function.
"""
import argparse
import json
import sys

# Stack output -> the variable the functions read.
FROM_OUTPUTS = {
    "TableName": "HOOKLINE_TABLE",
    "EventsQueueUrl": "HOOKLINE_EVENTS_QUEUE_URL",
    "EventsDeadLetterQueueUrl": "HOOKLINE_EVENTS_DLQ_URL",
    "DeliveriesQueueUrl": "HOOKLINE_DELIVERIES_QUEUE_URL",
    "DeliveriesDeadLetterQueueUrl": "HOOKLINE_DELIVERIES_DLQ_URL",
    "KmsKeyId": "HOOKLINE_KMS_KEY_ID",
    "IngestTokenSecretArn": "HOOKLINE_INGEST_TOKEN_SECRET",
}


def from_stack(cloudformation, name):
    """The variables, from the stack's outputs."""
    stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    by_key = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    missing = sorted(set(FROM_OUTPUTS) - set(by_key))
    if missing:
        raise SystemExit(f"stack {name} has no output {', '.join(missing)}: is it Hookline's?")
    return {var: by_key[key] for key, var in FROM_OUTPUTS.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", required=True, help="the deployed stack's name")
    p.add_argument("--region", help="the stack's region (else the usual AWS configuration)")
    a = p.parse_args()
    import boto3

    cloudformation = boto3.session.Session(region_name=a.region).client("cloudformation")
    json.dump({"Parameters": from_stack(cloudformation, a.stack)}, sys.stdout, indent=2, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
