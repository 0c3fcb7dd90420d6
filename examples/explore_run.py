"""Train a small IMP run, then open it from Python as a notebook would: config, per-round summary,
analysis tables, weights at any round and a ready-to-evaluate model.

    python examples/explore_run.py OUT_DIR [--steps 200] [--rounds 3]
"""

from __future__ import annotations

import argparse

import torch

import ticketscope
from ticketscope.config import parse_config
from ticketscope.runs import run_experiment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cfg = parse_config({"data": {"name": "nlgp", "L": 16, "dim": 1, "xis": [1.0, 3.0], "gain": 10.0, "online": True},
                        "model": {"hidden": [8]}, "train": {"steps": args.steps, "batch_size": 64},
                        "prune": {"rounds": args.rounds, "n_probe": 512}})
    run_experiment(cfg, args.out, progress=False)

    run = ticketscope.open_run(args.out)
    print(run.summary[["round", "density", "test_accuracy"]].to_string(index=False))
    last = run.rounds[-1]
    units = run.analysis("units")
    best = units[(units["round"] == last) & (units["layer"] == "layers.0")].nsmallest(1, "localization").iloc[0]
    w = run.weights(last)["layers.0"][int(best["unit"])]
    print(f"most localized unit at round {last}: #{int(best['unit'])}, localization {best['localization']:.3f}, "
          f"{int((w != 0).sum())} inputs kept at {torch.nonzero(w).flatten().tolist()}")
    X, y = run.dataset().test(1024, seed=123)
    with torch.no_grad():
        accuracy = (run.model(last)(X).argmax(1) == y).double().mean().item()
    print(f"accuracy of the round-{last} model on 1024 fresh samples: {accuracy:.3f}")


if __name__ == "__main__":
    main()
