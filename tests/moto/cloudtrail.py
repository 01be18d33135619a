"""CloudTrail `LookupEvents`, which moto lacks, served by the test launcher as the API reference
describes it, over the events a test stores.

- Events are stored with `POST /_keywarden/cloudtrail` and body `{"records": [...]}`: each a
  CloudTrail record as a trail writes it (`eventID`, `eventTime`, `eventSource`, `eventName`,
  `awsRegion`, `sourceIPAddress`, `userAgent`, `userIdentity.accessKeyId`, ...); appended,
  `{"replace": true}` drops the ones stored before. `GET` returns how many are stored.
- `LookupEvents` (JSON 1.1, `X-Amz-Target: ...CloudTrail_20131101.LookupEvents`): at most one
  `LookupAttributes` entry (`AccessKeyId`, `EventId`, `EventName`, `EventSource`, `ReadOnly`,
  `Username`, `ResourceType`, `ResourceName`; else `InvalidLookupAttributesException`);
  `StartTime`/`EndTime` inclusive (epoch seconds; start after end:
  `InvalidTimeRangeException`), only the last 90 days; `MaxResults` 1-50, default 50 (else
  `InvalidMaxResultsException`); newest first; `NextToken` from the previous page (else
  `InvalidNextTokenException`); each event with `EventId`, `EventName`, `ReadOnly`,
  `AccessKeyId`, `EventTime`, `EventSource`, `Username`, `Resources` and the record as a JSON
  string in `CloudTrailEvent`.
- Past 2 requests per second per account and region (the documented limit), the answer is
  `ThrottlingException` ("Rate exceeded"), counted as `LookupEvents:ThrottlingException`.
"""

import base64
import datetime
import json
import threading
import time

_lock = threading.Lock()
_records = []
_recent = {}  # region -> request times within the last second

ATTRIBUTES = {
    "AccessKeyId": lambda r: (r.get("userIdentity") or {}).get("accessKeyId"),
    "EventId": lambda r: r.get("eventID"),
    "EventName": lambda r: r.get("eventName"),
    "EventSource": lambda r: r.get("eventSource"),
    "ReadOnly": lambda r: str(r.get("readOnly", "")).lower(),
    "Username": lambda r: _username(r),
    "ResourceType": lambda r: [x.get("type") for x in r.get("resources") or []],
    "ResourceName": lambda r: [x.get("ARN") for x in r.get("resources") or []],
}
RATE = 2
RETENTION = datetime.timedelta(days=90)


def _username(r):
    ident = r.get("userIdentity") or {}
    return ident.get("userName") or ident.get("principalId")


def _when(r):
    return datetime.datetime.strptime(r["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def store(body):
    """The control endpoint: stores records, returns how many are stored."""
    request = json.loads(body or b"{}")
    with _lock:
        if request.get("replace"):
            _records.clear()
        _records.extend(request.get("records", []))
        return {"stored": len(_records)}


def _throttled(region, now):
    with _lock:
        times = [t for t in _recent.get(region, []) if now - t < 1.0]
        if len(times) >= RATE:
            _recent[region] = times
            return True
        times.append(now)
        _recent[region] = times
        return False


def lookup_events(body, region, now):
    """(status, answer) of one LookupEvents request at `now` (the launcher's clock)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=datetime.timezone.utc)
    if _throttled(region, time.monotonic()):
        return 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return 400, {"__type": "SerializationException", "message": "the body is not JSON"}
    attributes = request.get("LookupAttributes") or []
    if len(attributes) > 1:
        return 400, {"__type": "InvalidLookupAttributesException",
                     "message": "You can specify only one lookup attribute."}
    match = None
    if attributes:
        key, value = attributes[0].get("AttributeKey"), attributes[0].get("AttributeValue")
        if key not in ATTRIBUTES or value is None:
            return 400, {"__type": "InvalidLookupAttributesException",
                         "message": f"The attribute key {key} is not valid."}
        match = (ATTRIBUTES[key], value)
    start = request.get("StartTime")
    end = request.get("EndTime")
    start = datetime.datetime.fromtimestamp(float(start), datetime.timezone.utc) if start is not None else None
    end = datetime.datetime.fromtimestamp(float(end), datetime.timezone.utc) if end is not None else None
    if start and end and start > end:
        return 400, {"__type": "InvalidTimeRangeException",
                     "message": "Start time must be less than or equal to end time."}
    limit = request.get("MaxResults", 50)
    if not isinstance(limit, int) or not 1 <= limit <= 50:
        return 400, {"__type": "InvalidMaxResultsException", "message": "MaxResults must be between 1 and 50."}
    token = request.get("NextToken")
    offset = 0
    if token is not None:
        try:
            offset = int(json.loads(base64.b64decode(token))["offset"])
        except (ValueError, KeyError, TypeError):
            return 400, {"__type": "InvalidNextTokenException", "message": "The next token is not valid."}
    oldest = now - RETENTION
    with _lock:
        chosen = []
        for r in _records:
            when = _when(r)
            if when < oldest or (start and when < start) or (end and when > end):
                continue
            if match:
                got = match[0](r)
                if not (got == match[1] or (isinstance(got, list) and match[1] in got)):
                    continue
            chosen.append((when, r))
    chosen.sort(key=lambda wr: wr[0], reverse=True)
    page = chosen[offset:offset + limit]
    answer = {"Events": [_event(when, r) for when, r in page]}
    if offset + limit < len(chosen):
        answer["NextToken"] = base64.b64encode(json.dumps({"offset": offset + limit}).encode()).decode()
    return 200, answer


def _event(when, r):
    return {
        "EventId": r.get("eventID"),
        "EventName": r.get("eventName"),
        "ReadOnly": str(r.get("readOnly", "true")).lower(),
        "AccessKeyId": (r.get("userIdentity") or {}).get("accessKeyId"),
        "EventTime": when.timestamp(),
        "EventSource": r.get("eventSource"),
        "Username": _username(r),
        "Resources": [{"ResourceType": x.get("type"), "ResourceName": x.get("ARN")} for x in r.get("resources") or []],
        "CloudTrailEvent": json.dumps(r),
    }
