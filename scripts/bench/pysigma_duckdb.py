#!/usr/bin/env python3
"""pySigma + its DuckDB backend over the same events as trailwarden's detection benchmark.

Converts SigmaHQ's Kubernetes audit rules with pySigma-backend-duckdb, loads the JSONL events
into DuckDB (one thread) with one column per Sigma field the queries use, then runs every query.
Prints one JSON line: rules converted / failed, load seconds, query seconds, matches.

usage: pysigma_duckdb.py EVENTS.jsonl SIGMA_RULE_DIR RUNS
"""
import json, pathlib, re, sys, time

import duckdb
from sigma.collection import SigmaCollection
from sigma_backend_duckdb import DuckDBBackend

events, rule_dir, runs = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3])
backend = DuckDBBackend()
queries, failed = [], []
for f in sorted(rule_dir.rglob('*.yml')):
    try:
        for q in backend.convert(SigmaCollection.from_yaml(f.read_text())):
            queries.append((f.name, q))
    except Exception as e:  # noqa: BLE001 - report which rule and why
        failed.append((f.name, str(e).splitlines()[0][:120]))

# every field the queries name: "quoted.dotted" identifiers and bare ones before an operator
fields = set(re.findall(r'"([^"]+)"', ' '.join(q for _, q in queries)))
for _, q in queries:
    fields.update(re.findall(r'\b([A-Za-z_][A-Za-z0-9_]*)\s*(?:=|ILIKE |IN |IS )', q))
fields -= {'logs'}

con = duckdb.connect()
con.execute('SET threads = 1')
cols = ', '.join(f"j ->> '$.{f}' AS \"{f}\"" for f in sorted(fields))
loads, qtimes, matches = [], [], 0
for _ in range(runs):
    con.execute('DROP TABLE IF EXISTS logs')
    t = time.perf_counter()
    con.execute(f"CREATE TABLE logs AS SELECT {cols} FROM (SELECT json AS j FROM read_json_objects('{events}', format='newline_delimited'))")
    loads.append(time.perf_counter() - t)
    t = time.perf_counter()
    matches = 0
    for name, q in queries:
        # numbers compared as text columns: let DuckDB cast the literal
        matches += con.execute(f'SELECT count(*) FROM ({q})').fetchone()[0]
    qtimes.append(time.perf_counter() - t)
n = con.execute('SELECT count(*) FROM logs').fetchone()[0]
med = lambda xs: sorted(xs)[len(xs) // 2]
print(json.dumps({'events': n, 'rules_converted': len(queries), 'rules_failed': failed,
                  'load_seconds': med(loads), 'query_seconds': med(qtimes), 'matches': matches}))
