"""The ``jgd`` command line: ``jgd train CONFIG``, ``jgd compare CONFIG`` and ``jgd sweep CONFIG``.

CONFIG is a YAML file, or the name of a config that ships with jgd (``jgd compare digits`` runs
``jgd/experiment/configs/compare_digits.yaml``, the main job; without CONFIG, ``digits``).

The config is read and checked first, with nothing heavier than ``yaml`` and
the transform library loaded, so a mistake in it is reported at once; only
then are the training modules (:mod:`jgd.experiment.commands`: Flax, optax,
orbax, matplotlib) imported. Any error ends the command with a non-zero exit
and one line naming the problem.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from jgd.experiment.config.reader import load_config
from jgd.experiment.config.schema import Config

# Per command: its help, and the config field it needs with how an error calls that field.
_COMMANDS = {
    "train": ("train one model with the config's optimizer", "optimizer", "an optimizer section"),
    "compare": ("train the same model with every method of the config's methods list", "methods", "a methods list"),
    "sweep": (
        "train every setting of the config's sweep section, one vmapped training per method",
        "sweep",
        "a sweep section",
    ),
}


def bundled_configs() -> Path:
    """The folder of the configs that ship with jgd (the same files as ``configs/`` in the repository)."""
    return Path(str(resources.files("jgd.experiment") / "configs"))


def config_path(command: str, config: str) -> Path:
    """``config`` if it names a file; else the bundled config ``<command>_<config>.yaml`` (``compare``, ``digits``).

    Raises:
      FileNotFoundError: neither a file nor a bundled name, with the bundled names for ``command``.
    """
    path = Path(config)
    if path.is_file() or path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        return path
    bundled = bundled_configs() / f"{command}_{config}.yaml"
    if bundled.is_file():
        return bundled
    names = sorted(p.stem.removeprefix(f"{command}_") for p in bundled_configs().glob(f"{command}_*.yaml"))
    raise FileNotFoundError(f"config file not found: {config} (nor a bundled config; jgd {command} ships {names})")


def _output_dir(args: argparse.Namespace, config: Config, path: Path) -> Path:
    out = Path(args.out or config.output_dir or Path("runs") / path.stem)
    # Only a folder of earlier jgd results (or an empty one) is replaced, never an unrelated one.
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "metrics.json").is_file())):
        raise ValueError(f"output folder {out} exists and does not hold jgd results; choose another with --out")
    return out


def run(args: argparse.Namespace) -> Path:
    """Runs the command ``args`` name (as :func:`build_parser` reads them); returns the output folder.

    Args:
      args: the parsed command line: ``command``, ``config``, ``set``, ``out`` and, for ``train``, ``resume``.
    """
    path = config_path(args.command, args.config)
    config = load_config(path, args.set)
    _, field, what = _COMMANDS[args.command]
    if not getattr(config, field):
        raise ValueError(f"{args.config}: jgd {args.command} needs {what}")
    out = _output_dir(args, config, path)
    # The runs load Flax, optax, orbax and matplotlib, seconds of imports: only now that the config is known good.
    from jgd.experiment import commands

    if args.command == "train":
        commands.train(config, out, resume=args.resume)
    elif args.command == "compare":
        commands.compare(config, out)
    else:
        commands.sweep(config, out)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one subcommand per entry of the command table, each with the same arguments."""
    parser = argparse.ArgumentParser(
        prog="jgd", description="Train, compare and sweep jgd optimizers from YAML configs."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (text, _, _) in _COMMANDS.items():
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument(
            "config",
            nargs="?",
            default="digits",
            help=f"YAML config file (schema: configs/README.md), or a bundled config's name (default: digits, "
            f"jgd/experiment/configs/{name}_digits.yaml)",
        )
        sub.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config field, e.g. --set optimizer.learning_rate=0.01 (repeatable)",
        )
        sub.add_argument("--out", help="output folder (default: the config's output.dir, else runs/CONFIG_NAME)")
        if name == "train":
            sub.add_argument(
                "--resume", action="store_true", help="continue from the run's checkpoint (see training.checkpoint)"
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (0 on success).

    Args:
      argv: the arguments after the program's name; ``None`` reads them from ``sys.argv``.
    """
    args = build_parser().parse_args(argv)
    try:
        out = run(args)
    except KeyboardInterrupt as e:
        print(f"jgd: interrupted{f'; {e}' if str(e) else ''}", file=sys.stderr)
        return 130
    except Exception as e:  # every failure becomes one line and a non-zero exit
        message = " ".join(str(e).split())
        if not isinstance(e, (ValueError, OSError)):
            # Not a reported input problem: the exception's type says what went wrong.
            message = f"{type(e).__name__}: {message}" if message else type(e).__name__
        print(f"jgd: error: {message}", file=sys.stderr)
        return 1
    print(f"results written to {out}")
    return 0
