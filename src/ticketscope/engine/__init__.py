"""The engine: many runs of one network shape trained together as one stacked network.

Runs whose networks have the same shapes and whose training settings agree (optimizer, lr,
schedule, budget, batch size, activation, bias, batch norm, loss: :func:`ensemble_key`) train as
one *ensemble*: every parameter is stacked along a leading run axis, each layer is one batched
matrix product for all runs (``torch.baddbmm`` / ``torch.bmm``), the forward and backward pass are
written out by hand (no autograd graph), and one ``torch.optim`` step updates every run at once
(SGD and Adam are elementwise, so each run's update only reads its own slice). Everything that
makes a run itself stays its own: its initial state, masks, mini-batch stream (its own seed,
data set, fixed training set or online stream), its snapshots and evaluations.

A run's result is bit-identical alone (an ensemble of one) or inside an ensemble of any size and
mix, on one machine at one torch thread count (``RunConfig.threads``, part of the key). Why, and
the layout rules that keep it so: docs/REPRODUCIBILITY.md, "Ensembles: why a run's bits never
depend on its neighbours".

Modules, in reading order: :mod:`.plan` (which runs share an ensemble), :mod:`.batches`
(mini-batches), :mod:`.stacked` (the stacked network and its hand-written step), :mod:`.optim`
(optimizer, schedule, loss, evaluation), :mod:`.loop` (:func:`train_ensemble`).
"""

from .batches import BatchSource, chunk_steps
from .loop import EnsembleResult, Member, train_ensemble, warm_up
from .optim import evaluate, loss_fn, lr_factor, make_optimizer, snapshot_steps
from .plan import ensemble_key, plan_ensembles, run_memory_bytes, shared_settings
from .stacked import StackedFCN

__all__ = [
    "BatchSource", "EnsembleResult", "Member", "StackedFCN", "chunk_steps", "ensemble_key", "evaluate",
    "loss_fn", "lr_factor", "make_optimizer", "plan_ensembles", "run_memory_bytes", "shared_settings",
    "snapshot_steps", "train_ensemble", "warm_up",
]
