"""Checks an installed SBOM (scripts/sbom's output, shipped in the packages): valid
CycloneDX 1.5 by the schema (cyclonedx-python-lib's strict JSON validator), keywarden at the
commit `keywarden --version` names, the crates the binary is built from (the AWS SDK, rustls),
none of the test-only ones, and each with a purl, a license and Cargo.lock's SHA-256.

Usage: check_sbom.py SBOM.json COMMIT
"""

import json
import sys

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from checks import CheckFailed, expect


def check(path, commit):
    text = open(path, encoding="utf-8").read()
    errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    expect(errors is None, f"{path} is not valid CycloneDX 1.5: {str(errors).splitlines()[0] if errors else ''}")
    bom = json.loads(text)
    me = bom["metadata"]["component"]
    expect(me["name"] == "keywarden", f"the SBOM describes {me['name']}")
    props = {p["name"]: p["value"] for p in me.get("properties", [])}
    expect(props.get("keywarden:commit") == commit, f"SBOM commit {props.get('keywarden:commit')} != binary's {commit}")
    names = {c["name"] for c in bom["components"]}
    for wanted in ("aws-sdk-iam", "aws-config", "aws-sdk-sso", "rustls", "tokio", "hyper"):
        expect(wanted in names, f"{wanted} is missing from the SBOM")
    for dev_only in ("proptest", "aws-smithy-mocks"):
        expect(dev_only not in names, f"{dev_only} (a dev-dependency) is in the SBOM")
    for c in bom["components"]:
        for field in ("purl", "licenses", "hashes"):
            expect(field in c, f"{c['name']} has no {field}")
    refs = {c["bom-ref"] for c in bom["components"]} | {me["bom-ref"]}
    for d in bom["dependencies"]:
        expect(set(d["dependsOn"]) <= refs, f"{d['ref']} depends on a component not listed")
    print(f"SBOM {path}: valid CycloneDX 1.5, {len(names)} components, commit {commit}")


if __name__ == "__main__":
    try:
        check(sys.argv[1], sys.argv[2])
    except CheckFailed as e:
        sys.exit(f"check_sbom: {e}")
