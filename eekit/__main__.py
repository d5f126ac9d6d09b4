"""Command line: ``python -m eekit train | report | bench ...`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import json
import sys


def _train(args) -> int:
    from .zoo import run_recipe

    card = run_recipe(args.model, args.out, subset=args.subset, epochs=args.epochs, progress=not args.quiet)
    print(json.dumps({k: card[k] for k in ("name", "exit_accuracy", "exit_mflops", "final_accuracy",
                                           "early_exit", "training_seconds")}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eekit", description="eekit: early-exit networks, hands-on")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="rerun a shipped model's training recipe")
    p.add_argument("model", help="recipe name, e.g. cnn-mnist, cnn-mnist-two-stage, cnn-cifar10")
    p.add_argument("--out", default="eekit-runs", help="output folder (data/checkpoints replaces the shipped files)")
    p.add_argument("--subset", type=int, default=None, help="train on this many samples only (quick demo)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
