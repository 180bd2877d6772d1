"""`edgewise.json`: what every artifact records about how it was made."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgewise.core.config import config_to_dict
from edgewise.core.errors import EdgewiseError

MANIFEST_NAME = "edgewise.json"
# 2: the manifest carries `content_sha256`, a hash of its own content, so a hand-edited manifest
# (a raised accuracy, a swapped file hash) is caught by reading it alone. Version 1 manifests are
# still read; they are reported as unsealed.
# 3: the manifest records the artifact's task (`task`, core.tasks); a version 1 or 2 manifest has none, and
# its folder says (a classifier's label map).
SCHEMA_VERSION = 3
SEAL_FIELD = "content_sha256"
KINDS = ("hf", "onnx", "ort", "tensorrt", "bundle", "inc")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# Digests by (resolved path, size, mtime_ns, ctime_ns). A stage loads an artifact (hashes checked)
# and then builds Predictors on it in the same process (checked again): a 90 MB model would be hashed
# each time. A rewritten file gets a new mtime and ctime (which cannot be set back), so it is hashed again.
_DIGESTS: dict[tuple, str] = {}


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def hash_files(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory`` except the manifest, by relative POSIX path (each file
    hashed once per process while its size and times stay the same)."""
    return {
        p.relative_to(directory).as_posix(): _file_digest(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.relative_to(directory).as_posix() != MANIFEST_NAME
    }


def content_digest(payload: dict) -> str:
    """sha256 of a manifest's content (every stored field but the seal), independent of formatting.

    Floats survive json's round trip exactly (repr), so the digest of a manifest as read equals
    the digest of the manifest as written unless a value changed.
    """
    canonical = json.dumps({k: v for k, v in payload.items() if k != SEAL_FIELD}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def describe_config(config: Any) -> dict:
    """A config dataclass as stored in a manifest: its type, schema version and values."""
    return {
        "type": type(config).__name__,
        "version": getattr(config, "SCHEMA_VERSION", 1),
        "values": config_to_dict(config),
    }


@dataclass
class Manifest:
    """The contents of an artifact's edgewise.json.

    ``parent`` links to the artifact this one was derived from (its path and the sha256 of its
    manifest); ``source`` describes a root's origin (a pretrained encoder, a foreign folder).
    """

    kind: str
    stage: str
    config: dict
    files: dict[str, str]
    labels: dict[str, str]
    environment: dict
    started_at: str
    finished_at: str
    parent: dict | None = None
    source: dict | None = None
    data: dict | None = None
    task: dict | None = None  # the task's record (core.tasks): {"name": "classification"}, ...
    metrics: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    # Files a later step may add or rebuild on the target device (model.engine from build_engine.sh):
    # not hashed, and their presence or change is not a verification failure.
    expected_files: list = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    edgewise_version: str = ""
    # Not stored: where it was read from, the sha256 of the file it was read from, and whether
    # its content still matches its seal (None: a version 1 manifest, which has none).
    path: Path | None = field(default=None, compare=False)
    sha256: str | None = field(default=None, compare=False)
    sealed: bool | None = field(default=None, compare=False)

    STORED = (
        "schema_version", "edgewise_version", "kind", "stage", "task", "config", "parent", "source", "data",
        "files", "expected_files", "metrics", "history", "labels", "environment", "started_at", "finished_at",
    )

    def to_json(self) -> str:
        payload = {k: getattr(self, k) for k in self.STORED}
        # Sealed as it will be read back: JSON turns tuples into lists and integer keys into strings.
        payload[SEAL_FIELD] = content_digest(json.loads(json.dumps(payload)))
        return json.dumps(payload, indent=2, sort_keys=False) + "\n"

    @classmethod
    def write(
        cls,
        directory: Path,
        *,
        kind: str,
        stage: str,
        config: Any,
        labels: dict,
        started_at: str,
        parent: Manifest | None = None,
        source: dict | None = None,
        data: dict | None = None,
        metrics: dict | None = None,
        history: list | None = None,
        expected_files: list | None = None,
        task: dict | None = None,
    ) -> Manifest:
        """Hash every file in ``directory`` and write its edgewise.json (the last file a stage writes)."""
        from edgewise import __version__
        from edgewise.core.env import fingerprint

        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}")
        manifest = cls(
            kind=kind,
            stage=stage,
            task=task,
            config=describe_config(config),
            parent=None if parent is None else {"path": str(parent.path), "manifest_sha256": parent.sha256},
            source=source,
            data=data,
            files={k: v for k, v in hash_files(directory).items() if k not in (expected_files or [])},
            metrics=metrics or {},
            history=history or [],
            expected_files=expected_files or [],
            labels={str(k): str(v) for k, v in labels.items()},
            environment=fingerprint(),
            started_at=started_at,
            finished_at=now(),
            edgewise_version=__version__,
        )
        text = manifest.to_json()
        (directory / MANIFEST_NAME).write_text(text)
        manifest.path = directory
        manifest.sha256 = hashlib.sha256(text.encode()).hexdigest()
        manifest.sealed = True
        return manifest

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_NAME
        try:
            raw = path.read_bytes()
            data = json.loads(raw)
        except FileNotFoundError:
            raise EdgewiseError(f"{directory} has no {MANIFEST_NAME}: it was not written by edgewise") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise EdgewiseError(
                f"{path} is not valid JSON ({e}); the artifact is corrupt: re-create it with the stage that made it"
            ) from None
        if not isinstance(data, dict):
            raise EdgewiseError(f"{path} does not hold a JSON object; re-create the artifact")
        version = data.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise EdgewiseError(
                f"{path} has schema version {version!r}; this edgewise reads versions up to {SCHEMA_VERSION}: "
                "upgrade edgewise (pip install -U edgewise)"
            )
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise EdgewiseError(f"{path} lacks {', '.join(missing)}; the artifact is corrupt: re-create it")
        types = {"kind": str, "stage": str, "config": dict, "files": dict, "labels": dict, "environment": dict,
                 "metrics": dict, "history": list, "expected_files": list, "parent": (dict, type(None)),
                 "source": (dict, type(None)), "data": (dict, type(None)), "task": (dict, type(None))}
        wrong = sorted(k for k, t in types.items() if k in data and not isinstance(data[k], t))
        if wrong:
            raise EdgewiseError(f"{path} has malformed {', '.join(wrong)}; the artifact is corrupt: re-create it")
        if data["kind"] not in KINDS:
            raise EdgewiseError(f"{path} has unknown kind {data['kind']!r} (known: {', '.join(KINDS)}); re-create it")
        manifest = cls(**{k: v for k, v in data.items() if k in cls.STORED})
        manifest.path = directory
        manifest.sha256 = hashlib.sha256(raw).hexdigest()
        seal = data.get(SEAL_FIELD)
        if version >= 2 and not isinstance(seal, str):
            raise EdgewiseError(f"{path} lacks its {SEAL_FIELD} (every schema {version} manifest has one); the "
                                "artifact is corrupt or was edited: re-create it with the stage that made it")
        manifest.sealed = None if seal is None else seal == content_digest(data)
        return manifest

    def verify(self) -> list[str]:
        """Every file that is missing, changed or added since the manifest was written, and the
        manifest itself when its content no longer matches its seal."""
        assert self.path is not None
        actual = hash_files(self.path)
        problems = []
        if self.sealed is False:
            problems.append(f"{MANIFEST_NAME}: edited since edgewise wrote it (its {SEAL_FIELD} no longer matches "
                            "its content)")
        problems += [f"{name}: missing" for name in self.files if name not in actual]
        problems += [
            f"{name}: changed (sha256 differs)"
            for name, digest in self.files.items()
            if name in actual and actual[name] != digest
        ]
        problems += [f"{name}: added (not in the manifest)" for name in actual
                     if name not in self.files and name not in self.expected_files]
        return problems
