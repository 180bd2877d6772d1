"""Running an `inc` artifact (INT8 PyTorch from Intel Neural Compressor) for the torch backend.

The artifact holds an AOTInductor package (model.pt2) whose INT8 linears are oneDNN kernels, and
INC's portable save (quantized_weight.pt + qconfig.json). The package is what is fast; where it
cannot load (another CPU or torch) or would compute wrong logits (no VNNI), INC's reference graph
is loaded instead, with a warning. torch and INC are imported only when a model is loaded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

from edgewise.core.env import cpu_family
from edgewise.core.errors import EdgewiseError

PACKAGE = "model.pt2"
PORTABLE = ("quantized_weight.pt", "qconfig.json")
INFO = "inc_model.json"  # input order, dynamic-shape limits, how it was made
CODE_FILES = (PACKAGE, *PORTABLE)  # what loading runs or deserialises: sealed by core.trust
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
        self.config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
        self.device = torch.device("cpu")
        self.runs_with, self._run = self._load(folder)

    def _load(self, folder: Path):
        import torch

        from edgewise.core.env import cpu_info
        from edgewise.core.trust import check_native_code

        check_native_code(folder, CODE_FILES)  # both ways in run what the folder holds
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
