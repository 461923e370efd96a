"""``snnbench COMMAND [options]``: the one entry point behind every benchmark.

Each command's module has ``OPTIONS`` (command -> its settings, a frozen dataclass of which its parser
is made) and ``run(options)``, and is imported only when its command is used (``snnbench report`` does not load TensorFlow). The libraries' start-up
noise is silenced before they load unless ``--verbose`` (an option of every command) is given. Every
input is checked before the command runs (:mod:`snnbench.cli.preflight`); a benchmark's run ends by
printing its summary (:mod:`snnbench.tracking.summary`).
"""

import importlib
import logging
import os
import sys

from snnbench.conversion import nengo_compat
from snnbench.benchmarks import ALIASES, BENCHMARKS
from snnbench.command_line import VERBOSE, CommandParser, command_parser
from snnbench.cli import preflight
from snnbench.errors import SnnbenchError
from snnbench.tracking import runs

# the CLI's own commands beside the benchmarks (command -> (module, one-line description))
CLI_COMMANDS = {
    "report": ("cli.report", "write reports/<name>.md from the runs in the tracking store"),
    "reproduce": ("cli.reproduce", "run every benchmark in a profile, then the report"),
}
COMMANDS = {**BENCHMARKS, **CLI_COMMANDS}
QUIET_MLFLOW_LOGGERS = ("mlflow.store.db.utils", "mlflow.tracking.fluent", "mlflow.system_metrics")


def configure_output(verbose: bool):
    """Before any library loads: start-up messages off, or on when ``verbose`` (or
    SNNBENCH_VERBOSE=1), here and in the processes this one starts."""
    if verbose:
        os.environ[nengo_compat.VERBOSE_ENV] = "1"
    verbose = nengo_compat.verbose()
    if not verbose:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    nengo_compat.silence_tensorflow()
    for name in QUIET_MLFLOW_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


def _usage() -> str:
    lines = ["usage: snnbench COMMAND [options]   (snnbench COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<15} {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join(lines)


def build_parser(command: str) -> CommandParser:
    module, description = COMMANDS[command]
    return command_parser(command, module, description)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command = ALIASES.get(argv[0], argv[0])
    if command not in COMMANDS:
        print(f"snnbench: error: unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    configure_output(VERBOSE in argv[1:])
    try:
        parser = build_parser(command)
        parsed = parser.parse_args(argv[1:])
        runs.set_command_config(parser.config_yaml(parsed))  # logged by the run as config.yaml
        options = parser.settings(parsed)  # the command's Options, built once
        preflight.check_inputs(command, options)  # before any work: one line and no run if something is wrong
        importlib.import_module(f"snnbench.{COMMANDS[command][0]}").run(options)
    except SnnbenchError as exc:
        print(f"snnbench {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"snnbench {command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        runs.set_command_config(None)  # the command has ended: a later run in this process is not its
    return 0


def main_exit():
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
