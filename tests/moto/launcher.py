"""moto's IAM server made to behave like AWS where the tests need it.

Started by the tests (and scripts/demo, scripts/bench-audit) on a free loopback port; prints
`PORT <n>` on stdout once it accepts connections. Differences from stock moto:

- ListUsers pages like AWS (MaxItems, default 100, and Marker); stock moto returns every user.
- A settable clock offset, so a test can back-date keys and their last use:
  `POST /_keywarden/clock` with body `{"offset_seconds": -8640000}`; moto's IAM timestamps
  (CreateDate, last used) are then real UTC time plus the offset.
- Fault injection for fail-closed tests: `POST /_keywarden/faults` with body
  `{"ListAccessKeys": ["bob"]}` makes that action fail with AccessDenied (403) whenever its
  UserName (or RoleArn, for STS AssumeRole) is one of those listed (`"*"`: every request of that
  action); `{}` clears it.
  `{"_delay": {"ListUsers": 2.5}}` delays every request of that action by that many seconds.
  `{"_throttle": {"ListAccessKeys": 0.3}}` answers that share of the action's requests with
  IAM's `Throttling` (400); `{"_unavailable": {"*": 0.2}}` with `ServiceUnavailable` (503).
  `{"_slow": {"*": [0.2, 3.0]}}` delays that share of requests by 3 s (past the client's
  attempt timeout), `{"_truncate": {"*": 0.2}}` sends the headers and half the body and then
  closes the connection, `{"_drop": {"*": 0.2}}` closes the connection without answering.
  `"*"` stands for every action. Draws come from a seeded generator, so runs repeat.
- `{"_stall": {"UpdateAccessKey": 30}}` applies that action's requests, counts each as
  `"UpdateAccessKey:_stall"` in the stats, then holds the answer that many seconds (a client
  killed meanwhile changed IAM without hearing so).
- `{"_missing": {"GetUser": ["gone"]}}` answers those requests with `NoSuchEntity` (404), as
  IAM does for a user deleted a moment ago.
- `{"_date_skew": 600}` sends every answer's `Date` header that many seconds off real time (a
  host clock that is off by the opposite amount, as keywarden sees it).
- `{"_report_account": "999999999999"}` rewrites the account id in the ARNs of
  GetCredentialReport's content (a report that names another account).
- The most requests in flight at once: `GET /_keywarden/in_flight` returns `{"max": n}`, POST
  reads and resets it (concurrency bounds are tested with it).
- Request counting by IAM/STS action: `GET /_keywarden/stats` returns `{"ListUsers": 3, ...}`
  (injected faults as `"ListUsers:Throttling": 1`, `"ListUsers:_slow": 1` and so on), `POST /_keywarden/stats` resets it. Benchmarks use it to count every client's requests alike.
  `GET /_keywarden/callers` counts the same by the access key id that signed each request
  (`{"AKID...": {"UpdateAccessKey": 2}}`): tests that run several keywarden processes give each
  its own key id to tell their requests apart (moto does not check signatures).
- A fake of the SSO portal's GetRoleCredentials (`GET /federation/credentials`, what
  `aws sso login` profiles call): `POST /_keywarden/sso` with body `{"TOKEN": "AKID"}` makes the
  bearer token TOKEN valid, answered with role credentials whose access key id is AKID; any
  other token gets the portal's 401 `UnauthorizedException` ("Session token not found or
  invalid"). Counted as `GetRoleCredentials`.
- Fakes of the other places the AWS SDK's default chain finds credentials: the ECS/EKS
  container endpoint (`GET /_keywarden/container-credentials`, for
  `AWS_CONTAINER_CREDENTIALS_FULL_URI`; with `AWS_CONTAINER_AUTHORIZATION_TOKEN` it must come
  back as `Authorization`) and the EC2 instance metadata service's IMDSv2 role credentials
  (`PUT /latest/api/token`, `GET /latest/meta-data/iam/security-credentials/[role]`, for
  `AWS_EC2_METADATA_SERVICE_ENDPOINT`). Their access key ids are `AKIACONTAINER0000001` and
  `AKIAINSTANCE00000001`.
- IAM `SimulatePrincipalPolicy`, which moto lacks, for IAM users and roles of the default
  account: each action and resource evaluated with moto's own policy engine over the
  principal's inline, attached and group policies (`allowed`, `explicitDeny`,
  `implicitDeny`; conditions and permissions boundaries are not modelled). The caller (the
  user whose access key signed the request) must itself be allowed
  `iam:SimulatePrincipalPolicy`, else AccessDenied, as with enforced IAM.
- AWS's compromised-key quarantine policies (`AWSCompromisedKeyQuarantine`, `...V2`, `...V3`)
  exist in every account, as in AWS, so a test can attach one to a user (stock moto has AWS
  managed policies only with `MOTO_IAM_LOAD_MANAGED_POLICIES=true`, and then all ~1,300 in
  every account, which costs each new account's first request a second; these three cost
  nothing). And IAM `ListEntitiesForPolicy`, which moto lacks: the users, groups and roles a
  managed policy is attached to (`EntityFilter` honoured, one page), NoSuchEntity for an ARN
  the account does not have.
- IAM service-specific credentials, which moto lacks (`CreateServiceSpecificCredential` with
  `CredentialAgeDays`, `ListServiceSpecificCredentials`, `UpdateServiceSpecificCredential`,
  `ResetServiceSpecificCredential`, `DeleteServiceSpecificCredential`), as the IAM API
  reference describes them: services `codecommit.amazonaws.com`, `cassandra.amazonaws.com`
  and `bedrock.amazonaws.com` (else `NotSupportedService`), at most two per user and service
  (`LimitExceeded`), the user must exist (`NoSuchEntity`); CodeCommit and Keyspaces get a
  `ServiceUserName` (`USER-at-ACCOUNT`) and `ServicePassword`, Bedrock API keys a
  `ServiceCredentialAlias` and `ServiceCredentialSecret`, shown only by Create and Reset; an
  `ExpirationDate` only with `CredentialAgeDays` (Bedrock only), and a credential past it lists
  as `Expired`. Without `UserName` a call acts for the user whose key signed it (List:
  `AllUsers=true` for every user). `CreateDate` follows the clock offset, so a test can make an
  old one.
- Login profiles as IAM keeps them: `CreateLoginProfile` honours `PasswordResetRequired`
  (stock moto drops it), and a profile's `CreateDate` is its own creation, on the clock offset
  (stock moto gives its user's).
- CloudTrail `LookupEvents`, which moto lacks, over records a test stores with
  `POST /_keywarden/cloudtrail` (tests/moto/cloudtrail.py says how, and what it answers).
- DynamoDB requests are served one at a time, as DynamoDB applies conditional writes to an
  item (moto's threaded server does not); Security Hub's REST paths are counted by operation.

Loopback only: it binds 127.0.0.1 and nothing else.
"""

import base64
import datetime
import email.utils
import random
import re
import io
import socket
import json
import sys
import threading
import time
import urllib.parse

import cloudtrail
import moto.iam.models as iam_models
from moto.core.responses import ActionResult
from moto.iam.responses import IamResponse
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import WSGIRequestHandler, make_server

_offset = datetime.timedelta(0)
_real_utcnow = iam_models.utcnow

_QUARANTINE = None


def _quarantine_policies(self):
    """Only AWS's compromised-key quarantine policies of moto's managed set, in every account."""
    global _QUARANTINE
    if _QUARANTINE is None:
        from moto.iam.aws_managed_policies import aws_managed_policies_data

        parsed = json.loads(aws_managed_policies_data)
        _QUARANTINE = {n: d for n, d in parsed.items() if n.startswith("AWSCompromisedKeyQuarantine")}
    return [
        iam_models.AWSManagedPolicy.from_data(name, self.account_id, self.region_name, data)
        for name, data in _QUARANTINE.items()
    ]


def _list_entities_for_policy(self):
    """IAM ListEntitiesForPolicy (moto has none): who a managed policy is attached to."""
    arn = self._get_param("PolicyArn")
    wanted = self._get_param("EntityFilter")
    self.backend.get_policy(arn)  # NoSuchEntity for an ARN this account does not have

    def holders(kind, entities):
        if wanted not in (None, "", kind):
            return []
        return [{f"{kind}Name": e.name, f"{kind}Id": e.id} for e in entities if arn in e.managed_policies]

    return ActionResult({
        "PolicyUsers": holders("User", self.backend.users.values()),
        "PolicyGroups": holders("Group", self.backend.groups.values()),
        "PolicyRoles": holders("Role", self.backend.roles.values()),
        "IsTruncated": False,
    })


iam_models.IAMBackend._init_aws_policies = _quarantine_policies
IamResponse.list_entities_for_policy = _list_entities_for_policy


def _utcnow():
    return _real_utcnow() + _offset


iam_models.utcnow = _utcnow


def _list_users(self):
    path_prefix = self._get_param("PathPrefix")
    marker = self._get_param("Marker")
    max_items = int(self._get_param("MaxItems") or 100)
    users = sorted(self.backend.list_users(path_prefix, None, None), key=lambda u: u.name)
    start = int(marker) if marker else 0
    end = start + max_items
    result = {"Users": users[start:end], "IsTruncated": end < len(users)}
    if end < len(users):
        result["Marker"] = str(end)
    return ActionResult(result)


IamResponse.list_users = _list_users


def _login_profile(user):
    created = getattr(user, "login_profile_created", None) or user.create_date
    return {"UserName": user.name, "CreateDate": created, "PasswordResetRequired": user.password_reset_required}


def _create_login_profile(self):
    user = self.backend.create_login_profile(self._get_param("UserName"), self._get_param("Password"))
    user.password_reset_required = self._get_bool_param("PasswordResetRequired", False)
    user.login_profile_created = iam_models.utcnow()
    return ActionResult({"LoginProfile": _login_profile(user)})


def _get_login_profile(self):
    return ActionResult({"LoginProfile": _login_profile(self.backend.get_login_profile(self._get_param("UserName")))})


IamResponse.create_login_profile = _create_login_profile
IamResponse.get_login_profile = _get_login_profile

_faults = {}
_rng = random.Random(1)


def _share(kind, action):
    table = _faults.get(kind, {})
    return float(table.get(action, table.get("*", 0)))


_REST = {"/findings/import": "BatchImportFindings", "/findings": "GetFindings"}
_dynamodb_lock = threading.Lock()


def _error(start_response, status, code, message="injected by the test launcher"):
    """An IAM-shaped error answer, as AWS sends it."""
    data = (
        '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    ).encode()
    # REST-JSON clients (Security Hub) read the code from this header; XML clients ignore it.
    start_response(
        status,
        [("Content-Type", "text/xml"), ("Content-Length", str(len(data))), ("x-amzn-ErrorType", code)],
    )
    return [data]


_stats_lock = threading.Lock()
_sso_tokens = {}
_stats = {}
_by_caller = {}
_in_flight = [0, 0]  # now, most since the last reset


def _params(environ, body):
    params = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    params.update(urllib.parse.parse_qs(environ.get("QUERY_STRING", "")))
    return {k: v[0] for k, v in params.items()}


def _draw(kind, action, share):
    if share and _rng.random() < float(share):
        with _stats_lock:
            _stats[f"{action}:{kind}"] = _stats.get(f"{action}:{kind}", 0) + 1
        return True
    return False


def _close(environ):
    """Ends the TCP connection at once: the client sees a reset or an early EOF."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _truncated(environ, start_response, moto_app, body):
    """moto's real answer with its full Content-Length, but only half the body sent."""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    captured = {}

    def capture(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers

    data = b"".join(moto_app(environ, capture))
    headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
    headers.append(("Content-Length", str(len(data))))
    start_response(captured["status"], headers)

    def half():
        yield data[: len(data) // 2]
        _close(environ)

    return half()


def _stalled(environ, start_response, moto_app, action, seconds):
    """Applies the request, counts `ACTION:_stall`, then holds the answer `seconds`: a client
    killed meanwhile has changed IAM without hearing so (the campaign's kill between
    UpdateAccessKey and its journal entry)."""
    captured = {}

    def capture(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers

    data = b"".join(moto_app(environ, capture))
    with _stats_lock:
        _stats[f"{action}:_stall"] = _stats.get(f"{action}:_stall", 0) + 1
    time.sleep(seconds)
    start_response(captured["status"], captured["headers"])
    return [data]


def _json(start_response, status, obj):
    data = json.dumps(obj).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def _sso_role_credentials(environ, start_response):
    """The SSO portal's GetRoleCredentials: role credentials for a valid bearer token."""
    with _stats_lock:
        _stats["GetRoleCredentials"] = _stats.get("GetRoleCredentials", 0) + 1
    key_id = _sso_tokens.get(environ.get("keywarden.sso_bearer_token", ""))
    if key_id is None:
        data = json.dumps({"message": "Session token not found or invalid"}).encode()
        start_response(
            "401 Unauthorized",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(data))),
                ("x-amzn-ErrorType", "UnauthorizedException"),
            ],
        )
        return [data]
    expiration = int((time.time() + 3600) * 1000)
    return _json(
        start_response,
        "200 OK",
        {
            "roleCredentials": {
                "accessKeyId": key_id,
                "secretAccessKey": "sso-secret",
                "sessionToken": "sso-session-token",
                "expiration": expiration,
            }
        },
    )


def _host_credentials(environ, start_response, path):
    """The container credentials endpoint and IMDSv2, as the SDK's default chain reads them."""
    expiration = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    if path == "/_keywarden/container-credentials":
        if environ.get("HTTP_AUTHORIZATION", "") != _faults.get("_container_token", ""):
            return _json(start_response, "401 Unauthorized", {"message": "bad token"})
        body = {"AccessKeyId": "AKIACONTAINER0000001", "SecretAccessKey": "container-secret",
                "Token": "container-session", "Expiration": expiration}
        return _json(start_response, "200 OK", body)
    if path == "/latest/api/token" and environ["REQUEST_METHOD"] == "PUT":
        data = b"imds-session-token"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data))),
                                  ("x-aws-ec2-metadata-token-ttl-seconds", "21600")])
        return [data]
    if environ.get("HTTP_X_AWS_EC2_METADATA_TOKEN") != "imds-session-token":
        start_response("401 Unauthorized", [("Content-Length", "0")])
        return []
    if path == "/latest/meta-data/iam/security-credentials/":
        data = b"keywarden-instance"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
        return [data]
    if path == "/latest/meta-data/iam/security-credentials/keywarden-instance":
        body = {"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "AKIAINSTANCE00000001",
                "SecretAccessKey": "instance-secret", "Token": "instance-session",
                "Expiration": expiration, "LastUpdated": expiration}
        return _json(start_response, "200 OK", body)
    start_response("404 Not Found", [("Content-Length", "0")])
    return []


def _principal_policies(backend, arn):
    """The identity policies of a user or role ARN, as moto's access control collects them."""
    from moto.iam.access_control import IAMUserAccessKey

    kind, _, name = arn.split(":", 5)[5].partition("/")
    name = name.rsplit("/", 1)[-1]
    if kind == "user":
        backend.get_user(name)  # NoSuchEntity when absent
        collector = IAMUserAccessKey.__new__(IAMUserAccessKey)
        collector.account_id, collector.partition, collector._owner_user_name = (
            backend.account_id, "aws", name)
        return collector.collect_policies()
    if kind == "role":
        backend.get_role(name)
        policies = [backend.get_role_policy(name, p)[1] for p in backend.list_role_policies(name)]
        attached, _ = backend.list_attached_role_policies(name)
        return policies + list(attached)
    raise ValueError(arn)


def _simulate(environ, start_response, params, caller):
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.iam.models import iam_backends

    backend = iam_backends["123456789012"]["aws"]

    def decide(policies, action, resource):
        permitted = False
        for policy in policies:
            result = IAMPolicy(policy).is_action_permitted(action, resource)
            if result == PermissionResult.DENIED:
                return "explicitDeny"
            permitted = permitted or result == PermissionResult.PERMITTED
        return "allowed" if permitted else "implicitDeny"

    user = backend.get_user_from_access_key_id(caller) if caller else None
    if user is None or decide(_principal_policies(backend, user.arn), "iam:SimulatePrincipalPolicy", "*") != "allowed":
        return _error(start_response, "403 Forbidden", "AccessDenied")
    try:
        policies = _principal_policies(backend, params["PolicySourceArn"])
    except Exception:
        return _error(start_response, "404 Not Found", "NoSuchEntity")
    actions = [v for k, v in sorted(params.items()) if k.startswith("ActionNames.member.")]
    resources = [v for k, v in sorted(params.items()) if k.startswith("ResourceArns.member.")] or ["*"]
    members = "".join(
        f"<member><EvalActionName>{a}</EvalActionName><EvalResourceName>{r}</EvalResourceName>"
        f"<EvalDecision>{decide(policies, a, r)}</EvalDecision><MatchedStatements/><MissingContextValues/></member>"
        for a in actions
        for r in resources
    )
    data = (
        '<SimulatePrincipalPolicyResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
        f"<SimulatePrincipalPolicyResult><IsTruncated>false</IsTruncated><EvaluationResults>{members}"
        "</EvaluationResults></SimulatePrincipalPolicyResult>"
        "<ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000001</RequestId></ResponseMetadata>"
        "</SimulatePrincipalPolicyResponse>"
    ).encode()
    start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(data)))])
    return [data]


# Its own generator: the fault draws' seeded sequence stays as it was.
_rng_ids = random.Random(7)
_SSC_SERVICES = ("codecommit.amazonaws.com", "cassandra.amazonaws.com", "bedrock.amazonaws.com")
# account -> list of credentials (dicts), in creation order.
_ssc = {}
_ssc_lock = threading.Lock()


def _ssc_xml(c, secret=False):
    now = _real_utcnow() + _offset
    status = c["Status"]
    if c.get("ExpirationDate") and c["ExpirationDate"] <= now:
        status = "Expired"
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
    out = (f"<UserName>{c['UserName']}</UserName><Status>{status}</Status>"
           f"<ServiceSpecificCredentialId>{c['Id']}</ServiceSpecificCredentialId>"
           f"<ServiceName>{c['ServiceName']}</ServiceName><CreateDate>{iso(c['CreateDate'])}</CreateDate>")
    if c.get("ExpirationDate"):
        out += f"<ExpirationDate>{iso(c['ExpirationDate'])}</ExpirationDate>"
    if c["ServiceName"] == "bedrock.amazonaws.com":
        out += f"<ServiceCredentialAlias>{c['Alias']}</ServiceCredentialAlias>"
        if secret:
            out += f"<ServiceCredentialSecret>{c['Secret']}</ServiceCredentialSecret>"
    else:
        out += f"<ServiceUserName>{c['ServiceUserName']}</ServiceUserName>"
        if secret:
            out += f"<ServicePassword>{c['Secret']}</ServicePassword>"
    return out


def _iam_answer(start_response, action, result):
    data = (
        f'<{action}Response xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
        + (f"<{action}Result>{result}</{action}Result>" if result is not None else "")
        + "<ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000002</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    ).encode()
    start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(data)))])
    return [data]


def _service_specific(start_response, action, params, caller):
    """IAM's service-specific credentials, from the API reference (moto has none)."""
    from moto.iam.models import iam_backends

    account = iam_models.get_account_id_from(caller) if caller else iam_models.DEFAULT_ACCOUNT_ID
    backend = iam_backends[account]["aws"]
    user = params.get("UserName")
    if user is None and action == "CreateServiceSpecificCredential":
        return _error(start_response, "400 Bad Request", "ValidationError", "UserName is required.")
    every_user = action == "ListServiceSpecificCredentials" and params.get("AllUsers") == "true"
    if user is None and not every_user:
        # Without UserName, the user whose access key signed the request (IAM's rule).
        signer = backend.get_user_from_access_key_id(caller) if caller else None
        if signer is None:
            return _error(start_response, "400 Bad Request", "ValidationError",
                          "UserName is required when the caller is not an IAM user.")
        user = signer.name
    if user is not None:
        try:
            backend.get_user(user)
        except Exception:
            return _error(start_response, "404 Not Found", "NoSuchEntity", f"The user with name {user} cannot be found.")
    with _ssc_lock:
        creds = _ssc.setdefault(account, [])
        if action == "CreateServiceSpecificCredential":
            service = params.get("ServiceName", "")
            if service not in _SSC_SERVICES:
                return _error(start_response, "404 Not Found", "NotSupportedService",
                              f"The service {service} is not supported for service-specific credentials.")
            if sum(1 for c in creds if c["UserName"] == user and c["ServiceName"] == service) >= 2:
                return _error(start_response, "409 Conflict", "LimitExceeded",
                              "Cannot exceed quota for ServiceSpecificCredentialsPerUserPerService: 2")
            days = params.get("CredentialAgeDays")
            if days is not None and (service != "bedrock.amazonaws.com" or not 1 <= int(days) <= 36600):
                return _error(start_response, "400 Bad Request", "InvalidInput",
                              "CredentialAgeDays is valid only for bedrock.amazonaws.com, from 1 to 36600.")
            now = (_real_utcnow() + _offset).replace(microsecond=0)
            c = {
                "UserName": user, "ServiceName": service, "Status": "Active", "CreateDate": now,
                "Id": "ACCA" + "".join(_rng_ids.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(17)),
                "ServiceUserName": f"{user}-at-{account}",
                "Alias": f"BedrockAPIKey-{user}-{now.strftime('%Y%m%d%H%M%S')}",
                "Secret": base64.b64encode(_rng_ids.randbytes(30)).decode(),
            }
            if days is not None:
                c["ExpirationDate"] = now + datetime.timedelta(days=int(days))
            creds.append(c)
            return _iam_answer(start_response, action,
                               f"<ServiceSpecificCredential>{_ssc_xml(c, secret=True)}</ServiceSpecificCredential>")
        if action == "ListServiceSpecificCredentials":
            service = params.get("ServiceName")
            mine = [c for c in creds if (every_user or c["UserName"] == user)
                    and (service is None or c["ServiceName"] == service)]
            members = "".join(f"<member>{_ssc_xml(c)}</member>" for c in mine)
            return _iam_answer(start_response, action,
                               f"<ServiceSpecificCredentials>{members}</ServiceSpecificCredentials>"
                               "<IsTruncated>false</IsTruncated>")
        ident = params.get("ServiceSpecificCredentialId")
        found = [c for c in creds if c["Id"] == ident and c["UserName"] == user]
        if not found:
            return _error(start_response, "404 Not Found", "NoSuchEntity",
                          f"The Service Specific Credential with id {ident} cannot be found.")
        c = found[0]
        if action == "UpdateServiceSpecificCredential":
            if params.get("Status") not in ("Active", "Inactive"):
                return _error(start_response, "400 Bad Request", "ValidationError",
                              "Status must be Active or Inactive.")
            c["Status"] = params["Status"]
            return _iam_answer(start_response, action, None)
        if action == "ResetServiceSpecificCredential":
            c["Secret"] = base64.b64encode(_rng_ids.randbytes(30)).decode()
            return _iam_answer(start_response, action,
                               f"<ServiceSpecificCredential>{_ssc_xml(c, secret=True)}</ServiceSpecificCredential>")
        creds.remove(c)  # DeleteServiceSpecificCredential
        return _iam_answer(start_response, action, None)



def make_app():
    moto_app = DomainDispatcherApplication(create_backend_app)

    def app(environ, start_response):
        global _offset
        path = environ.get("PATH_INFO", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        if path == "/_keywarden/clock":
            _offset = datetime.timedelta(seconds=float(json.loads(body or b"{}").get("offset_seconds", 0)))
            return _json(start_response, "200 OK", {"offset_seconds": _offset.total_seconds()})
        if path == "/_keywarden/stats":
            with _stats_lock:
                snapshot = dict(_stats)
                if environ["REQUEST_METHOD"] == "POST":
                    _stats.clear()
            return _json(start_response, "200 OK", snapshot)
        if path == "/_keywarden/callers":
            with _stats_lock:
                snapshot = {k: dict(v) for k, v in _by_caller.items()}
            return _json(start_response, "200 OK", snapshot)
        if path == "/_keywarden/in_flight":
            with _stats_lock:
                most = _in_flight[1]
                if environ["REQUEST_METHOD"] == "POST":
                    _in_flight[1] = 0
            return _json(start_response, "200 OK", {"max": most})
        if path == "/_keywarden/faults":
            _faults.clear()
            _faults.update(json.loads(body or b"{}"))
            return _json(start_response, "200 OK", _faults)
        if path == "/_keywarden/sso":
            _sso_tokens.clear()
            _sso_tokens.update(json.loads(body or b"{}"))
            return _json(start_response, "200 OK", _sso_tokens)
        if path == "/_keywarden/cloudtrail":
            if environ["REQUEST_METHOD"] == "POST":
                return _json(start_response, "200 OK", cloudtrail.store(body))
            return _json(start_response, "200 OK", cloudtrail.store(b"{}"))
        if path == "/federation/credentials":
            return _sso_role_credentials(environ, start_response)
        if path == "/_keywarden/container-credentials" or path.startswith("/latest/"):
            return _host_credentials(environ, start_response, path)
        if path.startswith("/moto-api"):
            return moto_app(environ, start_response)
        with _stats_lock:
            _in_flight[0] += 1
            _in_flight[1] = max(_in_flight[1], _in_flight[0])
        try:
            return serve(environ, start_response, body)
        finally:
            with _stats_lock:
                _in_flight[0] -= 1

    def serve(environ, start_response, body):
        params = _params(environ, body)
        # Query APIs (IAM, STS) name the action in the body; JSON APIs (Organizations) in
        # X-Amz-Target, e.g. "AWSOrganizationsV20161128.ListAccounts".
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        # REST-JSON APIs (Security Hub) name it by the path.
        path = environ.get("PATH_INFO", "")
        action = params.get("Action") or (target.rsplit(".", 1)[-1] if target else _REST.get(path, "other"))
        caller = re.search(r"Credential=([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
        with _stats_lock:
            _stats[action] = _stats.get(action, 0) + 1
            if caller:
                mine = _by_caller.setdefault(caller.group(1), {})
                mine[action] = mine.get(action, 0) + 1
        delay = _faults.get("_delay", {}).get(action)
        if delay:
            time.sleep(float(delay))
        slow = _faults.get("_slow", {})
        share, seconds = slow.get(action, slow.get("*", [0, 0]))
        if _draw("_slow", action, share):
            time.sleep(float(seconds))
        if _draw("_drop", action, _share("_drop", action)):
            _close(environ)
            start_response("200 OK", [("Content-Length", "0")])
            return []
        if _draw("_truncate", action, _share("_truncate", action)):
            return _truncated(environ, start_response, moto_app, body)
        for kind, status, code in (
            ("_throttle", "400 Bad Request", "Throttling"),
            ("_unavailable", "503 Service Unavailable", "ServiceUnavailable"),
        ):
            # Drawn even at share 0 (unlike the faults above): the seeded sequence the fault
            # tests were tuned with depends on it.
            if _rng.random() < _share(kind, action):
                with _stats_lock:
                    _stats[f"{action}:{code}"] = _stats.get(f"{action}:{code}", 0) + 1
                return _error(start_response, status, code)
        denied = _faults.get(action, [])
        if "*" in denied or params.get("UserName") in denied or params.get("RoleArn") in denied:
            return _error(start_response, "403 Forbidden", "AccessDenied")
        missing = _faults.get("_missing", {}).get(action, [])
        if "*" in missing or params.get("UserName") in missing:
            return _error(start_response, "404 Not Found", "NoSuchEntity")
        if action == "SimulatePrincipalPolicy":
            return _simulate(environ, start_response, params, caller.group(1) if caller else None)
        if action == "LookupEvents":
            scope = re.search(r"Credential=[^/]+/[^/]+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
            status, answer = cloudtrail.lookup_events(body, scope.group(1) if scope else "", _utcnow())
            if status != 200:
                with _stats_lock:
                    _stats[f"LookupEvents:{answer['__type']}"] = _stats.get(f"LookupEvents:{answer['__type']}", 0) + 1
            data = json.dumps(answer).encode()
            start_response("200 OK" if status == 200 else "400 Bad Request",
                           [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))])
            return [data]
        if action.endswith("ServiceSpecificCredential") or action == "ListServiceSpecificCredentials":
            return _service_specific(start_response, action, params, caller.group(1) if caller else None)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        stall = _faults.get("_stall", {}).get(action)
        if stall:
            return _stalled(environ, start_response, moto_app, action, float(stall))
        other_account = _faults.get("_report_account")
        if target.startswith("DynamoDB_"):
            # DynamoDB applies conditional writes to an item one at a time; moto's threaded
            # server checks the condition and writes without a lock, so two conditional writes
            # could both pass (a renewal and a takeover of the lease, say). One at a time here.
            with _dynamodb_lock:
                return moto_app(environ, start_response)
        if not (other_account and action == "GetCredentialReport"):
            return moto_app(environ, start_response)
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        def rewrite(m):
            csv = base64.b64decode(m.group(1)).decode()
            csv = re.sub(r":\d{12}:", f":{other_account}:", csv)
            return b"<Content>" + base64.b64encode(csv.encode()) + b"</Content>"

        data = re.sub(rb"<Content>([^<]*)</Content>", rewrite, b"".join(moto_app(environ, capture)))
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(data))))
        start_response(captured["status"], headers)
        return [data]

    return app


def _date_time_string(self, timestamp=None):
    """The server's `Date` header (http.server sends it with every answer), `_date_skew` off."""
    now = time.time() if timestamp is None else timestamp
    return email.utils.formatdate(now + float(_faults.get("_date_skew", 0)), usegmt=True)


_make_environ = WSGIRequestHandler.make_environ


def _make_environ_with_sso_token(self):
    """werkzeug drops request headers with an underscore in their name (as nginx does), and
    the SSO portal's token header is `x-amz-sso_bearer_token`: pass it on under its own key."""
    environ = _make_environ(self)
    token = self.headers.get("x-amz-sso_bearer_token")
    if token is not None:
        environ["keywarden.sso_bearer_token"] = token
    return environ


def main():
    WSGIRequestHandler.date_time_string = _date_time_string
    WSGIRequestHandler.make_environ = _make_environ_with_sso_token
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = make_server("127.0.0.1", port, make_app(), threaded=True)
    print(f"PORT {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
