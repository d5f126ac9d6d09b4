"""The exit profile: a model's outputs at every exit on a data set, cached once, queried instantly.

Everything a learner plays with (threshold sweeps, exit histograms, Pareto curves, calibration, the energy
simulator, the dashboards) reads an :class:`ExitProfile`. Queries are vectorized over samples (no Python loop),
so a slider move on 10,000 samples x 5 exits takes about a millisecond.

Accuracy is ``1 - errors / totals`` so that one class serves classification (an error is a wrong label, total 1
per sample) and speech (errors are digit edits, totals the reference length: 1 - digit error rate).
Profiles are saved as a plain ``.npz`` (no pickle; metadata as JSON text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import validate
from .criteria import CRITERIA, Criterion, first_exit, get_criterion, passes
from .files import write_atomic

__all__ = ["ExitProfile", "OperatingPoint", "Sweep"]

ORACLE_TABLE_LIMIT = 100_000_000  # cells of the oracle bound's knapsack table (0.1 GB, seconds); refused above


@dataclass(frozen=True)
class OperatingPoint:
    """What happens at one threshold: the numbers a dashboard shows."""

    criterion: str
    threshold: float
    accuracy: float  # fraction in [0, 1]
    mean_cost: float  # mean cost per sample, in the profile's cost unit (MFLOPs)
    savings: float  # 1 - mean_cost / full-model cost; negative when the heads cost more than early exits save
    exit_counts: np.ndarray  # samples leaving at each exit; sums to the sample count
    mean_exit: float  # mean exit index (0-based)

    @property
    def exit_fractions(self) -> np.ndarray:
        return np.asarray(self.exit_counts / max(self.exit_counts.sum(), 1))

    def summary(self, cost_unit: str = "MFLOPs") -> str:
        return (f"{self.criterion} @ {self.threshold:g}: accuracy {self.accuracy:.2%}, mean cost "
                f"{self.mean_cost:.3g} {cost_unit}, saved {round(100 * self.savings, 1) + 0.0:.1f}%, exits "
                + " / ".join(f"{f:.0%}" for f in self.exit_fractions))


@dataclass(frozen=True)
class Sweep:
    """Accuracy and cost over many thresholds of one criterion."""

    criterion: str
    thresholds: np.ndarray
    accuracy: np.ndarray
    mean_cost: np.ndarray
    savings: np.ndarray

    def pareto_mask(self) -> np.ndarray:
        """Points that no other point beats on both accuracy (higher) and cost (lower)."""
        order = np.lexsort((-self.accuracy, self.mean_cost))  # by cost, then best accuracy first
        keep = np.zeros(len(order), dtype=bool)
        best = -np.inf
        for i in order:  # K <= a few hundred thresholds: a loop over thresholds, not samples
            if self.accuracy[i] > best:
                keep[i] = True
                best = self.accuracy[i]
        return keep


@dataclass
class ExitProfile:
    """Cached per-sample, per-exit results of one model on one data set.

    Arrays: ``predictions``, ``errors`` ``[N, K]``; ``totals`` ``[N]``; ``cost`` ``[K]`` cumulative cost to reach
    and evaluate exit k (heads 0..k included); ``full_cost`` the plain model (all stages, final head only).
    Classification profiles also keep ``logits`` ``[K, N, C]`` and ``labels``, so any criterion can be scored later;
    CTC profiles keep precomputed ``scores`` per criterion instead.
    """

    predictions: np.ndarray
    errors: np.ndarray
    totals: np.ndarray
    cost: np.ndarray
    full_cost: float
    exit_names: list[str]
    kind: str = "classification"
    logits: np.ndarray | None = None
    labels: np.ndarray | None = None
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    params: np.ndarray | None = None
    latency_ms: np.ndarray | None = None
    cost_unit: str = "MFLOPs"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if np.ndim(self.errors) != 2:
            raise ValueError(f"errors must be an array [N samples, K exits], got shape {np.shape(self.errors)}")
        N, K = self.errors.shape
        if N < 1 or K < 1:
            raise ValueError(f"a profile needs at least one sample and one exit (errors [N >= 1, K >= 1]), got "
                             f"errors of shape {self.errors.shape}")
        if self.predictions.shape[:2] != (N, K) or self.totals.shape != (N,) or self.cost.shape != (K,):
            raise ValueError(
                f"inconsistent profile arrays: errors {self.errors.shape}, predictions {self.predictions.shape}, "
                f"totals {self.totals.shape}, cost {self.cost.shape} (accepted: errors and predictions [N, K], "
                f"totals [N], cost [K])"
            )
        if len(self.exit_names) != K:
            raise ValueError(f"{len(self.exit_names)} exit names for {K} exits (accepted: one name per exit)")
        if self.logits is not None and self.logits.shape[:2] != (K, N):
            raise ValueError(f"logits must be [K={K}, N={N}, C], got {self.logits.shape}")
        if self.labels is not None and np.shape(self.labels) != (N,):
            raise ValueError(f"labels must be one per sample [N={N}], got shape {np.shape(self.labels)}")
        validate.values("cost (cumulative cost of each exit)", self.cost, 0, low_open=True)
        validate.number("full_cost (cost of the plain model)", self.full_cost, 0, low_open=True)
        validate.values("totals (units per sample: 1 per image, reference digits per utterance)", self.totals, 0,
                        low_open=True)
        validate.values("errors", self.errors, 0)
        if self.kind == "classification":  # one unit per sample; CTC errors may exceed totals (insertions)
            over = np.argwhere(self.errors > self.totals[:, None])
            if len(over):
                i, k = (int(v) for v in over[0])
                raise ValueError(f"errors must be at most each sample's total (accepted: 0 or 1 per image), got "
                                 f"{self.errors[i, k]!r} errors of {self.totals[i]!r} for sample {i} at exit {k}")

    # ---------------------------------------------------------------------------------- built from parts
    @classmethod
    def from_predictions(cls, predictions: np.ndarray, labels: np.ndarray, **fields: Any) -> "ExitProfile":
        """A classification profile from every exit's predicted class ``[N, K]`` and the labels ``[N]``: errors
        0/1, one unit per sample. ``fields``: ``cost``, ``full_cost``, ``exit_names`` and any other field."""
        labels = np.asarray(labels)
        errors = (predictions != labels[:, None]).astype(np.float32)
        return cls(predictions, errors, np.ones(len(labels), np.float32), labels=labels, **fields)

    @classmethod
    def from_logits(cls, logits: torch.Tensor, labels: torch.Tensor, **fields: Any) -> "ExitProfile":
        """A classification profile from every exit's logits ``[K, N, C]`` (kept, so any criterion can be scored
        later) and the labels ``[N]``: predictions are each exit's argmax."""
        predictions = logits.argmax(-1).T.numpy()
        return cls.from_predictions(predictions, labels.numpy(), logits=logits.numpy().astype(np.float32), **fields)

    @classmethod
    def concat(cls, parts: list["ExitProfile"], **fields: Any) -> "ExitProfile":
        """The samples of ``parts`` one after another (same exits, costs and criteria; ``scores`` concatenated);
        ``fields`` (e.g. ``meta``) replace the first part's."""
        first = parts[0]
        labels = None if any(p.labels is None for p in parts) else np.concatenate([p.labels for p in parts])
        return cls(predictions=np.concatenate([p.predictions for p in parts]),
                   errors=np.concatenate([p.errors for p in parts]),
                   totals=np.concatenate([p.totals for p in parts]), cost=first.cost, full_cost=first.full_cost,
                   exit_names=first.exit_names, kind=first.kind, cost_unit=first.cost_unit,
                   scores={n: np.concatenate([p.scores[n] for p in parts]) for n in first.scores},
                   **{"labels": labels, **fields})

    def rows(self, rows: slice, **fields: Any) -> "ExitProfile":
        """The samples ``rows`` of a profile with precomputed scores, their references (``labels``) kept
        (``fields``, e.g. ``meta``, replace its own)."""
        labels = None if self.labels is None else self.labels[rows]
        return ExitProfile(predictions=self.predictions[rows], errors=self.errors[rows], totals=self.totals[rows],
                           cost=self.cost, full_cost=self.full_cost, exit_names=self.exit_names, kind=self.kind,
                           cost_unit=self.cost_unit, scores={n: v[rows] for n, v in self.scores.items()},
                           **{"labels": labels, **fields})

    # ------------------------------------------------------------------------------------------------ basics
    @property
    def num_samples(self) -> int:
        return int(self.errors.shape[0])

    @property
    def num_exits(self) -> int:
        return int(self.errors.shape[1])

    @property
    def exit_accuracy(self) -> np.ndarray:
        """Accuracy of every exit if all samples left there."""
        return np.asarray(1.0 - self.errors.sum(0) / self.totals.sum())

    @property
    def final_accuracy(self) -> float:
        return float(self.exit_accuracy[-1])

    def criteria(self) -> list[str]:
        """Criteria this profile can evaluate."""
        if self.logits is not None:
            return [n for n, c in CRITERIA.items() if c.kind == "classification"]
        return sorted(self.scores)

    # The public methods take a criterion's name or the Criterion itself and resolve it once (get_criterion); the
    # private ones below them take the resolved Criterion, so no lookup repeats on the way in.
    def threshold_range(self, criterion: str | Criterion) -> tuple[float, float]:
        """The thresholds that make sense here (integer criteria are clipped to this profile's exits)."""
        return self._range(get_criterion(criterion))

    def _range(self, c: Criterion) -> tuple[float, float]:
        if c.integer:
            return (c.low, min(c.high, self.num_exits - 1))
        return (c.low, c.high)

    def scores_for(self, criterion: str | Criterion) -> np.ndarray:
        """Scores ``[N, K]`` of ``criterion`` (computed from the cached logits once, then memoized)."""
        return self._scores(get_criterion(criterion, self.kind))

    def _scores(self, c: Criterion) -> np.ndarray:
        if c.name not in self.scores:
            if self.logits is None:
                raise ValueError(f"this profile has no scores for {c.name!r}; available: {self.criteria()}")
            labels = torch.from_numpy(self.labels) if self.labels is not None else None
            s = c.scores(torch.from_numpy(self.logits), labels=labels)
            self.scores[c.name] = s.T.contiguous().numpy()
        return self.scores[c.name]

    # ------------------------------------------------------------------------------------------ one threshold
    def exit_index(self, criterion: str | Criterion, threshold: float) -> np.ndarray:
        """The exit each sample leaves at, ``[N]``."""
        c = get_criterion(criterion, self.kind)
        return self._exit_index(c, self._checked(c, threshold))

    def _exit_index(self, c: Criterion, threshold: float) -> np.ndarray:
        return np.asarray(first_exit(passes(c, self._scores(c), threshold)))

    def at(self, criterion: str | Criterion, threshold: float) -> OperatingPoint:
        """Accuracy, mean cost, savings and exit histogram at one threshold."""
        return self._at(get_criterion(criterion, self.kind), threshold)

    def _at(self, c: Criterion, threshold: float) -> OperatingPoint:
        threshold = self._checked(c, threshold)
        return self._point(c.name, float(threshold), self._exit_index(c, threshold))

    def _point(self, name: str, threshold: float, exits: np.ndarray) -> OperatingPoint:
        """The operating point of one exit per sample (0-based ``exits`` [N])."""
        rows = np.arange(self.num_samples)
        accuracy = 1.0 - self.errors[rows, exits].sum() / self.totals.sum()
        mean_cost = float(self.cost[exits].mean())
        return OperatingPoint(
            criterion=name,
            threshold=threshold,
            accuracy=float(accuracy),
            mean_cost=mean_cost,
            savings=1.0 - mean_cost / self.full_cost,
            exit_counts=np.bincount(exits, minlength=self.num_exits),
            mean_exit=float(exits.mean()),
        )

    def _checked(self, c: Criterion, threshold: float) -> float:
        threshold = c.check_threshold(threshold)
        if c.integer:
            validate.exit_threshold(c.name, threshold, c.low, self.num_exits)
        return threshold

    # ---------------------------------------------------------------------------------------- many thresholds
    def default_thresholds(self, criterion: str | Criterion, steps: int = 201) -> np.ndarray:
        return self._default_thresholds(get_criterion(criterion, self.kind), steps)

    def _default_thresholds(self, c: Criterion, steps: int = 201) -> np.ndarray:
        steps = validate.whole("steps", steps, 2)
        low, high = self._range(c)
        if c.integer:
            return np.arange(low, high + 1, dtype=float)
        if c.needs_labels:
            return np.array([0.5])
        return np.linspace(low, high, steps)

    def sweep(self, criterion: str | Criterion, thresholds: np.ndarray | None = None) -> Sweep:
        """Accuracy and cost at every threshold, vectorized over thresholds and samples."""
        return self._sweep(get_criterion(criterion, self.kind), thresholds)

    def _sweep(self, c: Criterion, thresholds: np.ndarray | None = None) -> Sweep:
        if thresholds is None:
            t = self._default_thresholds(c)
        else:
            try:
                t = np.asarray(thresholds, dtype=float).reshape(-1)
            except (TypeError, ValueError):
                raise ValueError(f"thresholds must be a list of numbers, got {thresholds!r}") from None
            if len(t) == 0:
                raise ValueError("thresholds must hold at least one threshold, got an empty list")
        for value in np.unique(t):  # every one, not just the extremes: a NaN or 1.5 patience hides in between
            self._checked(c, float(value))
        scores = self._scores(c)  # [N, K]
        exits = first_exit(passes(c, scores[None], t[:, None, None]))  # [T, N, K] -> [T, N]
        rows = np.arange(self.num_samples)[None, :]
        accuracy = 1.0 - self.errors[rows, exits].sum(1) / self.totals.sum()
        mean_cost = self.cost[exits].mean(1)
        return Sweep(c.name, t, accuracy, mean_cost, 1.0 - mean_cost / self.full_cost)

    def calibrate(self, criterion: str | Criterion, max_drop: float | None = None, budget: float | None = None,
                  thresholds: np.ndarray | None = None) -> OperatingPoint:
        """Pick a threshold from the data.

        ``max_drop``: the cheapest threshold whose accuracy is at most ``max_drop`` (a fraction, 0.01 = 1 point)
        below the final exit's. ``budget``: the most accurate threshold whose mean cost is at most ``budget`` x the
        full model's cost. Give exactly one.
        """
        if (max_drop is None) == (budget is None):
            raise ValueError("give exactly one of max_drop (accuracy drop, a fraction) or budget (fraction of cost)")
        c = get_criterion(criterion, self.kind)
        sw = self._sweep(c, thresholds)
        if max_drop is not None:
            max_drop = validate.number("max_drop", max_drop, 0, 1, accepted="a fraction in [0, 1] (0.01 = 1 point)")
            ok = sw.accuracy >= self.final_accuracy - max_drop - 1e-12
            if not ok.any():
                raise ValueError(f"no threshold of {sw.criterion!r} stays within {max_drop:.2%} of the final exit")
            candidates = np.flatnonzero(ok)
            best = candidates[np.lexsort((-sw.accuracy[candidates], sw.mean_cost[candidates]))[0]]
        else:
            budget = validate.number("budget", budget, 0, 10, low_open=True,
                                     accepted="a fraction of the full model's cost in (0, 10] (0.5 = half)")
            ok = sw.mean_cost <= budget * self.full_cost + 1e-12
            if not ok.any():
                cheapest = sw.mean_cost.min() / self.full_cost
                raise ValueError(f"no threshold of {sw.criterion!r} fits a budget of {budget:.0%}; the cheapest "
                                 f"costs {cheapest:.0%} of the full model")
            candidates = np.flatnonzero(ok)
            best = candidates[np.lexsort((sw.mean_cost[candidates], -sw.accuracy[candidates]))[0]]
        return self._at(c, float(sw.thresholds[best]))

    def oracle_bound(self, max_drop: float) -> OperatingPoint:
        """The cheapest exit per sample, chosen with the errors in hand, whose accuracy stays within ``max_drop``
        of the final exit's: an UPPER BOUND on what any criterion could save at that loss (it peeks at the
        answers), where :meth:`calibrate` tells what one criterion does save. Exact, not greedy: a knapsack over
        whole error counts (images: 0 or 1; sentences: edit distances)."""
        max_drop = validate.number("max_drop", max_drop, 0, 1, accepted="a fraction in [0, 1] (0.01 = 1 point)")
        if not np.array_equal(self.errors, np.round(self.errors)):
            raise ValueError("the oracle bound counts whole errors; this profile's errors are fractional "
                             "(accepted: 0/1 per image, or edit distances)")
        errors = self.errors.astype(np.int64)
        cap = int(np.floor(float(errors[:, -1].sum()) + max_drop * float(self.totals.sum()) + 1e-6))  # errors allowed
        if self.num_samples * (cap + 1) > ORACLE_TABLE_LIMIT:
            raise ValueError(f"the oracle bound's table would hold {self.num_samples:,} samples x {cap + 1:,} error "
                             f"counts; accepted: at most {ORACLE_TABLE_LIMIT:,} cells (take fewer rows with .rows())")
        least = np.full(cap + 1, np.inf)  # least[e]: the lowest total cost of the samples so far with e errors
        least[0] = 0.0
        picks = np.zeros((self.num_samples, cap + 1), dtype=np.min_scalar_type(self.num_exits - 1))
        for i, row in enumerate(errors):
            best = np.full(cap + 1, np.inf)
            for k in range(self.num_exits):
                e = int(row[k])
                if e > cap:
                    continue
                cost = np.full(cap + 1, np.inf)
                cost[e:] = least[:cap + 1 - e] + self.cost[k]
                better = cost < best
                best[better], picks[i, better] = cost[better], k
            least = best
        spent = int(np.argmin(least))  # the final exit everywhere is always feasible, so this is finite
        exits = np.zeros(self.num_samples, dtype=np.int64)
        for i in range(self.num_samples - 1, -1, -1):
            exits[i] = picks[i, spent]
            spent -= int(errors[i, exits[i]])
        return self._point("oracle bound", max_drop, exits)  # its "threshold" is the loss it may spend

    # ------------------------------------------------------------------------------------------- save / load
    def save(self, path: str | Path) -> Path:
        """Write a plain ``.npz`` (no pickle) that :meth:`load` reads back, all at once (a crash leaves the old file
        or the new one, :func:`eekit.files.write_atomic`); returns the path written (``.npz`` is added to a name
        without it)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        return write_atomic(path, self.write)

    def write(self, path: str | Path) -> None:
        """Write the ``.npz`` bytes to exactly ``path`` (no atomic rename: :meth:`save`, or a
        :class:`eekit.files.FileSet` stage, wraps this)."""
        arrays: dict[str, Any] = {
            "predictions": self.predictions, "errors": self.errors, "totals": self.totals, "cost": self.cost,
        }
        for name in ("logits", "labels", "params", "latency_ms"):
            value = getattr(self, name)
            if value is not None:
                arrays[name] = value
        for name, value in self.scores.items():
            if self.logits is None:  # classification scores are recomputed from logits
                arrays[f"scores__{name}"] = value
        header = {"full_cost": self.full_cost, "exit_names": self.exit_names, "kind": self.kind,
                  "cost_unit": self.cost_unit, "meta": self.meta, "format": 1}
        with open(path, "wb") as f:  # a file object: numpy adds no ".npz" to a temporary's name
            np.savez_compressed(f, header=np.array(json.dumps(header)), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "ExitProfile":
        """Read a profile written by :meth:`save`. A missing file raises ``FileNotFoundError``; a truncated,
        damaged or foreign file raises ``ValueError`` naming the path and what is accepted."""
        if not isinstance(path, (str, Path)):
            raise ValueError(f"path must be a file path (str or pathlib.Path) of an .npz profile, got {path!r}")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no exit profile at {path}")
        try:
            with np.load(path, allow_pickle=False) as f:
                missing = {"header", "predictions", "errors", "totals", "cost"} - set(f.files)
                if missing:
                    raise ValueError(f"it lacks {sorted(missing)}")
                header = json.loads(str(f["header"]))
                arrays = {k: f[k] for k in f.files if k != "header"}
            scores = {k[len("scores__"):]: arrays.pop(k) for k in list(arrays) if k.startswith("scores__")}
            return cls(full_cost=header["full_cost"], exit_names=header["exit_names"], kind=header["kind"],
                       cost_unit=header["cost_unit"], meta=header["meta"], scores=scores, **arrays)
        except Exception as err:  # zip, json, key and shape errors alike: the file is not what save() writes
            raise ValueError(f"{path} is not an eekit exit profile, or it is damaged (accepted: an .npz written by "
                             f"ExitProfile.save): {type(err).__name__}: {err}") from err
