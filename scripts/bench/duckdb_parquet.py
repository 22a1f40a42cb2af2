"""DuckDB reference for the ledger ingest benchmark.

Converts a Kubernetes audit JSONL file to zstd Parquet with the same columns a trailwarden segment
holds (the raw line plus the extracted query columns), on one thread: the ledger's work minus
hashing, signing, classification and fsync. Prints "rows seconds" for the median of RUNS runs.

    python3 scripts/bench/duckdb_parquet.py INPUT.jsonl OUT.parquet [RUNS]
"""

import statistics
import sys
import time

import duckdb

src, dst = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3

# One parse per line: json_extract_string with a list of paths returns a list.
PATHS = [
    "$.stageTimestamp",
    "$.user.username",
    "$.user.uid",
    "$.impersonatedUser.username",
    "$.verb",
    "$.responseStatus.code",
    "$.responseStatus.reason",
    "$.responseStatus.message",
    "$.userAgent",
    "$.objectRef.apiGroup",
    "$.objectRef.apiVersion",
    "$.objectRef.resource",
    "$.objectRef.subresource",
    "$.objectRef.namespace",
    "$.objectRef.name",
    "$.requestURI",
    "$.stage",
    "$.level",
    '$.annotations."authorization.k8s.io/decision"',
    '$.annotations."authorization.k8s.io/reason"',
]
paths = "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in PATHS) + "]"
f = {p: i + 1 for i, p in enumerate(PATHS)}


def col(path: str) -> str:
    return f"v[{f[path]}]"


query = f"""
COPY (
  SELECT
    row_number() OVER () AS idx,
    1::UTINYINT AS kind,
    now() AS received,
    'file:{src}' AS source,
    json::BLOB AS raw,
    'k8s-audit' AS format,
    'kube-audit' AS category,
    try_cast({col('$.stageTimestamp')} AS TIMESTAMPTZ) AS time,
    {col('$.user.username')} AS "user",
    {col('$.user.uid')} AS user_uid,
    try_cast(json_extract(json, '$.user.groups') AS VARCHAR[]) AS user_groups,
    {col('$.impersonatedUser.username')} AS impersonated,
    {col('$.verb')} AS action,
    CASE WHEN try_cast({col('$.responseStatus.code')} AS BIGINT) < 400 THEN 'success' ELSE 'failure' END AS outcome,
    try_cast({col('$.responseStatus.code')} AS BIGINT) AS code,
    {col('$.responseStatus.reason')} AS reason,
    {col('$.responseStatus.message')} AS status_message,
    try_cast(json_extract(json, '$.sourceIPs') AS VARCHAR[]) AS ips,
    try_cast(json_extract(json, '$.sourceIPs') AS VARCHAR[])[1] AS trusted_ip,
    {col('$.userAgent')} AS user_agent,
    {col('$.objectRef.apiGroup')} AS api_group,
    {col('$.objectRef.apiVersion')} AS api_version,
    {col('$.objectRef.resource')} AS resource,
    {col('$.objectRef.subresource')} AS subresource,
    {col('$.objectRef.namespace')} AS namespace,
    {col('$.objectRef.name')} AS name,
    {col('$.requestURI')} AS request_uri,
    {col('$.stage')} AS stage,
    {col('$.level')} AS level,
    {col('$.annotations."authorization.k8s.io/decision"')} AS decision,
    {col('$.annotations."authorization.k8s.io/reason"')} AS authz_reason
  FROM (
    SELECT json, json_extract_string(json, {paths}) AS v
    FROM read_ndjson_objects('{src}')
  )
) TO '{dst}' (FORMAT parquet, COMPRESSION zstd)
"""

con = duckdb.connect()
con.execute("SET threads=1")
times = []
for _ in range(runs):
    t = time.time()
    con.execute(query)
    times.append(time.time() - t)
rows = con.execute(f"SELECT count(*) FROM '{dst}'").fetchone()[0]
print(rows, statistics.median(times))
