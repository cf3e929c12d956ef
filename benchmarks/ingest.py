"""Ingest speed: ``nhiaudit ingest`` against DuckDB alone loading the same CloudTrail files.

    python benchmarks/ingest.py 100000            # generate (once) and time both sides
    python benchmarks/ingest.py 1000000 --runs 1
    python benchmarks/ingest.py 200000 --per-file 2000 --mix calls,issuing   # 100 files, two mixes
    python benchmarks/ingest.py 1000000 --per-file 100 --skip-library        # 10,000 small files

Generates N realistic CloudTrail records (AssumeRole issuances and the S3/EC2/IAM/KMS calls made
with the issued keys, errors, 1-2 KB each, fixed random seed) as native S3-delivery files: gzip,
one ``{"Records": [...]}`` document per file, 5,000 records a file (``--per-file``), in one or more
record mixes (``--mix``: how many of the records are issuances), under ``benchmarks/data/``
(gitignored; reused when present). Then, each side in its own process so that its peak memory
(``wait4`` rusage, max RSS) is its own:

- nhiaudit CLI: ``nhiaudit ingest --db <fresh store> <dir>`` (the headline: what a user waits for);
- nhiaudit library: ``ingest.ingest`` in one Python process (no CLI start-up, no progress bar);
- DuckDB alone: one ``CREATE TABLE AS SELECT`` over ``read_json_objects`` + ``unnest`` of
  ``json_extract(json, '$.Records[*]')`` (twice as fast as ``read_json`` with a ``JSON[]``
  column), computing the same normalized columns with the same expressions, plus the raw record:
  what a competent engineer would write with no custody, gzip check, dedupe, rejection or
  per-file transaction duties. It reads all files in one parallel scan.

Two floors are timed on the same files, each in its own process too: decompressing them (zlib, a
thread per CPU) and DuckDB's bare parse into records (``read_json_objects`` + the ``Records``
unnest, counted); a ladder then gives every side's wall time as a ratio of each floor.

Every side gets DuckDB's defaults (threads, memory limit). Rounds interleave the sides (``--runs``)
and each side keeps its fastest; CPU seconds (user + system, every thread) are printed too, as
they suffer less than wall time from other work on a shared machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
PER_FILE = 5000
SEED = 20260101

ACCOUNT = "111122223333"
REGIONS = ["us-east-1", "us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"]
AGENTS = [f"agent-{n:02d}" for n in range(24)]
BUCKETS = ["reports-prod", "data-lake-raw", "ml-features", "backups-eu", "customer-exports", "logs-central"]
USER_AGENTS = [
    "aws-sdk-go-v2/1.32.3 os/linux lang/go#1.23.1 md/GOOS#linux md/GOARCH#amd64 api/s3#1.66.0",
    "Boto3/1.34.144 md/Botocore#1.34.144 ua/2.0 os/linux#6.1.0 md/arch#x86_64 lang/python#3.12.4 "
    "md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.144",
    "aws-cli/2.17.20 md/awscrt#0.20.11 ua/2.0 os/linux#6.5.0 md/arch#x86_64 lang/python#3.11.9 "
    "md/pyimpl#CPython exec-env/CloudShell cfg/retry-mode#standard md/installer#exe",
    "[aws-sdk-java/2.25.60 Linux/5.10.219 OpenJDK_64-Bit_Server_VM/17.0.11+9-LTS Java/17.0.11 "
    "vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/standard]",
]


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _key(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))


def _uuid(rng: random.Random) -> str:
    h = _hex(rng, 32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class World:
    """Agents assume roles (issuing ASIA keys tagged with a task id) and act with those keys."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.t = 1_761_955_200  # 2025-11-01T00:00:00Z
        self.sessions: list[dict[str, str]] = []
        self.long_term = {agent: _key(self.rng, "AKIA") for agent in AGENTS}

    def _time(self) -> str:
        self.t += self.rng.choice([0, 0, 1, 1, 2, 3, 5])
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.t))

    def _identity(self, session: dict[str, str]) -> dict[str, object]:
        return {
            "type": "AssumedRole",
            "principalId": f"AROA{session['role_id']}:{session['name']}",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{session['role']}/{session['name']}",
            "accountId": ACCOUNT,
            "accessKeyId": session["key"],
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": f"AROA{session['role_id']}",
                    "arn": f"arn:aws:iam::{ACCOUNT}:role/{session['role']}",
                    "accountId": ACCOUNT,
                    "userName": session["role"],
                },
                "attributes": {"creationDate": session["created"], "mfaAuthenticated": "false"},
                "sourceIdentity": session["task"],
            },
        }

    def _envelope(self, source: str, name: str, identity: dict[str, object], **extra: object) -> dict[str, object]:
        rng = self.rng
        record: dict[str, object] = {
            "eventVersion": "1.09",
            "userIdentity": identity,
            "eventTime": self._time(),
            "eventSource": f"{source}.amazonaws.com",
            "eventName": name,
            "awsRegion": rng.choice(REGIONS),
            "sourceIPAddress": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "userAgent": rng.choice(USER_AGENTS),
            "requestParameters": None,
            "responseElements": None,
            "requestID": _uuid(rng),
            "eventID": _uuid(rng),
            "readOnly": name.startswith(("Get", "List", "Describe", "Head")),
            "eventType": "AwsApiCall",
            "managementEvent": source != "s3",
            "recipientAccountId": ACCOUNT,
            "eventCategory": "Data" if source == "s3" else "Management",
            "tlsDetails": {
                "tlsVersion": "TLSv1.3",
                "cipherSuite": "TLS_AES_128_GCM_SHA256",
                "clientProvidedHostHeader": f"{source}.{rng.choice(REGIONS)}.amazonaws.com",
            },
        }
        record.update(extra)
        if rng.random() < 0.03:
            record["errorCode"] = rng.choice(
                ["AccessDenied", "Client.UnauthorizedOperation", "NoSuchKey", "ThrottlingException"]
            )
            record["errorMessage"] = "User is not authorized to perform this operation because no policy allows it"
        return record

    def assume_role(self) -> dict[str, object]:
        rng = self.rng
        agent = rng.choice(AGENTS)
        task = f"t-{_hex(rng, 8)}"
        role = f"{agent}-runtime"
        session = {
            "key": _key(rng, "ASIA"),
            "role": role,
            "role_id": _key(rng, "")[:17],
            "name": task,
            "task": task,
            "created": "",
        }
        record = self._envelope(
            "sts",
            "AssumeRole",
            {
                "type": "IAMUser",
                "principalId": _key(rng, "AIDA"),
                "arn": f"arn:aws:iam::{ACCOUNT}:user/{agent}",
                "accountId": ACCOUNT,
                "accessKeyId": self.long_term[agent],
                "userName": agent,
            },
        )
        session["created"] = str(record["eventTime"])
        expires = time.gmtime(self.t + 3600)
        record["requestParameters"] = {
            "roleArn": f"arn:aws:iam::{ACCOUNT}:role/{role}",
            "roleSessionName": task,
            "durationSeconds": 3600,
            "sourceIdentity": task,
            "tags": [{"key": "TaskId", "value": task}, {"key": "Agent", "value": agent}],
        }
        record["responseElements"] = {
            "credentials": {
                "accessKeyId": session["key"],
                "sessionToken": "IQoJb3JpZ2luX2Vj"
                + "".join(rng.choice("ABCDEFGHabcdefgh0123456789+/") for _ in range(rng.randrange(300, 700))),
                "expiration": time.strftime("%b %-d, %Y, %-I:%M:%S %p", expires),
            },
            "assumedRoleUser": {
                "assumedRoleId": f"AROA{session['role_id']}:{task}",
                "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{task}",
            },
            "sourceIdentity": task,
        }
        record["resources"] = [
            {"accountId": ACCOUNT, "type": "AWS::IAM::Role", "ARN": f"arn:aws:iam::{ACCOUNT}:role/{role}"}
        ]
        record["readOnly"] = False
        self.sessions = (self.sessions + [session])[-50:]
        return record

    def call(self) -> dict[str, object]:
        rng = self.rng
        session = rng.choice(self.sessions)
        identity = self._identity(session)
        kind = rng.random()
        if kind < 0.55:
            bucket = rng.choice(BUCKETS)
            name = rng.choice(["GetObject", "GetObject", "PutObject", "ListObjects", "HeadObject", "DeleteObject"])
            key = "/".join(_hex(rng, rng.randrange(4, 12)) for _ in range(rng.randrange(1, 6))) + ".parquet"
            record = self._envelope("s3", name, identity)
            record["requestParameters"] = {"bucketName": bucket, "Host": f"{bucket}.s3.amazonaws.com", "key": key}
            record["additionalEventData"] = {
                "SignatureVersion": "SigV4",
                "CipherSuite": "TLS_AES_128_GCM_SHA256",
                "bytesTransferredIn": float(rng.randrange(0, 10_000_000)),
                "AuthenticationMethod": "AuthHeader",
                "x-amz-id-2": _hex(rng, 76),
                "bytesTransferredOut": float(rng.randrange(0, 1000)),
            }
            record["resources"] = [
                {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
                {"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"},
            ]
        elif kind < 0.80:
            name = rng.choice(
                [
                    "DescribeInstances",
                    "DescribeInstances",
                    "RunInstances",
                    "DescribeVolumes",
                    "CreateTags",
                    "DescribeSecurityGroups",
                ]
            )
            record = self._envelope("ec2", name, identity)
            ids = [f"i-{_hex(rng, 17)}" for _ in range(rng.randrange(1, 8))]
            record["requestParameters"] = {
                "instancesSet": {"items": [{"instanceId": i} for i in ids]},
                "filterSet": {"items": [{"name": "tag:Team", "valueSet": {"items": [{"value": "agents"}]}}]},
            }
            if name == "RunInstances":
                record["responseElements"] = {
                    "reservationId": f"r-{_hex(rng, 17)}",
                    "instancesSet": {"items": [{"instanceId": ids[0], "imageId": f"ami-{_hex(rng, 17)}"}]},
                }
        elif kind < 0.92:
            name = rng.choice(
                ["GetRole", "ListAttachedRolePolicies", "GetPolicyVersion", "CreateAccessKey", "PutRolePolicy"]
            )
            record = self._envelope("iam", name, identity)
            record["awsRegion"] = "us-east-1"
            record["requestParameters"] = {
                "roleName": session["role"],
                "policyArn": f"arn:aws:iam::{ACCOUNT}:policy/{rng.choice(AGENTS)}-boundary",
            }
            if name == "PutRolePolicy":
                record["requestParameters"]["policyDocument"] = json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": ["s3:GetObject", "s3:PutObject"],
                                "Resource": [f"arn:aws:s3:::{b}/*" for b in BUCKETS],
                            }
                        ],
                    }
                )
        else:
            name = rng.choice(["Decrypt", "GenerateDataKey", "GetSecretValue"])
            source = "secretsmanager" if name == "GetSecretValue" else "kms"
            record = self._envelope(source, name, identity)
            record["requestParameters"] = {
                "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
                "encryptionContext": {"aws:s3:arn": f"arn:aws:s3:::{rng.choice(BUCKETS)}"},
                "keyId": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{_uuid(rng)}",
            }
            record["resources"] = [
                {
                    "accountId": ACCOUNT,
                    "type": "AWS::KMS::Key",
                    "ARN": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{_uuid(rng)}",
                }
            ]
        return record

    def records(self, n: int, issue_every: int = 20):
        for i in range(n):
            yield self.assume_role() if (i % issue_every == 0 or not self.sessions) else self.call()


# Record mixes: the share of AssumeRole issuances (large responses: a 300-700 character session
# token, tags, assumed-role user) among the calls made with the issued keys. The ratio against
# DuckDB alone depends on the mix (issue 14), so the benchmark can show several.
MIXES = {"calls": 20, "issuing": 3}


def generate(n: int, out: Path, per_file: int = PER_FILE, mix: str = "calls") -> None:
    """Write N records as gzip S3-delivery files, ``per_file`` records each, unless already there."""
    marker = out / ".complete"  # hidden: ingest skips it
    if marker.exists():
        return
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    world = World(SEED)
    batch: list[dict[str, object]] = []
    index = 0
    started = time.perf_counter()
    for record in world.records(n, MIXES[mix]):
        batch.append(record)
        if len(batch) == per_file:
            _write(out, index, batch)
            index, batch = index + 1, []
    if batch:
        _write(out, index, batch)
    marker.write_text(f"{n}\n")
    print(
        f"generated {n:,} records in {index + bool(batch)} files ({_size(out)}) "
        f"in {time.perf_counter() - started:.1f} s",
        flush=True,
    )


def _write(out: Path, index: int, batch: list[dict[str, object]]) -> None:
    name = f"{ACCOUNT}_CloudTrail_us-east-1_20251101T{index // 60 % 24:02d}{index % 60:02d}Z_{index:06d}.json.gz"
    (out / name).write_bytes(gzip.compress(json.dumps({"Records": batch}, separators=(",", ":")).encode(), 6))


def _size(out: Path) -> str:
    files = [p for p in out.glob("*.json.gz")]
    raw = sum(len(gzip.decompress(p.read_bytes())) for p in files[:3]) / max(1, min(3, len(files))) * len(files)
    return f"{sum(p.stat().st_size for p in files) / 1e6:.0f} MB gzip, ~{raw / 1e6:.0f} MB JSON"


# The baseline: DuckDB alone, the same normalized columns with the same expressions as
# nhiaudit/sources/cloudtrail.py, one pass, no checks.
BASELINE_SQL = """
CREATE TABLE events AS
WITH recs AS (
    SELECT rec, json_transform(rec, '{
        "eventID": "VARCHAR", "eventTime": "VARCHAR", "@timestamp": "VARCHAR", "eventSource": "VARCHAR",
        "eventName": "VARCHAR", "eventType": "VARCHAR", "awsRegion": "VARCHAR", "sourceIPAddress": "VARCHAR",
        "userAgent": "VARCHAR", "errorCode": "VARCHAR", "readOnly": "JSON", "recipientAccountId": "VARCHAR",
        "userIdentity": {"type": "VARCHAR", "arn": "VARCHAR", "principalId": "VARCHAR", "accountId": "VARCHAR",
            "accessKeyId": "VARCHAR", "invokedBy": "VARCHAR",
            "sessionContext": {"sourceIdentity": "VARCHAR", "ec2RoleDelivery": "VARCHAR",
                               "sessionIssuer": {"arn": "VARCHAR"}}},
        "requestParameters": "JSON", "responseElements": "JSON", "resources": "JSON"}') AS r
    -- read_json_objects + json_extract is ~2x faster than read_json(columns={'Records': 'JSON[]'}).
    FROM (SELECT unnest(json_extract(json, '$.Records[*]')) AS rec
          FROM read_json_objects({files}, format = 'unstructured', maximum_object_size = 1073741824))
), base AS (
    SELECT *, r.userIdentity AS u, r.eventSource AS event_source, r.eventName AS event_name,
           r.eventSource = 'sts.amazonaws.com' AND r.eventName IN ('AssumeRole', 'AssumeRoleWithSAML',
               'AssumeRoleWithWebIdentity', 'GetFederationToken', 'GetSessionToken') AS issuing,
           r.requestParameters AS req, r.responseElements AS resp
    FROM recs
), keyed AS (
    SELECT *,
        CASE WHEN issuing THEN json_extract_string(resp, '$.credentials.accessKeyId') ELSE u.accessKeyId END AS cred,
        (SELECT json_extract_string(x, '$.ARN') FROM unnest(CAST(json_extract(r.resources, '$[*]') AS JSON[])) AS t(x)
         WHERE json_extract_string(x, '$.ARN') IS NOT NULL
         ORDER BY json_extract_string(x, '$.type') = 'AWS::S3::Object' DESC LIMIT 1) AS first_arn
    FROM base
)
SELECT
    r.eventID AS event_id,
    row_number() OVER () - 1 AS record_index,
    coalesce(try_cast(r.eventTime AS TIMESTAMPTZ), try_cast(r."@timestamp" AS TIMESTAMPTZ)) AS occurred_at,
    CASE WHEN issuing THEN 'credential_issue' WHEN r.eventType = 'AwsConsoleSignIn' THEN 'signin'
         WHEN r.eventType = 'AwsServiceEvent' OR event_name IS NULL THEN 'other' ELSE 'action' END AS category,
    coalesce(u.arn, u.principalId, u.invokedBy) AS actor_id,
    CASE WHEN u.type = 'AWSService' THEN 'service' WHEN u.sessionContext.ec2RoleDelivery IS NOT NULL THEN 'workload'
         ELSE 'unknown' END AS actor_type,
    cred AS credential_id,
    CASE WHEN cred LIKE 'AKIA%' THEN 'aws_long_term_key' WHEN cred LIKE 'ASIA%' THEN 'aws_temporary_key'
         WHEN cred IS NOT NULL THEN 'aws_access_key' END AS credential_type,
    CASE WHEN issuing THEN u.accessKeyId END AS parent_credential_id,
    regexp_replace(event_source, '\\.amazonaws\\.com$', '') || ':' || event_name AS action,
    coalesce(first_arn,
             CASE WHEN event_source = 's3.amazonaws.com' AND json_extract_string(req, '$.bucketName') IS NOT NULL
                  THEN 'arn:aws:s3:::' || json_extract_string(req, '$.bucketName')
                       || coalesce('/' || json_extract_string(req, '$.key'), '') END,
             CASE WHEN issuing THEN json_extract_string(req, '$.roleArn') END) AS resource,
    coalesce(CASE json_type(r.readOnly) WHEN 'BOOLEAN' THEN json_extract_string(r.readOnly, '$') = 'true' END,
             regexp_matches(event_name, '^(Get|List|Describe|Head|Lookup|BatchGet|Search|Select)')) AS read_only,
    CASE WHEN r.errorCode IS NULL THEN 'success'
         WHEN regexp_matches(r.errorCode, 'AccessDenied|Unauthorized|Forbidden|NotAuthorized') THEN 'denied'
         ELSE 'failure' END AS outcome,
    r.errorCode AS error_code,
    coalesce(r.recipientAccountId, u.accountId) AS account,
    r.awsRegion AS region, r.sourceIPAddress AS src_ip, r.userAgent AS user_agent,
    CASE WHEN issuing THEN json_extract_string(req, '$.sourceIdentity') ELSE u.sessionContext.sourceIdentity END
        AS task_id,
    CASE WHEN issuing THEN coalesce(
        try_strptime(json_extract_string(resp, '$.credentials.expiration'), '%b %d, %Y, %I:%M:%S %p'),
        try_strptime(json_extract_string(resp, '$.credentials.expiration'), '%b %d, %Y %I:%M:%S %p')
    )::TIMESTAMP AT TIME ZONE 'UTC' END AS expires_at,
    CASE WHEN issuing THEN json_object('holder', json_extract_string(resp, '$.assumedRoleUser.arn'),
                                       'session_tags', json_extract(req, '$.tags'))
         ELSE json_object('identity_type', u.type, 'session_issuer', u.sessionContext.sessionIssuer.arn) END
        AS details,
    rec AS raw,
    r.eventID || '|' || coalesce(r.eventTime, '') || '|' || coalesce(event_name, '') || '|'
        || coalesce(r.recipientAccountId, '') AS dedupe_key
FROM keyed
"""

BASELINE = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("SET TimeZone = 'UTC'")
files = "'" + (sys.argv[2] + "/*.json.gz").replace("'", "''") + "'"
con.execute(sys.argv[3].replace("{files}", files))
print(con.execute("SELECT count(*) FROM events").fetchone()[0])
"""

# The floor ladder: what no loader of these files can beat. Decompressing them (zlib, every file
# on its own thread: zlib releases the GIL), and DuckDB's bare parse of the same files into
# records (read_json_objects + the Records unnest, counted: no columns, no table written).
DECOMPRESS = """
import sys, zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
def inflate(path):
    decomp, total = zlib.decompressobj(16 + zlib.MAX_WBITS), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            total += len(decomp.decompress(chunk))
    return total
with ThreadPoolExecutor(int(sys.argv[2])) as pool:
    print(sum(pool.map(inflate, sorted(Path(sys.argv[1]).glob("*.json.gz")))))
"""

PARSE = """
import sys, duckdb
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
files = "'" + (sys.argv[1] + "/*.json.gz").replace("'", "''") + "'"
print(con.execute(
    "SELECT count(*) FROM (SELECT unnest(json_extract(json, '$.Records[*]')) FROM "
    f"read_json_objects({files}, format = 'unstructured', maximum_object_size = 1073741824))"
).fetchone()[0])
"""

LIBRARY = """
import sys
from pathlib import Path
from nhiaudit import ingest, store
con = store.connect(Path(sys.argv[1]))
result = ingest.ingest(con, [Path(sys.argv[2])])
con.close()
print(sum(f.loaded for f in result.files), sum(f.rejected for f in result.files))
"""


def run(argv: list[str]) -> tuple[float, float, int, str]:
    """Run a child process: its wall time, its CPU time (user + system, all threads), its own
    peak RSS in bytes (``wait4`` rusage of that child alone) and its stdout."""
    started = time.perf_counter()
    # Files, not pipes: a child never waits on a full pipe while we wait for it.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code != 0:
        raise SystemExit(f"{argv[:3]} failed with {code}:\n{stderr[-3000:]}\n{stdout[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, help="number of records")
    parser.add_argument("--runs", type=int, default=1, help="rounds of every side; each keeps its fastest")
    parser.add_argument("--skip-library", action="store_true", help="time only the CLI and DuckDB")
    parser.add_argument("--per-file", type=int, default=PER_FILE, help="records per file (100: many small files)")
    parser.add_argument(
        "--mix", default="calls", help=f"record mixes to time, comma-separated, of {', '.join(MIXES)} (default calls)"
    )
    args = parser.parse_args()
    for mix in args.mix.split(","):
        if mix not in MIXES:
            raise SystemExit(f"--mix: unknown mix {mix!r}; known: {', '.join(MIXES)}")
        bench(args, mix)


def bench(args: argparse.Namespace, mix: str) -> None:
    suffix = ("" if args.per_file == PER_FILE else f"-{args.per_file}") + ("" if mix == "calls" else f"-{mix}")
    data = DATA / f"cloudtrail-{args.n}{suffix}"
    generate(args.n, data, args.per_file, mix)
    nhiaudit = shutil.which("nhiaudit") or str(Path(sys.executable).with_name("nhiaudit"))
    sides = {
        "DuckDB alone": lambda db: [sys.executable, "-c", BASELINE, str(db), str(data), BASELINE_SQL],
        "nhiaudit CLI": lambda db: [nhiaudit, "ingest", "--db", str(db), str(data)],
    }
    if not args.skip_library:
        sides["nhiaudit library"] = lambda db: [sys.executable, "-c", LIBRARY, str(db), str(data)]
    floors = {
        "decompress": [sys.executable, "-c", DECOMPRESS, str(data), str(os.cpu_count() or 1)],
        "DuckDB parse": [sys.executable, "-c", PARSE, str(data)],
    }
    # Rounds interleave the sides, so that a busy moment on the machine does not fall on one side
    # only; each side keeps its fastest round.
    results: dict[str, tuple[float, float, int]] = {}
    with tempfile.TemporaryDirectory(prefix="nhiaudit-bench-") as tmp:
        for attempt in range(args.runs):
            for name, command in floors.items():
                wall, cpu, rss, out = run(command)
                if name == "DuckDB parse" and int(out.split()[-1]) != args.n:  # (after DuckDB's progress bar)
                    raise SystemExit(f"{name}: {out.split()[-1]} records parsed, expected {args.n:,}")
                if name not in results or wall < results[name][0]:
                    results[name] = (wall, cpu, rss)
            for name, command in sides.items():
                db = Path(tmp) / f"{name.replace(' ', '-')}-{attempt}.duckdb"
                wall, cpu, rss, _ = run(command(db))
                rows = _count(db)
                if rows != args.n:
                    raise SystemExit(f"{name}: {rows:,} events stored, expected {args.n:,}")
                if name not in results or wall < results[name][0]:
                    results[name] = (wall, cpu, rss)
                db.unlink()
                Path(str(db) + ".wal").unlink(missing_ok=True)

    base_wall, base_cpu, _ = results["DuckDB alone"]
    files = len(list(data.glob("*.json.gz")))
    print(
        f"\n{args.n:,} CloudTrail records ({mix} mix), {files:,} gzip files "
        f"({_size(data)}), {os.cpu_count()} CPUs, best of {args.runs}"
    )
    print(
        f"{'side':<18}{'wall s':>8}{'records/s':>11}{'files/s':>9}{'vs DuckDB':>11}{'CPU s':>8}{'CPU vs':>8}"
        f"{'peak RSS MB':>13}"
    )
    for name, (wall, cpu, rss) in results.items():
        print(
            f"{name:<18}{wall:>8.2f}{args.n / wall:>11,.0f}{files / wall:>9,.0f}{wall / base_wall:>10.2f}x"
            f"{cpu:>8.2f}{cpu / base_cpu:>7.2f}x{rss / 1e6:>13,.0f}"
        )
    # The ladder: each side's wall time over each floor (decompressing, then DuckDB's bare parse).
    floor_names = list(floors)
    print(f"\n{'floor ladder':<18}" + "".join(f"{'vs ' + f:>16}" for f in floor_names))
    for name, (wall, _, _) in results.items():
        if name in floors:
            continue
        print(f"{name:<18}" + "".join(f"{wall / results[f][0]:>15.2f}x" for f in floor_names))
    print(f"{'DuckDB parse':<18}{results['DuckDB parse'][0] / results['decompress'][0]:>15.2f}x")


def _count(db: Path) -> int:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        con.close()


if __name__ == "__main__":
    main()
