"""One experiment end to end: IMP (or a baseline) rounds, checkpoints, resume, summaries.

Run directory layout::

    config.yaml                  the resolved config (a different config is refused)
    rounds/NNN/start.safetensors model state (weights, masks, norms) when the round's training starts
    rounds/NNN/final.safetensors model state when it ends
    rounds/NNN/masks.safetensors masks of the prunable layers
    rounds/NNN/rewind.safetensors (round 0 only) the rewind point: init or step k
    rounds/NNN/history.parquet   evaluations during training
    rounds/NNN/round.json        written last: the round's summary and its files' SHA-256
    metrics.parquet              one row per completed round (tidy summary)
    run.json                     written when the run is complete: rounds and stop reason

A round counts as done only once its ``round.json`` exists; a killed run restarts with the
first round that lacks one and, since every round is a pure function of files on disk and
the seed, ends bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .config import RunConfig, dump_config, load_config
from .data import Dataset, make_dataset
from .errors import TicketscopeError
from .io import atomic_write_text, exclusive_lock, load_tensors, read_json, save_tensors, write_json, write_table
from .models import FCN
from .pruning import RULES, PruneContext, connected_fraction, densities, survivor_targets
from .seeding import derive_seed, generator
from .training import BatchSource, TrainHooks, evaluate, train


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TicketscopeError("device = cuda but no CUDA GPU is available; set device: cpu (or auto)")
    return torch.device(name)


def prunable_layers(cfg: RunConfig) -> list[str]:
    """Names of the pruned layers: ``prune.layers`` or every layer but the readout."""
    n_layers = len(cfg.model.hidden) + 1
    idx = cfg.prune.layers if cfg.prune.layers is not None else range(n_layers - 1)
    return [f"layers.{i}" for i in sorted(set(idx))]


def round_dir(out: Path, r: int) -> Path:
    return out / "rounds" / f"{r:03d}"


@dataclass
class RunData:
    """Tensors a run trains and evaluates on (on the run's device)."""

    dataset: Dataset
    batches: BatchSource
    train_eval: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]

    @classmethod
    def build(cls, cfg: RunConfig, device: torch.device) -> "RunData":
        ds = make_dataset(cfg.data)
        train_seed = derive_seed(cfg.seed, "data")
        to = lambda t: (t[0].to(device), t[1].to(device))  # noqa: E731
        if cfg.data.online:
            if not ds.infinite:
                raise TicketscopeError(f"data.online: data set {ds.name!r} cannot stream fresh samples")
            batches = BatchSource(cfg.train.batch_size, device, derive_seed(train_seed, "online"), dataset=ds)
            train_eval = to(ds.train(cfg.train.n_eval_train, seed=train_seed))
        else:
            X, y = to(ds.train(cfg.data.n_train, seed=train_seed))
            batches = BatchSource(cfg.train.batch_size, device, train_seed, X=X, y=y)
            train_eval = (X[: cfg.train.n_eval_train], y[: cfg.train.n_eval_train])
        return cls(ds, batches, train_eval, to(ds.test(cfg.data.n_test, seed=train_seed)))

    def probe(self, cfg: RunConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Training inputs and labels the cavity rule measures on (never the test set)."""
        X, y = self.dataset.train(cfg.prune.n_probe, seed=derive_seed(cfg.seed, "probe"))
        return X.to(device), y.to(device)


def _claim_directory(out: Path, cfg: RunConfig) -> None:
    path = out / "config.yaml"
    if path.exists():
        old = load_config(path)
        if old.digest() != cfg.digest():
            raise TicketscopeError(
                f"{out} already holds a run with a different config ({path}); choose another --out "
                "or delete that directory")
        return
    atomic_write_text(path, dump_config(cfg))


def completed_rounds(out: Path) -> list[dict[str, Any]]:
    """Summaries of the contiguous completed rounds 0..r-1 (``round.json`` present)."""
    done = []
    while (round_dir(out, len(done)) / "round.json").exists():
        done.append(read_json(round_dir(out, len(done)) / "round.json"))
    return done


def load_round_file(out: Path, summary: dict[str, Any], name: str) -> dict[str, torch.Tensor]:
    """A checkpoint of a completed round, verified against the checksum in its round.json."""
    return load_tensors(round_dir(out, summary["round"]) / name, summary["files"][name])


class _Progress:
    """Rich progress bars over rounds and steps (or nothing)."""

    def __init__(self, enabled: bool, rounds: int, label: str) -> None:
        self.enabled = enabled
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn())
            self.rounds = self.bar.add_task(f"{label} rounds", total=rounds)
            self.steps = self.bar.add_task("steps", total=1)

    def __enter__(self) -> "_Progress":
        if self.enabled:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)

    def start_round(self, r: int, start: int, total: int) -> None:
        if self.enabled:
            self.bar.update(self.rounds, completed=r)
            self.bar.reset(self.steps, total=total, completed=start, description=f"round {r} steps")

    def step(self, step: int) -> None:
        if self.enabled and step % 25 == 0:
            self.bar.update(self.steps, completed=step + 1)

    def done_round(self, r: int) -> None:
        if self.enabled:
            self.bar.update(self.rounds, completed=r + 1)


def _train_round(model: FCN, cfg: RunConfig, data: RunData, out: Path, r: int, start: int,
                 prunable: list[str], progress: _Progress) -> dict[str, Any]:
    """Train one round from the model's current state; write its files; return its summary."""
    d = round_dir(out, r)
    if d.exists():
        shutil.rmtree(d)  # an incomplete round from a killed run: redo it from scratch
    d.mkdir(parents=True)
    files = {"start.safetensors": save_tensors(d / "start.safetensors", model.state_dict()),
             "masks.safetensors": save_tensors(d / "masks.safetensors", {n: model.masks()[n] for n in prunable})}
    total = data.batches.steps_for(cfg.train)
    history: list[dict[str, Any]] = []

    def snapshot(step: int) -> None:
        files["rewind.safetensors"] = save_tensors(d / "rewind.safetensors", model.state_dict())

    def record(step: int) -> None:
        for split, (X, y) in (("train", data.train_eval), ("test", data.test)):
            loss, acc = evaluate(model, X, y, cfg.train.loss)
            history.append({"round": r, "step": step, "split": split, "loss": loss, "accuracy": acc})

    rewind_at = (cfg.prune.rewind_step if cfg.prune.rewind == "step" else 0) if r == 0 else None
    if rewind_at is not None and rewind_at >= max(total, 1) and cfg.prune.rewind == "step":
        raise TicketscopeError(f"prune.rewind_step = {rewind_at} must be below the training budget of {total} steps")
    progress.start_round(r, start, total)
    t0 = time.perf_counter()
    train(model, data.batches, cfg.train, start, total, r,
          TrainHooks(on_snapshot=snapshot, snapshot_at=rewind_at, on_eval=record, on_step=progress.step))
    elapsed = time.perf_counter() - t0
    record(total)
    files["final.safetensors"] = save_tensors(d / "final.safetensors", model.state_dict())
    write_table(d / "history.parquet", pd.DataFrame(history))
    final = {h["split"]: h for h in history if h["step"] == total}
    dens = densities({n: model.masks()[n] for n in prunable})
    summary = {
        "round": r, "steps": total - start, "train_time_s": elapsed,
        "density": sum(dens[n] * model.masks()[n].numel() for n in prunable)
        / sum(model.masks()[n].numel() for n in prunable),
        "layer_density": dens,
        "connected": {n: connected_fraction(model.masks()[n]) for n in prunable},
        "train_loss": final["train"]["loss"], "train_accuracy": final["train"]["accuracy"],
        "test_loss": final["test"]["loss"], "test_accuracy": final["test"]["accuracy"],
        "files": files,
    }
    write_json(d / "round.json", summary)
    progress.done_round(r)
    return summary


def _next_masks(cfg: RunConfig, model: FCN, data: RunData, out: Path, done: list[dict[str, Any]],
                prunable: list[str], device: torch.device) -> dict[str, torch.Tensor]:
    """Masks of round ``len(done)`` from the last completed round's final weights."""
    r = len(done)
    last = load_round_file(out, done[-1], "final.safetensors")
    weights = {n: last[f"{n}.weight"].to(device) for n in prunable}
    masks = {n: last[f"{n}.mask"].to(device) for n in prunable}
    ctx = PruneContext(round=r, scope=cfg.prune.scope, seed=cfg.seed, cavity_mix=cfg.prune.cavity_mix,
                       targets=survivor_targets({n: m.numel() for n, m in masks.items()},
                                                cfg.prune.fraction, r, cfg.prune.scope))
    if cfg.prune.method == "oneshot":
        dense = load_round_file(out, done[0], "final.safetensors")
        ctx.dense_weights = {n: dense[f"{n}.weight"].to(device) for n in prunable}
    if cfg.prune.method == "cavity":
        model.load_state_dict(last)
        model.eval()
        X, ctx.probe_labels = data.probe(cfg, device)
        with torch.no_grad():
            inputs = model.layer_inputs(X)
        ctx.layer_inputs = {n: inputs[int(n.split(".")[1])] for n in prunable}
    return RULES[cfg.prune.method](weights, masks, ctx)


def _stop_reason(cfg: RunConfig, done: list[dict[str, Any]]) -> str | None:
    last = done[-1]
    if len(done) > cfg.prune.rounds:
        return f"reached prune.rounds = {cfg.prune.rounds}"
    if cfg.prune.target_density > 0 and all(v <= cfg.prune.target_density for v in last["layer_density"].values()):
        return f"reached prune.target_density = {cfg.prune.target_density}"
    return None


def run_experiment(cfg: RunConfig, out_dir: str | Path, progress: bool = True) -> pd.DataFrame:
    """Run (or resume) the experiment ``cfg`` in ``out_dir``; return its per-round summary table."""
    out = Path(out_dir)
    with exclusive_lock(out):
        _claim_directory(out, cfg)
        if (out / "run.json").exists():
            return summary_table(out)
        torch.set_flush_denormal(True)  # as in training, also for the measurements a resumed run redoes
        threads = torch.get_num_threads()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        try:
            return _run_rounds(cfg, out, progress)
        finally:
            torch.set_num_threads(threads)


def _run_rounds(cfg: RunConfig, out: Path, progress: bool) -> pd.DataFrame:
    """The round loop of :func:`run_experiment` (lock held, config claimed)."""
    device = resolve_device(cfg.device)
    data = RunData.build(cfg, device)
    model = FCN(data.dataset.input_dim, data.dataset.num_classes, cfg.model).to(device)
    prunable = prunable_layers(cfg)
    done = completed_rounds(out)
    with _Progress(progress, cfg.prune.rounds + 1, cfg.prune.method) as bar:
        if not done:
            model.reset_parameters(generator(cfg.seed, "init"))
            done.append(_train_round(model, cfg, data, out, 0, 0, prunable, bar))
            write_table(out / "metrics.parquet", summary_table(out, cfg))
        while (reason := _stop_reason(cfg, done)) is None:
            masks = _next_masks(cfg, model, data, out, done, prunable, device)
            worst = min(connected_fraction(m) for m in masks.values())
            if worst < cfg.prune.min_connected:
                reason = (f"round {len(done)} would leave {worst:.3f} of a layer's units connected "
                          f"(< prune.min_connected = {cfg.prune.min_connected})")
                break
            if cfg.prune.rewind == "none":
                state, start = load_round_file(out, done[-1], "final.safetensors"), 0
            else:
                state = load_round_file(out, done[0], "rewind.safetensors")
                start = cfg.prune.rewind_step if cfg.prune.rewind == "step" else 0
            model.load_state_dict(state)
            model.set_masks(masks)
            done.append(_train_round(model, cfg, data, out, len(done), start, prunable, bar))
            write_table(out / "metrics.parquet", summary_table(out, cfg))
    table = summary_table(out, cfg)
    write_table(out / "metrics.parquet", table)  # also after a kill between round.json and metrics
    write_json(out / "run.json", {"status": "complete", "rounds": len(done), "stop_reason": reason,
                                  "config_digest": cfg.digest()})
    return table


def summary_table(out: str | Path, cfg: RunConfig | None = None) -> pd.DataFrame:
    """Tidy per-round summary: round, density overall and per layer, losses, accuracies, time."""
    out = Path(out)
    cfg = cfg or load_config(out / "config.yaml")
    rows = []
    for s in completed_rounds(out):
        row = {"round": s["round"], "method": cfg.prune.method, "seed": cfg.seed, "density": s["density"]}
        row.update({f"density[{n}]": v for n, v in s["layer_density"].items()})
        row.update({k: s[k] for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy",
                                      "train_time_s", "steps")})
        rows.append(row)
    return pd.DataFrame(rows)
