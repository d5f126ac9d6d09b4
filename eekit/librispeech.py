"""Read English sentences: Mini LibriSpeech (``train-clean-5``) at 8 kHz, split by speaker.

28 speakers read audiobook sentences (median 14 s). Eight of them (four women, four men) are the held-out test
voices that no model in the kit trains on; the other twenty train. Transcripts use :data:`ALPHABET` (26 letters,
apostrophe, space), which is what the sentence recognizers spell with (CTC class ``i + 1`` is ``ALPHABET[i]``).

The audio ships as Ogg Vorbis (``data/librispeech/``, 36 MB for 2.97 h): see ``data/librispeech/SOURCE.md`` for the
note of changes. ``python -m eekit.librispeech --source DIR`` rebuilds that folder from the FLAC corpus.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import torch

from . import cli, data, files, validate

__all__ = ["ALPHABET", "TEST_SPEAKERS", "SAMPLE_RATE", "FOLDER", "speakers", "rows", "load_librispeech", "manifest"]

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ' "
SAMPLE_RATE = 8000
FOLDER = "librispeech"
# 4 women, then 4 men, each with about 6.5 minutes of speech: the voices no model trains on
TEST_SPEAKERS = ("226", "1898", "3947", "6272", "163", "1867", "3664", "7367")
SPLITS = ("train", "test", "all")


def manifest() -> list[dict]:
    """One row per utterance: path, speaker, sex, chapter, utterance, seconds, transcript (utterance-id order)."""
    with open(data.data_path(f"{FOLDER}/manifest.csv"), newline="") as f:
        return list(csv.DictReader(f))


def speakers(split: str = "train") -> list[str]:
    """The speaker ids in ``split`` (``"train"``: 20, ``"test"``: the 8 of :data:`TEST_SPEAKERS`, ``"all"``)."""
    split = validate.one_of("split", split, SPLITS)
    every = sorted({row["speaker"] for row in manifest()}, key=int)
    if split == "all":
        return every
    return [s for s in every if (s in TEST_SPEAKERS) == (split == "test")]


def rows(split: str = "train", minutes: float | None = None) -> list[dict]:
    """The :func:`manifest` rows of ``split``'s speakers, in the order :func:`load_librispeech` reads them.

    ``minutes`` keeps a label budget: each speaker's first utterances (in id order) until the speaker has
    ``minutes / speakers`` of speech, so every voice keeps its share (``None``: everything).
    """
    who = set(speakers(split))
    kept = [row for row in manifest() if row["speaker"] in who]
    if minutes is None:
        return kept
    minutes = validate.number("minutes (label budget)", minutes, 0, low_open=True)
    share, used, budget = minutes * 60 / len(who), dict.fromkeys(who, 0.0), []
    for row in kept:
        if used[row["speaker"]] < share:
            budget.append(row)
            used[row["speaker"]] += float(row["seconds"])
    return budget


def load_librispeech(split: str = "train", minutes: float | None = None) -> data.Transcripts:
    """The utterances of :func:`rows` (``split``'s speakers, within ``minutes`` of speech when given) as
    :class:`~eekit.data.Transcripts` over :data:`ALPHABET`."""
    import soundfile

    waves, chosen = [], rows(split, minutes)
    for row in chosen:
        path = data.data_path(f"{FOLDER}/{row['path']}")
        audio, rate = soundfile.read(path, dtype="float32")
        validate.sample_rate(str(path), rate, SAMPLE_RATE)
        waves.append(torch.from_numpy(audio))
    return data.Transcripts(waves, [row["transcript"] for row in chosen], [row["speaker"] for row in chosen],
                            SAMPLE_RATE, ALPHABET)


def prepare(source: str | Path, out: str | Path, force: bool = False) -> int:
    """Re-encode the 8 kHz FLAC corpus at ``source`` as Ogg Vorbis into ``out`` (the shipped folder); returns the
    number of utterances. Refuses to replace an existing folder without ``force``."""
    import soundfile

    source = Path(source)
    if not (source / "manifest.csv").is_file():
        raise ValueError(f"source folder {str(source)!r} holds no manifest.csv; give the mini-librispeech folder "
                         "(8 kHz FLAC files and their manifest.csv)")
    out = validate.writable_dir("output folder", out)
    validate.no_overwrite([out / "manifest.csv"], force)
    with open(source / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        audio, rate = soundfile.read(source / row["path"], dtype="float32")
        validate.sample_rate(row["path"], rate, SAMPLE_RATE)
        buffer = io.BytesIO()
        soundfile.write(buffer, audio, rate, format="OGG", subtype="VORBIS")
        row["path"] = f"audio/{row['speaker']}/{row['utterance']}.ogg"
        (out / row["path"]).parent.mkdir(parents=True, exist_ok=True)
        files.write_bytes(out / row["path"], buffer.getvalue())
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    files.write_text(out / "manifest.csv", text.getvalue())
    for name in ("LICENSE.TXT", "SPEAKERS.TXT"):
        files.write_bytes(out / name, (source / name).read_bytes())
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m eekit.librispeech", description=prepare.__doc__)
    parser.add_argument("--source", type=Path, required=True, help="the mini-librispeech folder (8 kHz FLAC)")
    parser.add_argument("--out", type=Path, default=data.DATA_DIR / FOLDER)
    parser.add_argument("--force", action="store_true", help="rebuild an existing folder")
    args = parser.parse_args(argv)

    def command() -> int:
        count = prepare(args.source, args.out, args.force)
        print(f"{count} utterances written to {args.out}; record them with data.update_manifest")
        return 0

    return cli.run(command)


if __name__ == "__main__":
    sys.exit(main())
