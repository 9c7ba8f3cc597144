"""The only module that imports `ai_edge_litert.interpreter`: builds interpreters and reads their delegation.

Keeping the import here means the rest of device_bench (CLI, statistics, reports, the ssh runner) imports
without the runtime, and a missing runtime gives one clear line instead of an ImportError deep inside.
"""

from __future__ import annotations

from .errors import BenchError


def _litert():
    try:
        from ai_edge_litert import interpreter
    except ImportError as e:  # pragma: no cover - only where ai-edge-litert is missing
        raise BenchError(f"ai-edge-litert is not installed ({e}); pip install 'ai-edge-litert>=2.3,<2.4'.") from None
    return interpreter


def runtime_version() -> str:
    try:
        import ai_edge_litert
    except ImportError:  # pragma: no cover
        return "ai-edge-litert missing"
    return f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}"


def make_interpreter(model_path: str, *, num_threads: int | None, xnnpack: bool):
    """A LiteRT interpreter with XNNPACK on (`AUTO`, the default) or off (`BUILTIN_WITHOUT_DEFAULT_DELEGATES`).

    Tensors are not allocated yet: the caller times `allocate_tensors()` (XNNPACK packs weights there).
    """
    lite = _litert()
    resolver = lite.OpResolverType.AUTO if xnnpack else lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return lite.Interpreter(model_path=str(model_path), num_threads=num_threads,
                            experimental_op_resolver_type=resolver)


def delegation(interp) -> tuple[int, int, list[str]]:
    """(delegate partitions, nodes left outside any delegate, names of those nodes), after allocation.

    LiteRT keeps the replaced nodes in its node list and appends one `DELEGATE` node per partition, so a
    partition is found by walking back from each DELEGATE node's outputs to its inputs.
    """
    ops = interp._get_ops_details()
    delegates = [o for o in ops if o["op_name"] == "DELEGATE"]
    originals = [o for o in ops if o["op_name"] != "DELEGATE"]
    producer = {int(t): o["index"] for o in originals for t in o["outputs"]}
    by_index = {o["index"]: o for o in originals}
    delegated: set[int] = set()
    for d in delegates:
        boundary = {int(t) for t in d["inputs"]}
        frontier = [int(t) for t in d["outputs"]]
        seen: set[int] = set()
        while frontier:
            t = frontier.pop()
            if t in seen or t in boundary or t < 0:
                continue
            seen.add(t)
            node = producer.get(t)
            if node is None:
                continue
            delegated.add(node)
            frontier.extend(int(i) for i in by_index[node]["inputs"])
    outside = [o["op_name"] for o in originals if o["index"] not in delegated]
    return len(delegates), len(outside), outside


def op_names(model_path: str) -> list[str]:
    """The builtin op names of a model, in node order, read by LiteRT without delegates."""
    interp = make_interpreter(model_path, num_threads=1, xnnpack=False)
    return [o["op_name"] for o in interp._get_ops_details()]
