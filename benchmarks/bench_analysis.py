"""Benchmark analyze_run: every pruned layer measured at all rounds at once against round by round.

    python benchmarks/bench_analysis.py [--threads 1] [--repeats 5] [--steps 40]

Trains one demo-sized run into a temporary folder (the demo preset's config: 1D rings of 64
pixels, 32 hidden units, 12 rounds of 20% pruning, so 13 rounds; ``--steps`` training steps a
round, since only the weights' shapes and sparsities matter here) and analyses it (figures off,
probe set of analyze_run's default size, 4096) three ways:

* batched: ``analyze_run(run, figures=False, force=True)``, the package's code: one call per
  measure for all rounds of a layer (one GEMM for every round's first-layer pre-activations, one
  kurtosis pass, one non-Gaussianity null with every round's placements, one cavity call), class
  moments reduced in cache-sized blocks, the tables built once;
* per round, previous kernels: ``per_round_analysis`` below, the previous analyze_run kept as the
  reference: the metric functions called once per (round, layer), a DataFrame per (round, layer),
  and the kernels it used then, copied below: kurtosis by scatter sums over the whole probe set,
  the null's pre-activations of every shuffle materialized, ipr_null one draw at a time;
* per round, current kernels: the same loop with the package's class_kurtosis, nongaussianity_null
  and ipr_null, to show how much of the gain is batching alone.

All three write the same three tables (units, rounds, cavity), checked equal (rtol 1e-10, atol
1e-12: cavity scores are differences of kurtosis values near 1) before timing. Prints the best of
``--repeats`` seconds per run of each (one run, interleaved) and the ratios; the target is >= 3x
against the previous implementation.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from ticketscope.analysis import SAMPLES_PER_GROUP, analyze_run
from ticketscope.config import load_run_config, parse_config
from ticketscope.data import Dataset, make_dataset
from ticketscope.experiments.presets import preset_path
from ticketscope.io import write_json, write_table
from ticketscope.metrics import (ClassKurtosis, NongaussianityNull, cavity_analysis, cavity_groups, class_cavity_scores,
                                 class_kurtosis, ipr, ipr_null, nongaussianity, nongaussianity_null, pool_classes,
                                 spatial_localization)
from ticketscope.models import FCN, layer_index
from ticketscope.provenance import provenance
from ticketscope.runs import completed_rounds, load_round_file, prunable_layers, run_experiment
from ticketscope.seeding import derive_seed, generator

TABLES = ("units", "rounds", "cavity")


def demo_run(out: Path, steps: int) -> Path:
    """A run of the demo preset's base config (IMP, seed 0) with ``steps`` training steps a round."""
    base = yaml.safe_load(preset_path("demo").read_text())["base"]
    base["train"]["steps"] = steps
    run_experiment(parse_config({**base, "prune": {**base["prune"], "method": "imp"}}), out, progress=False)
    return out


def previous_grouped_kurtosis(H: torch.Tensor, y: torch.Tensor, groups: int) -> torch.Tensor:
    """(groups, K) kurtosis of H's columns per group as analyze_run computed it before: scatter sums."""
    n = torch.bincount(y, minlength=groups).double()[:, None]
    rows = y[:, None].expand_as(H)

    def group_sum(V: torch.Tensor) -> torch.Tensor:
        return torch.zeros(groups, H.shape[1], dtype=H.dtype).index_add_(0, y, V)

    def group_reduce(op: str) -> torch.Tensor:
        return torch.zeros(groups, H.shape[1], dtype=H.dtype).scatter_reduce_(0, rows, H, op, include_self=False)

    c2 = (H - (group_sum(H) / n)[y]).square()
    kappa = group_sum(c2.square()) / n / (group_sum(c2) / n).square()
    return torch.where(group_reduce("amax") == group_reduce("amin"), torch.nan, kappa)


def previous_class_kurtosis(H: torch.Tensor, y: torch.Tensor, num_classes: int) -> ClassKurtosis:
    per_class = previous_grouped_kurtosis(H, y, num_classes)
    counts = torch.bincount(y, minlength=num_classes)
    overall = previous_grouped_kurtosis(H, torch.zeros_like(y), 1)[0]
    return ClassKurtosis(per_class, pool_classes(per_class, counts), overall, counts)


def previous_nongaussianity_null(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, num_classes: int,
                                 seed: int, shuffles: int = 8) -> NongaussianityNull:
    """The null as computed before: each shuffle's pre-activations, then their class kurtosis."""
    g = generator("nongaussianity_null", seed)
    per_class, pooled = [], []
    for _ in range(shuffles):
        V = W.gather(-1, torch.rand(W.shape, generator=g, dtype=torch.float64).argsort(dim=-1))
        ck = previous_class_kurtosis(X.double() @ V.T, y, num_classes)
        per_class.append(nongaussianity(ck.per_class))
        pooled.append(ck.ng_pooled)
    return NongaussianityNull(torch.stack(per_class).mean(0), torch.stack(pooled).mean(0))


def previous_ipr_null(W: torch.Tensor, shuffles: int = 32) -> torch.Tensor:
    """ipr_null as computed before: the IPR of each Gaussian draw on its own (same draws, seed 0)."""
    nnz = (W != 0).sum(-1, keepdim=True)
    support = torch.arange(max(int(nnz.max()), 1)) < nnz
    g = generator("ipr_null.gaussian", 0)
    return torch.stack([ipr(torch.randn(support.shape, generator=g, dtype=torch.float64) * support)
                        for _ in range(shuffles)]).mean(0)


def current_nongaussianity_null(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, num_classes: int,
                                seed: int) -> NongaussianityNull:
    return nongaussianity_null(W, X, y, num_classes, seed=seed)


KERNELS = {"previous": (previous_class_kurtosis, previous_nongaussianity_null, previous_ipr_null),
           "current": (class_kurtosis, current_nongaussianity_null, ipr_null)}


def per_round_unit_measures(W: torch.Tensor, inputs: torch.Tensor, y: torch.Tensor, ds: Dataset, first: bool,
                            num_classes: int, seed: int, kernels: str) -> pd.DataFrame:
    """Per-unit measures of one layer W (K, D) at one round, as the previous analyze_run computed them."""
    kurtosis_of, null_of, ipr_null_of = KERNELS[kernels]
    W = W.double()
    ck = kurtosis_of(inputs.double() @ W.T, y, num_classes)
    null = null_of(W, inputs, y, num_classes, seed)
    cols = {"unit": np.arange(len(W)), "in_degree": (W != 0).sum(1).numpy(), "ipr": ipr(W).numpy(),
            "ipr_null": ipr_null_of(W).numpy(), "kappa": ck.overall.numpy(), "kappa_pooled": ck.pooled.numpy(),
            "ng": nongaussianity(ck.overall).numpy(), "ng_pooled": ck.ng_pooled.numpy(), "ng_null": null.pooled.numpy()}
    cols["ng_excess"] = cols["ng_pooled"] - cols["ng_null"]
    cols["localization"] = (spatial_localization(W, ds.input_shape, ds.torus).numpy() if first
                            else np.full(len(W), np.nan))
    for c in range(num_classes):
        cols[f"kappa_class{c}"] = ck.per_class[c].numpy()
        cols[f"ng_class{c}"] = nongaussianity(ck.per_class[c]).numpy()
        cols[f"ng_null_class{c}"] = null.per_class[c].numpy()
    return pd.DataFrame(cols)


def per_round_cavity_rows(scores: torch.Tensor, W: torch.Tensor, mask: torch.Tensor, mask_next: torch.Tensor,
                          seed: int) -> tuple[dict[str, float], pd.DataFrame]:
    a = cavity_analysis(scores, W, mask, mask_next, seed=seed)
    stats = {f"cavity_{group}_{k}": v for group in ("removed", "kept", "random")
             for k, v in asdict(getattr(a, group)).items()}
    stats["cavity_spearman_abs_w"] = a.spearman_abs_w
    g = torch.Generator().manual_seed(seed)
    samples = []
    for group, s in cavity_groups(scores, mask, mask_next, seed=seed).items():
        s = s[s.isfinite()]
        s = s[torch.randperm(len(s), generator=g)[:SAMPLES_PER_GROUP]]
        samples.append(pd.DataFrame({"group": group, "score": s.numpy()}))
    return stats, pd.concat(samples, ignore_index=True)


def per_round_analysis(run: Path, out: Path, kernels: str, n_probe: int = 4096) -> None:
    """The previous ``analyze_run(run, n_probe, figures=False, force=True)``, writing into ``out``: one
    (round, layer) at a time, with the ``kernels`` ("previous" or "current") for kurtosis, its null and ipr_null."""
    cfg = load_run_config(run)
    ds = make_dataset(cfg.data)
    X, y = ds.test(n_probe, seed=derive_seed(cfg.seed, "analysis-probe"))
    model = FCN(ds.input_dim, ds.num_classes, cfg.model).eval()
    done = completed_rounds(run)
    states = [load_round_file(run, s, "final.safetensors") for s in done]
    units, rounds, cavity = [], [], []
    for r, (summary, state) in enumerate(zip(done, states)):
        model.load_state_dict(state)
        with torch.no_grad():
            inputs = model.layer_inputs(X)
        for name in prunable_layers(cfg):
            i = layer_index(name)
            W, mask = state[f"{name}.weight"], state[f"{name}.mask"]
            u = per_round_unit_measures(W, inputs[i], y, ds, i == 0, ds.num_classes,
                                        derive_seed(cfg.seed, "ng-null", r, name), kernels)
            u.insert(0, "layer", name)
            u.insert(0, "round", r)
            units.append(u)
            alive = u[u["in_degree"] > 0]
            row = {"round": r, "layer": name, "density": summary["layer_density"][name],
                   "test_accuracy": summary["test_accuracy"], "connected": len(alive) / len(u)}
            per_class = [f"{k}_class{c}" for k in ("kappa", "ng", "ng_null") for c in range(ds.num_classes)]
            for col in ("ipr", "ipr_null", "localization", "kappa", "kappa_pooled", "ng", "ng_pooled", "ng_null",
                        "ng_excess", *per_class):
                row[col] = float(alive[col].mean()) if alive[col].notna().any() else np.nan
            row["ipr_max"] = float(alive["ipr"].max()) if alive["ipr"].notna().any() else np.nan
            if r + 1 < len(done):
                scores = class_cavity_scores(W.double(), inputs[i].double(), y, ds.num_classes)
                stats, samples = per_round_cavity_rows(scores, W, mask, states[r + 1][f"{name}.mask"],
                                                       derive_seed(cfg.seed, "cavity", r))
                row.update(stats)
                row["cavity_removed_minus_random"] = stats["cavity_removed_mean"] - stats["cavity_random_mean"]
                samples.insert(0, "layer", name)
                samples.insert(0, "round", r)
                cavity.append(samples)
            rounds.append(row)
    for table, frame in zip(TABLES, (pd.concat(units, ignore_index=True), pd.DataFrame(rounds),
                                     pd.concat(cavity, ignore_index=True))):
        write_table(out / f"{table}.parquet", frame)
    write_json(out / "analysis.json", {"rounds": len(done), "n_probe": n_probe, "provenance": provenance("cpu")})


def best_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Smallest wall time of ``repeats`` calls of each function (after one warm-up call each),
    the functions taking turns so that a busy machine slows them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: a sweep analyses one run per core)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (best kept)")
    parser.add_argument("--steps", type=int, default=40, help="training steps a round of the benchmark's run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        run = demo_run(Path(tmp) / "run", args.steps)
        batched = analyze_run(run, figures=False, force=True)
        fns: dict[str, Callable[[], object]] = {"batched": lambda: analyze_run(run, figures=False, force=True)}
        for kernels in KERNELS:
            (Path(tmp) / kernels).mkdir()
            fns[kernels] = partial(per_round_analysis, run, Path(tmp) / kernels, kernels)
            fns[kernels]()
            for table in TABLES:
                pd.testing.assert_frame_equal(pd.read_parquet(batched / f"{table}.parquet"),
                                              pd.read_parquet(Path(tmp) / kernels / f"{table}.parquet"),
                                              rtol=1e-10, atol=1e-12)
        rounds = len(completed_rounds(run))
        t = best_times(fns, args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; demo-sized run of {rounds} rounds;"
          f" the three analyses' tables agree")
    print(f"    per round, previous kernels (previous analyze_run)  {t['previous']:7.3f} s per run")
    print(f"    per round, current kernels                          {t['current']:7.3f} s per run")
    print(f"    batched (analyze_run)                               {t['batched']:7.3f} s per run")
    print(f"    ratio {t['previous'] / t['batched']:.1f}x against the previous implementation (target >= 3x);"
          f" {t['current'] / t['batched']:.1f}x from batching alone")


if __name__ == "__main__":
    main()
