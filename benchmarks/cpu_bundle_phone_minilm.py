"""Phone kits of real models: `edgewise bundle MODEL --target android|ios --fixed-shape 1x128` for each given
INT8 model, with the time each took, the ORT-format model's size, its check against model.onnx and the summary
of onnxruntime's NNAPI / CoreML usability report (what the bundle's edgewise.json and README.txt record).

    python benchmarks/cpu_bundle_phone_minilm.py MODEL_DIR [MODEL_DIR ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--fixed-shape", default="1x128")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "phone_bundles_minilm_bbc.json")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from edgewise.core.env import fingerprint
    from edgewise.export.mobile import summary_lines

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models:
            for target in ("android", "ios"):
                out = Path(scratch) / f"{model.name}-{target}"
                started = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "edgewise", "bundle", str(model), "-o", str(out),
                                       "--target", target, "--fixed-shape", args.fixed_shape],
                                      capture_output=True, text=True)
                seconds = round(time.perf_counter() - started, 1)
                if done.returncode != 0:
                    sys.exit(f"bundle {model} --target {target} exited {done.returncode}:\n{done.stderr[-2000:]}")
                metrics = json.loads((out / "edgewise.json").read_text())["metrics"]
                row = {"model": str(model), "target": target, "seconds": seconds,
                       "model_onnx_bytes": (model / "model.onnx").stat().st_size,
                       "model_ort_bytes": metrics["ort"]["size_bytes"],
                       "fixed_ort_bytes": metrics["fixed"]["ort"]["size_bytes"],
                       "parity": {k: metrics["parity"][k] for k in ("max_abs_diff", "label_agreement", "judged_by")},
                       "fixed_parity": {k: metrics["fixed"]["parity"][k]
                                        for k in ("max_abs_diff", "label_agreement", "judged_by")},
                       "usability": summary_lines(metrics["mobile_usability"]),
                       "usability_fixed_model": summary_lines(metrics["fixed"]["mobile_usability"])}
                rows.append(row)
                print(f"{model.name} {target}: {seconds} s, model.ort {row['model_ort_bytes']:,} bytes; "
                      + " | ".join(row["usability"]), flush=True)
    result = {"benchmark": "cpu_bundle_phone_minilm", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "fixed_shape": args.fixed_shape, "environment": fingerprint(), "bundles": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
