"""DuckDB reference for the query benchmark: the same three queries over the ledger's sealed
Parquet segments, all CPUs, median of RUNS. Prints `name seconds rows sum-of-counts`.

    python3 scripts/bench/duckdb_queries.py DATA_DIR HOUR_START [RUNS]
"""

import os
import statistics
import sys
import time

import duckdb

data, hour = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
segs = f"{data}/seg/*.parquet"
con = duckdb.connect()
con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{segs}') WHERE kind = 1")
queries = {
    "q1": "SELECT \"user\", count(*) AS count_ FROM events GROUP BY \"user\" ORDER BY count_ DESC LIMIT 10",
    "q2": f"""SELECT "user", trusted_ip, count(*) AS count_ FROM events
              WHERE coalesce("time", received)
                    BETWEEN '{hour}'::TIMESTAMPTZ_NS AND ('{hour}'::TIMESTAMPTZ + INTERVAL 1 HOUR)::TIMESTAMPTZ_NS
                AND status_code = 403
              GROUP BY "user", trusted_ip""",
    "q3": """SELECT count(*) FROM events
             WHERE json_extract_string(decode(raw), '$.verb') = 'create'
               AND json_extract_string(decode(raw), '$.objectRef.resource') = 'clusterrolebindings'
               AND json_extract_string(decode(raw), '$.requestObject.roleRef.name') = 'cluster-admin'""",
}
only = os.environ.get("QUERIES")  # e.g. QUERIES=q1,q2, as query_bench takes it
for name, q in queries.items():
    if only and name not in only.split(","):
        continue
    times = []
    rows = 0
    for _ in range(runs):
        t = time.time()
        res = con.execute(q).fetchall()
        times.append(time.time() - t)
        rows = len(res)
    total = sum(r[-1] for r in res)
    print(name, f"{statistics.median(times):.4f}", rows, total)
