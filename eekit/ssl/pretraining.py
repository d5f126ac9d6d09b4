"""Self-supervised pretraining, HuBERT's two iterations in miniature: no labels, only masked unit prediction.

Recipe (``python -m eekit train ssl-hubert``, :mod:`eekit.ssl.shipped`):

1. **Corpus** (:func:`pretraining_corpus`): Speech Commands clips of the 97 ``"train"`` speakers (every word) and
   FSDD takes 5-49 of the five speakers other than ``george``, with no labels. Nothing of the 142 Speech Commands
   test speakers (the 118 digit speakers among them), FSDD takes 0-4 or ``george`` is heard.
2. **Targets**, one unit per 40 ms (:mod:`eekit.units`): iteration 1, a 100-unit k-means codebook on MFCC + deltas
   of that corpus; iteration 2, a 100-unit codebook on layer 4 (of 6) of the iteration-1 encoder, and a fresh
   encoder trained on those, as HuBERT's second iteration (step 4 continues iteration 2's). Only speech frames
   (:func:`eekit.units.speech_frames`) are clustered and get a unit; the losses skip the others.
3. **Masked prediction**: spans of 5 frames (200 ms) replaced by the mask embedding (about half the frames), loss =
   cross-entropy on masked frames + ``unmasked_weight`` x cross-entropy on the rest (HuBERT's alpha = 1 drops the
   second term; a small weight keeps the head's predictions on *unmasked* speech, which DAISY's exits read, sane).
4. **Utterance mixing** (WavLM's denoising masked prediction, in miniature): the last iteration's encoder trains
   ``mix_epochs`` more epochs on the same units, with half the clips overlaid by another clip of the corpus at
   -5..20 dB; the targets stay the units of the clean clip. Without it, an encoder that only ever heard clean speech
   grew *surer* of its units at 0 dB than at 5 dB (its deep layers named loud steady noise confidently); having
   had to guess through interference, it learns to be unsure when it cannot hear. No noise recording and no test
   speaker is heard: the interferers are the corpus' own clips.

Training checkpoints after every epoch (``<out>/ssl-hubert.iter<i>.resume.pt``, then ``ssl-hubert.mix.resume.pt``)
and resumes from it, so an interrupted run loses at most one epoch and ends with the same weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .. import data, files, validate
from ..librispeech import TEST_SPEAKERS, load_librispeech
from ..models.ssl import MaskedUnitEncoder, span_mask
from ..profile import ExitProfile
from .clips import held_out_clips
from .units import NO_UNIT, UnitCodebook, encoder_frames

__all__ = ["PretrainConfig", "UnitClips", "pretraining_corpus", "pretrain", "masked_unit_accuracy", "build_encoder",
           "resume_files", "load_encoder", "load_ssl_profile", "NAME", "RANDOM_NAME", "CLEAN_NAME", "ENCODERS",
           "CORPORA", "PIECE_SECONDS"]

NAME = "ssl-hubert"
RANDOM_NAME = "ssl-hubert-random"  # the random-weight twin: the same seed-fixed init, never pretrained
CLEAN_NAME = "ssl-hubert-clean"  # the same recipe on a corpus with the LibriSpeech training speakers' read sentences
CORPORA = ("words", "words+librispeech")  # what pretraining_corpus can hear
PIECE_SECONDS = 1.0  # LibriSpeech sentences are cut into pieces of this length (a Speech Commands clip's)


@dataclass
class PretrainConfig:
    """Hyper-parameters of the pretraining run (kept in the model card)."""

    num_units: int = 100
    kmeans_iters: int = 50
    epochs: int = 40
    batch_size: int = 32
    lr: float = 2e-3
    mask_prob: float = 0.8  # HuBERT's p = 0.8 ...
    mask_span: int = 5  # ... with 200 ms spans (HuBERT: 10 frames of 20 ms)
    unmasked_weight: float = 0.1
    clip_norm: float = 1.0
    iterations: int = 2  # HuBERT's: MFCC units, then units of the iteration-1 encoder's teacher_layer
    teacher_layer: int = 4  # HuBERT Base clusters layer 6 of 12; here layer 4 of 6
    speech_only: bool = True  # units (and so every loss) only on speech frames, as on HuBERT's LibriSpeech
    mix_epochs: int = 3  # utterance mixing after the last iteration (0: none)
    mix_lr: float = 5e-4  # constant, a fresh Adam: a short continuation, not a new schedule
    mix_prob: float = 0.5  # share of clips overlaid by another corpus clip ...
    mix_snr_db: tuple[float, float] = (-5.0, 20.0)  # ... at an SNR drawn uniformly from this range (dB)
    seed: int = 0
    corpus: str = "words"  # one of CORPORA (pretraining_corpus)

    def __post_init__(self):
        validate.one_of("corpus", self.corpus, CORPORA)
        for name, low in (("num_units", 2), ("kmeans_iters", 1), ("epochs", 1), ("batch_size", 1), ("mask_span", 1),
                          ("seed", 0)):
            validate.whole(name, getattr(self, name), low)
        validate.number("lr (learning rate)", self.lr, 0, low_open=True)
        validate.number("mask_prob (share of frames that start a masked span)", self.mask_prob, 0, 1, low_open=True)
        validate.number("unmasked_weight", self.unmasked_weight, 0)
        validate.number("clip_norm (gradient norm clip)", self.clip_norm, 0, low_open=True)
        validate.instance("speech_only", self.speech_only, bool, "True or False")
        if self.iterations not in (1, 2) or not 1 <= self.teacher_layer <= 6:
            raise ValueError(f"iterations must be 1 or 2 and teacher_layer 1..6, got {self.iterations}, "
                             f"{self.teacher_layer}")
        low, high = (validate.number("mix_snr_db (low, high)", v) for v in self.mix_snr_db)
        if self.mix_epochs < 0 or not self.mix_lr > 0 or not 0 <= self.mix_prob <= 1 or not low <= high:
            raise ValueError("mix_epochs >= 0, mix_lr > 0, mix_prob in [0, 1] and mix_snr_db = (low, high) with "
                             f"low <= high are required, got {self.mix_epochs}, {self.mix_lr}, {self.mix_prob}, "
                             f"{self.mix_snr_db}")
        validate.whole("mix_epochs", self.mix_epochs, 0)
        validate.number("mix_lr (learning rate)", self.mix_lr, 0, low_open=True)


# Each shipped encoder's pretraining configuration: the one place a name picks its corpus. ssl-hubert-clean hears
# 3.4 x the clips (10,707: 7,551 one-second LibriSpeech pieces beside the 3,156 word clips), so it keeps the optimizer
# steps of ssl-hubert instead of its epochs: 12 x 334 = 4,008 steps per iteration (ssl-hubert: 40 x 98 = 3,920) and
# one mixing epoch of 334 steps (ssl-hubert: 3 x 98 = 294).
ENCODERS = {NAME: PretrainConfig(),
            CLEAN_NAME: PretrainConfig(corpus="words+librispeech", epochs=12, mix_epochs=1)}


@dataclass
class UnitClips(Dataset):
    """Waveforms with their unit per 40 ms frame (the pretraining targets)."""

    waveforms: list[torch.Tensor]
    units: list[torch.Tensor]

    def __len__(self) -> int:
        return len(self.waveforms)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.waveforms[i], self.units[i]

    @staticmethod
    def collate(batch):
        """``(waves [B, S], lengths [B], units [B, T])``, units padded with NO_UNIT (ignored by the loss)."""
        waves, units = zip(*batch)
        padded = torch.nn.utils.rnn.pad_sequence(list(units), batch_first=True, padding_value=NO_UNIT)
        return (*data._pad(waves), padded)


def pretraining_corpus(corpus: str = "words") -> tuple[list[torch.Tensor], dict]:
    """The unlabelled pretraining waveforms and a description of exactly whom the encoder hears. ``"words"``: the
    Speech Commands and FSDD clips; ``"words+librispeech"``: those, then the read sentences of the 20 LibriSpeech
    training speakers (no transcript read), cut into pieces (:func:`_pieces`)."""
    corpus = validate.one_of("corpus", corpus, CORPORA)
    commands = data.load_speech_commands("train")
    fsdd_speakers = [s for s in data.FSDD_SPEAKERS if s != data.HELD_OUT_SPEAKER]
    fsdd = data.load_fsdd("train", speakers=fsdd_speakers)
    heard = {
        "speech_commands_speakers": sorted(set(commands.speakers)),
        "speech_commands_clips": len(commands),
        "fsdd_speakers": fsdd_speakers,
        "fsdd_takes": "5-49",
        "fsdd_clips": len(fsdd),
        "not_heard": "the 142 Speech Commands test speakers (all 118 digit speakers among them), FSDD takes 0-4, "
                     f"FSDD speaker {data.HELD_OUT_SPEAKER!r}",
    }
    waves = list(commands.waveforms) + list(fsdd.waveforms)
    if corpus == "words+librispeech":
        books = load_librispeech("train")
        pieces = [p for w in books.waveforms for p in _pieces(w)]
        heard.update(librispeech_speakers=sorted(set(books.speakers), key=int), librispeech_utterances=len(books),
                     librispeech_seconds=round(sum(len(w) for w in books.waveforms) / books.sample_rate, 1),
                     librispeech_pieces=len(pieces), piece_seconds=PIECE_SECONDS,
                     not_heard=heard["not_heard"] + f", the 8 LibriSpeech test speakers {list(TEST_SPEAKERS)}, "
                                                    "any transcript")
        waves += pieces
    return waves, heard


def _pieces(wave: torch.Tensor, seconds: float = PIECE_SECONDS) -> list[torch.Tensor]:
    """A sentence cut into ``seconds``-long pieces (a tail shorter than half a piece is dropped): the length of a
    Speech Commands clip, so batches pad no further than the word clips' and the encoder learns on the context
    length it is measured on."""
    size = int(seconds * data.FSDD_SAMPLE_RATE)
    return [p for p in wave.split(size) if len(p) >= size // 2]


def build_encoder(num_units: int = 100, seed: int = 0) -> MaskedUnitEncoder:
    """The encoder at its seed-fixed initialization: the pretraining start, and the random-weight twin."""
    torch.manual_seed(seed)
    return MaskedUnitEncoder(num_units=num_units)


def _loss(model: MaskedUnitEncoder, batch, config: PretrainConfig, generator: torch.Generator):
    waves, lengths, units = batch
    frames = encoder_frames(lengths)
    mask = span_mask(frames, units.shape[1], config.mask_prob, config.mask_span, generator)
    logits, model_frames = model(waves, lengths, mask)
    if not torch.equal(model_frames, frames) or logits.shape[1] != units.shape[1]:
        raise RuntimeError("unit targets and encoder frames disagree in length (see eekit.units.encoder_frames)")
    ce = F.cross_entropy(logits.transpose(1, 2), units, ignore_index=NO_UNIT, reduction="none")  # [B, T]
    valid = units >= 0
    masked, unmasked = valid & mask, valid & ~mask
    loss = (ce * masked).sum() / masked.sum().clamp_min(1)
    if config.unmasked_weight:
        loss = loss + config.unmasked_weight * (ce * unmasked).sum() / unmasked.sum().clamp_min(1)
    correct = ((logits.argmax(-1) == units) & masked).sum()
    return loss, int(correct), int(masked.sum())


def pretrain(out_dir: str | Path, config: PretrainConfig | None = None, progress: bool = True,
             name: str = "ssl-hubert") -> tuple[MaskedUnitEncoder, UnitCodebook, dict]:
    """Run every pretraining iteration (each a fresh encoder from the same seed, on the previous one's units), then
    the utterance-mixing phase on the last one, and return that model (eval mode), its codebook and the training
    log. Each step checkpoints every epoch (:func:`resume_files`) and resumes from it."""
    config = config or PretrainConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    waves, heard = pretraining_corpus(config.corpus)
    held = held_out_clips()
    teacher, logs = None, []
    files = resume_files(out_dir, config, name)
    for iteration, resume_file in enumerate(files[: config.iterations], start=1):
        teacher, codebook, log = _pretrain_iteration(waves, teacher, iteration, resume_file, config, progress)
        # each iteration's encoder on its own units of unseen speakers: what iterating bought
        log["held_out_masked_accuracy"] = _held_out_accuracy(teacher, codebook, held, config)
        logs.append(log)
    log = {"heard": heard, "config": asdict(config), "iterations": logs}
    if config.mix_epochs:
        log["mixing"] = _mixing_phase(teacher, UnitClips(waves, [codebook.units(w) for w in waves]), files[-1],
                                      config, progress)
        log["mixing"]["held_out_masked_accuracy"] = _held_out_accuracy(teacher.eval(), codebook, held, config)
    log["pretraining_seconds"] = round(sum(x["kmeans_seconds"] + x["training_seconds"] for x in logs)
                                       + log.get("mixing", {}).get("training_seconds", 0.0), 1)
    return teacher.eval(), codebook, log


def _held_out_accuracy(model: MaskedUnitEncoder, codebook: UnitCodebook, held, config: PretrainConfig) -> float:
    """Masked unit accuracy of ``model`` on the units ``codebook`` gives the held-out clips of unseen speakers."""
    return round(masked_unit_accuracy(model, UnitClips(held.waveforms, [codebook.units(w) for w in held.waveforms]),
                                      config), 4)


def resume_files(out_dir: str | Path, config: PretrainConfig | None = None, name: str = NAME) -> list[Path]:
    """The checkpoints :func:`pretrain` writes: one per iteration, then the utterance-mixing phase's (the last one
    holds the final encoder)."""
    config = config or PretrainConfig()
    return ([Path(out_dir) / f"{name}.iter{i}.resume.pt" for i in range(1, config.iterations + 1)]
            + ([Path(out_dir) / f"{name}.mix.resume.pt"] if config.mix_epochs else []))


def _pretrain_iteration(waves: list[torch.Tensor], teacher: MaskedUnitEncoder | None, iteration: int,
                        resume_file: Path, config: PretrainConfig, progress: bool
                        ) -> tuple[MaskedUnitEncoder, UnitCodebook, dict]:
    """One HuBERT iteration: fit the codebook (MFCC units without a teacher, else the teacher's layer), then train
    a fresh seeded encoder to predict those units at masked frames."""
    state = _resume_state(resume_file, config)
    if state is None:
        start = time.perf_counter()
        codebook = UnitCodebook.fit(waves, config.num_units, config.kmeans_iters, config.seed, teacher,
                                    None if teacher is None else config.teacher_layer, config.speech_only)
        state = {"config": asdict(config), "codebook": codebook.state_dict(), "epoch": 0, "log": [],
                 "kmeans_seconds": time.perf_counter() - start}
    codebook = UnitCodebook.from_state_dict(state["codebook"])
    clips = UnitClips(waves, [codebook.units(w) for w in waves])

    model = build_encoder(config.num_units, config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(clips, batch_size=config.batch_size, shuffle=True, generator=gen, drop_last=True,
                        collate_fn=UnitClips.collate)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * len(loader),
                                                pct_start=0.1)
    if state["epoch"]:
        _load_pretrained(model, state["model"])
        if state["epoch"] < config.epochs:
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            gen.set_state(state["generator"])
    mask_gen = torch.Generator().manual_seed(config.seed + 1)
    if "mask_generator" in state:
        mask_gen.set_state(state["mask_generator"])
    _train_epochs(model, loader, opt, sched, gen, mask_gen, state, resume_file, config, config.epochs,
                  f"pretraining, iteration {iteration}", progress)
    log = {"iteration": iteration, "targets": codebook.targets, "epochs": state["log"],
           "kmeans_seconds": round(state["kmeans_seconds"], 1),
           "training_seconds": round(sum(e["seconds"] for e in state["log"]), 1)}
    return model.eval(), codebook, log


def _resume_state(resume_file: Path, config: PretrainConfig) -> dict | None:
    """The checkpoint a step resumes from (None: start fresh); one written with another configuration is refused."""
    state = data.read_torch(resume_file) if resume_file.exists() else None
    if state is not None and state["config"] != asdict(config):
        raise ValueError(f"{resume_file} was written with another configuration ({state['config']}); delete it to "
                         "start again")
    return state


def _train_epochs(model: MaskedUnitEncoder, loader: DataLoader, opt, sched, gen: torch.Generator,
                  mask_gen: torch.Generator, state: dict, resume_file: Path, config: PretrainConfig, epochs: int,
                  desc: str, progress: bool, mix: UtteranceMixer | None = None) -> None:
    """Masked-prediction epochs ``state["epoch"]..epochs`` (``mix``: a function that overlays interference on a
    batch's waveforms), checkpointing ``state`` to ``resume_file`` after every epoch. Dropout draws from torch's
    global generator: its state goes into every checkpoint and comes back on resume, so a resumed run trains exactly
    as an uninterrupted one."""
    if "torch_rng" in state and state["epoch"] < epochs:
        torch.set_rng_state(state["torch_rng"])
    bar = tqdm(total=epochs * len(loader), initial=state["epoch"] * len(loader), disable=not progress, desc=desc,
               unit="batch")
    for epoch in range(state["epoch"], epochs):
        model.train()
        start, total, count, correct, masked = time.perf_counter(), 0.0, 0, 0, 0
        for batch in loader:
            loss, c, m = _loss(model, batch if mix is None else mix(batch), config, mask_gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            opt.step()
            if sched is not None:
                sched.step()
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1} of {desc}; lower the "
                                         f"learning rate (now {opt.param_groups[0]['lr']:g})")
            total, count, correct, masked = total + loss.item(), count + 1, correct + c, masked + m
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{total / count:.3f}", masked_acc=f"{correct / max(masked, 1):.3f}")
        state["log"].append({"epoch": epoch + 1, "loss": round(total / count, 4),
                             "train_masked_accuracy": round(correct / max(masked, 1), 4),
                             "seconds": round(time.perf_counter() - start, 1)})
        state.update(epoch=epoch + 1, model=model.state_dict(), opt=opt.state_dict(),
                     sched=None if sched is None else sched.state_dict(), generator=gen.get_state(),
                     mask_generator=mask_gen.get_state(), torch_rng=torch.get_rng_state())
        if mix is not None:
            state["mix_generator"] = mix.generator.get_state()
        files.write_atomic(resume_file, lambda p: torch.save(state, p))
    bar.close()


class UtteranceMixer:
    """Overlays, on a ``mix_prob`` share of a batch's clips, another clip of ``waves`` (repeated to length) at an SNR
    drawn from ``mix_snr_db`` (torchaudio's ``add_noise``); the unit targets are left as they are (the clean
    clip's). Seeded by its own generator, so a resumed run mixes the same."""

    def __init__(self, waves: list[torch.Tensor], config: PretrainConfig, seed: int):
        self.waves, self.prob, (self.low, self.high) = waves, config.mix_prob, config.mix_snr_db
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, batch):
        import torchaudio.functional as AF

        waves, lengths, units = batch
        waves, g = waves.clone(), self.generator
        for i, n in enumerate(lengths.tolist()):
            if float(torch.rand(1, generator=g)) >= self.prob:
                continue
            other = self.waves[int(torch.randint(len(self.waves), (1,), generator=g))]
            snr = self.low + float(torch.rand(1, generator=g)) * (self.high - self.low)
            interference = other.repeat(n // len(other) + 1)[:n]
            waves[i, :n] = AF.add_noise(waves[i, :n][None], interference[None], torch.tensor([snr]))[0]
        return waves, lengths, units


def _mixing_phase(model: MaskedUnitEncoder, clips: UnitClips, resume_file: Path, config: PretrainConfig,
                  progress: bool) -> dict:
    """Step 4 of the recipe: ``config.mix_epochs`` epochs of masked prediction through utterance mixing, from the
    last iteration's encoder (``model``, trained in place), on the same units."""
    state = _resume_state(resume_file, config)
    state = state or {"config": asdict(config), "epoch": 0, "log": []}
    opt = torch.optim.Adam(model.parameters(), lr=config.mix_lr)
    gen = torch.Generator().manual_seed(config.seed + 2)
    mask_gen = torch.Generator().manual_seed(config.seed + 3)
    mix = UtteranceMixer(clips.waveforms, config, config.seed + 4)
    torch.manual_seed(config.seed + 5)  # dropout's draws, not whatever the iterations before left behind
    if state["epoch"]:
        _load_pretrained(model, state["model"])
        opt.load_state_dict(state["opt"])
        for g, key in ((gen, "generator"), (mask_gen, "mask_generator"), (mix.generator, "mix_generator")):
            g.set_state(state[key])
    loader = DataLoader(clips, batch_size=config.batch_size, shuffle=True, generator=gen, drop_last=True,
                        collate_fn=UnitClips.collate)
    _train_epochs(model, loader, opt, None, gen, mask_gen, state, resume_file, config, config.mix_epochs,
                  "utterance mixing", progress, mix)
    return {"phase": "utterance mixing", "epochs": state["log"], "lr": config.mix_lr, "prob": config.mix_prob,
            "snr_db": list(config.mix_snr_db), "interference": "another clip of the pretraining corpus",
            "training_seconds": round(sum(e["seconds"] for e in state["log"]), 1)}


def _load_pretrained(model: MaskedUnitEncoder, state: dict) -> None:
    """Load pretraining weights; exit heads are trained afterwards, so they may be absent or fewer (older runs)."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    stray = [k for k in missing + unexpected if not k.startswith("exit_heads.")]
    if stray:
        raise ValueError(f"pretraining checkpoint does not fit the encoder: {stray}")


def masked_unit_accuracy(model: MaskedUnitEncoder, clips: UnitClips, config: PretrainConfig | None = None,
                         batch_size: int = 64, seed: int = 1234) -> float:
    """Fraction of masked frames (valid, seed-fixed span masks) whose k-means unit the last head predicts."""
    config = config or PretrainConfig()
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    correct = masked = 0
    loader = DataLoader(clips, batch_size=batch_size, shuffle=False, collate_fn=UnitClips.collate)
    with torch.no_grad():
        for batch in loader:
            _, c, m = _loss(model, batch, config, gen)
            correct, masked = correct + c, masked + m
    return correct / max(masked, 1)


# ------------------------------------------------------------------------------------------ the shipped files


def _save_weights(model: MaskedUnitEncoder, codebook: UnitCodebook, path: Path) -> None:
    """A plain state dict: the model's tensors, plus the unit codebook under ``units.*``."""
    state = dict(model.state_dict())
    state.update({f"units.{k}": v for k, v in codebook.state_dict().items()})
    torch.save(state, path)


def load_encoder(name: str = NAME, checkpoint_dir: str | Path | None = None
                 ) -> tuple[MaskedUnitEncoder, UnitCodebook]:
    """A shipped encoder (``ssl-hubert``, its twin ``ssl-hubert-random`` or ``ssl-hubert-clean``), checksum-verified,
    in eval mode, with its unit codebook. ``checkpoint_dir`` reads a fresh run's folder instead (not verified)."""
    validate.one_of("self-supervised encoder", name, (NAME, RANDOM_NAME, CLEAN_NAME))
    path = _checkpoint(f"{name}.pt", checkpoint_dir)
    state = data.read_torch(path)
    codebook = UnitCodebook.from_state_dict({k[6:]: state.pop(k) for k in list(state) if k.startswith("units.")})
    model = MaskedUnitEncoder(num_units=codebook.num_units)
    model.load_state_dict(state)
    return model.eval(), codebook


def _checkpoint(filename: str, checkpoint_dir: str | Path | None = None) -> Path:
    trained_by = CLEAN_NAME if filename.startswith(CLEAN_NAME) else NAME
    return data.checkpoint_file(filename, checkpoint_dir, f"python -m eekit train {trained_by}")


def load_ssl_profile(stem: str, checkpoint_dir: str | Path | None = None):
    """A shipped profile by stem, e.g. ``"ssl-hubert"`` (clean held-out units), ``"ssl-hubert-noisy"``,
    ``"ssl-hubert-kws"``, ``"ssl-hubert-random-ctc"``, ``"ssl-hubert-clean-kws"``."""
    return ExitProfile.load(_checkpoint(f"{stem}.profile.npz", checkpoint_dir))
