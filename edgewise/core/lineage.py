"""The chain of artifacts from one back to its root (the fine-tuned teacher and its encoder)."""

from __future__ import annotations

from pathlib import Path

from edgewise.core.artifact import real_path
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import MANIFEST_NAME, Manifest


def _headline(metrics: dict) -> dict:
    for split in ("test", "validation"):
        if isinstance(metrics.get(split), dict) and "accuracy" in metrics[split]:
            return {"split": split, "accuracy": metrics[split]["accuracy"], "macro_f1": metrics[split].get("macro_f1")}
        # quantize records source and result side by side under "accuracy"
        row = (metrics.get("accuracy") or {}).get(split) if isinstance(metrics.get("accuracy"), dict) else None
        if isinstance(row, dict) and isinstance(row.get("quantized"), dict):
            return {"split": split, "accuracy": row["quantized"]["accuracy"],
                    "macro_f1": row["quantized"].get("macro_f1")}
    return {}


def lineage(path: Path) -> list[dict]:
    """One entry per artifact from ``path`` back to its root, then the root's source.

    Each entry says whether the artifact's files still match its manifest and whether the parent
    found on disk is the one recorded (same manifest sha256).
    """
    path = real_path(path)
    if not (path / MANIFEST_NAME).is_file():
        raise EdgewiseError(f"{path} has no {MANIFEST_NAME}; lineage needs an artifact written by edgewise")
    chain: list[dict] = []
    expected_sha = None
    seen = set()
    while True:
        manifest = Manifest.read(path)
        problems = manifest.verify()
        if expected_sha is not None and manifest.sha256 != expected_sha:
            problems.append("not the recorded parent: its manifest changed since the child was made")
        chain.append({
            "path": str(path),
            "stage": manifest.stage,
            "kind": manifest.kind,
            "finished_at": manifest.finished_at,
            "manifest_sha256": manifest.sha256,
            "metrics": _headline(manifest.metrics),
            "status": "; ".join(problems) if problems else "ok" if manifest.sealed
            else f"ok (files match; the manifest itself is unsealed: schema {manifest.schema_version})",
        })
        seen.add(path)
        if not manifest.parent:
            if manifest.source:
                for role, source in manifest.source.items():
                    chain.append({"path": source.get("location") or source.get("path"), "stage": role,
                                  "kind": "source", "spec": source.get("spec"),
                                  "weights_sha256": source.get("weights_sha256"), "status": "recorded"})
            return chain
        parent = Path(manifest.parent["path"])
        expected_sha = manifest.parent.get("manifest_sha256")
        if parent in seen:
            raise EdgewiseError(f"{path}'s lineage loops back to {parent}; its manifest is corrupt")
        if not (parent / MANIFEST_NAME).is_file():
            chain.append({"path": str(parent), "stage": "?", "kind": "?", "status": "missing: parent not found"})
            return chain
        path = parent


def training_data(path: Path) -> tuple[str, dict] | None:
    """The data spec and data settings the artifact at ``path`` (or its nearest ancestor) was trained on.

    Stages that measure accuracy default to it, so `quantize runs/student-onnx` scores on the
    student's own validation split without being told where that is.
    """
    path = real_path(path)
    seen = set()
    while (path / MANIFEST_NAME).is_file() and path not in seen:
        seen.add(path)
        manifest = Manifest.read(path)
        spec = (manifest.data or {}).get("spec")
        if spec:
            return str(spec), dict((manifest.config.get("values") or {}).get("data") or {})
        if not manifest.parent:
            return None
        path = Path(manifest.parent["path"])
    return None


def same_data(spec: str, recorded: str) -> bool:
    """Whether a data spec names the data an artifact recorded (equal specs, or the same file or folder)."""
    if str(spec) == str(recorded):
        return True
    a, b = Path(str(spec)).expanduser(), Path(str(recorded)).expanduser()
    return a.exists() and b.exists() and a.resolve() == b.resolve()


def carve_validation(splits: dict, spec: str, artifact_path: Path, data_config,
                     labelled: bool = True) -> tuple[dict, dict | None]:
    """``splits`` with the validation split training carved from train, when the data has none.

    Carved the way the artifact's lineage recorded (its fraction and seed) when ``spec`` is the data
    it was trained on, so a stage scores the very texts training held out; else with
    ``data_config``'s fraction and seed. ``labelled=False`` (an embedding model's texts): no labels needed, no
    stratification. Returns the splits and a record of the carve (None if none).
    """
    import dataclasses

    from edgewise.core.config import config_from_dict
    from edgewise.core.data import DataConfig, training_splits

    if "validation" in splits or "train" not in splits or (labelled and splits["train"].labels is None):
        return splits, None
    found = training_data(artifact_path)
    carve, origin = data_config, "--validation-fraction"
    if found is not None and same_data(spec, found[0]):
        recorded = config_from_dict(DataConfig, found[1], "recorded data settings")
        carve = dataclasses.replace(data_config, validation_fraction=recorded.validation_fraction, seed=recorded.seed)
        origin = "lineage"
    train, validation, _ = training_splits(splits, carve, spec, labelled=labelled)
    return {**splits, "train": train, "validation": validation}, {
        "from": "train", "fraction": carve.validation_fraction, "seed": carve.seed, "settings_from": origin,
        "rows": len(validation), "sha256": validation.sha256()}


def teacher_of(path: Path) -> Path | None:
    """The model an artifact's lineage starts from: the teacher or model its root recorded as its source (a
    folder edgewise did not write, e.g. a sentence-transformers model), else the root artifact itself (a
    teacher edgewise fine-tuned). None when that is ``path`` itself or no longer exists."""
    start = path = real_path(path)
    seen = set()
    while (path / MANIFEST_NAME).is_file() and path not in seen:
        seen.add(path)
        manifest = Manifest.read(path)
        if manifest.parent:
            parent = Path(manifest.parent["path"])
            if not parent.is_dir():
                return None
            path = parent
            continue
        for role in ("teacher", "model"):
            source = (manifest.source or {}).get(role) or {}
            location = source.get("path") or source.get("location")
            if location and Path(location).is_dir():
                return Path(location)
        break
    return None if path == start else path
