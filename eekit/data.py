"""Loaders for the data sets shipped in ``data/``: nothing here touches the network.

Every file is checked against ``data/SHA256SUMS`` before it is read, so a missing or corrupted file fails with a
message that names it instead of producing silently wrong numbers. Splits are deterministic.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import pickle
import re
import tarfile
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from . import files, validate

__all__ = [
    "DATA_DIR",
    "DataFileError",
    "ImageDataset",
    "SpokenDigits",
    "Transcripts",
    "SpeedPerturbed",
    "SPEED_FACTORS",
    "speed_factors",
    "DigitStrings",
    "DIGITS",
    "PowerTrace",
    "CIFAR10_CLASSES",
    "FSDD_SPEAKERS",
    "NOISE_NAMES",
    "TRACE_NAMES",
    "data_path",
    "load_mnist",
    "load_cifar10",
    "load_fsdd",
    "load_noise",
    "load_trace",
    "write_manifest",
    "update_manifest",
    "write_run",
    "read_json",
    "read_torch",
    "checkpoint_file",
    "SpeechCommands",
    "SC_COMMANDS",
    "SC_DIGITS",
    "load_speech_commands",
    "speech_commands_speakers",
]

DATA_DIR = Path(os.environ.get("EEKIT_DATA", Path(__file__).resolve().parents[1] / "data"))
MANIFEST = "SHA256SUMS"

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
FSDD_SAMPLE_RATE = 8000
NOISE_NAMES = ("doing_the_dishes", "dude_miaowing", "exercise_bike", "running_tap", "pink_noise", "white_noise")
RF_LOAD_OHMS = 30_000.0  # Mementos traces: WISP 4.1 front end loaded by 30 kOhm (data/traces/mementos-rf/SOURCE.md)
TRACE_NAMES = tuple(f"rf-{i}" for i in range(1, 11)) + ("solar-2018sep", "solar-2023jan", "solar-2023jun")

MNIST_TRAIN_SIZE = 8000  # the kit re-splits the 10k MNIST test set: 8,000 train / 2,000 test (data/README.md)


class DataFileError(RuntimeError):
    """A shipped data file is missing, corrupted or not in the manifest."""


# --------------------------------------------------------------------------------------------------- integrity


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(data_dir: Path) -> dict[str, str]:
    path = Path(data_dir) / MANIFEST
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DataFileError(f"{path} is missing: it lists the sha256 of every shipped data file. Restore it from "
                            "git.") from None
    return _read_manifest(path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)
def _read_manifest(path: Path, size: int, mtime_ns: int) -> dict[str, str]:
    """Parse a checksum list once per (size, mtime); a malformed line names the file and the accepted format."""
    entries = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            raise DataFileError(f"{path} is damaged at line {number} ({line[:60]!r}); accepted: lines of "
                                f"'<64 hex digits>  <relative path>'. Restore it from git, or rerun the command "
                                f"that wrote this folder")
        entries[parts[1].strip()] = parts[0]
    return entries


@lru_cache(maxsize=8192)
def _verified(path: Path, size: int, mtime_ns: int) -> str:
    """Hash a file once per (size, mtime); a changed file is hashed again."""
    return _sha256(path)


def data_path(relative: str, data_dir: Path | None = None) -> Path:
    """Return ``data/<relative>`` after checking that it exists and matches its manifest sha256."""
    data_dir = Path(data_dir or DATA_DIR)
    path = data_dir / relative
    files.recover(path.parent)  # a commit a killed run left half done: finish it before reading
    expected = _manifest(data_dir).get(relative)
    if expected is None:
        raise DataFileError(f"{relative!r} is not listed in {data_dir / MANIFEST}; the kit only reads files it ships.")
    if not path.is_file():
        raise DataFileError(f"Data file {path} is missing. Restore it with `git checkout -- data/{relative}`.")
    stat = path.stat()
    actual = _verified(path, stat.st_size, stat.st_mtime_ns)
    if actual != expected:
        shipped = data_dir.resolve() == DATA_DIR.resolve()
        raise DataFileError(
            f"Data file {path} is corrupted: its sha256 is {actual}, {data_dir / MANIFEST} expects {expected}. "
            + (f"Restore it with `git checkout -- data/{relative}`." if shipped else
               "Rerun the command that wrote it.")
        )
    return path


def checkpoint_file(relative: str, folder: str | Path | None = None, train_command: str = "") -> Path:
    """A trained file: ``<folder>/<name>`` from a run of the user's own when ``folder`` is given, else the shipped,
    checksum-verified ``data/checkpoints/<relative>``; a missing file's error says which command makes it.

    A run folder's own ``SHA256SUMS`` (written by every run since it existed) is checked too, so a damaged file of
    the user's is named; a file the list does not know (a run from before) is read unchecked."""
    hint = f" (train it with `{train_command}`)" if train_command else ""
    if folder is not None:
        folder = Path(folder)
        path = folder / Path(relative).name
        files.recover(folder)
        if not path.is_file():
            raise DataFileError(f"{path} is missing{hint}")
        root = manifest_root(folder)
        key = path.resolve().relative_to(root.resolve()).as_posix()
        if (root / MANIFEST).is_file() and key in _manifest(root):
            try:
                return data_path(key, root)
            except DataFileError as err:
                raise DataFileError(f"{err}{hint}") from None
        return path
    try:
        return data_path(f"checkpoints/{relative}")
    except DataFileError as err:
        raise DataFileError(f"{err}{hint}") from None


def read_json(path: Path) -> dict:
    """A JSON file (a card); a damaged one raises :class:`DataFileError` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (UnicodeDecodeError, ValueError) as err:
        raise DataFileError(f"{path} is not valid JSON ({err}); accepted: a model card as eekit writes it. Restore "
                            "it, or rerun the command that wrote it") from None


def read_torch(path: Path):
    """A ``torch.save`` file (weights), loaded with ``weights_only=True``; a damaged one raises
    :class:`DataFileError` naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as err:
        raise DataFileError(f"{path} cannot be read as torch weights ({' '.join(str(err).split())[:200]}); "
                            "accepted: a file torch.save wrote. Restore it, or rerun the command that wrote it"
                            ) from None


def manifest_root(folder: str | Path) -> Path:
    """The folder whose ``SHA256SUMS`` lists ``folder``'s files: ``data/`` for the shipped ones, else the folder."""
    folder = Path(folder)
    return DATA_DIR if folder.resolve().is_relative_to(DATA_DIR.resolve()) else folder


def write_run(out_dir: str | Path, writers: dict[Path, Callable[[Path], None]]) -> list[Path]:
    """Write a run's files as one set (:class:`eekit.files.FileSet`, in ``writers``' order: put the card last) and
    record their sha256 in the folder's checksum list (``data/SHA256SUMS`` for shipped files, else
    ``<out_dir>/SHA256SUMS``; every other entry stays). A run killed at any moment leaves the old set or the new one.
    The caller holds ``out_dir`` (:func:`eekit.files.claim_folder`); ``data/`` is claimed here for the list."""
    root = manifest_root(out_dir)
    shared = root.resolve() != Path(out_dir).resolve()
    with files.claim_folder(root, wait=120) if shared else contextlib.nullcontext():
        _finish_commits(root)
        with files.FileSet() as fs:
            for path, write in writers.items():
                fs.stage(path, write)
            entries = dict(_manifest(root)) if (root / MANIFEST).exists() else {}
            for tmp, final in fs.staged:
                entries[final.resolve().relative_to(root.resolve()).as_posix()] = _sha256(tmp)
            fs.stage(root / MANIFEST, lambda p: p.write_text(_manifest_text(entries)))
            written = [final for _, final in fs.staged]
    return written


def _finish_commits(root: Path) -> None:
    """Replay any killed run's journal below ``root`` before the shared checksum list is read and rewritten: its
    pending list would otherwise replace this update's when it is replayed later."""
    for journal in Path(root).rglob(files.JOURNAL_NAME):
        files.recover(journal.parent)


def _manifest_text(entries: dict[str, str]) -> str:
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(entries.items()))


def write_manifest(data_dir: Path | None = None, patterns: Sequence[str] = ("**/*",)) -> Path:
    """Rewrite ``data/SHA256SUMS`` from the files on disk (maintainers: after adding a data file or checkpoint)."""
    data_dir = Path(data_dir or DATA_DIR)
    skip = {MANIFEST}
    found = sorted(
        {p for pattern in patterns for p in data_dir.glob(pattern) if p.is_file()},
        key=lambda p: p.relative_to(data_dir).as_posix(),
    )
    lines = [
        f"{_sha256(p)}  {p.relative_to(data_dir).as_posix()}"
        for p in found
        if p.name not in skip and p.suffix not in {".md"} and not p.name.startswith(("LICENSE", "."))
    ]
    return files.write_text(data_dir / MANIFEST, "\n".join(lines) + "\n")


def update_manifest(paths: Sequence[str | Path], data_dir: Path | None = None) -> Path:
    """Record the sha256 of just ``paths`` (inside ``data_dir``) in ``data/SHA256SUMS``; every other entry stays as
    it was, so a shipped file that was corrupted earlier keeps failing its check."""
    data_dir = Path(data_dir or DATA_DIR).resolve()
    with files.claim_folder(data_dir, wait=120):
        _finish_commits(data_dir)
        entries = dict(_manifest(data_dir)) if (data_dir / MANIFEST).exists() else {}
        for f in paths:
            path = Path(f).resolve()
            if not path.is_relative_to(data_dir) or not path.is_file():
                raise ValueError(f"{f} is not a file inside {data_dir}; only shipped data files go in {MANIFEST}")
            entries[path.relative_to(data_dir).as_posix()] = _sha256(path)
        return files.write_text(data_dir / MANIFEST, _manifest_text(entries))


# ------------------------------------------------------------------------------------------------------ images


class ImageDataset(Dataset):
    """Images kept as uint8 ``[N, C, H, W]`` (small in memory); items come out as float ``[0, 1]`` tensors.

    ``transform`` (for example torchvision ``v2.RandomCrop``) is applied per item, for training augmentation.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], transform: Callable | None = None):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 tensor [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.classes, self.transform = images, labels.long(), tuple(classes), transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[i]
        if self.transform is not None:
            image = self.transform(image)
        return image.float().div_(255), self.labels[i]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as one float tensor in ``[0, 1]`` (no augmentation) and the labels."""
        return self.images.float().div_(255), self.labels

    def subset(self, n: int, seed: int = 0) -> "ImageDataset":
        """A deterministic random subset of ``n`` items (for quick demos)."""
        n = validate.whole("subset size", n, 1, len(self))
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        return ImageDataset(self.images[idx], self.labels[idx], self.classes, self.transform)


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """``k`` indices spread evenly over ``range(n)`` (sorted, unique). Test sets stored class by class must be
    subsampled this way, never by taking a prefix."""
    validate.whole("the number of items to keep", k, 1, n)
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


def _check_split(split: str, allowed: Sequence[str] = ("train", "test")) -> None:
    if split not in allowed:
        raise ValueError(f"split must be one of {list(allowed)}, got {split!r}")


def _read_idx(path: Path, magic: int) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    header_magic = int.from_bytes(raw[:4], "big")
    if header_magic != magic:
        raise DataFileError(f"{path} is not an IDX file with magic {magic:#x} (found {header_magic:#x})")
    ndim = magic & 0xFF
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(split: str = "train", transform: Callable | None = None) -> ImageDataset:
    """MNIST digits, 28x28 grayscale. Only the official 10k *test* set is shipped, so the kit re-splits it:
    a fixed stratified permutation gives 8,000 images to ``"train"`` and 2,000 to ``"test"``."""
    _check_split(split)
    images = _read_idx(data_path("mnist/t10k-images-idx3-ubyte.gz"), 0x803)
    labels = _read_idx(data_path("mnist/t10k-labels-idx1-ubyte.gz"), 0x801).astype(np.int64)
    train_idx, test_idx = _stratified_split(labels, MNIST_TRAIN_SIZE, seed=0)
    idx = train_idx if split == "train" else test_idx
    return ImageDataset(torch.from_numpy(images[idx].copy()).unsqueeze(1), torch.from_numpy(labels[idx]),
                        [str(d) for d in range(10)], transform)


def _stratified_split(labels: np.ndarray, n_first: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices so that each class keeps its share in both parts; both parts sorted."""
    rng = np.random.default_rng(seed)
    frac = n_first / len(labels)
    first, second = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(frac * len(idx)))
        first.append(idx[:k])
        second.append(idx[k:])
    first, second = np.concatenate(first), np.concatenate(second)
    # fix rounding so the first part has exactly n_first items
    while len(first) > n_first:
        second, first = np.append(second, first[-1]), first[:-1]
    while len(first) < n_first:
        first, second = np.append(first, second[-1]), second[:-1]
    return np.sort(first), np.sort(second)


def _cache_dir() -> Path:
    return Path(os.environ.get("EEKIT_CACHE", Path.home() / ".cache" / "eekit"))


def load_cifar10(split: str = "train", transform: Callable | None = None, cache_dir: Path | None = None) -> ImageDataset:
    """CIFAR-10 from the shipped JPEG archives (lossy q~75 re-encodings: accuracy lands a bit below published numbers).

    The tar is read member by member (nothing unpacked); decoded arrays are cached as ``.npy`` under
    ``cache_dir`` (default ``~/.cache/eekit``, or ``$EEKIT_CACHE``), keyed by the archive's sha256, so the second
    load takes well under a second.
    """
    _check_split(split)
    archive = data_path(f"cifar10/{split}.tar.gz")
    digest = _manifest(DATA_DIR)[f"cifar10/{split}.tar.gz"][:16]
    cache = Path(cache_dir or _cache_dir())
    images_file = cache / f"cifar10-{split}-{digest}-images.npy"
    labels_file = cache / f"cifar10-{split}-{digest}-labels.npy"
    try:
        images, labels = np.load(images_file), np.load(labels_file)
    except (OSError, ValueError):
        images, labels = _decode_cifar_tar(archive)
        cache.mkdir(parents=True, exist_ok=True)
        for file, array in ((images_file, images), (labels_file, labels)):
            tmp = file.with_suffix(".tmp.npy")
            np.save(tmp, array)
            os.replace(tmp, file)
    return ImageDataset(torch.from_numpy(images), torch.from_numpy(labels), CIFAR10_CLASSES, transform)


def _decode_cifar_tar(archive: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    images, labels = [], []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if not member.isfile() or not member.name.endswith(".jpg"):
                continue
            class_name = member.name.split("/")[-2]
            with Image.open(io.BytesIO(tar.extractfile(member).read())) as im:
                images.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
            labels.append(CIFAR10_CLASSES.index(class_name))
    images_chw = np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))
    return images_chw, np.asarray(labels, dtype=np.int64)


# ------------------------------------------------------------------------------------------------------ speech


@dataclass
class SpokenDigits(Dataset):
    """FSDD recordings: mono float32 waveforms at 8 kHz with their digit, speaker and take index."""

    waveforms: list[torch.Tensor]
    digits: torch.Tensor
    speakers: list[str]
    takes: torch.Tensor
    sample_rate: int = FSDD_SAMPLE_RATE

    def __len__(self) -> int:
        return len(self.waveforms)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.waveforms[i], int(self.digits[i])

    def subset(self, n: int) -> "SpokenDigits":
        """``n`` evenly spaced recordings (every digit and speaker keeps its share)."""
        keep = evenly_spaced(len(self), n)
        return SpokenDigits([self.waveforms[i] for i in keep], self.digits[keep], [self.speakers[i] for i in keep],
                            self.takes[keep], self.sample_rate)

    @staticmethod
    def collate(batch):
        """Pad waveforms: ``(waves [B, S], lengths [B], digits [B])``."""
        waves, digits = zip(*batch)
        return (*_pad(waves), torch.tensor(digits))


def _pad(waves) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveforms of different lengths -> zero-padded ``[B, S]`` and their lengths ``[B]`` (speech batches)."""
    return torch.nn.utils.rnn.pad_sequence(list(waves), batch_first=True), torch.tensor([len(w) for w in waves])


def load_fsdd(split: str = "train", speakers: Sequence[str] | None = None) -> SpokenDigits:
    """Free Spoken Digit Dataset with its own convention: takes 0-4 are ``"test"``, takes 5-49 ``"train"``;
    ``split="all"`` gives every take. ``speakers`` restricts to some of :data:`FSDD_SPEAKERS`."""
    import soundfile

    _check_split(split, ("train", "test", "all"))
    speakers = FSDD_SPEAKERS if speakers is None else validate.names("FSDD speaker(s)", speakers, FSDD_SPEAKERS)
    takes = {"train": range(5, 50), "test": range(0, 5), "all": range(0, 50)}[split]
    waves, digits, who, take_ids = [], [], [], []
    for speaker in speakers:
        for digit in range(10):
            for take in takes:
                path = data_path(f"fsdd/recordings/{digit}_{speaker}_{take}.wav")
                audio, rate = soundfile.read(path, dtype="float32")
                if rate != FSDD_SAMPLE_RATE or audio.ndim != 1:
                    raise DataFileError(f"{path}: expected mono {FSDD_SAMPLE_RATE} Hz, got {rate} Hz, shape {audio.shape}")
                waves.append(torch.from_numpy(audio))
                digits.append(digit)
                who.append(speaker)
                take_ids.append(take)
    return SpokenDigits(waves, torch.tensor(digits), who, torch.tensor(take_ids))


HELD_OUT_SPEAKER = "george"  # never seen in speech training: the harder second test


def trim_silence(wave: torch.Tensor, sample_rate: int = FSDD_SAMPLE_RATE, threshold_db: float = -25.0,
                 pad_s: float = 0.02) -> torch.Tensor:
    """Cut leading and trailing frames (20 ms) quieter than ``threshold_db`` below the loudest, keeping ``pad_s``.
    A wave with no frame above the threshold (silence) comes back unchanged."""
    validate.number("threshold_db (dB below the loudest frame)", threshold_db, high=0, high_open=True)
    validate.number("pad_s (seconds)", pad_s, 0)
    validate.whole("sample_rate (Hz)", sample_rate, 1)
    frame = int(0.02 * sample_rate)
    n = len(wave) // frame
    if n < 2:
        return wave
    rms = wave[: n * frame].reshape(n, frame).pow(2).mean(1).sqrt()
    loud = torch.nonzero(20 * torch.log10(rms / rms.max().clamp_min(1e-9) + 1e-12) > threshold_db).flatten()
    if len(loud) == 0:
        return wave
    pad = int(pad_s * sample_rate)
    start = max(int(loud[0]) * frame - pad, 0)
    end = min((int(loud[-1]) + 1) * frame + pad, len(wave))
    return wave[start:end]


DIGITS = "0123456789"  # the connected-digit alphabet: digit d is CTC class d + 1


@dataclass
class Transcripts(Dataset):
    """Utterances with their transcripts: ``waveforms[i]`` (8 kHz float32) says ``labels[i]``, a string over
    ``alphabet``; CTC class ``alphabet.index(c) + 1`` is character ``c`` (0 is the blank)."""

    waveforms: list[torch.Tensor]
    labels: list[str]
    speakers: list[str]
    sample_rate: int = FSDD_SAMPLE_RATE
    alphabet: str = DIGITS

    def __len__(self) -> int:
        return len(self.waveforms)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        return self.waveforms[i], self.labels[i]

    def select(self, keep) -> "Transcripts":
        """The utterances at indices ``keep`` (in that order)."""
        keep = [int(i) for i in keep]
        return replace(self, waveforms=[self.waveforms[i] for i in keep], labels=[self.labels[i] for i in keep],
                       speakers=[self.speakers[i] for i in keep])

    def subset(self, n: int) -> "Transcripts":
        """``n`` evenly spaced utterances."""
        return self.select(evenly_spaced(len(self), n))

    def with_noise(self, snr_db: float | None, noise: str | Sequence[str] = NOISE_NAMES, seed: int = 0
                   ) -> "Transcripts":
        """The same utterances with background noise at ``snr_db`` dB (``None``: unchanged); a list of noise names
        is used round-robin over the utterances."""
        if snr_db is None:
            return self
        return replace(self, waveforms=noisy_waves(self.waveforms, snr_db, noise, self.sample_rate, seed),
                       labels=list(self.labels), speakers=list(self.speakers))

    def encode(self, text: str) -> list[int]:
        """A transcript as CTC classes; a character outside the alphabet is refused, naming the alphabet."""
        return _encode(text, self.alphabet)

    def collate(self, batch):
        """Pad waveforms; targets as CTC wants them: ``(waves [B, S], lengths [B], targets, target_lengths [B])``."""
        return _collate(batch, self.alphabet)

    def length_batches(self, batch_size: int, generator: torch.Generator) -> "LengthBatches":
        """A batch sampler over utterances of similar length: see :class:`LengthBatches`."""
        return LengthBatches([len(w) for w in self.waveforms], batch_size, generator)

    def speed_perturbed(self, factors: Sequence[float] | None = None) -> "SpeedPerturbed":
        """The same utterances, each played at a random one of ``factors`` every time it is drawn (for training):
        see :class:`SpeedPerturbed`."""
        return SpeedPerturbed(self.waveforms, self.labels, self.speakers, self.sample_rate, self.alphabet,
                              speed_factors(SPEED_FACTORS if factors is None else factors))


SPEED_FACTORS = (0.9, 1.0, 1.1)  # Ko et al. 2015: the training speech at 0.9x, 1x and 1.1x speed


def speed_factors(factors) -> tuple[float, ...]:
    """Checked speed-perturbation factors: a non-empty list of speeds in [0.5, 2] (1.0 = unchanged)."""
    if isinstance(factors, (str, bytes)) or not isinstance(factors, Sequence) or len(factors) == 0:
        raise ValueError(f"speed factors must be a non-empty list of speeds in [0.5, 2] (e.g. {list(SPEED_FACTORS)}), "
                         f"got {factors!r}")
    return tuple(validate.number("a speed factor", f, 0.5, 2.0, accepted="a speed in [0.5, 2] (1.0 = unchanged)")
                 for f in factors)


@dataclass
class SpeedPerturbed(Transcripts):
    """Speed perturbation (Ko et al. 2015): each draw of an utterance plays it at a random one of ``factors``
    (torchaudio's ``speed``: tempo and pitch change together), so a few training voices sound like more voices. The
    draw uses torch's global generator, which training seeds and a resumed run restores."""

    factors: tuple[float, ...] = SPEED_FACTORS

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        import torchaudio.functional as AF

        wave, text = self.waveforms[i], self.labels[i]
        factor = self.factors[int(torch.randint(len(self.factors), (1,)))]
        if factor != 1.0:
            wave = AF.speed(wave[None], self.sample_rate, factor)[0][0]
        return wave, text


class LengthBatches(torch.utils.data.Sampler):
    """Batches of similar-length items (sorted, cut into ``batch_size`` runs, the last partial run dropped), in a
    new seeded random order each epoch: long sentences padded to the longest of a random batch would waste about
    half of every training step."""

    def __init__(self, lengths: Sequence[int], batch_size: int, generator: torch.Generator):
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        self.batches = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
        self.generator = generator

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for i in torch.randperm(len(self.batches), generator=self.generator).tolist():
            yield self.batches[i]


class DigitStrings(Transcripts):
    """Connected-digit utterances: ``labels[i]`` is a string of digits."""

    @staticmethod
    def collate(batch):
        """As :meth:`Transcripts.collate` over the digits; static, so ``DigitStrings.collate(batch)`` needs no set."""
        return _collate(batch, DIGITS)


def _encode(text: str, alphabet: str) -> list[int]:
    try:
        return [alphabet.index(c) + 1 for c in text]
    except ValueError:
        bad = sorted(set(text) - set(alphabet))
        raise ValueError(f"transcript {text[:40]!r} has characters {bad} outside the alphabet {alphabet!r}") from None


def _collate(batch, alphabet: str):
    waves, labels = zip(*batch)
    targets = torch.tensor([c for text in labels for c in _encode(text, alphabet)], dtype=torch.long)
    return (*_pad(waves), targets, torch.tensor([len(t) for t in labels]))


def mix_noise(wave: torch.Tensor, noise: torch.Tensor, snr_db: float, generator: torch.Generator | None = None
              ) -> torch.Tensor:
    """``wave`` plus a random (seeded) stretch of ``noise`` scaled to ``snr_db`` dB, with torchaudio's ``add_noise``."""
    import torchaudio.functional as AF

    snr_db = validate.number("snr_db (dB)", snr_db)
    for name, x in (("wave", wave), ("noise", noise)):
        if not isinstance(x, torch.Tensor) or x.ndim != 1 or len(x) == 0 or not x.is_floating_point():
            raise ValueError(f"{name} must be a non-empty 1-D float tensor (mono samples), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        validate.finite(name, x)
    if not bool(noise.any()):
        raise ValueError("noise is silent (all zeros): it cannot be scaled to any SNR; use a noise with energy "
                         f"(one of {list(NOISE_NAMES)})")
    if len(noise) < len(wave):
        noise = noise.repeat(len(wave) // len(noise) + 1)
    start = int(torch.randint(len(noise) - len(wave) + 1, (1,), generator=generator))
    piece = noise[start : start + len(wave)]
    if not bool(piece.any()):  # a silent stretch of a noise that is not silent everywhere: take it from the start
        piece = noise[: len(wave)]
    return AF.add_noise(wave[None], piece[None], torch.tensor([float(snr_db)]))[0]


def noisy_waves(waveforms: Sequence[torch.Tensor], snr_db: float, noise: str | Sequence[str] = NOISE_NAMES,
                sample_rate: int = FSDD_SAMPLE_RATE, seed: int = 0) -> list[torch.Tensor]:
    """``waveforms`` mixed with shipped ``noise`` (one name, or a list used round-robin) at ``snr_db`` dB (seeded)."""
    snr_db = validate.number("snr_db (dB)", snr_db)
    names = [validate.one_of("noise", noise, NOISE_NAMES)] if isinstance(noise, str) else validate.names(
        "noise", noise, NOISE_NAMES)
    noises = [load_noise(n, sample_rate) for n in names]
    gen = torch.Generator().manual_seed(seed)
    return [mix_noise(w, noises[i % len(noises)], snr_db, gen) for i, w in enumerate(waveforms)]


def load_digit_strings(split: str = "train", count: int | None = None, seed: int = 0, max_digits: int = 5
                       ) -> DigitStrings:
    """Connected-digit utterances built from FSDD: each says 1 to ``max_digits`` digits by *one* speaker, silences
    trimmed, joined by random 50-250 ms gaps (seeded, so always the same set).

    ``"train"`` and ``"test"`` use FSDD's takes 5-49 / 0-4 of every speaker but :data:`HELD_OUT_SPEAKER`;
    ``"held_out"`` uses every take of that speaker, who is never trained on. Default counts: 4,000 / 300 / 300.
    """
    _check_split(split, ("train", "test", "held_out"))
    max_digits = validate.whole("max_digits", max_digits, 1)
    count = {"train": 4000, "test": 300, "held_out": 300}[split] if count is None else validate.whole(
        "count (utterances)", count, 1)
    if split == "held_out":
        source = load_fsdd("all", speakers=[HELD_OUT_SPEAKER])
    else:
        source = load_fsdd(split, speakers=[s for s in FSDD_SPEAKERS if s != HELD_OUT_SPEAKER])
    rng = np.random.default_rng({"train": seed, "test": seed + 1, "held_out": seed + 2}[split])
    trimmed = [trim_silence(w) for w in source.waveforms]
    by_speaker: dict[str, list[int]] = {}
    for i, who in enumerate(source.speakers):
        by_speaker.setdefault(who, []).append(i)
    speakers = sorted(by_speaker)
    rate = source.sample_rate
    waves, labels, who = [], [], []
    for _ in range(count):
        speaker = speakers[rng.integers(len(speakers))]
        picks = rng.choice(by_speaker[speaker], size=rng.integers(1, max_digits + 1))
        parts = [torch.zeros(int(rng.uniform(0.05, 0.25) * rate))]
        for i in picks:
            parts += [trimmed[i], torch.zeros(int(rng.uniform(0.05, 0.25) * rate))]
        waves.append(torch.cat(parts))
        labels.append("".join(str(int(source.digits[i])) for i in picks))
        who.append(speaker)
    return DigitStrings(waves, labels, who, rate)


SC_COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")  # Speech Commands' 10 words
SC_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SC_SPLITS = ("train", "test", "all", "digits")


@dataclass
class SpeechCommands(Dataset):
    """One-second Speech Commands clips (8 kHz float32) with their word, speaker and take; ``labels[i]`` is the index
    of ``words[i]`` in ``classes``."""

    waveforms: list[torch.Tensor]
    words: list[str]
    speakers: list[str]
    takes: torch.Tensor
    classes: tuple[str, ...]
    sample_rate: int = FSDD_SAMPLE_RATE

    def __post_init__(self):
        self.labels = torch.tensor([self.classes.index(w) for w in self.words], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.waveforms)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.waveforms[i], int(self.labels[i])

    def subset(self, n: int) -> "SpeechCommands":
        """``n`` evenly spaced clips (the manifest is sorted by word, so every word keeps its share)."""
        return self.select(evenly_spaced(len(self), n))

    def select(self, keep) -> "SpeechCommands":
        """The clips at indices ``keep`` (in that order)."""
        keep = [int(i) for i in keep]
        return SpeechCommands([self.waveforms[i] for i in keep], [self.words[i] for i in keep],
                              [self.speakers[i] for i in keep], self.takes[keep], self.classes, self.sample_rate)

    def with_noise(self, snr_db: float | None, noise: str | Sequence[str] = NOISE_NAMES, seed: int = 0
                   ) -> "SpeechCommands":
        """The same clips with background noise at ``snr_db`` dB (``None``: unchanged), as
        :meth:`DigitStrings.with_noise`."""
        if snr_db is None:
            return self
        waves = noisy_waves(self.waveforms, snr_db, noise, self.sample_rate, seed)
        return SpeechCommands(waves, list(self.words), list(self.speakers), self.takes.clone(), self.classes,
                              self.sample_rate)

    collate = staticmethod(SpokenDigits.collate)  # (waves [B, S], lengths [B], labels [B])


@lru_cache(maxsize=1)
def _speech_commands_manifest() -> tuple[tuple[str, str, str, int], ...]:
    import csv

    with open(data_path("speech-commands/manifest.csv"), newline="") as f:
        return tuple((r["path"], r["word"], r["speaker"], int(r["take"])) for r in csv.DictReader(f))


def speech_commands_speakers(split: str) -> tuple[str, ...]:
    """The speaker ids of a Speech Commands split (sorted), fixed by rule, never by clip:

    the 118 speakers who say a digit are all ``"test"`` (the unseen-voices digit test: none of them is in FSDD, and
    none is heard in training); of the other 121 speakers, sorted by id, every fifth (positions 4, 9, 14, ...) is
    ``"test"`` too, and the remaining 97 are ``"train"``.
    """
    _check_split(split, ("train", "test", "all"))
    rows = _speech_commands_manifest()
    everyone = sorted({r[2] for r in rows})
    digit_speakers = {r[2] for r in rows if r[1] in SC_DIGITS}
    others = [s for s in everyone if s not in digit_speakers]
    test = digit_speakers | set(others[4::5])
    return tuple(s for s in everyone if split == "all" or (s in test) == (split == "test"))


def load_speech_commands(split: str = "train", words: Sequence[str] | None = None) -> SpeechCommands:
    """Speech Commands v0.02 test-set clips (4,482 one-second words, 239 speakers, 8 kHz; see
    ``data/speech-commands/SOURCE.md``) of the speakers in ``split`` (:func:`speech_commands_speakers`), or
    ``"digits"``: the 240 clips of zero..nine (118 speakers). ``words`` keeps only those words and makes them the
    classes, in that order (default: every word present, sorted; ``"digits"`` defaults to :data:`SC_DIGITS`)."""
    import soundfile

    _check_split(split, SC_SPLITS)
    if split == "digits":
        words = tuple(words or SC_DIGITS)
        speakers = set(speech_commands_speakers("all"))
    else:
        speakers = set(speech_commands_speakers(split))
    rows = [r for r in _speech_commands_manifest() if r[2] in speakers and (words is None or r[1] in words)]
    if split == "digits":
        rows = [r for r in rows if r[1] in SC_DIGITS]
    if words is not None:
        unknown = set(words) - {r[1] for r in _speech_commands_manifest()}
        if unknown:
            raise ValueError(f"unknown Speech Commands word(s) {sorted(unknown)}; known: "
                             f"{sorted({r[1] for r in _speech_commands_manifest()})}")
    classes = tuple(words) if words is not None else tuple(sorted({r[1] for r in rows}))
    waves = []
    for path, *_ in rows:
        audio, rate = soundfile.read(data_path(f"speech-commands/{path}"), dtype="float32")
        if rate != FSDD_SAMPLE_RATE or audio.ndim != 1:
            raise DataFileError(f"{path}: expected mono {FSDD_SAMPLE_RATE} Hz, got {rate} Hz, shape {audio.shape}")
        waves.append(torch.from_numpy(audio))
    return SpeechCommands(waves, [r[1] for r in rows], [r[2] for r in rows], torch.tensor([r[3] for r in rows]),
                          classes)


def load_noise(name: str, sample_rate: int = FSDD_SAMPLE_RATE) -> torch.Tensor:
    """A background-noise recording from Speech Commands (16 kHz), resampled with torchaudio to ``sample_rate``."""
    import soundfile
    import torchaudio.functional as AF

    if name not in NOISE_NAMES:
        raise ValueError(f"unknown noise {name!r}; known: {list(NOISE_NAMES)}")
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
    audio, rate = soundfile.read(data_path(f"noise/{name}.wav"), dtype="float32")
    wave = torch.from_numpy(audio)
    return wave if rate == sample_rate else AF.resample(wave, rate, sample_rate)


# ------------------------------------------------------------------------------------------------ power traces


@dataclass(frozen=True)
class PowerTrace:
    """Harvested power over time: ``power_w[i]`` watts held from ``time_s[i]`` for ``dt_s`` seconds."""

    name: str
    time_s: np.ndarray
    power_w: np.ndarray
    dt_s: float
    source: str

    @property
    def duration_s(self) -> float:
        return float(len(self.power_w) * self.dt_s)

    @property
    def energy_j(self) -> float:
        return float(self.power_w.sum() * self.dt_s)


def load_trace(name: str, panel_area_m2: float = 5e-4, panel_efficiency: float = 0.15) -> PowerTrace:
    """An energy-harvesting trace in watts over seconds.

    ``rf-1`` ... ``rf-10``: Mementos RF traces, 1 kHz voltage across 30 kOhm, so P = V^2 / R. Time is the sample
    index x 1 ms (the raw timestamps contain joins and glitches; the samples themselves are contiguous).
    ``solar-2018sep``, ``solar-2023jan``, ``solar-2023jun``: NREL global horizontal irradiance (W/m^2, 1 per minute),
    clipped at 0 and scaled by ``panel_area_m2`` (default 5 cm^2) and ``panel_efficiency`` (default 15 %).
    """
    if name not in TRACE_NAMES:
        raise ValueError(f"unknown trace {name!r}; known: {list(TRACE_NAMES)}")
    if name.startswith("rf-"):
        path = data_path(f"traces/mementos-rf/{name[3:]}.txt")
        volts = np.loadtxt(path, usecols=1, dtype=np.float64)
        power, dt = volts**2 / RF_LOAD_OHMS, 1e-3
        source = "Mementos RF trace (Ransford et al., ASPLOS 2011), V^2/30kOhm"
    else:
        validate.number("panel_area_m2", panel_area_m2, 0, low_open=True)
        validate.number("panel_efficiency", panel_efficiency, 0, 1, low_open=True)
        path = data_path(f"traces/nrel-solar/{name[6:]}.txt")
        irradiance = np.loadtxt(path, delimiter=",", skiprows=1, usecols=2, dtype=np.float64)
        power, dt = np.clip(irradiance, 0, None) * panel_area_m2 * panel_efficiency, 60.0
        source = f"NREL SRRL BMS irradiance x {panel_area_m2 * 1e4:g} cm^2 x {panel_efficiency:.0%}"
    return PowerTrace(name, np.arange(len(power)) * dt, power, dt, source)
