"""Settings of `edgewise export` and `edgewise bundle` (no torch / onnx imports here)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from edgewise.core.config import setting
from edgewise.core.data import DataConfig
from edgewise.core.errors import EdgewiseError
from edgewise.core.tasks import TaskConfig


class ExportFormat(str, enum.Enum):
    ONNX = "onnx"  # from an `hf` artifact
    ORT = "ort"  # ONNX Runtime's mobile format, from an `onnx` artifact
    TENSORRT = "tensorrt"  # a TensorRT engine, from an `onnx` artifact


class OrtTarget(str, enum.Enum):
    ARM = "arm"  # phones, Jetson: no x86-only layout transforms baked in
    AMD64 = "amd64"


def parse_profile(text: str, what: str) -> tuple[int, int, int]:
    """`min:opt:max` (or one number for all three) as a TensorRT optimisation-profile range."""
    parts = str(text).split(":")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not 0 < values[0] <= values[1] <= values[2]:
        raise EdgewiseError(
            f"{what} {text!r} is not a profile; write MIN:OPT:MAX with 0 < MIN <= OPT <= MAX, e.g. 1:4:16"
        )
    return values


@dataclass(frozen=True)
class ExportConfig:
    """Export of a classifier to ONNX, ONNX Runtime's mobile format or a TensorRT engine.

    Example:
        >>> ExportConfig(format=ExportFormat.TENSORRT, fp16=True, batch=(1, 4, 16)).seq
        (8, 64, 128)
    """

    SCHEMA_VERSION = 1

    format: ExportFormat = setting(ExportFormat.ONNX, "What to write: onnx (from an hf artifact), ort or "
                                                      "tensorrt (from an onnx artifact).")
    opset: int = setting(17, "ONNX opset. 17 is the newest TensorRT 8.6 (JetPack 5) parses; 18+ needs TensorRT 10.")
    optimize: bool = setting(False, "Run ONNX Runtime's transformer optimiser (Attention, SkipLayerNormalization, "
                                    "BiasGelu fusions) after export.")
    verify: bool = setting(True, "Compare the exported model's outputs (logits, sentence vectors) with its source's; "
                                 "a miss is an error. --optimize of a model with pruned heads is checked even "
                                 "without it.")
    atol: float = setting(1e-4, "Largest |output difference| (logit, vector element) the parity check accepts.")
    verify_samples: int = setting(64, "Texts from --data used by the parity check (test, then validation, then "
                                      "train); without --data, generated inputs of several shapes.")
    max_length: int | None = setting(None, "Tokens per text in the parity check. Default: the length the model "
                                           "was trained with.")
    ort_target: OrtTarget = setting(OrtTarget.ARM, "Platform the ORT-format model is optimised for.")
    fp16: bool = setting(False, "TensorRT: allow FP16 kernels.")
    batch: tuple[int, int, int] = setting((1, 1, 16), "TensorRT profile of the batch size, MIN:OPT:MAX.", sep=":")
    seq: tuple[int, int, int] = setting((8, 64, 128), "TensorRT profile of the sequence length, MIN:OPT:MAX.",
                                        sep=":")
    workspace_mb: int = setting(2048, "TensorRT builder workspace limit in MiB.")
    timing_cache: str | None = setting(None, "TensorRT timing cache to start from (e.g. an earlier export's "
                                             "timing.cache); the updated cache is written into the output.")
    allow_pickle: bool = setting(False, "Allow pytorch_model.bin pickle weights (loading them can run code).")
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", ExportFormat(self.format))
        object.__setattr__(self, "ort_target", OrtTarget(self.ort_target))
        for name in ("batch", "seq"):
            value = getattr(self, name)
            text = ":".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
            object.__setattr__(self, name, parse_profile(text, f"--{name}"))
        problems = []
        if not 11 <= self.opset <= 23:
            problems.append(f"opset must be between 11 and 23, got {self.opset}")
        if not 0 < self.atol < 1:
            problems.append(f"atol must be in (0, 1), got {self.atol}")
        if self.verify_samples < 1:
            problems.append(f"verify_samples must be >= 1, got {self.verify_samples}")
        if self.max_length is not None and self.max_length < 2:
            problems.append(f"max_length must be >= 2 or unset, got {self.max_length}")
        if self.workspace_mb < 16:
            problems.append(f"workspace_mb must be >= 16, got {self.workspace_mb}")
        if self.optimize and self.format is not ExportFormat.ONNX:
            problems.append("--optimize applies to --format onnx; optimise the ONNX first, then convert it")
        if problems:
            raise EdgewiseError("; ".join(problems))


class BundleTarget(str, enum.Enum):
    GENERIC = "generic"  # the model as it is, for edgewise.runtime on any machine
    JETSON = "jetson"  # model.onnx + build_engine.sh (trtexec) + JetPack 6 steps
    ANDROID = "android"  # model.ort + operator list + NNAPI report + Kotlin snippet
    IOS = "ios"  # model.ort + operator list + CoreML report + Swift snippet


PHONE_TARGETS = (BundleTarget.ANDROID, BundleTarget.IOS)
DEFAULT_MAX_BATCH = 8  # the jetson engine's largest batch: a few requests at once, a small engine to build


def parse_fixed_shape(text: str) -> tuple[int, int]:
    """``BATCHxTOKENS`` (e.g. 1x128) as (batch, tokens); an EdgewiseError naming the form otherwise."""
    import re

    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match or int(match[1]) < 1 or int(match[2]) < 2:
        raise EdgewiseError(
            f"--fixed-shape {text!r} is not BATCHxTOKENS; write a batch >= 1 and a token count >= 2 joined by x, "
            "e.g. 1x128 (one text of 128 tokens)"
        )
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class BundleConfig:
    """A deploy folder: the model, tokenizer.json, labels, edgewise.json and a usage text, plus what a
    device kit needs (``target``): a TensorRT build script for Jetson, the ORT-format model, its
    operator list and NNAPI / CoreML report for phones.

    Example:
        >>> BundleConfig(target="android", fixed_shape="1x128").fixed_dims
        (1, 128)
    """

    SCHEMA_VERSION = 2  # 2: target, max_batch, fixed_shape (absent from a version 1 config: their defaults)

    target: BundleTarget = setting(BundleTarget.GENERIC, "Device kit: generic (the model for edgewise.runtime), "
                                                         "jetson (+ TensorRT build_engine.sh, JetPack 6 steps), "
                                                         "android or ios (model.ort, its operator list, the "
                                                         "NNAPI / CoreML report, app snippets).")
    model_format: str = setting("auto", "Model file to ship: auto (model.ort if the source has one, else "
                                        "model.onnx; jetson: model.onnx; phones: model.ort, converted from "
                                        "model.onnx when missing), onnx or ort.", choices=("auto", "onnx", "ort"))
    max_length: int | None = setting(None, "Tokens per text on the device. Default: the length the model was "
                                           "trained with.")
    max_batch: int | None = setting(None, f"jetson: the largest batch the TensorRT engine takes (its profile's "
                                          f"max). Default: {DEFAULT_MAX_BATCH}.")
    fixed_shape: str | None = setting(None, "android / ios: also write model.fixed.ort with static shapes "
                                            "BATCHxTOKENS (e.g. 1x128), which NNAPI and CoreML need.")

    def __post_init__(self) -> None:
        problems = []
        try:
            object.__setattr__(self, "target", BundleTarget(self.target))
        except ValueError:
            raise EdgewiseError(f"target must be one of {', '.join(t.value for t in BundleTarget)}, got "
                                f"{self.target!r}") from None
        if self.model_format not in ("auto", "onnx", "ort"):
            problems.append(f"model_format must be auto, onnx or ort, got {self.model_format!r}")
        if self.max_length is not None and self.max_length < 2:
            problems.append(f"max_length must be >= 2 or unset, got {self.max_length}")
        if self.target is BundleTarget.JETSON and self.model_format == "ort":
            problems.append("--target jetson ships model.onnx (TensorRT builds from ONNX); drop --model-format ort")
        if self.target in PHONE_TARGETS and self.model_format == "onnx":
            problems.append(f"--target {self.target.value} ships model.ort (ONNX Runtime Mobile's format); drop "
                            "--model-format onnx")
        if self.max_batch is not None:
            if self.target is not BundleTarget.JETSON:
                problems.append(f"--max-batch sets the TensorRT engine's profile and applies to --target jetson, "
                                f"not {self.target.value}; drop it")
            elif self.max_batch < 1:
                problems.append(f"max_batch must be >= 1, got {self.max_batch}")
        if self.fixed_shape is not None:
            if self.target not in PHONE_TARGETS:
                problems.append(f"--fixed-shape makes a static-shape model for NNAPI / CoreML and applies to --target "
                                f"android or ios, not {self.target.value}; drop it")
            else:
                try:
                    batch, tokens = parse_fixed_shape(self.fixed_shape)
                    object.__setattr__(self, "fixed_shape", f"{batch}x{tokens}")
                except EdgewiseError as e:
                    problems.append(str(e))
        if problems:
            raise EdgewiseError("; ".join(problems))

    @property
    def fixed_dims(self) -> tuple[int, int] | None:
        """(batch, tokens) of ``fixed_shape``, or None."""
        return parse_fixed_shape(self.fixed_shape) if self.fixed_shape else None

    @property
    def engine_max_batch(self) -> int:
        return self.max_batch or DEFAULT_MAX_BATCH
