"""Every finding in a moto Security Hub, checked against botocore's model of BatchImportFindings.

Usage: asff_check.py ENDPOINT REGION. Prints the findings as one JSON array; exits 1 with the
validator's report when any finding misses a required member, has an unknown one, or has a
member of the wrong type or length.
"""

import json
import sys

import boto3
from botocore.validate import ParamValidator


def main():
    endpoint, region = sys.argv[1], sys.argv[2]
    hub = boto3.client(
        "securityhub",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="AKIDCHECKER",
        aws_secret_access_key="secret",
    )
    findings, token = [], None
    while True:
        page = hub.get_findings(MaxResults=100, **({"NextToken": token} if token else {}))
        findings += page["Findings"]
        token = page.get("NextToken")
        if not token:
            break
    shape = hub.meta.service_model.operation_model("BatchImportFindings").input_shape
    report = ParamValidator().validate({"Findings": findings}, shape)
    if report.has_errors():
        print(report.generate_report(), file=sys.stderr)
        sys.exit(1)
    print(json.dumps(findings))


main()
