"""The course in one place: every lesson's file, title, time, prerequisites and what comes next.

The README's lesson table, lesson 00's map and the "Next" link that ends every lesson are all written from
:data:`LESSONS`; ``tests/test_lessons.py`` keeps them equal. Print the tables with ``python -m eekit.lessons``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Lesson", "LESSONS", "lesson", "next_lesson", "next_link", "run_time", "table"]


@dataclass(frozen=True)
class Lesson:
    file: str  # the notebook's file name in notebooks/
    title: str  # its H1 heading, without the "# "
    you_will: str  # one line for the tables
    papers: str  # the papers it reproduces in miniature
    minutes: int  # time to work through it, as its **Time** line says
    run_minutes: float | None  # Run All on one CPU core (OMP_NUM_THREADS=1), measured (docs/teaching.md says
    # how); None: not measured yet
    prerequisites: tuple[str, ...] = ()  # files of the lessons to do first

    @property
    def stem(self) -> str:
        return self.file.removesuffix(".ipynb")


LESSONS: tuple[Lesson, ...] = (
    Lesson("00_welcome.ipynb", "Welcome: meet early-exit networks in five minutes",
           "train a tiny early-exit network in seconds and slide its threshold", "BranchyNet", 5, 0.5),
    Lesson("01_bring_your_own_model.ipynb", "Bring your own model: attach exits to a torchvision ResNet-18",
           "attach exits to a torchvision ResNet-18, train only the heads, calibrate a threshold, run real early exit",
           "BranchyNet, SDN, DeeBERT (two-stage)", 15, 1.0, ("00_welcome.ipynb",)),
    Lesson("02_bring_your_own_speech_encoder.ipynb",
           "Bring your own speech encoder: exits on wav2vec 2.0, HuBERT and WavLM",
           "put exits on a self-supervised speech encoder: wav2vec 2.0, HuBERT or WavLM",
           "wav2vec 2.0, HuBERT, WavLM, HuBERT-EE", 15, 0.5, ("01_bring_your_own_model.ipynb",)),
    Lesson("10_cnn_early_exit.ipynb", "Look inside an early-exit CNN: exits, costs, and easy vs. hard images",
           "look inside an early-exit CNN on CIFAR-10: per-exit accuracy and cost, easy vs. hard images, "
           "joint vs. two-stage training", "SDN, HuBERT-EE (two-stage)", 20, 0.5, ("00_welcome.ipynb",)),
    Lesson("11_thresholds_and_criteria.ipynb", "Choose when to exit: thresholds, criteria and calibration",
           "compare max-prob, entropy, margin and patience with the oracle bound; calibrate to a target or a budget",
           "BranchyNet, SDN, PABEE", 20, 0.5, ("10_cnn_early_exit.ipynb",)),
    Lesson("12_real_speedups.ipynb", "Measure real speedups: simulated vs. real early exit",
           "run real early exit and see why wall-clock savings are smaller than FLOP savings",
           "BranchyNet, SDN", 15, 0.5, ("11_thresholds_and_criteria.ipynb",)),
    Lesson("20_speech_early_exit.ipynb", "Recognize spoken digits and exit early: CTC exits on a conformer",
           "hear spoken digits, read each conformer layer's CTC transcript, compare entropy and posterior exits",
           "2309.09546, HuBERT-EE", 25, 0.5, ("11_thresholds_and_criteria.ipynb",)),
    Lesson("21_noise_adaptive_exits.ipynb", "Let the noise decide: noise-adaptive early exits (DAISY)",
           "mix real noise in at a chosen SNR and watch the exits move deeper as the noise rises",
           "DAISY", 20, 0.5, ("20_speech_early_exit.ipynb",)),
    Lesson("22_ssl_exits_without_labels.ipynb",
           "Let the model decide without labels: a self-supervised encoder and DAISY's exit signal",
           "let a self-supervised encoder's own unit uncertainty choose the exit, with no labels, and check it "
           "against a random-weight twin", "HuBERT, WavLM, DAISY", 35, 0.5, ("21_noise_adaptive_exits.ipynb",)),
    Lesson("23_pretrained_vs_scratch.ipynb", "Pre-trained or from scratch? Five early-exit recipes, three label budgets",
           "compare five early-exit recipes (scratch or self-supervised start) at three label budgets",
           "HuBERT-EE, 2309.09546", 25, 0.5, ("20_speech_early_exit.ipynb", "22_ssl_exits_without_labels.ipynb")),
    Lesson("24_digits_to_sentences.ipynb",
           "From digits to sentences: early-exit character CTC on voices the model never heard",
           "read each layer's transcript of an unseen voice's sentence, trade CER for layers, compare pre-trained "
           "and from-scratch exits", "2309.09546, HuBERT-EE", 25, 0.5,
           ("20_speech_early_exit.ipynb", "23_pretrained_vs_scratch.ipynb")),
    Lesson("30_energy_budgets.ipynb", "Run a network on harvested energy: early exits on a batteryless device",
           "run early exit on a batteryless device powered by real RF and solar traces; size the capacitor",
           "FreeML", 25, 0.5, ("10_cnn_early_exit.ipynb",)),
    Lesson("31_make_it_fit.ipynb",
           "Make it fit: compress an early-exit network for a 256 KB microcontroller, export it to C",
           "compress an early-exit network until it fits a microcontroller, then read the generated C",
           "FreeML, Deep Compression", 35, 0.5, ("10_cnn_early_exit.ipynb", "30_energy_budgets.ipynb")),
)

_BY_FILE = {lesson.file: lesson for lesson in LESSONS}


def lesson(file: str) -> Lesson:
    """The lesson whose notebook is ``file`` (e.g. ``"10_cnn_early_exit.ipynb"``)."""
    if file not in _BY_FILE:
        raise ValueError(f"no lesson {file!r}; the lessons are {list(_BY_FILE)}")
    return _BY_FILE[file]


def next_lesson(file: str) -> Lesson | None:
    """The lesson after ``file`` in course order; ``None`` after the last."""
    i = LESSONS.index(lesson(file))
    return LESSONS[i + 1] if i + 1 < len(LESSONS) else None


def next_link(file: str) -> str:
    """The line that ends lesson ``file``: a clickable link to the next lesson (the last one links home)."""
    following = next_lesson(file)
    if following is None:
        return f"**Next:** that is the end of the course; back to [{LESSONS[0].title}]({LESSONS[0].file})"
    return f"**Next:** [{following.title}]({following.file})"


def run_time(x: Lesson) -> str:
    """A lesson's measured Run All time, as the tables print it."""
    return "not measured yet" if x.run_minutes is None else f"about {x.run_minutes:g} min"


def table(folder: str = "") -> str:
    """The lesson table as markdown; ``folder`` prefixes the links ("notebooks/" from the repository root)."""
    rows = ["| lesson | you will | papers in miniature | time (Run All on one core) | after |",
            "|---|---|---|---|---|"]
    for x in LESSONS:
        after = ", ".join(p[:2] for p in x.prerequisites) or "-"
        rows.append(f"| [{x.stem}]({folder}{x.file}) | {x.you_will} | {x.papers} | "
                    f"{x.minutes} min ({run_time(x)}) | {after} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table("notebooks/"))
    for x in LESSONS:
        print(x.file, "->", next_link(x.file))
