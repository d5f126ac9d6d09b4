"""The one registry of shipped models (:func:`list_models`, :func:`get`, :func:`register`), the recipes of the zoo's
own checkpoints (:data:`RECIPES`) and loading them.

Every shipped name is an :class:`Entry`: ``load()``, ``card()``, ``profile(split)`` and the ``command`` that reruns
it. A family of models registers its entries with one call each, ``register(Entry(...))``, where its code lives:
the zoo's recipes and the self-supervised encoders at the end of this file, the speech grid's cells in
:mod:`eekit.zoo.speech_grid`, the compressed models in :mod:`eekit.compress.results`. ``python -m eekit train |
report <name>`` looks its :class:`Runner` up here (:func:`register_runner`, :func:`runner`), so the command line
has no branch per family.

Each entry has a recipe (model builder, data, training phases); ``python -m eekit train <name>`` reruns it
(:func:`eekit.zoo.training.run_recipe`). The noise runs of the speech recognizers live in :mod:`eekit.zoo.noise`.
A trained model is shipped in ``data/checkpoints/`` as three files, all in ``data/SHA256SUMS``:

* ``<name>.pt`` - the weights (a plain state dict, loaded with ``weights_only=True``);
* ``<name>.json`` - the model card: per-exit accuracy and MFLOPs, parameters, the recipe, training time, machine;
* ``<name>.profile.npz`` - the exit profile on the test split, so notebooks open without running the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

from .. import data
from ..evaluate import profile_model, profile_speech
from ..models import branchy_lenet, resnet_ee
from ..models.speech import conformer_ctc, conformer_kws
from ..models.wav2vec2 import wav2vec2_ctc
from ..models.exits import EarlyExitNet
from ..criteria import Criterion
from ..profile import ExitProfile, OperatingPoint
from .. import validate
from ..report_format import table
from ..ssl import adaptivity
from ..ssl import shipped as ssl_shipped
from ..ssl.pretraining import CLEAN_NAME as SSL_CLEAN_NAME
from ..ssl.pretraining import NAME as SSL_NAME
from ..ssl.pretraining import RANDOM_NAME as SSL_RANDOM_NAME
from ..ssl.pretraining import _checkpoint as _ssl_file
from ..ssl.pretraining import load_encoder, load_ssl_profile
from ..train import TrainConfig

__all__ = ["Entry", "register", "get", "list_models", "Runner", "register_runner", "runner", "takes", "Recipe",
           "RECIPES", "get_recipe", "load_pretrained", "load_profile", "load_card", "operating_point", "CHECKPOINT_DIR",
           "SHIPPED_MAX_DROP", "TRAIN_ALWAYS"]

CHECKPOINT_DIR = "checkpoints"
TRAIN_ALWAYS = frozenset({"out", "force", "quiet"})  # the options every `train` run takes


# ------------------------------------------------------------------------------------------------ the registry


@dataclass(frozen=True)
class Entry:
    """One shipped model: how to load it, read its card and one of its profiles, and the command that reruns it.

    ``splits``: the profiles it ships (``profile()`` reads the first); ``family`` groups the entries
    (``"recipes"``, ``"ssl"``, ``"speech-grid"``, ``"compressed"``, ...)."""

    name: str
    family: str
    loader: Callable[[], Any]
    card_reader: Callable[[], dict]
    profile_reader: Callable[[str], ExitProfile]
    command: str
    splits: tuple[str, ...] = ("test",)

    def load(self) -> Any:
        """The model (checksum-verified, eval mode)."""
        return self.loader()

    def card(self) -> dict:
        """Its model card (JSON)."""
        return self.card_reader()

    def profile(self, split: str | None = None) -> ExitProfile:
        """Its cached exit profile on ``split`` (one of :attr:`splits`; default: the first)."""
        return self.profile_reader(self.splits[0] if split is None else validate.one_of("split", split, self.splits))


_ENTRIES: dict[str, Entry] = {}


def register(entry: Entry) -> Entry:
    """Add ``entry`` to the registry (a second entry of the same name is refused: names are unique)."""
    if entry.name in _ENTRIES and _ENTRIES[entry.name] != entry:
        raise ValueError(f"a model named {entry.name!r} is already registered (family {_ENTRIES[entry.name].family})")
    _ENTRIES[entry.name] = entry
    return entry


def list_models(family: str | None = None) -> list[str]:
    """Every shipped name (of one ``family``), in registration order."""
    return [n for n, e in _ENTRIES.items() if family is None or e.family == family]


def get(name: str) -> Entry:
    """The registry entry of a shipped name; an unknown name lists the known ones."""
    if not isinstance(name, str) or name not in _ENTRIES:
        raise ValueError(f"unknown model {name!r}; known: {list_models()}")
    return _ENTRIES[name]


@dataclass(frozen=True)
class Runner:
    """What ``python -m eekit <command> <name>`` runs: ``run(args)`` returns the text to print, and
    ``accepts(args)`` the option names this run takes and how a refusal names it (every other option given is
    refused, exit status 2)."""

    command: str  # "train" or "report"
    name: str
    run: Callable[[Any], str]
    accepts: Callable[[Any], tuple[frozenset[str], str]] = field(compare=False)


_RUNNERS: dict[tuple[str, str], Runner] = {}


def takes(options, who: str) -> Callable[[Any], tuple[frozenset[str], str]]:
    """``accepts`` for a run whose options do not depend on the others given."""
    return lambda args: (frozenset(options), who)


def register_runner(runner: Runner) -> Runner:
    _RUNNERS[(runner.command, runner.name)] = runner
    return runner


def runner(command: str, name: str) -> Runner:
    """The run of ``python -m eekit <command> <name>``; an unknown name lists the known ones."""
    found = _RUNNERS.get((command, name))
    if found is None:
        raise ValueError(f"unknown model {name!r}; known: {sorted(n for c, n in _RUNNERS if c == command)}")
    return found
SHIPPED_MAX_DROP = 0.01  # the cards' early-exit numbers: cheapest threshold within 1 accuracy point of the final exit


@dataclass(frozen=True)
class Recipe:
    """How to build, feed and train one early-exit model."""

    name: str
    description: str
    builder: Callable[..., EarlyExitNet]
    builder_kwargs: dict
    dataset: str  # "mnist", "cifar10", "fsdd-strings" (connected digits) or "fsdd-words" (isolated digits)
    phases: tuple[TrainConfig, ...]
    augment: Callable[[], Callable] | None = None
    criterion: str = "max_prob"  # the exit criterion the card's early-exit numbers use ...
    max_drop: float = SHIPPED_MAX_DROP  # ... at the cheapest threshold within this accuracy drop of the final exit

    @property
    def is_speech(self) -> bool:
        return self.dataset.startswith("fsdd")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One sample's shape ``(C, H, W)``."""
        return {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}[self.dataset]

    def build(self) -> EarlyExitNet:
        return self.builder(**self.builder_kwargs)

    def _loader(self):
        return {"mnist": data.load_mnist, "cifar10": data.load_cifar10,
                "fsdd-strings": lambda split, transform=None: data.load_digit_strings(split),
                "fsdd-words": lambda split, transform=None: data.load_fsdd(split)}[self.dataset]

    def test_set(self):
        """The test split only (evaluation needs no training data)."""
        return self._loader()("test")

    def datasets(self):
        """(augmented training split, test split); speech models augment inside (SpecAugment)."""
        transform = self.augment() if self.augment else None
        return self._loader()("train", transform=transform), self.test_set()

    def profile(self, model, dataset, meta: dict | None = None) -> ExitProfile:
        return (profile_speech if self.is_speech else profile_model)(model, dataset, meta=meta)


def _mnist_augment():
    from torchvision.transforms import v2  # only training needs it: at the top it cost every kernel 130 MB and 1 s

    return v2.RandomAffine(degrees=10, translate=(0.1, 0.1))


def _cifar_augment():
    from torchvision.transforms import v2  # only training needs it (see _mnist_augment)

    return v2.Compose([v2.RandomCrop(32, padding=4, padding_mode="reflect"), v2.RandomHorizontalFlip()])


_MNIST = dict(builder=branchy_lenet, builder_kwargs={}, dataset="mnist", augment=_mnist_augment)
_MNIST_CFG = dict(epochs=20, batch_size=64, lr=0.05, weight_decay=5e-4)
# B-LeNet's exit 1 is within a point of its final exit, so the 1-point rule is threshold 0 (a static exit-1 model,
# not early exit); the per-layer-head cards use the stricter "no accuracy drop" point, like the speech cards.
_NO_DROP = dict(max_drop=0.0)
_CIFAR = dict(builder=resnet_ee, builder_kwargs={"width": 24}, dataset="cifar10", augment=_cifar_augment)
# No label smoothing: it caps every exit's confidence near 0.9 and blurs the confident-vs-unsure ranking that
# max-prob exits rely on (on a 10k-image trial it cut the FLOPs saved within 1 point from 62 % to 58 %).
# 15 epochs, not 12: the final exit gains 0.3 points and the FLOPs saved within 1 point rise from 46.9 % to 51.4 %.
_CIFAR_CFG = dict(epochs=15, batch_size=256, lr=0.2, weight_decay=5e-4)
_CIFAR_JOINT = (TrainConfig(loss_weights="sdn", **_CIFAR_CFG),)  # both widths: one recipe, so only width differs

_SPEECH_CFG = dict(epochs=15, batch_size=16, lr=2e-3, optimizer="adam", weight_decay=0.0)
# Connected digits are easy for layer 1 of this encoder (DER within a point of the last layer), so the 1-point rule
# would send every utterance to layer 1; speech cards use the stricter "no DER increase on clean speech" point.
_CTC = dict(builder=conformer_ctc, builder_kwargs={}, dataset="fsdd-strings", criterion="ctc_entropy", max_drop=0.0)

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("cnn-mnist", "B-LeNet on MNIST, all exits trained jointly from scratch (uniform loss weights)",
               phases=(TrainConfig(loss_weights="uniform", **_MNIST_CFG),), **_MNIST, **_NO_DROP),
        Recipe("cnn-mnist-two-stage", "B-LeNet on MNIST, two-stage: backbone with the final exit only, then the "
               "early heads on the frozen backbone (HuBERT-EE / DeeBERT)",
               phases=(TrainConfig(loss_weights="final-only", **_MNIST_CFG),
                       TrainConfig(loss_weights="early-only", freeze_backbone=True, **_MNIST_CFG)),
               **_MNIST, **_NO_DROP),
        Recipe("cnn-mnist-shared", "B-LeNet on MNIST with one shared exit head (FreeML's gNet): backbone with the "
               "final exit only, then the shared head on the frozen backbone with a random exit point per batch",
               phases=(TrainConfig(loss_weights="final-only", **_MNIST_CFG),
                       TrainConfig(loss_weights="random-exit", freeze_backbone=True, **{**_MNIST_CFG, "epochs": 10})),
               **{**_MNIST, "builder_kwargs": {"shared_head": True}}),
        Recipe("cnn-cifar10", "ResNet-9-style CNN (width 24) on CIFAR-10 with 5 exits (SDN-style max-pooled heads), "
               "trained jointly from scratch with the Shallow-Deep Networks loss schedule",
               phases=_CIFAR_JOINT, **_CIFAR),
        Recipe("cnn-cifar10-wide", "The same CNN and recipe at twice the width (48): 4x the FLOPs per stage, so "
               "each PyTorch call does more work and real early exit realizes its FLOP promise at batch 1 "
               "(docs/performance.md)", phases=_CIFAR_JOINT,
               **{**_CIFAR, "builder_kwargs": {"width": 48}}),
        Recipe("cnn-cifar10-two-stage", "The same CNN trained two-stage: backbone with the final exit only, then the "
               "early heads on the frozen backbone (HuBERT-EE / DeeBERT)",
               phases=(TrainConfig(loss_weights="final-only", **_CIFAR_CFG),
                       TrainConfig(loss_weights="early-only", freeze_backbone=True,
                                   **{**_CIFAR_CFG, "epochs": 4, "lr": 0.05})), **_CIFAR),
        Recipe("speech-fsdd", "Conformer (6 layers, d=64) with a CTC exit after every layer, trained jointly from "
               "scratch on connected FSDD digits (uniform loss weights, 2309.09546)",
               phases=(TrainConfig(loss_weights="uniform", **_SPEECH_CFG),), **_CTC),
        Recipe("speech-fsdd-two-stage", "The same conformer trained two-stage (HuBERT-EE): the backbone with the final "
               "CTC exit only (this phase alone is the single-exit baseline), then the early exits on the frozen "
               "backbone", phases=(TrainConfig(loss_weights="final-only", **_SPEECH_CFG),
                                   TrainConfig(loss_weights="early-only", freeze_backbone=True,
                                               **{**_SPEECH_CFG, "epochs": 6})), **_CTC),
        Recipe("wav2vec2-fsdd", "A small wav2vec 2.0 (torchaudio's wav2vec2_model: 7 convolutions over the 8 kHz "
               "waveform, 6 transformer layers, d=64) with a CTC exit after every layer, trained two-stage from "
               "scratch on connected FSDD digits: the encoder with the last exit only, then the early exits on the "
               "frozen encoder (HuBERT-EE)", builder=wav2vec2_ctc, builder_kwargs={}, dataset="fsdd-strings",
               phases=(TrainConfig(loss_weights="final-only", **{**_SPEECH_CFG, "epochs": 8, "lr": 3e-3}),
                       TrainConfig(loss_weights="early-only", freeze_backbone=True, **{**_SPEECH_CFG, "epochs": 2})),
               criterion="ctc_entropy", max_drop=0.0),
        Recipe("kws-fsdd", "Keyword spotting: the conformer classifies isolated FSDD digits, a pooled exit after "
               "every layer, trained jointly", builder=conformer_kws, builder_kwargs={}, dataset="fsdd-words",
               phases=(TrainConfig(loss_weights="uniform", **{**_SPEECH_CFG, "epochs": 10}),)),
    ]
}


def get_recipe(name: str) -> Recipe:
    """The recipe of ``name``; an unknown name lists the known ones."""
    if not isinstance(name, str) or name not in RECIPES:
        raise ValueError(f"unknown model {name!r}; known: {sorted(RECIPES)}")
    return RECIPES[name]


_recipe = get_recipe


def _shipped(name: str, suffix: str, folder: str | Path | None = None) -> Path:
    _recipe(name)
    return data.checkpoint_file(f"{name}{suffix}", folder, train_command=f"python -m eekit train {name}")


def _other_family(name: str, folder: str | Path | None) -> Entry | None:
    """The registry entry of a shipped name that is not one of the zoo's recipes (ssl-hubert, a speech-grid cell, a
    compressed model), so the zoo's loaders read every shipped name."""
    if folder is None and isinstance(name, str) and name not in RECIPES:
        return _ENTRIES.get(name)
    return None


def load_card(name: str, folder: str | Path | None = None) -> dict:
    """The model card of a shipped checkpoint (``folder``: of a run of your own, ``train --out folder``); any name
    of :func:`list_models`."""
    entry = _other_family(name, folder)
    return entry.card() if entry is not None else data.read_json(_shipped(name, ".json", folder))


def load_pretrained(name: str, folder: str | Path | None = None) -> EarlyExitNet:
    """The shipped model ``name``, checksum-verified, in eval mode (``folder``: your own run's weights)."""
    model = _recipe(name).build()
    path = _shipped(name, ".pt", folder)
    try:
        model.load_state_dict(data.read_torch(path))
    except RuntimeError as err:  # the wrong tensors: another model's file under this name
        raise data.DataFileError(f"{path} does not hold {name}'s weights ({str(err).splitlines()[0]}); "
                                 f"accepted: the weights `python -m eekit train {name}` writes") from None
    return model.eval()


def load_profile(name: str, folder: str | Path | None = None) -> ExitProfile:
    """The shipped exit profile of ``name`` on its test split (no model run needed; ``folder``: your own run's); any
    name of :func:`list_models` (its first split)."""
    entry = _other_family(name, folder)
    return entry.profile() if entry is not None else ExitProfile.load(_shipped(name, ".profile.npz", folder))


def operating_point(name: str, criterion: str | Criterion | None = None, max_drop: float | None = None,
                    profile: ExitProfile | None = None) -> OperatingPoint:
    """The card's operating point of recipe ``name``: its criterion (or ``criterion``) at the cheapest threshold
    within its ``max_drop`` (or this one) of the final exit, on its shipped test profile (or ``profile``, e.g. a
    fresh run's). The one place reports, training and benchmarks pick it."""
    recipe = get_recipe(name)
    profile = load_profile(name) if profile is None else profile
    return profile.calibrate(criterion or recipe.criterion, max_drop=recipe.max_drop if max_drop is None else max_drop)


# -------------------------------------------------------------------------------------------------- families


def _recipe_profile(name: str, split: str) -> ExitProfile:
    return load_profile(name)  # the test split is the one shipped


for _name in RECIPES:
    register(Entry(_name, "recipes", partial(load_pretrained, _name), partial(load_card, _name),
                   partial(_recipe_profile, _name), f"python -m eekit train {_name}"))


SSL_SPLITS = ("test", "calibration", "noisy", "kws", "digits", "speaker", "ctc")  # test: the held-out clean clips


def _ssl_profile(name: str, split: str) -> ExitProfile:
    return load_ssl_profile(name if split == "test" else f"{name}-{split}")


def _ssl_card(trained_by: str = SSL_NAME) -> dict:
    """The card of ``ssl-hubert`` (it describes its random twin too, ``random_twin``) or of ``ssl-hubert-clean``
    (with the old encoder's numbers in ``history``)."""
    return data.read_json(_ssl_file(f"{trained_by}.json"))


for _name, _trained_by in ((SSL_NAME, SSL_NAME), (SSL_RANDOM_NAME, SSL_NAME), (SSL_CLEAN_NAME, SSL_CLEAN_NAME)):
    register(Entry(_name, "ssl", lambda n=_name: load_encoder(n)[0], partial(_ssl_card, _trained_by),
                   partial(_ssl_profile, _name), f"python -m eekit train {_trained_by}", SSL_SPLITS))


def _train_ssl(args) -> str:
    if args.device not in (None, "cpu"):
        raise ValueError(f"train {args.model} trains on the CPU; --device {args.device!r} is not accepted "
                         "(accepted: cpu, or leave it out)")
    card = ssl_shipped.run_recipe(args.out, epochs=args.epochs, progress=not args.quiet, force=args.force,
                                  name=args.model)
    return json.dumps({"name": card["name"], "pretraining_seconds": card["pretraining"]["pretraining_seconds"],
                       "measurement_seconds": card["measurement_seconds"], **card["report"]}, indent=2)


def _report_ssl_accepts(args) -> tuple[frozenset[str], str]:
    if args.measure:  # rerun the label-free exit's controls (eekit.ssl.adaptivity), minutes
        return frozenset({"measure", "out", "force", "quiet"}), "report ssl-daisy --measure"
    return frozenset({"json"}), "report ssl-daisy (one criterion, ssl_entropy, and a label-free calibration rule)"


def _report_ssl(args) -> str:
    if args.measure:
        result = adaptivity.measure(args.out, force=args.force, progress=not args.quiet)
        return table({k: v for k, v in result.items() if k != "clips"}, True)
    return table(ssl_shipped.report(), args.json)


for _name in (SSL_NAME, SSL_CLEAN_NAME):
    register_runner(Runner("train", _name, _train_ssl, takes(TRAIN_ALWAYS | {"epochs", "device"}, f"train {_name}")))
register_runner(Runner("report", "ssl-daisy", _report_ssl, _report_ssl_accepts))
register_runner(Runner("report", SSL_CLEAN_NAME, lambda args: table(ssl_shipped.clean_report(), args.json),
                       takes({"json"}, f"report {SSL_CLEAN_NAME} (the old encoder's findings beside the new one's)")))
