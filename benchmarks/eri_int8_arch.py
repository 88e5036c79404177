"""eri_dual_branch against eri_int8: every artifact of several runs timed interleaved in ONE process.

`edgeaffect bench` interleaves the variants of one run; comparing two architectures on a busy machine
needs them in the same rounds too, or the load of the moment decides. One thread per runtime, as bench.

    python benchmarks/eri_int8_arch.py runs/eri/dual-s0 runs/eri/int8-s0 runs/eri/int8-s0/pruned-0.4 \
        --out benchmarks/results/eri-int8-arch.json
"""
from __future__ import annotations

import argparse
from pathlib import Path


from edgeaffect.bench import BenchConfig, _open, _Variant, choose, machine_info, percentiles, runnable, time_interleaved
from edgeaffect.fileio import write_json
from edgeaffect.runs import load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--precisions", default="fp32,bf16,int8")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timed inference per variant")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    cfg = BenchConfig(batches=tuple(int(b) for b in args.batches.split(",")), budget_s=args.budget,
                      rounds=args.rounds, threads=1)
    variants, names = [], {}
    for run in args.runs:
        spec = load_run(run).spec
        found, skipped = runnable(choose(run, ["onnxruntime", "openvino"], args.precisions.split(",")), say=print)
        for a in found:
            for b in cfg.batches:
                v = _Variant(a, b, runtime=_open(a, b, cfg.threads), feeds=spec.dummy_inputs(b))
                variants.append(v)
                names[id(v)] = f"{run.name}/{a.label} bs{b}"
    time_interleaved(variants, cfg, tick=lambda: print(".", end="", flush=True))
    rows = []
    for v in variants:
        cov = v.runtime.int8_coverage() if v.artifact.precision == "int8" else None
        rows.append({"variant": names[id(v)], "runtime": v.artifact.runtime, "precision": v.artifact.precision,
                     "batch": v.batch, **percentiles(v.times), "iterations": len(v.times), "int8_coverage": cov})
        v.runtime.close()
    write_json(args.out, {"machine": machine_info(cfg.threads), "config": vars(args) | {"runs": [str(r) for r in args.runs],
                                                                                        "out": str(args.out)},
                          "rows": rows})
    print()
    for r in rows:
        cov = f"  int8 MACs {r['int8_coverage']['macs']:.0%}" if r["int8_coverage"] else ""
        print(f"{r['variant']:<60} p50 {r['p50_ms']:8.2f} ms  p90 {r['p90_ms']:8.2f}{cov}")


if __name__ == "__main__":
    main()
