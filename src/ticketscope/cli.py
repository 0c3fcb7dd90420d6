"""The ``ticketscope`` command line: data, run, show, analyze, sweep, report, presets, demo."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

import typer
from pydantic import BaseModel

from .config import DataConfig, RunConfig, load_config, parse_config
from .errors import TicketscopeError

if TYPE_CHECKING:
    from .runs import RunDir

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="How iterative magnitude pruning makes fully connected networks grow local receptive fields.")


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"ticketscope {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print ticketscope's version and exit")) -> None:
    """How iterative magnitude pruning makes fully connected networks grow local receptive fields."""


data_app = typer.Typer(no_args_is_help=True, help="Sample, look at and download data sets.")
app.add_typer(data_app, name="data")


def _data_config(task: str, L: int, dim: int, xi: list[float], gain: float, clone: bool, open_: bool,
                 data_dir: Optional[str], grayscale: bool, standardize: bool) -> DataConfig:
    fields: dict[str, Any] = {"name": task, "L": L, "dim": dim, "gain": gain, "gaussian_clone": clone,
                              "torus": not open_, "data_dir": data_dir, "grayscale": grayscale,
                              "standardize": standardize}
    if xi:
        fields["xis"] = tuple(xi)
    return parse_config(fields, "(command-line options)", DataConfig)


TASK = typer.Option("nlgp", "--task", help="a registered data set (data.name): nlgp, cifar10, mnist, fashion-mnist, "
                    "natural, tensors or a plug-in's")
L_OPT = typer.Option(20, "--L", help="image side in pixels (nlgp, natural)")
DIM = typer.Option(2, "--dim", help="nlgp: 1 or 2")
XI = typer.Option([], "--xi", help="nlgp: correlation length of a class (repeat once per class)")
GAIN = typer.Option(3.0, "--gain", help="nlgp: gain g")
CLONE = typer.Option(False, "--clone", help="the Gaussian clone of the data set")
OPEN = typer.Option(False, "--open", help="nlgp: open boundaries instead of a torus")
DATA_DIR = typer.Option(None, "--data-dir", envvar="TICKETSCOPE_DATA", help="folder of the real data sets")
GRAY = typer.Option(True, "--grayscale/--rgb", help="cifar10: grayscale or RGB")
STD = typer.Option(False, "--standardize", help="per-image standardization")


@data_app.command("sample")
def data_sample(out: Path = typer.Option(..., "--out", help="output .safetensors file (X, y, input_shape, torus)"),
                n: int = typer.Option(1000, "--n", help="number of samples"),
                seed: int = typer.Option(0, "--seed"),
                split: str = typer.Option("train", "--split", help="train | test"),
                task: str = TASK, L: int = L_OPT, dim: int = DIM, xi: list[float] = XI, gain: float = GAIN,
                clone: bool = CLONE, open_: bool = OPEN, data_dir: Optional[str] = DATA_DIR,
                grayscale: bool = GRAY, standardize: bool = STD) -> None:
    """Write n samples (X float32 (n, D), y int64) of a data set to a safetensors file, with their geometry
    (input_shape, torus: 0 or 1), ready for `data: {name: tensors, path: OUT}`."""
    from .data import make_dataset
    from .io import save_tensors

    ds = make_dataset(_data_config(task, L, dim, xi, gain, clone, open_, data_dir, grayscale, standardize))
    if split not in ("train", "test"):
        raise TicketscopeError(f"--split must be train or test, not {split!r}")
    X, y = getattr(ds, split)(n, seed=seed)
    import torch

    save_tensors(out, {"X": X, "y": y, "input_shape": torch.tensor(ds.input_shape, dtype=torch.int64),
                       "torus": torch.tensor([int(ds.torus)], dtype=torch.int64)})
    typer.echo(f"wrote {len(X)} samples of {ds.name} (input shape {ds.input_shape}"
               f"{', on a torus' if ds.torus else ''}) to {out}")


@data_app.command("show")
def data_show(out: Path = typer.Option(Path("examples.png"), "--out", help="output PNG"),
              n: int = typer.Option(4, "--n", help="examples per class"),
              seed: int = typer.Option(0, "--seed"),
              task: str = TASK, L: int = L_OPT, dim: int = DIM, xi: list[float] = XI, gain: float = GAIN,
              open_: bool = OPEN, data_dir: Optional[str] = DATA_DIR,
              grayscale: bool = GRAY, standardize: bool = STD) -> None:
    """A PNG grid of example images of each class beside their Gaussian clone."""
    from .data import make_dataset
    from .data.show import show_examples

    cfg = _data_config(task, L, dim, xi, gain, False, open_, data_dir, grayscale, standardize)
    ds = make_dataset(cfg)
    clone = make_dataset(cfg.model_copy(update={"gaussian_clone": True}))
    path = show_examples(ds, out, clone=clone, n_per_class=n, seed=seed)
    typer.echo(f"wrote {path}")


@data_app.command("download")
def data_download(name: str = typer.Argument(..., help="cifar10 | mnist | fashion-mnist"),
                  data_dir: Optional[str] = DATA_DIR) -> None:
    """Fetch a data set's official archive, verify its checksum and unpack it."""
    from .data.download import download
    from .data.images import data_root

    typer.echo(f"ready: {download(name, data_root(data_dir))}")


@app.command()
def run(config: Path = typer.Argument(..., help="run config (YAML)"),
        out: Path = typer.Option(..., "--out", help="run directory (resumed if it exists)"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bars")) -> None:
    """Run one experiment (data, model, training, pruning method, seed); resumes a killed run."""
    from .runs import run_experiment

    table = run_experiment(load_config(config), out, progress=not quiet)
    typer.echo(f"{len(table)} rounds in {out}")


def _run_status(store: RunDir) -> tuple[str, str]:
    """(one line on where the run stands, its colour): complete, diverged or unfinished."""
    diverged, info = store.diverged(), store.info()
    if diverged is not None:
        return (f"diverged in round {diverged['round']} at step {diverged['step']} (loss {diverged['loss']}); "
                f"see {store.path / 'diverged.json'}", "red")
    if info:
        return f"complete: {info['rounds']} rounds, {info['stop_reason']}", "green"
    return "unfinished: re-run its `ticketscope run` command to resume it", "yellow"


SHOW_COLUMNS = {"round": "round", "density": "density", "train_loss": "train loss", "train_accuracy": "train acc",
                "test_loss": "test loss", "test_accuracy": "test acc", "steps": "steps"}  # time: in --json


@app.command()
def show(run_dir: Path = typer.Argument(..., help="run directory"),
         as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")) -> None:
    """Per-round summary of a run: density per layer, train and test accuracy and loss, and its status."""
    from .runs import RunDir

    store = RunDir(run_dir).require()
    table = store.summary_table()
    status, colour = _run_status(store)
    if as_json:
        typer.echo(json.dumps({"status": status, "diverged": store.diverged(),
                               "rounds": table.to_dict(orient="records")}, indent=2))
        return
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    cfg = store.config()
    layers = [c for c in table.columns if c.startswith("density[")]
    t = Table(title=escape(f"{run_dir}: {cfg.prune.method}, seed {cfg.seed}"), caption=escape(status),
              caption_style=colour, box=box.SIMPLE_HEAD, padding=(0, 1))
    columns = ["round", "density", *layers, *[c for c in SHOW_COLUMNS if c not in ("round", "density")]]
    for col in columns:  # layer densities as L0, L1, ...: short, and no [ ] for rich to read as markup
        t.add_column(SHOW_COLUMNS.get(col, "L" + col.removeprefix("density[layers.").rstrip("]")), justify="right")
    if len(table):  # a run that diverged in round 0 has no rows (and no columns)
        for row in table[columns].itertuples(index=False):
            t.add_row(*(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row))
    console = Console()
    console.print(t)
    made_by = store.info().get("provenance")
    if made_by:
        console.print(escape(", ".join(f"{k} {v}" for k, v in made_by.items())), style="dim")


@app.command()
def analyze(run_dirs: list[Path] = typer.Argument(..., help="run directories (e.g. SWEEP/runs/*)"),
            n_probe: int = typer.Option(4096, "--n-probe", help="held-out probe samples"),
            force: bool = typer.Option(False, "--force", help="recompute even if up to date")) -> None:
    """Measure every round of runs (localization, kurtosis, cavity) and write tables and figures; an
    analysis that is already current is kept unless --force."""
    from .analysis import analyze_run
    from .runs import RunDir

    for run_dir in run_dirs:
        out = analyze_run(run_dir, n_probe=n_probe, force=force)
        typer.echo(f"tables and figures in {out}")
        status, colour = _run_status(RunDir(run_dir))
        if colour != "green":
            typer.secho(f"  {run_dir}: {status}; analyzed its completed rounds only", fg=colour)


def _sweep_source(name_or_path: str) -> Path:
    from .experiments.presets import preset_path

    path = Path(name_or_path)
    return path if path.exists() or path.suffix in (".yaml", ".yml") else preset_path(name_or_path)


def _replicate(spec: Any, block: int, out: Path) -> Any:
    """Replicate ``block`` of the sweep ``spec``, refusing an ``out`` that holds another sweep (the original's
    directory, most likely: its report would mix the two blocks)."""
    from .experiments.sweep import load_sweep

    if block < 1:
        raise TicketscopeError(f"--replicate takes a block number >= 1 (the sweep as written is block 0), not {block}")
    spec = spec.replicate(block)
    held = out / "sweep.yaml"
    if held.exists() and (other := load_sweep(held).name) != spec.name:
        raise TicketscopeError(f"{out} holds sweep {other!r}; give replicate {block} ({spec.name!r}) its own --out, "
                               f"e.g. {out.parent / spec.name}")
    return spec


def _run_sweep(source: str, out: Path, executor: str, workers: Optional[int], threads: Optional[int],
               address: Optional[str], quiet: bool, ensemble: bool = True, task_timeout: Optional[float] = None,
               replicate: Optional[int] = None) -> None:
    from .experiments.sweep import load_sweep, run_sweep, time_spent

    spec = load_sweep(_sweep_source(source))
    if replicate is not None:
        spec = _replicate(spec, replicate, out)
        seeds = spec.seeds()
        typer.echo(f"{spec.name}: {len(seeds)} seeds in {min(seeds)}..{max(seeds)}")
    summary = run_sweep(spec, out, executor=executor, workers=workers,
                        threads=threads, address=address, progress=not quiet, ensemble=ensemble,
                        task_timeout_s=task_timeout)
    counts = summary["status"].value_counts().to_dict()
    typer.echo(f"{len(summary)} points in {out}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    typer.echo(time_spent(summary))
    failed = summary[summary["status"] == "failed"]
    for row in failed.itertuples():
        typer.secho(f"  failed {row.digest}: {row.error}", fg="red", err=True)
    if len(failed):
        raise typer.Exit(1)


EXECUTOR = typer.Option("local", "--executor", help="local (process pool) | ray")
WORKERS = typer.Option(None, "--workers", help="parallel runs (default: one per core)")
THREADS = typer.Option(None, "--threads", help="torch threads per worker (default 1; results are bit-identical "
                       "only between runs at the same thread count)")
ENSEMBLE = typer.Option(True, "--ensemble/--no-ensemble", help="train points of one network shape together "
                        "(same numbers, much faster)")
TASK_TIMEOUT = typer.Option(None, "--task-timeout", help="seconds after which a worker's task is reported hung "
                            "(default: $TICKETSCOPE_TASK_TIMEOUT, else none)")
ADDRESS = typer.Option(None, "--address", help=(
    "ray: the cluster to join: auto (the cluster this node belongs to, e.g. after `ray start --head`; "
    "try it first) or the HOST:PORT `ray start --head` printed; default: $RAY_ADDRESS, else a private "
    "local instance"))


@app.command()
def sweep(sweep_file: str = typer.Argument(..., help="sweep YAML, or a preset name (see `ticketscope presets`)"),
          out: Path = typer.Option(..., "--out", help="sweep directory (re-running skips finished runs)"),
          executor: str = EXECUTOR, workers: Optional[int] = WORKERS, threads: Optional[int] = THREADS,
          address: Optional[str] = ADDRESS, ensemble: bool = ENSEMBLE, task_timeout: Optional[float] = TASK_TIMEOUT,
          replicate: Optional[int] = typer.Option(
              None, "--replicate", help="run replicate N >= 1 instead: the same sweep on a disjoint block of seeds "
              "(seeds shifted by N times their span, max - min + 1), named NAME-replicateN; give it its own --out"),
          quiet: bool = typer.Option(False, "--quiet")) -> None:
    """Run every point of a sweep grid (each a resumable run) on this machine or a Ray cluster."""
    _run_sweep(sweep_file, out, executor, workers, threads, address, quiet, ensemble, task_timeout, replicate)


@app.command()
def report(sweep_dir: Path = typer.Argument(..., help="sweep directory"),
           n_probe: int = typer.Option(4096, "--n-probe", help="held-out probe samples per run"),
           replicate: Optional[Path] = typer.Option(None, "--replicate", help=(
               "the sweep directory of a replicate on disjoint seeds (`ticketscope sweep SWEEP --replicate N`), "
               "reported first: its confirmatory outcomes are shown beside this sweep's"))) -> None:
    """Write the claims report (HTML + Markdown) with figures from the stored analyses of a sweep's runs."""
    _report(sweep_dir, n_probe, replicate)


def _report(sweep_dir: Path, n_probe: int, replicate: Optional[Path] = None) -> None:
    from .experiments.report import build_report
    from .experiments.sweep import load_sweep

    spec = sweep_dir / "sweep.yaml"
    notes = load_sweep(spec).description if spec.exists() else ""
    typer.echo(f"report: {build_report(sweep_dir, n_probe=n_probe, notes=notes, replicate=replicate)}")


@app.command()
def presets() -> None:
    """List the sweep presets shipped with ticketscope."""
    from .experiments.presets import preset_names, preset_summary

    for name in preset_names():
        typer.echo(f"{name}: {preset_summary(name)}\n")


@app.command()
def demo(out: Path = typer.Option(Path("out/demo"), "--out", help="sweep directory"),
         executor: str = EXECUTOR, workers: Optional[int] = WORKERS, threads: Optional[int] = THREADS,
         quiet: bool = typer.Option(False, "--quiet")) -> None:
    """The main job: the `demo` preset sweep, then its analysis and claims report."""
    import time

    start = time.perf_counter()
    _run_sweep("demo", out, executor, workers, threads, None, quiet)
    swept = time.perf_counter()
    _report(out, n_probe=4096)
    typer.echo(f"demo finished in {time.perf_counter() - start:.0f} s (sweep {swept - start:.0f} s, report "
               f"{time.perf_counter() - swept:.0f} s); open {out / 'report' / 'report.html'}")


def _describe(obj: BaseModel, indent: str = "") -> Iterator[str]:
    for name, f in type(obj).model_fields.items():
        value = getattr(obj, name)
        if isinstance(value, BaseModel):
            yield f"{indent}{name}:"
            yield from _describe(value, indent + "  ")
        else:
            yield f"{indent}{name}: {json.dumps(value)}    # {f.description}"


@app.command("config")
def config_cmd(path: Optional[Path] = typer.Argument(None, help="a config to validate and print resolved")) -> None:
    """Print a config with every default filled in and each field's unit and meaning."""
    typer.echo("\n".join(_describe(load_config(path) if path is not None else RunConfig())))


def main() -> None:
    """Entry point: user-facing errors become one clear line and exit status 2."""
    try:
        app()
    except (TicketscopeError, ValueError) as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        sys.exit(2)
    except OSError as e:  # unreadable or unwritable paths, full disk
        typer.secho(f"error: {e.strerror or e}: {e.filename or ''}", fg="red", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
