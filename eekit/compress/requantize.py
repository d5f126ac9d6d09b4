"""``python -m eekit.compress.requantize cnn-cifar10 --out data/checkpoints --force``: give a shipped weights-only
compressed model (int8 weights, float activations) int8 activations too, without retraining
(:func:`eekit.compress.pipeline.requantize`): the integer model the C export runs, its profile and card."""

from __future__ import annotations

import json

from .. import cli
from .pipeline import requantize

COMMAND = "python -m eekit.compress.requantize cnn-cifar10 --out data/checkpoints --force"


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m eekit.compress.requantize", description="requantize a shipped "
                        "weights-only compressed model with int8 activations (no retraining)")
    parser.add_argument("name", help="cnn-cifar10 (a compressed model shipped with int8 weights only)")
    parser.add_argument("--out", default="eekit-runs", help="output folder (data/checkpoints replaces the shipped "
                        "files, with --force)")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)

    def command() -> int:
        card = requantize(args.name, args.out, args.force)
        print(json.dumps({k: card[k] for k in ("accuracy_per_exit_after", "accuracy_per_exit_int8", "early_exit",
                                               "c_export")}, indent=1))
        return 0

    return cli.run(command)


if __name__ == "__main__":
    raise SystemExit(main())
