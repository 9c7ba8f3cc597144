"""Child process that holds one model and answers JSON-line requests: `python -m device_bench._worker`.

A corrupt model can crash or hang LiteRT or TFLM inside C++; running each model in its own child turns that
into an error row in the parent. The child loads the model once and runs "a round" when asked, which lets the
parent interleave models (A B C A B C). Native libraries may print to fd 1, so the protocol uses a private
duplicate of stdout and fd 1 is pointed at stderr.

Requests (one JSON object per line) and their replies:
  {"cmd": "load", "path": P, "params": {...}, "inputs": NPZ or null} -> {"ok": true}
  {"cmd": "warmup"} -> {"ok": true}
  {"cmd": "round", "runs": N, "min_secs": S, "max_secs": M} -> {"ok": true, "count": N}
  {"cmd": "accuracy", "data": NPZ} -> {"ok": true, "accuracy": A, "confusion": [[...]]}
  {"cmd": "result", "target": T} -> {"ok": true, "result": {...}}
  {"cmd": "tflm", "path": P, "params": {...}, "data": NPZ or null} -> {"ok": true, "result": {...}}
Any failure -> {"ok": false, "error": "one line"}; the worker stays alive for the next request.
"""

from __future__ import annotations

import json
import os
import sys


def _serve(proto) -> None:
    from .datasets import load_npz
    from .measure import ModelRunner, evaluate
    from .results import BenchParams

    runner = None
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        cmd = req.get("cmd")
        try:
            if cmd == "exit":
                return
            if cmd == "load":
                inputs = None
                if req.get("inputs"):
                    inputs = [load_npz(req["inputs"]).x[0]]
                runner = ModelRunner(req["path"], BenchParams(**req["params"]), inputs)
                reply = {"ok": True}
            elif cmd == "warmup":
                runner.warmup()
                reply = {"ok": True}
            elif cmd == "round":
                times = runner.timed_round(req["runs"], req["min_secs"], req["max_secs"])
                reply = {"ok": True, "count": len(times)}
            elif cmd == "accuracy":
                data = load_npz(req["data"])
                acc, confusion = evaluate(runner, data.x, data.y)
                reply = {"ok": True, "accuracy": acc, "confusion": confusion}
            elif cmd == "result":
                reply = {"ok": True, "result": runner.result(req.get("target", "host")).to_dict()}
            elif cmd == "tflm":
                from .tflm import measure_tflm

                data = load_npz(req["data"]) if req.get("data") else None
                res = measure_tflm(req["path"], BenchParams(**req["params"]), data)
                reply = {"ok": True, "result": res.to_dict()}
            else:
                reply = {"ok": False, "error": f"unknown request {cmd!r}"}
        except Exception as e:  # every failure is reported to the parent as one line
            msg = " ".join(str(e).split())[:500] or type(e).__name__
            reply = {"ok": False, "error": msg if type(e).__name__ == "BenchError" else f"{type(e).__name__}: {msg}"}
        proto.write(json.dumps(reply) + "\n")
        proto.flush()


def main() -> None:
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever native code prints goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    _serve(proto)


if __name__ == "__main__":
    main()
