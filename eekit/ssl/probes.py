"""Downstream tasks on a frozen speech encoder: one linear probe per exit, read at the layer DAISY exits at.

Each task trains, for every exit ``k``, a linear head on the frozen encoder that reads **a learned softmax-weighted
sum of layers 1..k** (the layers reached; DAISY's downstream heads do this, after s3prl's featurizer; each layer is
standardized first), then caches the test set as an :class:`~eekit.profile.ExitProfile` of kind
``"units"``: per-layer task errors beside the *unit* entropy scores of the same utterances, so an exit threshold on
``ssl_entropy`` picks a layer per utterance and the task's answer is that layer's probe's.

Tasks (:data:`TASKS`), all splits by speaker unless said otherwise:

* ``kws``: the 10 Speech Commands words; probes learn on the 97 train speakers, test on the 142 test speakers.
* ``digits``: unseen voices: probes learn on every FSDD recording (6 speakers), test on the 240 Speech Commands
  digit clips of 118 other speakers.
* ``speaker``: speaker identification of the Speech Commands test speakers with >= 20 clips; it cannot be split by
  speaker, so it is cross-validated by clip: the n-th clip of each speaker (manifest order) is in fold n % 4, every
  fold's probes learn on the other three, and every clip is tested once (2,574 test clips: a quarter of them alone
  put the accuracy's standard error near 2 points).
* ``ctc``: connected FSDD digits (``load_digit_strings``), a linear CTC head per layer, digit error rate.
* ``kws-10db``, ``digits-10db``, ``ctc-10db`` (:data:`NOISY_TASKS`): the same tasks with the six kit noises mixed in at
  10 dB, round-robin over the clips, on both the probes' training clips (seed 0) and the test clips (seed 1): tasks
  where depth matters (measured by :mod:`eekit.adaptivity`, not part of the training recipe).

Classification probes read the mean and the standard deviation of each layer's frames over the utterance
(multinomial logistic regression with the layer weights, L-BFGS, L2 1e-3); the CTC probe reads every frame (Adam).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .. import data
from ..models.speech import BLANK, greedy_ctc
from ..criteria import CRITERIA
from .daisy import BATCH_SIZE, UNIT_CRITERIA, layer_outputs
from ..models.ssl import MaskedUnitEncoder
from ..profile import ExitProfile

__all__ = ["TASKS", "NOISY_TASKS", "TASK_METRICS", "LabelledClips", "WeightedLayers", "task_data", "task_profile",
           "SPEAKER_MIN_CLIPS", "SPEAKER_FOLDS"]

TASKS = ("kws", "digits", "speaker", "ctc")
NOISY_TASKS = {"kws-10db": ("kws", 10.0), "digits-10db": ("digits", 10.0), "ctc-10db": ("ctc", 10.0)}  # (clean, dB)
TASK_METRICS = {"kws": "accuracy", "digits": "accuracy", "speaker": "accuracy", "ctc": "der", "kws-10db": "accuracy",
                "digits-10db": "accuracy", "ctc-10db": "der"}
SPEAKER_MIN_CLIPS = 20
SPEAKER_FOLDS = 4
CTC_TRAIN_UTTERANCES = 2000


@dataclass
class LabelledClips(Dataset):
    """Waveforms and one class index each (speaker identification's labels are speakers); ``folds``: each clip's
    cross-validation fold, for a task that is cross-validated rather than split."""

    waveforms: list[torch.Tensor]
    labels: torch.Tensor
    classes: tuple[str, ...]
    folds: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.waveforms)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.waveforms[i], int(self.labels[i])

    collate = staticmethod(data.SpokenDigits.collate)


def _speaker_clips_in_folds() -> LabelledClips:
    clips = data.load_speech_commands("test")
    counts: dict[str, int] = {}
    for s in clips.speakers:
        counts[s] = counts.get(s, 0) + 1
    speakers = tuple(sorted(s for s, n in counts.items() if n >= SPEAKER_MIN_CLIPS))
    seen: dict[str, int] = {}
    waves, labels, folds = [], [], []
    for wave, s in zip(clips.waveforms, clips.speakers):
        if s not in speakers:
            continue
        seen[s] = seen.get(s, 0) + 1
        waves.append(wave)
        labels.append(speakers.index(s))
        folds.append(seen[s] % SPEAKER_FOLDS)
    return LabelledClips(waves, torch.tensor(labels), speakers, torch.tensor(folds))


def task_data(task: str) -> tuple[Dataset | None, Dataset]:
    """(probe training set, test set) of ``task``; a cross-validated task (``speaker``) has no training set: its
    test set carries the folds (:attr:`LabelledClips.folds`) and every clip is tested by probes that never saw it."""
    if task == "kws":
        return (data.load_speech_commands("train", data.SC_COMMANDS),
                data.load_speech_commands("test", data.SC_COMMANDS))
    if task == "digits":
        return data.load_fsdd("all"), data.load_speech_commands("digits")
    if task == "speaker":
        return None, _speaker_clips_in_folds()
    if task == "ctc":
        return data.load_digit_strings("train", count=CTC_TRAIN_UTTERANCES), data.load_digit_strings("test")
    if task in NOISY_TASKS:
        clean, snr = NOISY_TASKS[task]
        return tuple(_noisy(s, snr, seed) for seed, s in enumerate(task_data(clean)))
    raise ValueError(f"unknown task {task!r}; known: {list(TASKS) + list(NOISY_TASKS)}")


def _noisy(clips, snr_db: float, seed: int):
    """``clips`` with the six kit noises round-robin at ``snr_db`` dB (seeded)."""
    if isinstance(clips, data.SpokenDigits):  # the one clip set without its own with_noise
        waves = data.noisy_waves(clips.waveforms, snr_db, data.NOISE_NAMES, seed=seed)
        return data.SpokenDigits(waves, clips.digits, list(clips.speakers), clips.takes)
    return clips.with_noise(snr_db, data.NOISE_NAMES, seed=seed)


def _encode(model: MaskedUnitEncoder, dataset, pooled: bool, progress: bool):
    """Per-layer features (pooled ``[L, N, 2D]``, or a list of ``([L, B, T, D], frames)`` batches), unit scores
    ``{criterion: [N, L]}`` and labels."""
    feats, scores, labels = [], {n: [] for n in UNIT_CRITERIA}, []
    for hidden, log_probs, frames, batch in layer_outputs(model, dataset, BATCH_SIZE, progress):
        for n in UNIT_CRITERIA:
            scores[n].append(CRITERIA[n].scores(log_probs, lengths=frames).T)
        if pooled:
            mask = (torch.arange(hidden.shape[2])[None, :] < frames[:, None]).to(hidden.dtype)[None, :, :, None]
            mean = (hidden * mask).sum(2) / mask.sum(2)
            std = (((hidden - mean[:, :, None]) ** 2 * mask).sum(2) / mask.sum(2)).sqrt()
            feats.append(torch.cat([mean, std], -1))
            labels.append(batch[2])
        else:
            feats.append((hidden, frames))
    scores = {n: torch.cat(v).numpy().astype(np.float32) for n, v in scores.items()}
    if pooled:
        return torch.cat(feats, 1), scores, torch.cat(labels)
    return feats, scores, None


class WeightedLayers(nn.Module):
    """s3prl's featurizer: standardize each layer (statistics of the probe's training set), then a softmax-weighted
    sum over the layers reached; ``x [k, ..., F]`` -> ``[..., F]``."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)  # [k, F]
        self.register_buffer("std", std.clamp_min(1e-5))
        self.weights = nn.Parameter(torch.zeros(len(mean)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (len(self.mean),) + (1,) * (x.ndim - 2) + (-1,)
        z = (x - self.mean.view(shape)) / self.std.view(shape)
        return torch.einsum("k,k...->...", self.weights.softmax(0), z)


def _logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float = 1e-3, iters: int = 300):
    """Multinomial logistic regression on a weighted sum of layers ``x [k, N, F]`` (L-BFGS from zeros,
    deterministic); returns a predictor of class indices."""
    probe = nn.Sequential(WeightedLayers(x.mean(1), x.std(1)), nn.Linear(x.shape[-1], num_classes))
    nn.init.zeros_(probe[1].weight)
    nn.init.zeros_(probe[1].bias)
    opt = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(probe(x), y) + l2 * probe[1].weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lambda v: probe(v).argmax(-1)


def _ctc_probe(batches, epochs: int = 15, lr: float = 5e-3, seed: int = 0):
    """A linear CTC head (11 classes, blank BLANK = 0) on a weighted sum of frozen layers; ``batches`` = ``[(x [k, B, T, D],
    frames, targets, target_lengths)]``. Returns a function of ``x`` giving log-probs ``[B, T, 11]``."""
    frames_all = torch.cat([x[:, torch.arange(x.shape[2])[None, :] < f[:, None]] for x, f, _, _ in batches], 1)
    torch.manual_seed(seed)
    probe = nn.Sequential(WeightedLayers(frames_all.mean(1), frames_all.std(1)), nn.Linear(frames_all.shape[-1], 11))
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for i in torch.randperm(len(batches), generator=gen).tolist():
            x, f, targets, target_lengths = batches[i]
            log_probs = probe(x).log_softmax(-1)
            loss = F.ctc_loss(log_probs.transpose(0, 1), targets, f, target_lengths, blank=BLANK, zero_infinity=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return lambda v: probe(v).log_softmax(-1)


def _fold_splits(x: torch.Tensor, y: torch.Tensor, folds: torch.Tensor) -> list[tuple]:
    """Cross-validation: per fold, (features ``[L, n, F]`` and labels of the clips of the other folds, the mask of
    the fold's own clips), so no clip is answered by a probe that learned on it."""
    return [(x[:, folds != f], y[folds != f], folds == f) for f in folds.unique()]


def _layer_predictions(splits: list[tuple], x_test: torch.Tensor, classes: int, progress: bool = False,
                       desc: str = "probes") -> np.ndarray:
    """Class predictions ``[N, L]``: for each ``(x_train, y_train, tested)`` split and each layer ``k``, a probe
    on layers 1..k learns on the split's training clips and answers the ``tested`` rows of ``x_test``."""
    L = x_test.shape[0]
    preds = torch.empty(x_test.shape[1], L, dtype=torch.long)
    bar = tqdm(total=len(splits) * L, disable=not progress, desc=desc, unit="probe")
    for x_train, y_train, tested in splits:
        for k in range(L):
            predict = _logistic(x_train[: k + 1], y_train, classes)
            with torch.no_grad():
                preds[tested, k] = predict(x_test[: k + 1, tested])
            bar.update()
    bar.close()
    return preds.numpy()


def task_profile(model: MaskedUnitEncoder, task: str, progress: bool = False, meta: dict | None = None
                 ) -> ExitProfile:
    """Train ``task``'s per-layer probes on the frozen ``model`` and profile its test set (kind ``"units"``: task
    errors per layer, unit-entropy scores per utterance)."""
    import torchaudio.functional as AF

    train_set, test_set = task_data(task)
    L = model.num_exits
    common = dict(cost=np.arange(1, L + 1, dtype=np.float64), full_cost=float(L), exit_names=list(model.exit_names),
                  kind="units", cost_unit="layers")
    folds = getattr(test_set, "folds", None)
    fold_ids = [] if folds is None else folds.unique()
    meta = {**(meta or {}), "task": task, "metric": TASK_METRICS[task],
            "train_samples": len(train_set) if folds is None else [int((folds != f).sum()) for f in fold_ids],
            "test_samples": len(test_set),
            "batch_size": BATCH_SIZE, "probe": __doc__.split("\n\n")[-1].strip()}
    if folds is not None:
        meta["cross_validated"] = (f"{len(fold_ids)} folds by clip; each clip's predictions come from the "
                                   "probes of the fold it is in, trained on the other folds")
    if TASK_METRICS[task] != "der":
        with torch.no_grad():
            x_test, scores, y_test = _encode(model, test_set, True, progress)
        if folds is None:  # a fixed split: one probe per layer, trained on the training set
            with torch.no_grad():
                x_train, _, y_train = _encode(model, train_set, True, progress)
            splits = [(x_train, y_train, torch.ones(len(y_test), dtype=torch.bool))]
        else:
            splits = _fold_splits(x_test, y_test, folds)
        classes = len(getattr(test_set, "classes", range(10)))
        preds = _layer_predictions(splits, x_test, classes, progress, desc=f"{task} probes")
        return ExitProfile.from_predictions(preds, y_test.numpy(), scores=scores, meta=meta, **common)

    with torch.no_grad():
        train_feats, _, _ = _encode(model, train_set, False, progress)
        test_feats, scores, _ = _encode(model, test_set, False, progress)
    train_targets = [(b[2], b[3]) for b in _batches(train_set)]
    refs = list(test_set.labels)
    hyps = [[None] * L for _ in refs]
    for k in tqdm(range(L), disable=not progress, desc="ctc probes", unit="layer"):
        probe = _ctc_probe([(h[: k + 1], f, t, tl) for (h, f), (t, tl) in zip(train_feats, train_targets)])
        i = 0
        with torch.no_grad():
            for h, f in test_feats:
                log_probs = probe(h[: k + 1])
                for b in range(len(f)):
                    hyps[i + b][k] = greedy_ctc(log_probs[b], int(f[b]))
                i += len(f)
    errors = np.array([[AF.edit_distance(list(r), list(h)) for h in row] for r, row in zip(refs, hyps)], np.float32)
    return ExitProfile(predictions=np.array(hyps, dtype=str), errors=errors,
                       totals=np.array([len(r) for r in refs], np.float32), labels=np.array(refs, dtype=str),
                       scores=scores, meta=meta, **common)


def _batches(dataset):
    """The collated batches :func:`~eekit.daisy.layer_outputs` sees, in the same order."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=False, collate_fn=dataset.collate)
    return list(loader)
