"""Per-query time of edgeroute builds against pandana, in alternating short bursts.

This machine's speed drifts by up to 2x within minutes, so separate runs of each side are
not comparable; here every round times pandana's raw C++ query (10,000 random node pairs,
as ../shared/tools/anchors-routing/bench.py does) and then each `ch_queries` binary given
(by default route with geometry and node ids and 1x1 table; `--modes` picks others, and a
binary that does not know a mode is skipped for it; 1,000 Porto pairs x 10), and the ratios
are taken within a round: each binary against pandana, and every later binary against the
first. Run with the venv that bench.py uses, after its extract.py, pinned to one core so
that both sides run where the other did:

    OMP_NUM_THREADS=1 taskset -c 1 $VENV/bin/python scripts/routes-vs-pandana.py porto.graph \\
        before/ch_queries after/ch_queries
"""

import argparse
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandana
import pandas as pd

ap = argparse.ArgumentParser()
ap.add_argument("artifact", help="Porto graph artifact (ch_profile porto.osm.pbf porto.graph)")
ap.add_argument("binaries", nargs="+", help="ch_queries binaries to compare")
ap.add_argument("--rounds", type=int, default=11)
ap.add_argument("--modes", nargs="+", default=["route", "pair"],
                help="ch_queries modes to time (route, geometry, summary, pair)")
ap.add_argument("--npz", default=str(Path(tempfile.gettempdir()) / "anchors-routing" / "porto_graph.npz"))
args = ap.parse_args()

z = np.load(args.npz)
lon, lat, dur = z["lon"], z["lat"], z["duration_s"]
u, v = z["u_idx"].astype(np.int64), z["v_idx"].astype(np.int64)
n = len(lon)
rng = np.random.default_rng(42)
src, dst = rng.integers(0, n, 10000), rng.integers(0, n, 10000)
same = src == dst
while same.any():
    dst[same] = rng.integers(0, n, int(same.sum()))
    same = src == dst
idx = pd.Index(np.arange(n, dtype=np.int64))
net = pandana.Network(pd.Series(lon, index=idx), pd.Series(lat, index=idx), pd.Series(u),
                      pd.Series(v), pd.DataFrame({"duration_s": dur}), twoway=False)
net.shortest_path_lengths(src[:100], dst[:100], imp_name="duration_s")  # warm-up

res = {"pandana": []}
for r in range(args.rounds):
    t0 = time.perf_counter()
    net.net.shortest_path_distances(src, dst, 0)
    res["pandana"].append((time.perf_counter() - t0) / len(src) * 1e6)
    for b in args.binaries:
        for mode in args.modes:
            run = subprocess.run([b, args.artifact, mode, "1000", "10"], capture_output=True,
                                 text=True)
            if run.returncode != 0 and "unknown mode" in run.stderr:
                continue  # an older build without this mode
            run.check_returncode()
            res.setdefault(f"{b} {mode}", []).append(
                float(re.search(r"([\d.]+) us per query", run.stdout).group(1)))
    print(f"round {r + 1}: " + ", ".join(f"{k} {x[-1]:.2f}" for k, x in res.items()), flush=True)

for k, xs in res.items():
    line = f"{k}: median {statistics.median(xs):.2f} us (min {min(xs):.2f}, max {max(xs):.2f})"
    if k != "pandana":
        ratios = [x / p for x, p in zip(xs, res["pandana"])]
        line += (f"; / pandana in the same round: median {statistics.median(ratios):.2f}"
                 f" (range {min(ratios):.2f}-{max(ratios):.2f})")
    print(line)

# Each later binary against the first, mode by mode, within the same round: the before/after
# figure, steadier than either side's time against pandana.
first = args.binaries[0]
for b in args.binaries[1:]:
    for mode in args.modes:
        before, after = res.get(f"{first} {mode}"), res.get(f"{b} {mode}")
        if before and after:
            ratios = [y / x for x, y in zip(before, after)]
            print(f"{b} {mode} / {first} {mode} in the same round: median "
                  f"{statistics.median(ratios):.3f} (range {min(ratios):.2f}-{max(ratios):.2f})")
