#!/usr/bin/env python3
"""compare_jsonl.py A.jsonl B.jsonl TOL: the `cge embed --output both` lines of two runs (the
CPU and a device backend) agree: per line, the fused embedding and every slot vector within a
relative error (|a - b| / |b|, Euclidean) of TOL, and the same selected experts. Prints the worst
error per vector kind; exits 1 on any disagreement."""
import json, math, sys


def rel(a, b):
    num = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))
    den = math.sqrt(sum(y * y for y in b)) or 1.0
    return num / den if len(a) == len(b) else math.inf


def main():
    a_path, b_path, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
    A = [json.loads(l) for l in open(a_path) if l.strip()]
    B = [json.loads(l) for l in open(b_path) if l.strip()]
    if len(A) != len(B) or not A:
        sys.exit(f"compare_jsonl: {len(A)} vs {len(B)} lines")
    worst, bad = {}, 0
    for i, (x, y) in enumerate(zip(A, B)):
        pairs = [("fused", x.get("embedding"), y.get("embedding"))]
        for slot, v in (y.get("slots") or {}).items():
            u = (x.get("slots") or {}).get(slot)
            pairs.append((slot, u.get("embedding") if isinstance(u, dict) else u,
                          v.get("embedding") if isinstance(v, dict) else v))
        for name, u, v in pairs:
            if u is None and v is None:
                continue
            e = rel(u or [], v or [])
            worst[name] = max(worst.get(name, 0.0), e)
            if not e <= tol:
                bad += 1
                print(f"line {i + 1}: {name}: rel {e:.3g} > {tol}")
        if x.get("selected") != y.get("selected"):
            bad += 1
            print(f"line {i + 1}: selected {x.get('selected')} vs {y.get('selected')}")
    for name in sorted(worst):
        print(f"{name}: worst rel {worst[name]:.3g}")
    print(f"compare_jsonl: {len(A)} lines, {bad} disagreements")
    sys.exit(1 if bad else 0)


main()
