"""Per-profile query latency through a running agent (docs/benchmarks.md, issue 15).

Usage: python3 tests/bench/profile_queries.py http://127.0.0.1:PORT
against an agent serving Porto as `car` (default graph) and `truck` (--profile-graph).
Times a 100x100 /table (40 runs) and 300 random /route pairs per profile, three rounds,
alternating profiles so machine drift hits both. HTTP round trips, not engine-only times.
"""
import json, random, statistics, sys, time, urllib.request
base = sys.argv[1]
random.seed(7)
def pts(n):
    return [(round(random.uniform(-8.66, -8.57), 6), round(random.uniform(41.145, 41.185), 6)) for _ in range(n)]
def get(url):
    t = time.perf_counter()
    with urllib.request.urlopen(url) as r:
        body = json.load(r)
    return time.perf_counter() - t, body
table_pts = pts(100)
coords = ";".join(f"{a},{b}" for a, b in table_pts)
pairs = [pts(2) for _ in range(300)]
res = {}
for rnd in range(3):
    for p in ["car", "truck"]:
        ts = []
        for _ in range(40):
            dt, body = get(f"{base}/table/v1/{p}/{coords}")
            assert body["code"] == "Ok", body
            ts.append(dt)
        rs = []
        for a, b in pairs:
            dt, body = get(f"{base}/route/v1/{p}/{a[0]},{a[1]};{b[0]},{b[1]}?overview=false")
            rs.append(dt)
        print(f"round {rnd} {p}: 100x100 table median {statistics.median(ts)*1000:.2f} ms; route median {statistics.median(rs)*1000:.3f} ms (HTTP round trip, 300 pairs)")
