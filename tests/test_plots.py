"""Seed bands: mean_ci's interval is the Student-t 95% interval of the mean (scipy reference)."""

import numpy as np
import pandas as pd
from scipy import stats

from ticketscope.plots import mean_ci


def test_mean_ci_matches_scipy_t_interval():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": np.repeat([1.0, 0.8], 5), "cond": "a", "y": rng.normal(size=10)})
    df.loc[10] = {"x": 0.5, "cond": "a", "y": 2.0}  # a single seed: no interval
    out = mean_ci(df, "x", "y", ["cond"]).set_index("x")
    for x in (1.0, 0.8):
        v = df.loc[df["x"] == x, "y"]
        lo, hi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
        assert np.allclose(out.loc[x, ["mean", "lo", "hi"]].astype(float), [v.mean(), lo, hi])
    assert out.loc[0.5, "lo"] == out.loc[0.5, "hi"] == 2.0
