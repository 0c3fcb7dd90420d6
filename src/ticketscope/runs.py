"""One experiment end to end: IMP (or a baseline) rounds, checkpoints, resume, summaries.

Run directory layout::

    config.yaml                  the resolved config (a different config is refused)
    rounds/NNN/start.safetensors model state (weights, masks, norms) when the round's training starts
    rounds/NNN/final.safetensors model state when it ends
    rounds/NNN/masks.safetensors masks of the prunable layers
    rounds/NNN/rewind.safetensors (round 0 only) the rewind point: init or step k
    rounds/NNN/snapshots.safetensors (train.snapshots > 0) the model state at log-spaced steps:
                                 keys ``step{S}.{state key}``, S the step (training.snapshot_steps)
    rounds/NNN/history.parquet   evaluations during training
    rounds/NNN/round.json        written last: the round's summary and its files' SHA-256
    metrics.parquet              one row per completed round (tidy summary)
    run.json                     written when the run is complete: rounds and stop reason

A round counts as done only once its ``round.json`` exists; a killed run restarts with the
first round that lacks one and, since every round is a pure function of files on disk and
the seed, ends bit-identical to an uninterrupted run.

Runs train in ensembles (:mod:`ticketscope.ensemble`): :func:`run_ensemble` trains many runs of
one network shape together, each writing its own directory as above; :func:`run_experiment` is an
ensemble of one, and a run's files are bit-identical whichever ensemble it trained in (same
machine, same torch thread count). ``train_time_s`` in ``round.json`` is the run's share of its
ensemble's training wall time (the time of the training steps, mini-batches included, divided by
the number of runs trained together; evaluation, checkpoints and one-off imports excluded).
"""

from __future__ import annotations

import json
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .config import RunConfig, dump_config, load_config, load_run_config
from .data import Dataset, make_dataset
from .engine import BatchSource, Member, ensemble_key, evaluate, snapshot_steps, train_ensemble
from .errors import TicketscopeError
from .io import atomic_write_text, exclusive_lock, load_tensors, read_json, save_tensors, write_json, write_table
from .models import FCN, layer_index
from .provenance import provenance
from .pruning import RULE_NEEDS, RULES, PruneContext, connected_fraction, densities, survivor_targets
from .seeding import derive_seed, generator


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

    def probe(self, cfg: RunConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Training inputs and labels the cavity rule measures on (never the test set)."""
        X, y = self.dataset.train(cfg.prune.n_probe, seed=derive_seed(cfg.seed, "probe"))
        return X.to(device), y.to(device)


def _claim_directory(out: Path, cfg: RunConfig) -> RunConfig:
    """Claim ``out`` for ``cfg`` (write its config.yaml), or check that it holds the same run;
    return the config the run must go on with (the caller must use it).

    A run resumes on the sample stream it began with: when ``cfg`` does not set ``data.stream``
    explicitly it adopts the directory's, and a config.yaml written before streams were versioned
    (no ``stream`` key) began on version 1; that file is then rewritten with ``stream: 1``
    (same digest), so later readers see the version too.
    """
    path = out / "config.yaml"
    if not path.exists():
        atomic_write_text(path, dump_config(cfg))
        return cfg
    old = load_config(path)
    legacy = "stream" not in old.data.model_fields_set
    if legacy:
        old = old.model_copy(update={"data": old.data.model_copy(update={"stream": 1})})
    if "stream" not in cfg.data.model_fields_set and cfg.data.stream != old.data.stream:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"stream": old.data.stream})})
    if old.digest() != cfg.digest():
        raise TicketscopeError(
            f"{out} already holds a run with a different config ({path}); choose another --out "
            "or delete that directory")
    if legacy:
        atomic_write_text(path, dump_config(old))
    return cfg


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
    """Rich progress bars over the rounds of every run and the steps of the ensemble training now."""

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

    def start(self, what: str, start: int, total: int) -> None:
        if self.enabled:
            self.bar.reset(self.steps, total=total, completed=start, description=f"{what} steps")

    def step(self, step: int) -> None:
        if self.enabled and step % 25 == 0:
            self.bar.update(self.steps, completed=step + 1)

    def advance(self, rounds: int = 1) -> None:
        if self.enabled:
            self.bar.advance(self.rounds, rounds)


@dataclass
class _Plan:
    """A run's next round: its index, first step, budget and the network state it starts from."""

    r: int
    start: int
    total: int
    state: dict[str, torch.Tensor]


class _Run:
    """One run inside :func:`run_ensemble`: lock held, config claimed, rounds on disk.

    Every round is a pure function of the run's config and its files on disk, whatever other
    runs train beside it: :meth:`next_round` reads the last completed round, prunes with the run's
    own rule and rewinds; :meth:`begin_round` / :meth:`end_round` write the round's files.
    """

    def __init__(self, cfg: RunConfig, out: Path, data: RunData, device: torch.device) -> None:
        self.cfg, self.out, self.data, self.device = cfg, out, data, device
        self.model = FCN(data.dataset.input_dim, data.dataset.num_classes, cfg.model).to(device)
        self.prunable = prunable_layers(cfg)
        self.done = completed_rounds(out)
        self.error: TicketscopeError | None = None
        self.table: pd.DataFrame | None = None
        self.files: dict[str, str] = {}
        self.history: list[dict[str, Any]] = []
        self.snapshots: dict[str, torch.Tensor] = {}

    def next_round(self) -> _Plan | None:
        """The next round to train, or None when the run is complete (its run.json then written)."""
        cfg, done, model = self.cfg, self.done, self.model
        total = self.data.batches.steps_for(cfg.train)
        if not done:
            model.reset_parameters(generator(cfg.seed, "init"))
            if cfg.prune.rewind == "step" and cfg.prune.rewind_step >= max(total, 1):
                raise TicketscopeError(
                    f"prune.rewind_step = {cfg.prune.rewind_step} must be below the training budget of {total} steps")
            return _Plan(0, 0, total, _detached(model.state_dict()))
        reason = _stop_reason(cfg, done)
        if reason is None:
            masks = _next_masks(cfg, model, self.data, self.out, done, self.prunable, self.device)
            worst = min(connected_fraction(m) for m in masks.values())
            if worst < cfg.prune.min_connected:
                reason = (f"round {len(done)} would leave {worst:.3f} of a layer's units connected "
                          f"(< prune.min_connected = {cfg.prune.min_connected})")
        if reason is not None:
            self._finish(reason)
            return None
        if cfg.prune.rewind == "none":
            state, start = load_round_file(self.out, done[-1], "final.safetensors"), 0
        else:
            state = load_round_file(self.out, done[0], "rewind.safetensors")
            start = cfg.prune.rewind_step if cfg.prune.rewind == "step" else 0
        model.load_state_dict(state)
        model.set_masks(masks)
        return _Plan(len(done), start, total, _detached(model.state_dict()))

    def member(self, plan: _Plan) -> Member:
        """Start round ``plan.r`` on disk (start and masks files) and describe its training."""
        cfg, d = self.cfg, round_dir(self.out, plan.r)
        if d.exists():
            shutil.rmtree(d)  # an incomplete round from a killed run: redo it from scratch
        d.mkdir(parents=True)
        self.files = {"start.safetensors": save_tensors(d / "start.safetensors", plan.state),
                      "masks.safetensors": save_tensors(d / "masks.safetensors",
                                                        {n: plan.state[f"{n}.mask"] for n in self.prunable})}
        self.history = []
        rewind_at = (cfg.prune.rewind_step if cfg.prune.rewind == "step" else 0) if plan.r == 0 else None

        def snapshot(step: int, state: dict[str, torch.Tensor]) -> None:
            self.model.load_state_dict(state)
            self.files["rewind.safetensors"] = save_tensors(d / "rewind.safetensors", self.model.state_dict())

        self.snapshots: dict[str, torch.Tensor] = {}

        def record(step: int, state: dict[str, torch.Tensor]) -> None:
            self.snapshots.update({f"step{step}.{k}": v.detach().cpu().clone() for k, v in state.items()})

        steps = snapshot_steps(cfg.train.snapshots, plan.total, plan.start)
        return Member(cfg.model, cfg.train, plan.state, self.data.batches, plan.r, label=f"run {self.out}",
                      rewind_at=rewind_at, on_rewind_point=snapshot if rewind_at is not None else None,
                      on_eval=lambda step, state: self._record(plan.r, step, state),
                      snapshot_steps=steps, on_snapshot=record if steps else None)

    def _record(self, r: int, step: int, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
        for split, (X, y) in (("train", self.data.train_eval), ("test", self.data.test)):
            loss, acc = evaluate(self.model, X, y, self.cfg.train.loss)
            self.history.append({"round": r, "step": step, "split": split, "loss": loss, "accuracy": acc})

    def end_round(self, plan: _Plan, state: dict[str, torch.Tensor], train_time_s: float) -> None:
        """Evaluate the trained network, write the round's files, round.json last, then metrics."""
        d, model, prunable = round_dir(self.out, plan.r), self.model, self.prunable
        self._record(plan.r, plan.total, state)
        self.files["final.safetensors"] = save_tensors(d / "final.safetensors", model.state_dict())
        if self.snapshots:
            self.files["snapshots.safetensors"] = save_tensors(d / "snapshots.safetensors", self.snapshots)
        write_table(d / "history.parquet", pd.DataFrame(self.history))
        final = {h["split"]: h for h in self.history if h["step"] == plan.total}
        masks = model.masks()
        dens = densities({n: masks[n] for n in prunable})
        summary = {
            "round": plan.r, "steps": plan.total - plan.start, "train_time_s": train_time_s,
            "density": sum(dens[n] * masks[n].numel() for n in prunable) / sum(masks[n].numel() for n in prunable),
            "layer_density": dens,
            "connected": {n: connected_fraction(masks[n]) for n in prunable},
            "train_loss": final["train"]["loss"], "train_accuracy": final["train"]["accuracy"],
            "test_loss": final["test"]["loss"], "test_accuracy": final["test"]["accuracy"],
            "files": self.files,
        }
        write_json(d / "round.json", summary)
        self.done.append(summary)
        write_table(self.out / "metrics.parquet", summary_table(self.out, self.cfg))

    def _finish(self, reason: str) -> None:
        self.table = summary_table(self.out, self.cfg)
        write_table(self.out / "metrics.parquet", self.table)  # also after a kill between round.json and metrics
        write_json(self.out / "run.json", {"status": "complete", "rounds": len(self.done), "stop_reason": reason,
                                           "config_digest": self.cfg.digest(), "provenance": provenance(self.device)})


def load_snapshots(out: Path, summary: dict[str, Any]) -> dict[int, dict[str, torch.Tensor]]:
    """A completed round's weight snapshots (checksum verified): step -> model state; {} if none."""
    if "snapshots.safetensors" not in summary["files"]:
        return {}
    flat = load_round_file(out, summary, "snapshots.safetensors")
    steps: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in flat.items():
        head, name = key.split(".", 1)
        steps.setdefault(int(head[len("step"):]), {})[name] = v
    return dict(sorted(steps.items()))


def _detached(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def _pool_training_sets(datas: list[RunData]) -> None:
    """Put every fixed training set of an ensemble into one tensor (each run keeps a view of its
    rows), so the ensemble gathers all runs' mini-batches with one indexing operation."""
    fixed = [d for d in datas if d.batches.dataset is None]
    if len(fixed) < 2:
        return
    X, y = torch.cat([d.batches.X for d in fixed]), torch.cat([d.batches.y for d in fixed])
    row = 0
    for d in fixed:
        n, n_eval = len(d.batches.X), len(d.train_eval[0])
        d.batches.X, d.batches.y = X[row:row + n], y[row:row + n]
        d.train_eval = (d.batches.X[:n_eval], d.batches.y[:n_eval])
        row += n


def _next_masks(cfg: RunConfig, model: FCN, data: RunData, out: Path, done: list[dict[str, Any]],
                prunable: list[str], device: torch.device) -> dict[str, torch.Tensor]:
    """Masks of round ``len(done)`` from the last completed round's final weights."""
    r = len(done)
    last = load_round_file(out, done[-1], "final.safetensors")
    weights = {n: last[f"{n}.weight"].to(device) for n in prunable}
    masks = {n: last[f"{n}.mask"].to(device) for n in prunable}
    ctx = PruneContext(scope=cfg.prune.scope, seed=cfg.seed, cavity_mix=cfg.prune.cavity_mix, params=cfg.prune.params,
                       targets=survivor_targets({n: m.numel() for n, m in masks.items()},
                                                cfg.prune.fraction, r, cfg.prune.scope))
    needs = RULE_NEEDS[cfg.prune.method]
    if "dense_weights" in needs:
        dense = load_round_file(out, done[0], "final.safetensors")
        ctx.dense_weights = {n: dense[f"{n}.weight"].to(device) for n in prunable}
    if "probe" in needs:
        model.load_state_dict(last)
        model.eval()
        X, ctx.probe_labels = data.probe(cfg, device)
        with torch.no_grad():
            inputs = model.layer_inputs(X)
        ctx.layer_inputs = {n: inputs[layer_index(n)] for n in prunable}
    return RULES[cfg.prune.method](weights, masks, ctx)


def _stop_reason(cfg: RunConfig, done: list[dict[str, Any]]) -> str | None:
    last = done[-1]
    if len(done) > cfg.prune.rounds:
        return f"reached prune.rounds = {cfg.prune.rounds}"
    if cfg.prune.target_density > 0 and all(v <= cfg.prune.target_density for v in last["layer_density"].values()):
        return f"reached prune.target_density = {cfg.prune.target_density}"
    return None


def run_experiment(cfg: RunConfig, out_dir: str | Path, progress: bool = True) -> pd.DataFrame:
    """Run (or resume) the experiment ``cfg`` in ``out_dir``; return its per-round summary table.

    An ensemble of one (:func:`run_ensemble`): the run gets exactly the bits it would get inside
    any ensemble.
    """
    return run_ensemble([(cfg, out_dir)], progress=progress)[0]


def run_ensemble(items: list[tuple[RunConfig, str | Path]], progress: bool = True,
                 errors: str = "raise") -> list[pd.DataFrame | TicketscopeError]:
    """Run (or resume) many experiments, training together those that can share an ensemble.

    ``items`` are ``(config, run directory)`` pairs; each directory is locked and claimed as by
    :func:`run_experiment`, complete runs are read back, and the rest are grouped by
    :func:`ticketscope.ensemble.ensemble_key`: each group trains as one ensemble (in turn, group
    after group). Inside a group every run trains its own next round, so runs resumed at
    different rounds, or stopping at different rounds, train side by side; runs whose next round
    has the same first step and budget train in lockstep, the others in further passes. Every
    run's files are bit-identical to training it alone.

    Returns each item's per-round summary table, in order. A run that fails (a busy or foreign
    directory, divergence, a corrupt checkpoint) does not stop the others; ``errors="raise"``
    then raises once all are done (the run's own error when there is one item, else one error
    naming every failed run), ``errors="return"`` puts the ``TicketscopeError`` in its place.
    """
    if errors not in ("raise", "return"):
        raise ValueError(f"errors must be 'raise' or 'return', not {errors!r}")
    results: list[pd.DataFrame | TicketscopeError | None] = [None] * len(items)
    with ExitStack() as locks:
        todo: dict[str, list[tuple[int, RunConfig, Path]]] = {}
        seen: set[Path] = set()
        fresh: set[int] = set()  # runs whose directory this call claims
        for i, (cfg, out_dir) in enumerate(items):
            out = Path(out_dir)
            try:
                if out.resolve() in seen:
                    raise TicketscopeError(f"{out} is listed twice in one ensemble")
                seen.add(out.resolve())
                resolve_device(cfg.device)  # a run that cannot start writes nothing
                if not (out / "config.yaml").exists():
                    fresh.add(i)
                locks.enter_context(exclusive_lock(out))
                cfg = _claim_directory(out, cfg) or cfg
                if (out / "run.json").exists():
                    results[i] = summary_table(out)
                    continue
                key = json.dumps([ensemble_key(cfg), str(resolve_device(cfg.device))])
            except TicketscopeError as e:
                results[i] = e
                continue
            todo.setdefault(key, []).append((i, cfg, out))
        for group in todo.values():
            _run_group(group, results, progress)
        for i in fresh:  # claimed here but could not start (e.g. a missing data set): leave no trace
            if isinstance(results[i], TicketscopeError) and not (Path(items[i][1]) / "rounds").exists():
                _unclaim(Path(items[i][1]))
    failed = [(items[i][1], r) for i, r in enumerate(results) if isinstance(r, TicketscopeError)]
    if failed and errors == "raise":
        if len(items) == 1:
            raise failed[0][1]
        raise TicketscopeError(f"{len(failed)} of {len(items)} runs failed:\n"
                               + "\n".join(f"  {out}: {e}" for out, e in failed))
    return results  # type: ignore[return-value]


def _unclaim(out: Path) -> None:
    """Remove the config and lock this process wrote into ``out`` (and ``out`` itself if then empty)."""
    for name in ("config.yaml", ".lock"):
        (out / name).unlink(missing_ok=True)
    if not any(out.iterdir()):
        out.rmdir()


def _run_group(group: list[tuple[int, RunConfig, Path]], results: list[Any], progress: bool) -> None:
    """Train the runs of one ensemble group to completion (locks held, configs claimed)."""
    cfg0 = group[0][1]
    torch.set_flush_denormal(True)  # as in training, also for the measurements a resumed run redoes
    threads = torch.get_num_threads()
    if cfg0.threads:
        torch.set_num_threads(cfg0.threads)
    try:
        device = resolve_device(cfg0.device)
        datasets: dict[Any, Dataset] = {}
        runs: dict[int, _Run] = {}
        for i, cfg, out in group:
            try:
                runs[i] = _Run(cfg, out, RunData.build(cfg, device, datasets), device)
            except TicketscopeError as e:
                results[i] = e
        if not runs:
            return
        _pool_training_sets([run.data for run in runs.values()])
        label = next(iter(runs.values())).cfg.prune.method if len(runs) == 1 else f"{len(runs)} runs:"
        planned = sum(run.cfg.prune.rounds + 1 - len(run.done) for run in runs.values())
        with _Progress(progress and bool(runs), max(planned, 1), label) as bar:
            _train_rounds(runs, results, bar)
    finally:
        torch.set_num_threads(threads)


def _train_rounds(runs: dict[int, _Run], results: list[Any], bar: _Progress) -> None:
    """Every run's remaining rounds: each pass trains, as one ensemble, the runs whose next round
    has the most common (first step, budget); a run leaves once it stops or fails."""
    active, plans = dict(runs), {}

    def drop(i: int, outcome: Any) -> None:
        run = active.pop(i)
        results[i] = outcome
        bar.advance(max(run.cfg.prune.rounds + 1 - len(run.done), 0))

    while True:
        for i in list(active):
            if i in plans:
                continue
            try:
                plan = active[i].next_round()
            except TicketscopeError as e:
                drop(i, e)
                continue
            if plan is None:
                drop(i, active[i].table)
            else:
                plans[i] = plan
        if not plans:
            return
        cohorts: dict[tuple[int, int], list[int]] = {}
        for i, plan in plans.items():
            cohorts.setdefault((plan.start, plan.total), []).append(i)
        (start, total), chosen = max(cohorts.items(), key=lambda kv: (len(kv[1]), -kv[0][0]))
        taken = [(i, plans.pop(i)) for i in chosen]
        members = [active[i].member(plan) for i, plan in taken]
        rounds = sorted({plan.r for _, plan in taken})
        bar.start(f"{len(taken)} run(s), round {'/'.join(map(str, rounds))}", start, total)
        result = train_ensemble(members, start, total, on_step=bar.step)
        share = result.train_time_s / len(taken)
        for (i, plan), state, error in zip(taken, result.states, result.errors):
            if error is not None:
                drop(i, error)
                continue
            active[i].end_round(plan, state, share)
            bar.advance()


def summary_table(out: str | Path, cfg: RunConfig | None = None) -> pd.DataFrame:
    """Tidy per-round summary: round, density overall and per layer, losses, accuracies, time."""
    out = Path(out)
    cfg = cfg or load_run_config(out)
    rows = []
    for s in completed_rounds(out):
        row = {"round": s["round"], "method": cfg.prune.method, "seed": cfg.seed, "density": s["density"]}
        row.update({f"density[{n}]": v for n, v in s["layer_density"].items()})
        row.update({k: s[k] for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy",
                                      "train_time_s", "steps")})
        rows.append(row)
    return pd.DataFrame(rows)
