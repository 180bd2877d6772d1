"""INT8 PyTorch models with Intel Neural Compressor 3.x (neural-compressor-pt), via PT2E.

The model is captured with torch.export (dynamic batch and sequence), quantized with INC's
X86-Inductor recipe (static: calibrated activations; dynamic: per-channel weights, activations
at run time), and written twice: INC's own portable save (quantized_weight.pt + qconfig.json),
and an AOTInductor package (model.pt2) compiled here, in which the INT8 linears are oneDNN
kernels. The Q/DQ graph alone runs slower than FP32 in eager mode; the package is what is fast.
Loading the package needs neither INC nor transformers; where it cannot load (another CPU or
torch), the portable save is loaded instead and a warning says it is the slow path.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

from edgewise.core.artifact import Artifact
from edgewise.core.errors import EdgewiseError
from edgewise.quantize.config import IncApproach, QuantizeConfig

PACKAGE = "model.pt2"
PORTABLE = ("quantized_weight.pt", "qconfig.json")
INFO = "inc_model.json"  # input order, dynamic-shape limits, how it was made
INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")  # positional order of BERT-like forwards
MAX_BATCH = 1024


# oneDNN ISAs (ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA caps) whose INT8 kernels have no VNNI.
NON_VNNI_ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX512_CORE", "AVX512_MIC", "AVX512_MIC_4OPS")


def int8_kernel_problem(cpu: dict) -> str | None:
    """Why the compiled INT8 package would compute wrong logits on this CPU, or None.

    The package's INT8 linears are oneDNN kernels. Without VNNI, u8 x s8 products are added in pairs
    in int16 (vpmaddubsw), which can saturate with the full 8-bit activations and weights INC uses
    (PyTorch's x86 quantizer offers 7-bit activations, its `reduce_range`, only outside INC).
    Measured by benchmarks/cpu_quantize_defaults_isa_minilm.py on a 2-core AMD EPYC with AVX-512
    VNNI, oneDNN capped with ONEDNN_MAX_CPU_ISA (it then picks the kernels of an older CPU at run
    time): the tiny test teacher's package was off from FP32 by 0.45 (logit scale 2.94) capped to
    AVX512_CORE, by 0.042 uncapped or capped to AVX2 or AVX512_CORE_VNNI (INC's reference graph: 0.042
    everywhere); the BBC MiniLM teacher's package capped to AVX2 matched its uncapped logits but took
    about 900x longer per text (452 s for 8 texts against 6.1 s for 64). Wrong or unusably slow.
    """
    import os

    from edgewise.quantize.ort import cpu_family

    family = cpu_family(cpu)
    if family == "arm":
        return None
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if cap in NON_VNNI_ONEDNN_ISAS:
        return f"oneDNN is capped to {cap} (ONEDNN_MAX_CPU_ISA), whose INT8 kernels have no VNNI"
    if family == "x86":
        return ("this x86 CPU has no VNNI (avx512_vnni / avx_vnni), and without it oneDNN's INT8 kernels gave "
                "wrong logits (AVX-512: off by 0.45 on a scale of 2.9) or ran about 900x slower (AVX2) when measured")
    return None


@contextlib.contextmanager
def quiet_inc():
    """INC reads its log level from LOGLEVEL at import; torch.export and Inductor warn about expected things."""
    previous = os.environ.get("LOGLEVEL")
    os.environ["LOGLEVEL"] = "ERROR"
    loggers = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree", "torch.export.pt2_archive._package",
                                               "torch._export", "neural_compressor")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="To copy construct from a tensor")
            warnings.filterwarnings("ignore", message=".*must run observer before calling calculate_qparams")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if previous is None:
            os.environ.pop("LOGLEVEL", None)
        else:
            os.environ["LOGLEVEL"] = previous


def _example(model, names: list[str], batch: int = 2, seq: int = 16):
    import torch

    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    ids = torch.randint(min(1000, vocab // 2), vocab, (batch, seq), generator=generator)
    columns = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    return tuple(columns[n] for n in names)


def quantize_inc(artifact: Artifact, out: Path, scratch: Path, config: QuantizeConfig, evaluation: dict,
                 calibration: dict | None) -> dict:
    """Quantize the `hf` model in ``artifact`` into ``out``; returns the stage's metrics."""
    import time

    import torch

    from edgewise.core.models import ModelSource, load_classifier, load_tokenizer, max_positions, model_inputs
    from edgewise.core.progress import console

    source = ModelSource(str(artifact.path), str(artifact.path), True)
    tokenizer = load_tokenizer(source)
    model = load_classifier(source, config.allow_pickle).eval()
    accepted = model_inputs(model, dict.fromkeys(INPUT_ORDER))
    names = [n for n in INPUT_ORDER if n in accepted]
    limit = max_positions(model.config, tokenizer)
    max_length = int(((artifact.manifest.data or {}) if artifact.manifest else {}).get("max_length") or limit)
    example = _example(model, names)
    model.config.return_dict = False  # tuple outputs: the saved graph then needs no transformers classes

    record: dict = {"method": "inc", "approach": config.inc_approach.value, "inputs": names}
    with quiet_inc():
        from torch.export import Dim

        from edgewise.core.deps import dist_version

        export_inc = importlib.import_module("neural_compressor.torch.export").export
        inc_q = importlib.import_module("neural_compressor.torch.quantization")
        dims = {0: Dim("batch", min=1, max=MAX_BATCH), 1: Dim("seq", min=2, max=limit)}
        shapes = tuple(dims for _ in names)
        started = time.perf_counter()
        with console().status("capturing the model with torch.export"), torch.no_grad():
            try:
                exported = export_inc(model, example, dynamic_shapes=shapes)
            except Exception as e:  # noqa: BLE001 - torch.export raises many types for untraceable code
                raise EdgewiseError(
                    f"torch.export could not capture {artifact.path} ({type(e).__name__}: "
                    f"{str(e).splitlines()[0][:300]}); INC's PT2E quantization needs an exportable model: quantize "
                    "its ONNX export with --method dynamic / static instead"
                ) from None
        if config.inc_approach is IncApproach.STATIC:
            recipe = inc_q.INT8StaticQuantConfig()
        else:  # per-tensor weights never reach the INT8 kernels (no speed-up); per-channel ones do
            recipe = inc_q.DynamicQuantConfig(w_granularity="per_channel")
        prepared = inc_q.prepare(exported, recipe, example_inputs=example)
        batches = _calibration_batches(tokenizer, calibration, names, max_length, config.calibration_batch_size)
        with console().status(f"calibrating on {len(batches) or 1} batch(es)"), torch.no_grad():
            # Dynamic quantization still needs one pass: it is what runs the weight observers.
            for batch in batches or [example]:
                prepared(*batch)
        quantized = inc_q.convert(prepared)
        quantized.save(example_inputs=example, output_dir=str(out))
        record["quantize_s"] = round(time.perf_counter() - started, 1)
        record["neural_compressor"] = dist_version("neural_compressor")
        started = time.perf_counter()
        with console().status("compiling the INT8 model (AOTInductor)"):
            record["package"] = _package(quantized, example, shapes, out / PACKAGE, scratch)
        record["compile_s"] = round(time.perf_counter() - started, 1)
    (out / INFO).write_text(json.dumps({"inputs": names, "max_batch": MAX_BATCH, "max_seq": limit,
                                        "approach": config.inc_approach.value}, indent=2) + "\n")
    if calibration is not None:
        record["calibration"] = {"data": calibration["spec"], "split": calibration["split"],
                                 "samples": len(calibration["texts"]), "batches": len(batches)}

    weights = list(artifact.path.glob("*.safetensors")) or list(artifact.path.glob("pytorch_model*.bin"))
    source_bytes = sum(p.stat().st_size for p in weights)  # sharded checkpoints too
    runs = out / PACKAGE if (out / PACKAGE).is_file() else out / PORTABLE[0]
    metrics = {"quantization": record,
               "size": {"source_bytes": source_bytes, "bytes": runs.stat().st_size,
                        "ratio": runs.stat().st_size / source_bytes if source_bytes else None,
                        "files": {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}}}
    metrics.update(_accuracy(model, out, tokenizer, evaluation, config, max_length))
    return metrics


def _calibration_batches(tokenizer, calibration: dict | None, names: list[str], max_length: int, batch_size: int):
    if calibration is None:
        return []
    texts, pairs = calibration["texts"], calibration["pairs"]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        encoded = tokenizer([texts[i] for i in idx], [pairs[i] for i in idx] if pairs else None, truncation=True,
                            max_length=max_length, padding=True, return_tensors="pt")
        if encoded["input_ids"].shape[1] < 2:
            continue
        batches.append(tuple(encoded[n] if n in encoded else encoded["input_ids"] * 0 for n in names))
    return batches


def _package(quantized, example, shapes, path: Path, scratch: Path) -> dict:
    """Compile the quantized graph into an AOTInductor package; None (with the reason) if this machine cannot."""
    import torch
    import torch._inductor.config as inductor_config

    previous = inductor_config.freezing
    inductor_config.freezing = True  # constant weights: lets Inductor fold them into oneDNN INT8 kernels
    try:
        with torch.no_grad():
            program = torch.export.export(quantized, example, dynamic_shapes=shapes)
            torch._inductor.aoti_compile_and_package(program, package_path=str(path))
        return {"file": path.name, "built": True}
    except Exception as e:  # noqa: BLE001 - no C++ compiler, unsupported op...: the portable save still works
        return {"file": None, "built": False, "reason": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    finally:
        inductor_config.freezing = previous


def _accuracy(source_model, out: Path, tokenizer, evaluation: dict, config: QuantizeConfig, max_length: int) -> dict:
    from edgewise.core.models import predict_logits
    from edgewise.quantize.measure import compare_splits

    id2label = {int(k): v for k, v in source_model.config.id2label.items()}
    source_model.config.return_dict = True
    quantized = QuantizedClassifier(out)
    logits = lambda model: lambda texts, pairs: predict_logits(  # noqa: E731
        model, tokenizer, texts, pairs, batch_size=config.eval_batch_size, max_length=max_length)
    return {"accuracy": compare_splits(evaluation["splits"], logits(source_model), logits(quantized), id2label),
            "data": evaluation["spec"], "runs_with": quantized.runs_with}


class QuantizedClassifier:
    """An `inc` artifact loaded for the torch backend: called like a transformers classifier
    (``model(**inputs).logits``), on the CPU."""

    def __init__(self, folder: Path):
        import torch
        from transformers import AutoConfig

        folder = Path(folder)
        info_path = folder / INFO
        if not info_path.is_file():
            raise EdgewiseError(f"{folder} has no {INFO}; it is not an INC model written by edgewise quantize")
        info = json.loads(info_path.read_text())
        self.names, self.max_batch, self.max_seq = info["inputs"], info["max_batch"], info["max_seq"]
        self.config = AutoConfig.from_pretrained(folder)
        self.device = torch.device("cpu")
        self.runs_with, self._run = self._load(folder)

    def _load(self, folder: Path):
        import torch

        from edgewise.core.env import cpu_info

        problem = int8_kernel_problem(cpu_info())
        if problem and (folder / PACKAGE).is_file():
            reason = f"it would give wrong logits here: {problem}"
        elif (folder / PACKAGE).is_file():
            try:
                package = torch._inductor.aoti_load_package(str(folder / PACKAGE))
                return "aoti-package", package
            except Exception as e:  # noqa: BLE001 - a package built for another CPU / torch: use the portable save
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        else:
            reason = f"no {PACKAGE}"
        from edgewise.core.deps import require
        from edgewise.core.progress import console

        with quiet_inc():
            inc_q = require("neural_compressor.torch.quantization", "full")
            model = inc_q.load(str(folder))
        fix = ("Use an ONNX INT8 model on this CPU (edgewise quantize --method dynamic)." if problem else
               "Re-run edgewise quantize on this machine for the fast package.")
        console().print(f"[yellow]warning:[/] {folder}: the compiled INT8 package is unusable here ({reason}); "
                        f"running INC's reference graph, which is slower than FP32. {fix}")
        return "inc-reference", model

    def eval(self):
        return self

    def to(self, device):
        if str(device) != "cpu":
            raise EdgewiseError("INC INT8 models run on the CPU; use --backend torch (CPU), or an ONNX INT8 model "
                                "with TensorRT on a GPU")
        return self

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        import torch

        batch, seq = input_ids.shape
        if batch > self.max_batch or not 2 <= seq <= self.max_seq:
            raise EdgewiseError(f"the INC model takes batches of 1..{self.max_batch} and 2..{self.max_seq} tokens, "
                                f"got {batch} x {seq}; lower the batch size or max_length")
        columns = {"input_ids": input_ids, "attention_mask": attention_mask if attention_mask is not None
                   else torch.ones_like(input_ids),
                   "token_type_ids": token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)}
        with torch.no_grad():
            out = self._run(*(columns[n] for n in self.names))
        return SimpleNamespace(logits=out[0])

    __call__ = forward
