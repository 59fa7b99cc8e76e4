#!/usr/bin/python3
"""compare.py [NEW] [BASELINE]: each benchmark figure of a run against a baseline run.

Runs are bench/results/*.json (one BENCH_JSON object per line, written by bench/run.sh). NEW
defaults to the newest run, BASELINE to bench/results/baseline.json, else the oldest run. Figures
are matched by their benchmark and their descriptive (string) fields; each numeric figure's
ratio new/baseline is normalized by the two runs' measured fp32 GEMM peaks (a run on a slower
or busier machine is not a regression), and a change of more than 10 % in the wrong direction
is flagged. Exit status 1 when something regressed.
"""
import glob, json, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
HIGHER = ("per_s", "fraction", "speedup", "gflops")
LOWER = ("_ms", "_us", "_s", "overhead", "failed", "bytes")


def load(path):
    rows = []
    for line in open(path):
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows


def key(r):
    return tuple(sorted((k, v) for k, v in r.items() if isinstance(v, str) and k != "commit"))


def direction(name):
    if any(name.endswith(h) or h in name for h in HIGHER):
        return 1
    if any(name.endswith(l) or l in name for l in LOWER):
        return -1
    return 0


def main():
    runs = sorted(p for p in glob.glob(os.path.join(HERE, "results", "*.json"))
                  if not p.endswith("baseline.json"))
    new = sys.argv[1] if len(sys.argv) > 1 else (runs[-1] if runs else None)
    base = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "results", "baseline.json")
    if not os.path.exists(base):
        base = runs[0] if runs else None
    if not new or not base:
        print("bench-compare: no saved runs (run make bench first)")
        return 0
    N, B = load(new), load(base)
    peak = lambda rows: next((r["fp32"] for r in rows if r.get("bench") == "peak"), None)
    pn, pb = peak(N), peak(B)
    scale = pn / pb if pn and pb else 1.0
    print("new %s vs baseline %s; fp32 peak %s vs %s (figures normalized by %.3f)" %
          (os.path.basename(new), os.path.basename(base), pn, pb, scale))
    bidx = {key(r): r for r in B}
    bad = 0
    for r in N:
        b = bidx.get(key(r))
        if not b or r.get("bench") == "peak":
            continue
        label = " ".join(str(v) for k, v in key(r))
        for f, v in r.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or f not in b:
                continue
            d, bv = direction(f), b[f]
            if not d or not bv:
                continue
            # time-like figures shrink on a faster machine, rates grow: normalize both ways
            norm = v / scale if d > 0 else v * scale
            ratio = norm / bv
            worse = (d > 0 and ratio < 0.9) or (d < 0 and ratio > 1.1)
            bad += worse
            print("%-7s %-60s %-22s %12.4g -> %12.4g  x%.3f" %
                  ("REGRESS" if worse else "ok", label[:60], f, bv, v, ratio))
    print("bench-compare: %d regression(s) over 10 %%" % bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
