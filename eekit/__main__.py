"""Command line: ``python -m eekit train | report | bench ...`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import json
import sys


def _train(args) -> int:
    from .zoo import run_recipe

    if args.model == "ssl-hubert":  # self-supervised pretraining, then DAISY's measurements (eekit.ssl)
        from .ssl import run_recipe as run_ssl

        if args.subset is not None or args.device not in (None, "cpu"):
            raise ValueError("ssl-hubert takes --epochs, --out, --force and --quiet only (it trains on the CPU)")
        card = run_ssl(args.out, epochs=args.epochs, progress=not args.quiet, force=args.force)
        print(json.dumps({"name": card["name"], "pretraining_seconds": card["pretraining"]["pretraining_seconds"],
                          "measurement_seconds": card["measurement_seconds"], **card["report"]}, indent=2))
        return 0
    if args.model in ("speech-recipe", "speech-recipes"):  # the recipe x label-budget grid (eekit.speech_recipes)
        return _train_speech_recipes(args)
    card = run_recipe(args.model, args.out, subset=args.subset, epochs=args.epochs, progress=not args.quiet,
                      force=args.force, device=args.device)
    keys = ("name", "exit_accuracy", "exit_mflops", "exit_layers", "final_accuracy", "early_exit", "training_seconds")
    print(json.dumps({k: card[k] for k in keys if k in card}, indent=2))
    return 0


def _train_speech_recipes(args) -> int:
    from . import speech_recipes as sr

    common = dict(out_dir=args.out, force=args.force, progress=not args.quiet, device=args.device)
    if args.model == "speech-recipe":
        if args.recipe is None or args.labels is None:
            raise ValueError(f"train speech-recipe needs --recipe (one of {list(sr.SPEECH_RECIPES)}) and --labels "
                             f"(one of {list(sr.LABELS)})")
        cards = [sr.train_cell(args.recipe, args.labels, **common)]
    else:
        cards = sr.train_grid(labels=[args.labels] if args.labels else None,
                              recipes=[args.recipe] if args.recipe else None, **common)
    print(json.dumps([{k: c[k] for k in ("cell", "exit_der", "training_seconds")} for c in cards], indent=2))
    return 0


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")


def _report(args) -> int:
    from .zoo import report

    if args.model == "ssl-daisy":  # the self-supervised encoder and DAISY's exit signal (eekit.daisy)
        from .daisy import report as daisy_report

        if args.criterion is not None or args.max_drop is not None:
            raise ValueError("ssl-daisy has one criterion (ssl_entropy) and a label-free calibration rule; "
                             "--criterion and --max-drop do not apply")
        _print(daisy_report(), args.json)
        return 0
    if args.model == "compress":  # the compressed models' shipped results (eekit.compress)
        from .compress import report as compress_report

        result = compress_report()
        print(json.dumps(result, indent=2) if args.json else json.dumps(result))
        return 0
    if args.model == "speech-recipes":  # the recipe x label-budget grid, from its shipped profiles
        from .speech_recipes import report as speech_recipes_report

        result = speech_recipes_report()
        print(json.dumps(result, indent=2) if args.json else json.dumps(result))
        return 0
    _print(report(args.model, criterion=args.criterion, max_drop=args.max_drop), args.json)
    return 0


def _compress(args) -> int:
    from .compress.pipeline import REPORT_KEYS, run

    card = run(args.model, args.out, target_bytes=args.target_bytes, force=args.force, progress=not args.quiet)
    print(json.dumps({k: card[k] for k in REPORT_KEYS + ("c_export",)}, indent=2))
    return 0


def _export_c(args) -> int:
    from .compress.pipeline import export

    result = export(args.model, args.out)
    print(json.dumps({"files": result["files"], "bytes": result["bytes"], **result["plan"]}, indent=2))
    return 0


def _bench(args) -> int:
    from . import bench

    if args.what == "speedup":
        result = bench.bench_speedup(args.model, device=args.device, threads=args.threads,
                                     keep_freed_memory=not args.default_malloc)
    elif args.what == "stages":
        result = bench.bench_stages(args.model, batch=args.batch, device=args.device, threads=args.threads,
                                    keep_freed_memory=not args.default_malloc)
    elif args.what == "notebooks":
        result = bench.bench_notebooks()
    elif args.what == "energy":
        result = bench.bench_energy()
    else:
        result = bench.bench_widgets()
    _print(result, args.json)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other CLI error here (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m eekit", description="eekit: early-exit networks, hands-on")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="rerun a shipped model's training recipe",
                       description="Rerun a shipped recipe. Seeded: the same torch version and thread count "
                       "(the card's machine.torch_threads; set OMP_NUM_THREADS) give the shipped card bit for bit.")
    p.add_argument("model", help="recipe name, e.g. cnn-mnist, cnn-mnist-two-stage, cnn-cifar10, ssl-hubert")
    p.add_argument("--out", default="eekit-runs", help="output folder, created if its parent exists (data/checkpoints "
                   "replaces the shipped files, with --force)")
    p.add_argument("--subset", type=int, default=None, help="train on this many samples only (quick demo)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="replace existing weights, card and profile in --out")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)")
    p.add_argument("--recipe", default=None, help="speech-recipe(s) only: A, B, C, D or E (eekit.speech_recipes)")
    p.add_argument("--labels", default=None, help="speech-recipe(s) only: 250, 1000 or all labelled utterances")
    p.set_defaults(func=_train)

    p = sub.add_parser("report", help="numbers of a shipped checkpoint, from its test-split profile")
    p.add_argument("model", help="e.g. cnn-mnist, cnn-cifar10; `compress` for the compressed models, `ssl-daisy` "
                   "for the self-supervised encoder and DAISY's exit signal")
    p.add_argument("--criterion", default=None, help="exit criterion, e.g. max_prob, entropy, margin, patience "
                   "(default: the model card's)")
    p.add_argument("--max-drop", type=float, default=None, help="allowed accuracy drop below the final exit, a "
                   "fraction: 0.01 = 1 point (default: the model card's)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_report)

    p = sub.add_parser("compress", help="FreeML-style compression until the model fits a byte target, int8, C "
                       "export checked against the integer reference (minutes)")
    p.add_argument("model", help="e.g. cnn-mnist-shared")
    p.add_argument("--target-bytes", type=int, default=None, help="MCU bytes to fit (default: the shipped run's, "
                   "32000 for cnn-mnist-shared)")
    p.add_argument("--out", default="eekit-runs", help="output folder (data/checkpoints replaces the shipped files)")
    p.add_argument("--force", action="store_true", help="replace shipped files")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_compress)

    p = sub.add_parser("export-c", help="write a shipped compressed model as C99 (integer only, no malloc)")
    p.add_argument("model", help="e.g. cnn-mnist-shared (its shipped compressed version)")
    p.add_argument("--out", required=True, help="folder for eekit_model.h, eekit_model.c, main.c")
    p.set_defaults(func=_export_c)

    p = sub.add_parser("bench", help="measure on this machine: speedup of real early exit and where its time goes (stages), dashboard latency, notebook time and memory, "
                       "energy simulator speed and energy balance")
    p.add_argument("what", choices=["speedup", "stages", "widgets", "notebooks", "energy"])
    p.add_argument("--model", default=None,
                   help="shipped model for `speedup` and `stages` (default: cnn-cifar10, else cnn-mnist)")
    p.add_argument("--device", default=None,
                   help="cpu or cuda for `speedup` and `stages` (default: cuda when available, else cpu)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads for `speedup` and `stages` (default: torch's)")
    p.add_argument("--batch", type=int, default=1, help="batch size for `stages` (default: 1)")
    p.add_argument("--default-malloc", action="store_true", help="`speedup` and `stages`: time with glibc's default "
                   "policy, big buffers returned to the OS after every call and page-faulted back in (default: kept)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_bench)

    from .onnx_export import add_command as add_export_onnx
    add_export_onnx(sub)  # export-onnx: eekit.onnx_export

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError, OSError) as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)  # one line
        return 2


if __name__ == "__main__":
    sys.exit(main())
