"""Validated run configuration (pydantic): data, model, training, pruning, run.

Every field has a default; its description gives its unit. ``load_config`` turns a YAML file
into a ``RunConfig`` or raises one ``TicketscopeError`` naming the offending field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .errors import TicketscopeError
from .registry import DATASETS, RULES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def __hash__(self) -> int:
        """Hash of the JSON form: a section's ``params`` may hold a plug-in's model that is not hashable."""
        return hash(self.model_dump_json())

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its JSON form and validated again where it is loaded (a sweep worker, a Ray task):
        a plug-in's params model, defined in a file that is no importable module, is rebuilt there from
        the plug-ins that process loads ($TICKETSCOPE_PLUGINS)."""
        return (_validated, (type(self), self.model_dump(mode="json")))


def _validated(cls: type[BaseModel], fields: dict[str, Any]) -> BaseModel:
    return cls.model_validate(fields)


class Params(_Strict):
    """Base of a plug-in rule's or data set's own parameters (``register(..., params=Model)``): like the
    core config, it refuses unknown keys, inf and NaN, and its instances are frozen."""


def _own_params(value: Any, model: type[BaseModel] | None, owner: str) -> BaseModel | None:
    """``value`` (a mapping; None or {} for none given) validated against ``owner``'s registered model:
    its instance, defaults filled in, or None for an owner registered without one."""
    if model is None:
        if value is None or value == {}:
            return None
        raise PydanticCustomError("no_params", "{owner} takes no parameters", {"owner": owner})
    return model.model_validate({} if value is None else value)  # errors are located under params


class DataConfig(_Strict):
    """Which data set, its parameters, and how much of it to use.

    ``stream`` versions the synthetic sample streams; a run keeps the version it began with
    (``RunDir.claim``), and version 1 is left out of ``RunConfig.digest()``: docs/REPRODUCIBILITY.md,
    "Stream versions and run names".

    The built-in data sets' settings stay fields of their own here (path, L, xis, ...), so existing
    configs and digests are unchanged; ``params`` holds a plug-in data set's own parameters.
    """

    name: str = Field(
        "nlgp", description="a registered data set (ticketscope.data.DATASETS): nlgp (synthetic non-linear Gaussian "
        "process), copula (a Gaussian field through a pointwise map of chosen kurtosis, at a chosen covariance), "
        "elliptical (a Gaussian scale mixture at a chosen covariance), cifar10, mnist, fashion-mnist, natural (offline "
        "scikit-image patches), tensors (your own file)")
    path: str | None = Field(
        None, description="(path) tensors: a .safetensors or .npz file with X (n, ...) and y (n,), optionally "
        "X_test and y_test, and input_shape")
    gaussian_clone: bool = Field(
        False, description="(flag) replace the data by a Gaussian process with each class's mean and covariance")
    L: int = Field(20, ge=2, description="(pixels) side of the image (nlgp, copula, elliptical, natural patches)")
    dim: Literal[1, 2] = Field(2, description="(1 or 2) nlgp, copula, elliptical: 1D vectors of length L or 2D L x L images")
    xis: tuple[float, ...] = Field(
        (1.0, 3.0), min_length=2, description="(pixels) nlgp, copula, elliptical: correlation length of each class, "
        "one class each")
    gain: float = Field(3.0, gt=0, description="(dimensionless) nlgp: gain g of the erf non-linearity")
    torus: bool = Field(True, description="(flag) nlgp, copula, elliptical: periodic boundaries (a tensors file's own "
                        "torus array decides for it; this field is not read there)")
    ridge: float = Field(1e-3, ge=0, description="(variance) added to covariance diagonals (nlgp field, copula and "
                         "elliptical covariance, clones)")
    grayscale: bool = Field(True, description="(flag) cifar10: convert RGB to grayscale")
    standardize: bool = Field(False, description="(flag) per-image standardization (zero mean, unit variance per image)")
    data_dir: str | None = Field(
        None, description="(path) folder of the real data sets; default: $TICKETSCOPE_DATA or ~/.cache/ticketscope")
    n_train: int | None = Field(
        20000, ge=1, description="(samples) training set size (ignored when online); tensors: default null, the "
        "file's whole train split, or a seeded subset of this many of its items")
    n_test: int | None = Field(
        2000, ge=1, description="(samples) held-out evaluation set size; tensors: default null, the file's whole "
        "test split, or a seeded subset of this many")
    online: bool = Field(
        False, description="(flag) data sets with an infinite stream only (nlgp, copula, elliptical, any gaussian_clone): "
        "draw a fresh mini-batch every step instead of a fixed training set")
    stream: Literal[1, 2] = Field(
        2, description="(version) synthetic data: sample stream; 2: float32 torch noise, batched transforms; "
        "1: the stream from before versions existed (NumPy float64, block by block; nlgp and fitted clones only)")
    params: Any = Field(
        None, validate_default=True, description="(mapping) the data set's own parameters, checked against the model "
        "it was registered with (register_dataset(name, params=Model)); its factory reads them as cfg.params, that "
        "model's instance (None for a data set without one); copula: excess_kurtosis, covariance_of; elliptical: "
        "excess_kurtosis, radius")

    @model_validator(mode="before")
    @classmethod
    def _whole_file(cls, data: Any) -> Any:
        """A tensors file (not its clone, which samples without end) is used whole unless ``n_train`` /
        ``n_test`` cap it: their default is null there. Every other data set keeps 20000 / 2000, so its
        configs keep their digests."""
        if isinstance(data, dict) and data.get("name") == "tensors":
            try:
                clone = TypeAdapter(bool).validate_python(data.get("gaussian_clone", False))
            except ValidationError:  # the field's own check names it
                return data
            if not clone:
                return {"n_train": None, "n_test": None, **data}
        return data

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        return DATASETS.require(v)

    def capabilities(self) -> Any:
        """What the data set this names can do (``ticketscope.data.Capabilities``: infinite stream, torus, analytic
        covariance, natural clone, classes, stream versions), from its declaration; nothing is loaded."""
        return DATASETS.describe(self.name, self)

    @model_validator(mode="after")
    def _stream_version(self) -> DataConfig:
        caps = self.capabilities()
        if caps is not None and (caps.infinite or self.gaussian_clone) and self.stream not in caps.streams:
            what = f"data set {self.name!r}" + ("'s Gaussian clone" if self.gaussian_clone else "")
            versions = " and ".join(map(str, caps.streams))
            raise ValueError(f"data.stream: the {what} has sample stream version {versions} only, not {self.stream}")
        return self

    @model_validator(mode="after")
    def _sizes(self) -> DataConfig:
        whole = [f for f in ("n_train", "n_test") if getattr(self, f) is None]
        if whole and (self.name != "tensors" or self.gaussian_clone):
            what = f"data set {self.name!r}" + ("'s Gaussian clone" if self.gaussian_clone else "")
            raise ValueError(f"data.{whole[0]}: null (the whole split) is for a tensors file; the {what} needs a "
                             f"number of samples")
        return self

    @field_validator("params")
    @classmethod
    def _params(cls, v: Any, info: ValidationInfo) -> BaseModel | None:
        name = info.data.get("name")  # absent when the name was refused
        return v if name is None else _own_params(v, DATASETS.params_model(name), f"data set {name!r}")

    @field_validator("xis")
    @classmethod
    def _positive_xis(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(x <= 0 for x in v):
            raise ValueError("every correlation length must be > 0")
        return v


class ModelConfig(_Strict):
    """A fully connected network: input -> hidden layers -> linear readout."""

    hidden: tuple[int, ...] = Field((100,), min_length=1, description="(units) width of each hidden layer")
    activation: Literal["relu", "erf", "tanh"] = Field("relu", description="hidden non-linearity")
    bias: bool = Field(True, description="(flag) biases in every layer")
    batchnorm: bool = Field(False, description="(flag) batch norm of each hidden layer's input (Pellegrini & Biroli)")
    init: Literal["kaiming", "glorot", "normal"] = Field("kaiming", description="weight initialization scheme")
    init_std: float = Field(0.01, gt=0, description="(weight units) std of the 'normal' init")
    scaling: Literal["standard", "meanfield"] = Field(
        "standard", description="hidden pre-activations: standard W x + b, or meanfield (W x + b) / sqrt(fan_in) "
        "(Ingrosso & Goldt's w.x / sqrt(D)); the readout stays W x + b")
    readout: Literal["trained", "fixed"] = Field(
        "trained", description="readout weights: trained, or fixed (two classes only: class 0 gets "
        "+readout_value / K from every last-hidden unit, class 1 gets -readout_value / K, zero bias; never "
        "updated, never pruned), so the logits are (phi, -phi) with phi = readout_value * mean of the units")
    readout_value: float = Field(1.0, gt=0, description="(dimensionless) fixed readout: the logits' scale, see readout")
    bias_init: Literal["zero", "alternating"] = Field(
        "zero", description="hidden biases at init: zero, or alternating: unit k adds +bias_value (k even) or "
        "-bias_value (k odd) to its pre-activation, so the units code both classes")
    bias_value: float = Field(1.0, gt=0, description="(pre-activation units) alternating bias_init: its magnitude")

    @model_validator(mode="after")
    def _bias_init_needs_biases(self) -> "ModelConfig":
        if self.bias_init != "zero" and not self.bias:
            raise ValueError("bias_init: alternating needs bias: true")
        return self


class TrainConfig(_Strict):
    """Optimizer, schedule and budget of each round's training."""

    optimizer: Literal["sgd", "adam"] = Field("sgd", description="optimizer")
    lr: float = Field(0.05, gt=0, description="(1/step) learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="(dimensionless) SGD momentum")
    nesterov: bool = Field(False, description="(flag) SGD Nesterov momentum")
    weight_decay: float = Field(0.0, ge=0, description="(1/step, L2 coefficient) weight decay")
    schedule: Literal["constant", "cosine", "step"] = Field("cosine", description="learning-rate schedule")
    milestones: tuple[float, ...] = Field(
        (0.5, 0.75), description="(fraction of the budget) step schedule: where the lr is multiplied by gamma")
    gamma: float = Field(0.1, gt=0, description="(factor) step schedule multiplier")
    batch_size: int = Field(128, ge=1, description="(samples) mini-batch size")
    steps: int | None = Field(None, ge=1, description="(steps) training budget per round (default 2000 unless epochs is set)")
    epochs: float | None = Field(None, gt=0, description="(passes over the training set) budget per round, instead of steps")
    eval_every: int = Field(0, ge=0, description="(steps) evaluate during training every this many steps; 0: only at the end")
    n_eval_train: int = Field(2000, ge=1, description="(samples) training samples used to report train loss/accuracy")
    loss: Literal["ce", "mse"] = Field("ce", description="softmax cross-entropy or MSE on one-hot targets")
    snapshots: int = Field(
        0, ge=0, description="(count) weight snapshots per round: at step 0 (the round's first step) and at this many "
        "log-spaced steps between 1 and the budget (duplicates merged), stored in the round's snapshots.safetensors")

    @model_validator(mode="before")
    @classmethod
    def _default_budget(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("steps") is None and data.get("epochs") is None:
            return {**data, "steps": 2000}
        return data

    @model_validator(mode="after")
    def _budget(self) -> "TrainConfig":
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give either steps or epochs, not both")
        if any(not 0 < m < 1 for m in self.milestones):
            raise ValueError("milestones are fractions of the budget, each in (0, 1)")
        return self


class PruneConfig(_Strict):
    """Pruning method and schedule (Frankle & Carbin; late rewinding: Frankle et al. 2020).

    The built-in rules' settings stay fields of their own here (cavity_mix, n_probe), so existing
    configs and digests are unchanged; ``params`` holds a plug-in rule's own parameters.
    """

    @field_validator("method")
    @classmethod
    def _registered(cls, v: str) -> str:
        return RULES.require(v)

    @field_validator("params")
    @classmethod
    def _params(cls, v: Any, info: ValidationInfo) -> BaseModel | None:
        method = info.data.get("method")  # absent when the method was refused
        return v if method is None else _own_params(v, RULES.params_model(method), f"rule {method!r}")

    method: str = Field(
        "imp", description="a registered pruning rule (ticketscope.pruning.RULES): imp: iterative magnitude; "
        "oneshot: magnitude of the dense trained net; random; cavity: remove weights whose removal most raises "
        "non-Gaussianity; cavity-high / cavity-low: IMP's count from the band of smallest |w| (params.band), those "
        "whose removal raises non-Gaussianity most / least; or your own, registered with @ticketscope.pruning.register")
    fraction: float = Field(0.2, gt=0, lt=1, description="(fraction of remaining weights) removed per round")
    scope: Literal["layerwise", "global"] = Field(
        "layerwise", description="threshold per layer or across layers (global: every method matches IMP's overall "
        "density per round, but each picks its own split across layers)")
    layers: tuple[int, ...] | None = Field(
        None, description="(layer indices, 0 = first) prunable layers; default: all but the readout")
    rewind: Literal["init", "step", "none"] = Field(
        "init", description="rewind survivors to initialization, to step rewind_step, or not at all (fine-tune)")
    rewind_step: int = Field(0, ge=0, description="(steps) late-rewinding point, used when rewind = step")
    rounds: int = Field(10, ge=0, description="(rounds) pruning rounds after the dense round 0")
    target_density: float = Field(0.0, ge=0, lt=1, description="(fraction) stop once every pruned layer is at or below it")
    min_connected: float = Field(
        0.0, ge=0, le=1, description="(fraction of units) stop before a round leaves fewer units with an incoming connection")
    cavity_mix: float = Field(
        1.0, ge=0, le=1, description="(weight) cavity: 1 = pure non-Gaussianity score, 0 = pure magnitude")
    n_probe: int = Field(4096, ge=16, description="(samples) probe set for the cavity rule")
    params: Any = Field(
        None, validate_default=True, description="(mapping) the rule's own parameters, checked against the model it "
        "was registered with (@register(name, params=Model)); the rule reads them as ctx.params, that model's "
        "instance (None for a rule without one, like every built-in but cavity-high and cavity-low)")


_LATER_FIELDS = {"data": ("path", "params"),
                 "model": ("scaling", "readout", "readout_value", "bias_init", "bias_value"),
                 "train": ("snapshots",), "prune": ("params",)}
"""Fields added after runs were stored: left out of ``RunConfig.digest()`` at their defaults, so every
existing config keeps its digest (and its sweep run directory). ``params`` is at its default (None) exactly
for a rule or data set registered without a params model; with one, its values, defaults included, are hashed."""


class RunConfig(_Strict):
    """One experiment: data, model, training, pruning method and seed."""

    name: str = Field("run", description="free-form label")
    seed: int = Field(0, ge=0, description="(integer) seeds init, data order and data sampling")
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="where to train and measure (auto: cuda if present)")
    threads: int = Field(0, ge=0, description="(CPU threads) torch threads; 0 = torch's default")
    data: DataConfig = Field(default_factory=DataConfig)  # built when needed: checking params imports the registry
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    prune: PruneConfig = Field(default_factory=PruneConfig)

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        n_layers = len(self.model.hidden) + 1
        if self.prune.layers is not None:
            bad = [i for i in self.prune.layers if not 0 <= i < n_layers]
            if bad:
                raise ValueError(f"prune.layers {bad} out of range: the model has layers 0..{n_layers - 1}")
        caps = self.data.capabilities()
        what = f"data set {self.data.name!r}" + ("'s Gaussian clone" if self.data.gaussian_clone else "")
        if self.model.readout == "fixed":
            classes = None if caps is None else caps.num_classes
            if classes != 2:
                has = "an unknown number of classes (known only once loaded)" if classes is None else f"{classes} classes"
                raise ValueError(f"model.readout: fixed needs a two-class task (e.g. nlgp, copula or elliptical with two "
                                 f"correlation lengths); the {what} has {has}")
            if self.prune.layers is not None and n_layers - 1 in self.prune.layers:
                raise ValueError("model.readout: fixed is never pruned: leave the readout out of prune.layers")
        if self.data.online and not (self.data.gaussian_clone if caps is None else caps.infinite):
            raise ValueError(f"data.online needs a data set with an infinite sample stream (nlgp, copula, elliptical, or "
                             f"any data set's gaussian_clone); the {what} is finite")
        return self

    def digest(self) -> str:
        """Hash of the resolved config (key order irrelevant): names sweep run directories.

        Fields that cannot change results (label, thread count, data folder) are left out, and so are
        later fields at their defaults (:data:`_LATER_FIELDS`) and ``data.stream`` at version 1: such configs
        hash as they did before streams were versioned (see :class:`DataConfig`), every other version is part
        of the hash.
        """
        fields = self.model_dump(mode="json", exclude={"name": True, "threads": True, "data": {"data_dir"}})
        if fields["data"]["stream"] == 1:
            del fields["data"]["stream"]
        sections = (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig), ("prune", PruneConfig))
        for section, cls in sections:  # later fields, at their defaults
            for name in _LATER_FIELDS[section]:
                if fields[section][name] == cls.model_fields[name].default:
                    del fields[section][name]
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {loc}: {e['msg']} (got {e.get('input')!r})")
    lines.append("`ticketscope config` prints every field with its default and unit")
    return "\n".join(lines)


def parse_config(obj: dict[str, Any], source: str = "<dict>", cls: type[BaseModel] = RunConfig) -> Any:
    """Validate a plain dict into ``cls``; errors name each bad field and its value."""
    try:
        return cls.model_validate(obj)
    except ValidationError as e:
        raise TicketscopeError(_format_errors(e, source)) from None


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(key, line, first)
        self.key, self.line, self.first = key, line, first


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that gives one key twice (plain PyYAML keeps the last).
    A key given again after a merge (``<<: *anchor``) overrides the merged one, as YAML means it to."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise _DuplicateKey(key, key_node.start_mark.line + 1, seen[key])
                    seen[key] = key_node.start_mark.line + 1
                except TypeError:  # an unhashable key: the safe loader's own error names it
                    continue
        return super().construct_mapping(node, deep=deep)


CONFIG_HOLDS = "a mapping of config fields (`ticketscope config` lists them)"


def load_yaml(path: str | Path, kind: str = "config file", holds: str = CONFIG_HOLDS, if_empty: str = "") -> dict[str, Any]:
    """The mapping a YAML file holds. Refused, in one line naming the file: a missing or unreadable file,
    invalid YAML, a key given twice in one mapping (with its line), an empty document (nothing but
    whitespace and comments) and anything but a mapping at the top. ``kind`` and ``holds`` word the
    errors ("config file ...", "... must hold ``holds``"); ``if_empty`` ends the error for an empty file."""
    path = Path(path)
    try:
        loader = _StrictLoader(path.read_text())
        try:
            node = loader.get_single_node()
            empty = node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null") and not node.value)
            obj = None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except FileNotFoundError:
        raise TicketscopeError(f"{kind} {path} does not exist") from None
    except _DuplicateKey as e:
        raise TicketscopeError(f"{kind} {path}, line {e.line}: key {e.key!r} is given twice in one mapping "
                               f"(first on line {e.first}); keep one") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise TicketscopeError(f"{kind} {path} is not valid YAML: {e}") from None
    except OSError as e:
        raise TicketscopeError(f"cannot read {kind} {path}: {e.strerror}") from None
    if empty:
        raise TicketscopeError(f"{kind} {path} is empty; it must hold {holds}{if_empty}")
    if not isinstance(obj, dict):
        raise TicketscopeError(f"{kind} {path} must hold {holds}, not {'null' if obj is None else type(obj).__name__}")
    return obj


def load_config(path: str | Path) -> RunConfig:
    """A run config from a YAML file. An empty file is refused; ``{}`` asks for every default."""
    return parse_config(load_yaml(path, if_empty="; write {} to run with every default"), str(path))


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The config of a run directory, as the run was trained: a config.yaml written before sample
    streams were versioned (no ``data.stream`` key) describes a version-1 run (see :class:`DataConfig`)."""
    path = Path(run_dir) / "config.yaml"
    raw = load_yaml(path)
    data = raw.get("data") if isinstance(raw.get("data"), dict) else None
    if data is not None and "stream" not in data:
        raw = {**raw, "data": {**data, "stream": 1}}
    return parse_config(raw, str(path))


def dump_config(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
