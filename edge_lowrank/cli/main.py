"""`edge-lowrank` command line: a table of subcommands imported lazily, and one place for exit codes.

A subcommand module exposes `add_arguments(parser)` and `run(args) -> int`. Only the chosen one is imported,
so `edge-lowrank bench` starts without TensorFlow. Exit codes: 0 success, 1 a project error
(`EdgeLowrankError`, one line on stderr), 2 an unexpected error (one line; the traceback with
`EDGE_LOWRANK_DEBUG=1`), 3 a pipeline gate not met, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import os
import sys
import traceback
import warnings

SUCCESS, ERROR, UNKNOWN_ERROR, INTERRUPTED = 0, 1, 2, 130


@dataclasses.dataclass(frozen=True)
class CommandInfo:
    module: str
    summary: str
    uses_tensorflow: bool = True


COMMANDS = {
    "run": CommandInfo("edge_lowrank.cli.run", "Compress, convert, benchmark and report every scheme (the pipeline)."),
    "compress": CommandInfo("edge_lowrank.cli.compress", "Rewrite a Keras model's layers with a low-rank scheme."),
    "convert": CommandInfo("edge_lowrank.cli.convert", "Convert a Keras model to TFLite (float32, float16, dynamic, int8)."),
    "inspect": CommandInfo("edge_lowrank.cli.inspect", "Show a .tflite file's ops, sizes, quantization, delegation and metadata.",
                           uses_tensorflow=False),
    "bench": CommandInfo("edge_lowrank.cli.bench", "Benchmark .tflite files: latency, memory, accuracy (host, QEMU, TFLM, ssh).",
                         uses_tensorflow=False),
    "setup-arm": CommandInfo("edge_lowrank.cli.setup_arm", "Install QEMU, build the aarch64 sysroot and the instruction-count plugin.",
                             uses_tensorflow=False),
    "info": CommandInfo("edge_lowrank.cli.info", "Show a Keras model's parameters, MACs, size and accuracy."),
}


def _top_parser() -> argparse.ArgumentParser:
    from edge_lowrank import __version__

    width = max(len(n) for n in COMMANDS)
    listing = "\n".join(f"  {n.ljust(width)}  {c.summary}" for n, c in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="edge-lowrank",
        description="Make Keras CNNs small and fast for phones and microcontrollers with low-rank rewrites.",
        epilog=f"commands:\n{listing}\n\nRun `edge-lowrank COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edge-lowrank {__version__}")
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of the commands below")
    return parser


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with fd 2 silenced: its C++ start-up lines ("Could not find cuda drivers", absl
    warnings) print even with TF_CPP_MIN_LOG_LEVEL=3 and would bury the command's own output."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from converters.quiet import quiet_fds

    with quiet_fds(2):
        import keras  # noqa: F401
        import tensorflow  # noqa: F401


@contextlib.contextmanager
def _project_notes_as_lines(name: str):
    """Show the project's own warnings (`EdgeLowrankWarning`, e.g. a repaired legacy model file) as one line
    each, `edge-lowrank NAME: message`, not Python's two-line warning with a source line. Warnings raised by
    Keras, TensorFlow and other libraries go to the debug log (`edge_lowrank.debuglog`), not the terminal."""
    from edge_lowrank import debuglog
    from edge_lowrank.errors import EdgeLowrankWarning

    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, EdgeLowrankWarning):
            print(f"edge-lowrank {name}: {message}", file=sys.stderr)
        elif not debuglog.is_ours(filename):
            debuglog.record_warning(message, category, filename, lineno)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return SUCCESS if argv else ERROR
    if argv[0] == "--version" or argv[0] not in COMMANDS:
        top.parse_args(argv[:1])  # prints the version, or the usage error, and exits
    name = argv[0]
    info = COMMANDS[name]
    module = importlib.import_module(info.module)
    parser = argparse.ArgumentParser(prog=f"edge-lowrank {name}", description=info.summary)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    from edge_lowrank.errors import EdgeLowrankError

    try:
        if info.uses_tensorflow:
            _import_tensorflow_quietly()
            from edge_lowrank.debuglog import route_logging

            route_logging()
        with _project_notes_as_lines(name):
            return int(module.run(args) or 0)
    except EdgeLowrankError as e:
        print(f"edge-lowrank {name}: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", ERROR)
    except KeyboardInterrupt:
        print(f"edge-lowrank {name}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as e:  # anything unexpected: one line, traceback only on request
        if os.environ.get("EDGE_LOWRANK_DEBUG"):
            traceback.print_exc()
        first = (str(e).strip().splitlines() or [""])[0][:300]
        print(f"edge-lowrank {name}: unexpected error: {type(e).__name__}: {first} "
              f"(set EDGE_LOWRANK_DEBUG=1 for the traceback)", file=sys.stderr)
        return UNKNOWN_ERROR


if __name__ == "__main__":
    sys.exit(main())
