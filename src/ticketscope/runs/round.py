"""One run's rounds: its data, the next round (prune, rewind), and the files each round writes.

Every round is a pure function of the run's config and its files on disk, whatever other runs
train beside it, so a killed run restarts with the first round that lacks its ``round.json`` and
ends bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from ..config import RunConfig
from ..data import Dataset, make_dataset
from ..engine import BatchSource, Member, evaluate, snapshot_steps
from ..errors import Diverged, TicketscopeError
from ..models import FCN, layer_index
from ..provenance import provenance
from ..pruning import RULE_NEEDS, RULES, PruneContext, connected_fraction, densities, survivor_targets
from ..seeding import derive_seed, generator
from .store import RunDir

State = dict[str, torch.Tensor]


def prunable_layers(cfg: RunConfig) -> list[str]:
    """Names of the pruned layers: ``prune.layers`` or every layer but the readout."""
    n_layers = len(cfg.model.hidden) + 1
    idx = cfg.prune.layers if cfg.prune.layers is not None else range(n_layers - 1)
    return [f"layers.{i}" for i in sorted(set(idx))]


@dataclass
class RunData:
    """Tensors a run trains and evaluates on (on the run's device)."""

    dataset: Dataset
    batches: BatchSource
    train_eval: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]

    @classmethod
    def build(cls, cfg: RunConfig, device: torch.device, datasets: dict[Any, Dataset] | None = None) -> "RunData":
        """The run's data; ``datasets`` caches data set objects by data config (runs of an
        ensemble with equal ``data`` share one: sampling is a pure function of seed and offset)."""
        if datasets is None:
            ds = make_dataset(cfg.data)
        else:
            if cfg.data not in datasets:
                datasets[cfg.data] = make_dataset(cfg.data)
            ds = datasets[cfg.data]
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

    def cavity_probe(self, cfg: RunConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Training inputs and labels a rule that needs ``probe`` measures on (``prune.n_probe``; never the
        test set, unlike the analysis' held-out probe)."""
        X, y = self.dataset.train(cfg.prune.n_probe, seed=derive_seed(cfg.seed, "probe"))
        return X.to(device), y.to(device)


@dataclass
class NextRound:
    """A run's next round: its index, first step, budget and the network state it starts from."""

    r: int
    start: int
    total: int
    state: State


class RunRounds:
    """One run inside :func:`ticketscope.runs.run_ensemble`: lock held, config claimed, rounds on disk.

    :meth:`next_round` reads the last completed round, prunes with the run's own rule and rewinds;
    :meth:`member` starts the round on disk and describes its training; :meth:`end_round` writes
    the round's files, ``round.json`` last.
    """

    def __init__(self, cfg: RunConfig, store: RunDir, data: RunData, device: torch.device) -> None:
        self.cfg, self.store, self.data, self.device = cfg, store, data, device
        self.model = FCN(data.dataset.input_dim, data.dataset.num_classes, cfg.model).to(device)
        self.prunable = prunable_layers(cfg)
        self.done = store.rounds()
        self.table: pd.DataFrame | None = None
        self.files: dict[str, str] = {}
        self.history: list[dict[str, Any]] = []
        self.snapshots: State = {}

    def next_round(self) -> NextRound | None:
        """The next round to train, or None when the run is complete (its run.json then written)."""
        cfg, done, model = self.cfg, self.done, self.model
        total = self.data.batches.steps_for(cfg.train)
        if not done:
            model.reset_parameters(generator(cfg.seed, "init"))
            if cfg.prune.rewind == "step" and cfg.prune.rewind_step >= max(total, 1):
                raise TicketscopeError(
                    f"prune.rewind_step = {cfg.prune.rewind_step} must be below the training budget of {total} steps")
            return NextRound(0, 0, total, _detached(model.state_dict()))
        reason = _stop_reason(cfg, done)
        if reason is None:
            masks = self._next_masks()
            worst = min(connected_fraction(m) for m in masks.values())
            if worst < cfg.prune.min_connected:
                reason = (f"round {len(done)} would leave {worst:.3f} of a layer's units connected "
                          f"(< prune.min_connected = {cfg.prune.min_connected})")
        if reason is not None:
            self.table = self.store.finish(cfg, len(done), reason, provenance(self.device))
            return None
        if cfg.prune.rewind == "none":
            state, start = self.store.load(done[-1], "final.safetensors"), 0
        else:
            state = self.store.load(done[0], "rewind.safetensors")
            start = cfg.prune.rewind_step if cfg.prune.rewind == "step" else 0
        model.load_state_dict(state)
        model.set_masks(masks)
        return NextRound(len(done), start, total, _detached(model.state_dict()))

    def _next_masks(self) -> State:
        """Masks of round ``len(done)`` by the run's rule, from the last completed round's final weights."""
        cfg, done, device, prunable = self.cfg, self.done, self.device, self.prunable
        last = self.store.load(done[-1], "final.safetensors")
        weights = {n: last[f"{n}.weight"].to(device) for n in prunable}
        masks = {n: last[f"{n}.mask"].to(device) for n in prunable}
        ctx = PruneContext(scope=cfg.prune.scope, seed=cfg.seed, cavity_mix=cfg.prune.cavity_mix,
                           params=cfg.prune.params,
                           targets=survivor_targets({n: m.numel() for n, m in masks.items()},
                                                    cfg.prune.fraction, len(done), cfg.prune.scope))
        needs = RULE_NEEDS[cfg.prune.method]
        if "dense_weights" in needs:
            dense = self.store.load(done[0], "final.safetensors")
            ctx.dense_weights = {n: dense[f"{n}.weight"].to(device) for n in prunable}
        if "probe" in needs:
            self.model.load_state_dict(last)
            self.model.eval()
            X, ctx.probe_labels = self.data.cavity_probe(cfg, device)
            with torch.no_grad():
                inputs = self.model.layer_inputs(X)
            ctx.layer_inputs = {n: inputs[layer_index(n)] for n in prunable}
        return RULES[cfg.prune.method](weights, masks, ctx)

    def member(self, plan: NextRound) -> Member:
        """Start round ``plan.r`` on disk (start and masks files) and describe its training."""
        cfg, store, r = self.cfg, self.store, plan.r
        d = store.round_dir(r)
        if d.exists():
            shutil.rmtree(d)  # an incomplete round from a killed run: redo it from scratch
        d.mkdir(parents=True)
        self.files = {"start.safetensors": store.save(r, "start.safetensors", plan.state),
                      "masks.safetensors": store.save(r, "masks.safetensors",
                                                      {n: plan.state[f"{n}.mask"] for n in self.prunable})}
        self.history, self.snapshots = [], {}
        rewind_at = (cfg.prune.rewind_step if cfg.prune.rewind == "step" else 0) if r == 0 else None

        def keep_rewind_point(step: int, state: State) -> None:
            self.model.load_state_dict(state)
            self.files["rewind.safetensors"] = store.save(r, "rewind.safetensors", self.model.state_dict())

        def keep_snapshot(step: int, state: State) -> None:
            self.snapshots.update({f"step{step}.{k}": v.detach().cpu().clone() for k, v in state.items()})

        steps = snapshot_steps(cfg.train.snapshots, plan.total, plan.start)
        return Member(cfg.model, cfg.train, plan.state, self.data.batches, r, label=f"run {store.path}",
                      rewind_at=rewind_at, on_rewind_point=keep_rewind_point if rewind_at is not None else None,
                      on_eval=lambda step, state: self._evaluate(r, step, state),
                      snapshot_steps=steps, on_snapshot=keep_snapshot if steps else None)

    def _evaluate(self, r: int, step: int, state: State) -> None:
        """Loss and accuracy on the training-evaluation and test sets, appended to the round's history."""
        self.model.load_state_dict(state)
        for split, (X, y) in (("train", self.data.train_eval), ("test", self.data.test)):
            loss, acc = evaluate(self.model, X, y, self.cfg.train.loss)
            self.history.append({"round": r, "step": step, "split": split, "loss": loss, "accuracy": acc})

    def fail(self, error: TicketscopeError) -> None:
        """A training error of the current round: a divergence is recorded in the run directory."""
        if isinstance(error, Diverged):
            evals = [h for h in self.history if h["split"] == "train"]
            last = {"step": evals[-1]["step"], "train_loss": evals[-1]["loss"]} if evals else None
            self.store.record_divergence(error, last)

    def end_round(self, plan: NextRound, state: State, train_time_s: float) -> None:
        """Evaluate the trained network, write the round's files, round.json last, then metrics."""
        store, model, prunable, r = self.store, self.model, self.prunable, plan.r
        self._evaluate(r, plan.total, state)
        self.files["final.safetensors"] = store.save(r, "final.safetensors", model.state_dict())
        if self.snapshots:
            self.files["snapshots.safetensors"] = store.save(r, "snapshots.safetensors", self.snapshots)
        self.files["history.parquet"] = store.write_history(r, pd.DataFrame(self.history))
        final = {h["split"]: h for h in self.history if h["step"] == plan.total}
        masks = model.masks()
        dens = densities({n: masks[n] for n in prunable})
        summary = {
            "round": r, "steps": plan.total - plan.start, "train_time_s": train_time_s,
            "density": sum(dens[n] * masks[n].numel() for n in prunable) / sum(masks[n].numel() for n in prunable),
            "layer_density": dens,
            "connected": {n: connected_fraction(masks[n]) for n in prunable},
            "train_loss": final["train"]["loss"], "train_accuracy": final["train"]["accuracy"],
            "test_loss": final["test"]["loss"], "test_accuracy": final["test"]["accuracy"],
            "files": self.files,
        }
        store.end_round(summary, self.cfg)
        self.done.append(summary)


def _stop_reason(cfg: RunConfig, done: list[dict[str, Any]]) -> str | None:
    last = done[-1]
    if len(done) > cfg.prune.rounds:
        return f"reached prune.rounds = {cfg.prune.rounds}"
    if cfg.prune.target_density > 0 and all(v <= cfg.prune.target_density for v in last["layer_density"].values()):
        return f"reached prune.target_density = {cfg.prune.target_density}"
    return None


def _detached(state: State) -> State:
    return {k: v.detach().clone() for k, v in state.items()}
