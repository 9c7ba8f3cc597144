"""The pipeline's stages, from a Keras model to every variant measured, each stage cached by its inputs.

Stages, in order (each one a `StageCache` record, so a rerun of the same folder skips what finished):

1. `baseline`: copy of the input model (`models/baseline.keras`), its parameters and MACs;
2. `model:SCHEME`: rewrite with the scheme at the rank budget, distil from the original for the fine-tuning
   epochs, save `models/SCHEME.keras`;
3. `export:VARIANT`: `.tflite` in float32 or int8 (`tflite/`), its C array (`c/`), the TFLM arena, and
   top-1 and fidelity against the Keras model on the test data (all of it by default);
4. `bench:host`: every `.tflite` on the host, LiteRT + XNNPACK, one thread, interleaved;
5. `arm:PROFILE:VARIANT`: instructions per inference under QEMU, when `setup-arm` has been run.

The report, plots, HTML page and `best.tflite` are rebuilt from the records at the end of every run (they
are cheap), so they never mix results of two different runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import warnings
import zlib
from pathlib import Path

from edge_lowrank import __version__
from edge_lowrank.errors import DataError, EdgeLowrankError, ModelError
from edge_lowrank.fileio import atomic_path, atomic_write_bytes, atomic_write_text
from edge_lowrank.finetune.distill import DEFAULT_LR
from edge_lowrank.pipeline.cache import StageCache, file_sha256, stage_key
from edge_lowrank.pipeline.config import RunConfig
from edge_lowrank.pipeline.executor import node_info
from edge_lowrank.pipeline.progress import StageProgress

PRECISIONS = ("float32", "int8")
QAT_NEEDED_MIN_TEST = 500  # qat = needed judges int8 agreement on at least this many test images
OWNED_DIRS = ("models", "tflite", "c", ".stages")


class OutputError(EdgeLowrankError, OSError):
    """The output folder cannot be created or written."""


def _first_line(e: BaseException) -> str:
    """The exception as one line; TensorFlow's "Graph execution error:" gets the line that says why."""
    text = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    if not text:
        return type(e).__name__
    line = text[0]
    if line.endswith(":"):
        why = [ln for ln in text[1:] if not ln.startswith(("File ", "Detected at node", "[["))]
        line = f"{line} {why[-1] if why else ''}".strip()
    return f"{type(e).__name__}: {line[:240]}"


def c_name(variant_id: str) -> str:
    return "g_" + re.sub(r"[^0-9a-zA-Z_]", "_", variant_id) + "_model"


@dataclasses.dataclass
class Inputs:
    """What the run reads, loaded and checked before anything is written."""

    model_path: Path
    model_sha: str
    model: object
    test: object
    train: object | None
    calib: object
    fingerprints: dict
    data_info: dict  # mode (top1 | agreement), split, input transform, notes: for the report
    transform: object  # device_bench.transform.InputTransform, recorded in every .tflite


def prepare_out_dir(out) -> Path:
    """Create the output folder and prove it is writable, before any stage starts; return its absolute path."""
    out = Path(out).absolute()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"Output folder {out} is not writable ({e.strerror or type(e).__name__}).") from None
    for d in OWNED_DIRS:
        folder = out / d
        if folder.is_dir():  # temporaries of atomic writes interrupted by a kill
            for f in folder.glob(".*"):
                if f.is_file():
                    f.unlink()
    for f in out.glob(".*.tmp"):
        f.unlink()
    for pattern in (".report.*", ".best.*", ".pareto.*", ".layers.*"):
        for f in out.glob(pattern):
            f.unlink()
    return out


def _data_fingerprint(spec: str) -> str:
    return f"{spec}@{file_sha256(spec)}" if spec.endswith(".npz") and Path(spec).is_file() else spec


def _check_fits(ds, model, role: str) -> None:
    want = tuple(model.inputs[0].shape[1:])
    got = tuple(ds.x.shape[1:])
    if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
        raise DataError(f"Data {ds.name} ({role}) has images of shape {got}; the model wants {want}.")


def _agreement_labels(model, ds):
    """The original float model's top-1 on `ds`: the labels of agreement mode (unlabelled data)."""
    import numpy as np

    static = model.inputs[0].shape[0]
    batch = static or 256
    if static and len(ds) % static:
        raise DataError(f"The model has a static batch of {batch}; {len(ds)} test images do not divide into it.")
    pred = np.asarray(model.predict(ds.x, batch_size=batch, verbose=0))
    return pred.reshape(len(ds), -1).argmax(axis=1)


def load_inputs(cfg: RunConfig) -> Inputs:
    """Load the model and the data the run reads: split, put through the input transform, labelled.

    Data rules (README "Data"): an .npz given alone as --data is split, seeded and per class, into a
    fine-tuning/calibration part and a held-out test part (--test-fraction); --train-data given, or
    Fashion-MNIST (its official split), means no split. Unlabelled test data switch every accuracy figure to
    top-1 agreement with the original float model ("agreement" mode): the original's own top-1 becomes the
    label. Every image goes through the one input transform (`device_bench.transform`) before use.
    """
    from device_bench.transform import resolve
    from edge_lowrank.data import load_dataset, split_dataset
    from edge_lowrank.modelio import load_keras_model

    if cfg.model:
        model_path = Path(cfg.model)
    else:
        from sample_models import sample_model_path

        model_path = sample_model_path("resnet_fmnist")
        if not model_path.is_file():
            raise ModelError(f"The sample model {model_path.name} is missing; pass a MODEL.keras.")
    model = load_keras_model(model_path)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(f"{model_path} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                         f"run handles image classifiers with one input and one output.")
    transform, transform_note = resolve(cfg.input_transform(), model)
    tkey = f"|{transform.key()}"

    def prepared(ds, role):  # shape checked on the images, range on what the model receives
        _check_fits(ds, model, role)
        x = transform.apply(ds.x)
        transform.check(x, f"Data {ds.name} ({role})")
        return ds.with_x(x)

    fashion = cfg.data.startswith("fashion-mnist")
    full = load_dataset(cfg.data, default_split="test")
    split = None
    train_part = None
    if cfg.train_data is None and not fashion:
        train_part, test = split_dataset(full, cfg.test_fraction, cfg.seed)
        split = {"rule": "per class (stratified)" if full.y is not None else "random (no labels)",
                 "test_fraction": cfg.test_fraction, "seed": cfg.seed, "n_total": len(full),
                 "n_finetune_calib": len(train_part), "n_test": len(test)}
        part = f"|split:{cfg.test_fraction!r}:{cfg.seed}"
        test_fp, part_fp = _data_fingerprint(cfg.data) + part + ":test", _data_fingerprint(cfg.data) + part + ":train"
    else:
        test, test_fp, part_fp = full, _data_fingerprint(cfg.data), None
    test = prepared(test.take(cfg.eval_samples), "test")
    mode = "top1" if test.y is not None else "agreement"
    if mode == "agreement":
        test = test.with_labels(_agreement_labels(model, test))
        test_fp += "|agreement"
    n_classes = model.outputs[0].shape[-1]
    if n_classes is not None and int(test.y.max()) >= n_classes:
        raise DataError(f"Data {test.name} has label {int(test.y.max())}, but the model has {n_classes} outputs.")
    if cfg.train_data:
        train_spec, train_fp = (cfg.train_data, None), _data_fingerprint(cfg.train_data)
        train_src = lambda: load_dataset(cfg.train_data, default_split="train")  # noqa: E731
    elif fashion:
        train_spec, train_fp = ("fashion-mnist:train", None), "fashion-mnist:train"
        train_src = lambda: load_dataset("fashion-mnist:train")  # noqa: E731
    else:
        train_spec, train_fp = (cfg.data, "fine-tuning part"), part_fp
        train_src = lambda: train_part  # noqa: E731
    train = None
    if cfg.finetune_epochs > 0:
        train = prepared(train_src().take(cfg.finetune_samples), "fine-tuning")
    if cfg.calib_data:
        calib_spec, calib_fp = (cfg.calib_data, None), _data_fingerprint(cfg.calib_data)
        calib_raw = load_dataset(cfg.calib_data, default_split="calib")
    elif fashion:
        calib_spec, calib_fp = ("fashion-mnist:calib", None), "fashion-mnist:calib"
        calib_raw = load_dataset("fashion-mnist:calib")
    else:
        calib_spec, calib_fp = train_spec, train_fp
        calib_raw = train_src()
    calib = prepared(calib_raw.take(cfg.calib_samples), "calibration")
    fingerprints = {"test": test_fp + tkey, "train": train_fp + tkey, "calib": calib_fp + tkey}
    notes = []
    if split:
        notes.append(f"{cfg.data} was split {'per class' if full.y is not None else 'at random (no labels)'}, seed "
                     f"{cfg.seed}: {len(train_part):,} images for fine-tuning and calibration, {split['n_test']:,} "
                     f"held out for testing (--test-fraction {cfg.test_fraction:g}; --train-data turns it off)")
    elif cfg.train_data and not fashion and cfg.train_data == cfg.data:
        notes.append("--train-data is --data: the figures are measured on the images the models were "
                     "fine-tuned on")
    if mode == "agreement":
        notes.append("the test data have no labels: every accuracy figure is top-1 agreement with the original "
                     "float Keras model, and --max-accuracy-drop applies to it")
    if transform_note:
        notes.append(transform_note)
    data_info = {
        "mode": mode,
        "metric": "top-1 accuracy" if mode == "top1" else "top-1 agreement with the original float model",
        "split": split,
        "input_transform": transform.to_dict(),
        "specs": {"test": (cfg.data, "held-out test part" if split else None), "train": train_spec,
                  "calib": calib_spec},
        "notes": notes,
    }
    return Inputs(model_path, file_sha256(model_path), model, test, train, calib, fingerprints, data_info,
                  transform)


class Pipeline:
    """Run every stage for one `RunConfig`; `run()` returns the report dict (see `report.py`)."""

    def __init__(self, cfg: RunConfig, progress: StageProgress | None = None):
        self.cfg = cfg
        self.progress = progress or StageProgress(enabled=cfg.progress)
        self.timings: dict[str, float] = {}
        self.crashes: list[str] = []  # "STAGE: one line" of each stage whose native code crashed in this run

    # -- stage plumbing ------------------------------------------------------------------------------------
    def _stage_begin(self, name: str, inputs: dict) -> tuple[str, float, dict | None]:
        """(key, start time, cached result or None): the first half of `_stage`, for executors elsewhere."""
        key = stage_key({"stage": name, "tool": __version__, **inputs})
        started = self.progress.start(name)
        cached = self.cache.lookup(name, key)
        if cached is not None:
            self.progress.finish(name, started, cached=True)
        return key, started, cached

    def _stage_end(self, name: str, key: str, started: float, result, files, secs: float):
        """Record a finished stage (its files already in place) unless it failed; return the result."""
        result = json.loads(json.dumps(_jsonable(result)))  # the same types a cached run reads back
        self.timings[name] = round(secs, 3)
        failed = None
        if isinstance(result, dict):
            failed = result.get("error") or (result.get("message") if result.get("status") == "error" else None)
        if failed is None:  # a failed stage is not recorded: the next run tries it again
            self.cache.store(name, key, result, files, seconds=round(secs, 3))
        self.progress.finish(name, started, cached=False, failed=failed)
        return result

    def _stage(self, name: str, inputs: dict, fn):
        """Run `fn() -> (result, files)` unless a matching record exists; return the result."""
        key, started, cached = self._stage_begin(name, inputs)
        if cached is not None:
            return cached
        t0 = time.monotonic()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("default")  # once per place; the project's own notes are shown, the rest
                warnings.simplefilter("always", UserWarning)  # goes to debug.log
                result, files = fn()
        except BaseException as e:
            self.progress.finish(name, started, cached=False, failed=_first_line(e))
            raise
        from edge_lowrank import debuglog

        ours, seen = [], set()
        for w in caught:
            if debuglog.is_ours(w.filename) and issubclass(w.category, UserWarning):
                ours.append(w)
            elif (w.filename, w.lineno, str(w.message)) not in seen:  # Keras/TF notes a user cannot act on
                seen.add((w.filename, w.lineno, str(w.message)))
                debuglog.record_warning(w.message, w.category, w.filename, w.lineno)
        for msg in dict.fromkeys(str(w.message).splitlines()[0][:240] for w in ours if str(w.message).strip()):
            self.progress.log(f"  {name}: {msg}")  # one line each, once, not a warning with a source line
        return self._stage_end(name, key, started, result, files, time.monotonic() - t0)

    def _seed(self, name: str) -> None:
        import keras
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()  # a resumed run must train exactly as an uninterrupted one
        keras.utils.set_random_seed((self.cfg.seed * 1000003 + zlib.crc32(name.encode())) % (2**31))

    # -- the run ---------------------------------------------------------------------------------------------
    def run(self) -> dict:
        import logging

        logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes are not the user's business
        cfg = self.cfg
        from edge_lowrank.pipeline.executor import make_executor

        self.executor = make_executor(cfg)  # `--executor ray` without Ray fails here, before any work
        inp = load_inputs(cfg)
        self.arm_profiles()  # a bad --arm or --select-on qemu:P without QEMU fails before any stage runs
        self.out = prepare_out_dir(cfg.out)
        from edge_lowrank import debuglog

        debuglog.set_file(self.out / "debug.log")  # Keras/TF warnings and logs of this run, not the terminal
        self.cache = StageCache(self.out)
        self.inp = inp
        schemes = cfg.scheme_list()
        finetune_w = 1.0 + 3.0 * cfg.finetune_epochs * (len(inp.train) if inp.train is not None else 0) / 10000
        self.progress.plan({"baseline": 0.3, **{f"model:{s}": finetune_w for s in schemes}})
        self.progress.plan({f"export:{v}": 1.0 for v in self._variant_ids(["baseline", *schemes])})
        self.progress.plan({f"export:{s}-int8-qat": 1.0 + finetune_w for s in cfg.qat_list()})
        self.progress.plan({"bench:host": 0.4 * 2 * (1 + len(schemes))})
        t_run = time.monotonic()
        with self.progress:
            base = self._stage("baseline", {"model": inp.model_sha}, self._baseline)
            try:
                scheme_rows, exports = self.executor.variants(self, schemes, base)
                exports.update(self._qat_where_needed(base, scheme_rows, exports))
                bench, arm = self.executor.measure(self, exports)
            finally:
                self.executor.close()
        self.timings["total"] = round(time.monotonic() - t_run, 3)
        from edge_lowrank.pipeline.assemble import assemble

        return assemble(self, base, scheme_rows, exports, bench, arm)

    def _variants_local(self, schemes, base) -> tuple[list, dict]:
        """Model then export stages, in this process, one after the other (the `local` executor)."""
        scheme_rows = []
        for s in schemes:
            scheme_rows.append(self._model_stage(s))
        exports = {}
        for scheme, keras_rel, sha, prec, vid, qat in self._export_plan(base, scheme_rows):
            exports[vid] = self._export_stage(vid, scheme, prec, keras_rel, sha, qat=qat)
        return scheme_rows, exports

    def _export_plan(self, base, scheme_rows):
        """(scheme, keras file, its sha, precision, variant id, qat) of every export, in report order."""
        models = [("baseline", base["keras"], self.inp.model_sha)]
        models += [(r["scheme"], r["keras"], r["keras_sha256"]) for r in scheme_rows if r["status"] == "ok"]
        plan = []
        for scheme, keras_rel, sha in models:
            for prec in PRECISIONS:
                plan.append((scheme, keras_rel, sha, prec, f"{scheme}-{prec}", False))
            if scheme in self.cfg.qat_list():  # the same model, int8 after quantization-aware fine-tuning
                plan.append((scheme, keras_rel, sha, "int8", f"{scheme}-int8-qat", True))
        return plan

    def _qat_where_needed(self, base, scheme_rows, exports) -> dict:
        """`qat = needed` (the default): a SCHEME-int8-qat variant for each int8 export whose top-1 agreement
        with its Keras model is below the debugger's remedy threshold (97%), measured on at least
        QAT_NEEDED_MIN_TEST images. That is where QAT pays; above it QAT measured no gain or a loss
        (docs/converters.md), and on fewer images two flipped answers cross the threshold. It depends on the
        int8 results, so it runs after every export, in this process whatever the executor."""
        if self.cfg.qat.strip() != "needed":
            return {}
        from converters.quant_debug import AGREEMENT_THRESHOLD

        out = {}
        for scheme, keras_rel, sha, prec, vid, _ in self._export_plan(base, scheme_rows):
            fid = (exports.get(vid) or {}).get("fidelity") or {}
            agree, n = fid.get("top1_agreement"), fid.get("n") or 0
            if prec != "int8" or agree is None or agree >= AGREEMENT_THRESHOLD:
                continue
            qvid = f"{scheme}-int8-qat"
            why = f"  {vid}: int8 top-1 agreement {agree * 100:.2f}% < {AGREEMENT_THRESHOLD * 100:g}%"
            if n < QAT_NEEDED_MIN_TEST:
                self.progress.log(f"{why} on only {n} test images: no {qvid} (--qat needed wants "
                                  f"{QAT_NEEDED_MIN_TEST}; --qat {scheme} forces it)")
                continue
            self.progress.log(f"{why} on {n:,} test images: adding {qvid} (--qat needed)")
            self.progress.plan({f"export:{qvid}": 4.0})
            out[qvid] = self._export_stage(qvid, scheme, "int8", keras_rel, sha, qat=True)
        return out

    @staticmethod
    def _variant_ids(schemes):
        return [f"{s}-{p}" for s in schemes for p in PRECISIONS]

    def _baseline(self):
        import shutil

        from edge_lowrank.legacy import was_repaired
        from edge_lowrank.profile import profile_model

        dst = self.out / "models" / "baseline.keras"
        with atomic_path(dst, suffix=".keras") as tmp:
            if Path(self.inp.model_path).suffix.lower() == ".keras" and not was_repaired(self.inp.model):
                shutil.copyfile(self.inp.model_path, tmp)
            else:  # a legacy .h5, or a file that loaded only after a repair: as Keras 3 saves it, so it loads
                self.inp.model.save(tmp)
        prof = profile_model(self.inp.model)
        return {"keras": "models/baseline.keras", "params": prof.params, "macs": prof.macs,
                "layers": [dataclasses.asdict(layer) for layer in prof.layers]}, [dst]

    # -- low-rank models -----------------------------------------------------------------------------------
    def _policy_kwargs(self, scheme: str) -> dict:
        cfg = self.cfg
        explicit = any(v is not None for v in (cfg.rank, cfg.rank_fraction, cfg.energy))
        if scheme == "auto":  # auto takes a budget only: latency when given, else the MAC budget
            latency = cfg.target_latency_ratio
            return {"scheme": scheme, "target_latency_ratio": latency, "cost_target": cfg.cost_target,
                    "target_mac_ratio": None if latency is not None else cfg.target_mac_ratio,
                    "rank_multiple": cfg.rank_multiple,
                    # priced on the calibration data: least output shift when nothing is fine-tuned (docs/auto.md)
                    "auto_objective": "task" if cfg.finetune_epochs > 0 else "shift",
                    # whole choices judged by a short distillation on the fine-tuning data (auto/trial.py)
                    **({"trial_samples": cfg.auto_trial} if self._trial_wanted() else {})}
        return {"scheme": scheme, "rank": cfg.rank, "rank_fraction": cfg.rank_fraction, "energy": cfg.energy,
                "target_mac_ratio": None if explicit else cfg.target_mac_ratio, "rank_multiple": cfg.rank_multiple,
                # in the stage key only when it is not linear: runs cached before the option stay valid
                **({"output_fit": cfg.output_fit} if scheme == "output" and cfg.output_fit != "linear" else {})}

    def _trial_wanted(self) -> bool:
        """Whether `auto`'s whole choices are judged by a short distillation: fine-tuning follows, on data."""
        return self.cfg.auto_trial > 0 and self.cfg.finetune_epochs > 0 and self.inp.train is not None

    def _model_inputs(self, scheme: str) -> dict:
        cfg, inp = self.cfg, self.inp
        return {"model": inp.model_sha, "policy": self._policy_kwargs(scheme), "seed": cfg.seed,
                "finetune": {"epochs": cfg.finetune_epochs, "samples": len(inp.train) if inp.train else 0,
                             "batch_size": cfg.batch_size, "data": inp.fingerprints["train"],
                             "recipe": _distill_recipe(), "reestimate": cfg.reestimate,
                             # in the key only when on: stages cached before the option stay valid
                             **({"augment": cfg.finetune_augment} if cfg.finetune_augment != "none" else {}),
                             **({"lr": cfg.finetune_lr} if cfg.finetune_lr != DEFAULT_LR else {}),
                             **({"schedule": cfg.finetune_schedule} if cfg.finetune_schedule != "auto" else {})},
                "calib": [inp.fingerprints["calib"], len(inp.calib)]}

    def _model_stage(self, scheme: str) -> dict:
        return self._stage(f"model:{scheme}", self._model_inputs(scheme), lambda: self._make_model(scheme))

    def _make_model(self, scheme: str):
        from edge_lowrank.profile import profile_model
        from edge_lowrank.rewrite import CompressionPolicy, compress

        cfg, inp = self.cfg, self.inp
        self._seed(f"model:{scheme}")
        policy = CompressionPolicy(**self._policy_kwargs(scheme), calib_data=inp.calib.x,
                                   trial_data=inp.train if scheme == "auto" and self._trial_wanted() else None)
        row = {"scheme": scheme, "status": "ok", "message": None, "rewrite": None, "finetune": None,
               "keras": None, "keras_sha256": None}
        try:
            student, rep = compress(inp.model, policy)
        except (EdgeLowrankError, ValueError) as e:
            row.update(status="error", message=_first_line(e))
            self.progress.log(f"  {scheme}: cannot rewrite: {row['message']}")
            return row, []
        row["rewrite"] = rep.to_dict()
        if rep.changed:
            try:  # a rewrite whose graph TensorFlow cannot run is a scheme error, not a crash of the run
                student(inp.calib.x[:2], training=False)
            except Exception as e:
                row.update(status="error", message=f"the rewritten model does not run: {_first_line(e)}")
                self.progress.log(f"  {scheme}: {row['message']}")
                return row, []
        if not rep.changed:
            reasons = sorted({str(r.get("reason")) for r in row["rewrite"].get("layers", []) if r.get("reason")})
            row.update(status="no-supported-layer",
                       message="no layer was rewritten" + (f" ({'; '.join(reasons)[:200]})" if reasons else ""))
            self.progress.log(f"  {scheme}: {row['message']}")
            return row, []
        if cfg.finetune_epochs > 0 and inp.train is not None:
            from edge_lowrank.finetune import distill

            try:
                hist = distill(student, inp.model, inp.train, epochs=cfg.finetune_epochs,
                               batch_size=cfg.batch_size, verbose=False, seed=cfg.seed,
                               reestimate=cfg.reestimate, augment=cfg.finetune_augment,
                               learning_rate=cfg.finetune_lr, schedule=cfg.finetune_schedule)
            except EdgeLowrankError:
                raise
            except Exception as e:
                row.update(status="error", message=f"fine-tuning failed: {_first_line(e)}")
                self.progress.log(f"  {scheme}: {row['message']}")
                return row, []
            row["finetune"] = _jsonable(hist)
        prof = profile_model(student)
        row["params"], row["macs"] = prof.params, prof.macs
        dst = self.out / "models" / f"{scheme}.keras"
        with atomic_path(dst, suffix=".keras") as tmp:
            student.save(tmp)
        row["keras"] = f"models/{scheme}.keras"
        row["keras_sha256"] = file_sha256(dst)
        return row, [dst]

    # -- conversion and accuracy ---------------------------------------------------------------------------
    def _export_inputs(self, precision: str, keras_sha: str, qat: bool = False) -> dict:
        inp = self.inp
        inputs = {"keras": keras_sha, "precision": precision, "c_arrays": self.cfg.c_arrays,
                  "test": [inp.fingerprints["test"], len(inp.test)],
                  "calib": [inp.fingerprints["calib"], len(inp.calib)] if precision == "int8" else None}
        if qat:
            inputs["qat"] = {"epochs": self.cfg.qat_epochs, "seed": self.cfg.seed, "teacher": inp.model_sha,
                             "data": [inp.fingerprints["train"], len(self._qat_data()[0])]}
        return inputs

    def export_skipped(self, vid: str, scheme: str, precision: str, keras_rel: str) -> dict | None:
        """A row standing for an export a subclass does not want (e.g. the frontier sweep's float32 ones), or
        None; both executors ask it before an export stage."""
        return None

    def host_bench_wanted(self) -> bool:
        """False in a subclass that times the files itself (the frontier sweep); both executors ask it."""
        return True

    def _export_stage(self, vid: str, scheme: str, precision: str, keras_rel: str, keras_sha: str,
                      qat: bool = False) -> dict:
        skipped = self.export_skipped(vid, scheme, precision, keras_rel)
        if skipped is not None:
            return skipped
        inputs = self._export_inputs(precision, keras_sha, qat)
        return self._stage(f"export:{vid}", inputs, lambda: self._export(vid, scheme, precision, keras_rel, qat))

    def _qat_data(self):
        """(images, labels or None) QAT fine-tunes on: the fine-tuning part, else the calibration images."""
        ds = self.inp.train if self.inp.train is not None else self.inp.calib
        return ds.x, ds.y

    def _export(self, vid: str, scheme: str, precision: str, keras_rel: str, qat: bool = False):
        from edge_lowrank.isolate import CrashError

        try:
            return self._export_files(vid, scheme, precision, keras_rel, qat)
        except Exception as e:  # the converter's and TF's failures: an error row for this variant, the run goes on
            for f in (self.out / "tflite" / f"{vid}.tflite", self.out / "c" / f"{vid}.cc", self.out / "c" / f"{vid}.h"):
                f.unlink(missing_ok=True)
            crashed = isinstance(e, CrashError)  # native code died in its child: `run` exits 1 after the report
            if crashed:
                self.crashes.append(f"export:{vid}: {e}")
            return {"id": vid, "scheme": scheme, "precision": precision, "keras": keras_rel, "tflite": None,
                    "size_bytes": None, "error": str(e) if crashed else _first_line(e), "crashed": crashed}, []

    def _export_files(self, vid: str, scheme: str, precision: str, keras_rel: str, qat: bool = False):
        """Convert, then measure; the converter, TFLM and LiteRT each run in a child process, so a native
        crash raises `CrashError` (one line naming the stage, the file and the signal) instead of ending the run."""
        import converters
        from edge_lowrank.isolate import CrashError
        from edge_lowrank.modelio import load_keras_model

        model = self.inp.model if scheme == "baseline" else load_keras_model(self.out / keras_rel)
        from converters.metadata import normalization_metadata

        kwargs = {"precision": precision, "metadata": {"variant": vid, "scheme": scheme,
                                                       **normalization_metadata(self.inp.transform)}}
        if precision == "int8":
            kwargs["representative_data"] = self.inp.calib.x
        if qat:  # tfmot in its own child (tf_keras); distilled from the original float model
            from converters.qat import qat_tflite

            x, _ = self._qat_data()
            teacher = self.inp.model.predict(x, batch_size=256, verbose=0)
            tfl = qat_tflite(model, x, teacher, calib_x=self.inp.calib.x, epochs=self.cfg.qat_epochs,
                             seed=self.cfg.seed, metadata=kwargs["metadata"])  # keeps its own "qat" details
        else:
            # the converter's child loads the saved file (models/baseline.keras is a Keras 3 save of the input)
            tfl = converters.to_tflite_isolated(self.out / keras_rel, subject=keras_rel, **kwargs)
        tfl_rel = f"tflite/{vid}.tflite"
        files = []
        path = self.out / "tflite" / f"{vid}.tflite"
        atomic_write_bytes(path, tfl)
        files.append(path)
        rec = {"id": vid, "scheme": scheme, "precision": precision, "keras": keras_rel,
               "tflite": f"tflite/{vid}.tflite", "size_bytes": len(tfl), "c_source": None, "c_header": None,
               "arena_bytes": None, "fidelity": None, "top1": None, "top1_keras": None, "error": None, "qat": qat}
        try:
            rec["arena_bytes"] = int(converters.tflm_arena_size(tfl, subject=tfl_rel))
        except CrashError:
            raise
        except Exception as e:  # TFLM may lack an op the model uses: the arena gate then reports "not measured"
            rec["arena_error"] = _first_line(e)
        if self.cfg.c_arrays:
            src, hdr = converters.c_array(tfl, c_name(vid), arena_size=rec["arena_bytes"])
            for ext, text in (("cc", src), ("h", hdr)):
                p = self.out / "c" / f"{vid}.{ext}"
                atomic_write_text(p, text)
                files.append(p)
                rec["c_source" if ext == "cc" else "c_header"] = f"c/{vid}.{ext}"
        fid = converters.check_fidelity(model, tfl, self.inp.test, n=None, subject=tfl_rel)
        rec["fidelity"] = _jsonable(fid.to_dict())
        rec["top1"] = fid.accuracy_tflite
        rec["top1_keras"] = fid.accuracy_keras
        return rec, files

    # -- measurements --------------------------------------------------------------------------------------
    def _bench_params(self):
        from device_bench.results import BenchParams

        return BenchParams(num_runs=self.cfg.num_runs, min_secs=self.cfg.min_secs, num_threads=1)

    def _bench_inputs(self, exports: dict):
        params = self._bench_params()
        return params, {"models": {v: file_sha256(self.out / e["tflite"]) for v, e in exports.items()
                                   if e.get("tflite")}, "params": dataclasses.asdict(params)}

    def _bench_stage(self, exports: dict) -> dict:
        if not self.host_bench_wanted():
            return {}
        params, inputs = self._bench_inputs(exports)
        return self._stage("bench:host", inputs, lambda: self._bench(exports, params))

    def _bench(self, exports: dict, params):
        from device_bench.bench import bench_models
        from device_bench.compare import compare  # not `device_bench.compare`: the submodule shadows the name

        ids = [v for v, e in exports.items() if e.get("tflite")]
        if not ids:  # every export failed: the report shows why, there is nothing to time
            return {}, []
        paths = [str(self.out / exports[v]["tflite"]) for v in ids]
        results = bench_models(paths, params, target="host", interleave=True)
        out = {}
        for v, r in zip(ids, results):
            d = r.to_dict()
            d.pop("samples_us", None)  # raw timings stay out of the record; the CI below summarises them
            out[v] = d
        for ref in ("baseline-float32", "baseline-int8"):
            try:
                rows = compare(results, ids.index(ref))
            except EdgeLowrankError:
                continue
            for v, row in zip(ids, rows):
                if row.get("ci_low") is not None:
                    out[v][f"speedup_ci95_vs_{ref.split('-')[1]}"] = [row["ci_low"], row["ci_high"]]
        out["_measured_on"] = node_info()  # not a variant: which machine timed them (report.json timings)
        return out, []

    def arm_profiles(self) -> tuple[bool, str | None, list[str]]:
        """(available, reason when not, profiles to run) for the `--arm` setting."""
        setting = self.cfg.arm.strip()
        if setting == "none":
            return False, "--arm none", []
        try:
            from device_bench import qemu
        except ImportError as e:
            return False, f"device_bench.qemu is not installed ({_first_line(e)})", []
        ok, reason = qemu.available()
        if not ok:
            if self.cfg.select_profile():
                raise EdgeLowrankError(f"--select-on {self.cfg.select_target()} needs ARM emulation: {reason}")
            return False, reason, []
        names = list(qemu.PROFILES)
        select = self.cfg.select_profile()  # --select-on qemu:P: P is counted, whatever --arm lists
        if setting == "auto":  # one profile keeps the demo's emulation time bounded; A76 has the dot product
            return True, None, [select] if select else ["cortex-a76"] if "cortex-a76" in names else names[:1]
        wanted = [p.strip() for p in setting.split(",") if p.strip()]
        bad = [p for p in wanted if p not in names]
        if bad:
            raise EdgeLowrankError(f"Invalid value for `arm`. Expected auto, none or profiles from "
                                   f"{', '.join(names)}. Received: {','.join(bad)}.")
        return True, None, wanted + ([select] if select and select not in wanted else [])

    def _arm_jobs(self, exports: dict) -> list:
        """[(stage name, inputs, profile, export, params)] of the QEMU counts; sets `arm_state`."""
        ok, reason, profiles = self.arm_profiles()
        self.arm_state = {"available": ok, "reason": reason, "profiles": profiles}
        if not ok:
            return []
        params = self._bench_params()
        params.num_runs, params.min_secs, params.warmup_min_secs = 1, 0.0, 0.0  # instruction counts are exact
        targets = {v: e for v, e in exports.items()
                   if e["precision"] in self.cfg.arm_precision_list() and e.get("tflite")}
        select = self.cfg.select_profile() or ("cortex-a76" if "cortex-a76" in profiles else profiles[0])
        ref = f"baseline-{self.cfg.speedup_vs}"  # --min-speedup on ARM counts needs its baseline counted
        extra = ref if (self.cfg.min_speedup is not None and self.cfg.select_target() != "host"
                        and ref not in targets and (exports.get(ref) or {}).get("tflite")) else None
        jobs = [(p, v, e) for p in profiles for v, e in targets.items()]
        if extra:
            jobs.append((select, extra, exports[extra]))
        self.progress.plan({f"arm:{p}:{v}": 2.0 for p, v, _ in jobs})
        return [(f"arm:{p}:{v}", {"model": file_sha256(self.out / e["tflite"]), "profile": p,
                                  "params": dataclasses.asdict(params)}, p, v, e, params) for p, v, e in jobs]

    def _arm_stages(self, exports: dict) -> dict:
        out = {}
        for name, inputs, p, v, e, params in self._arm_jobs(exports):
            out[(p, v)] = self._stage(name, inputs, lambda p=p, e=e, params=params: self._arm(p, e, params))
        return out

    def _arm(self, profile: str, export: dict, params):
        from device_bench import qemu

        try:
            r = qemu.run_qemu(str(self.out / export["tflite"]), profile, params)
            return {"instructions": r.instructions_per_inference, "error": r.error, "measured_on": node_info()}, []
        except EdgeLowrankError as e:
            return {"instructions": None, "error": _first_line(e), "measured_on": node_info()}, []


def _distill_recipe() -> str:
    """The fine-tuning recipe's version: a model stage recorded under other distillation defaults reruns."""
    from edge_lowrank.finetune.distill import RECIPE

    return RECIPE


def _jsonable(o):
    """Plain JSON types from numpy scalars, tuples and dataclasses."""
    import numpy as np

    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        o = dataclasses.asdict(o)
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, float) and (o != o or o in (float("inf"), float("-inf"))):
        return None
    return o
