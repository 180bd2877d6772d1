"""core.training's progress: what a CI log (no terminal) shows of a long training run."""

from types import SimpleNamespace

from edgewise.core.training import RichProgress, _duration


def test_training_progress_prints_plain_lines_when_the_output_is_no_terminal(capsys):
    now = [0.0]
    progress = RichProgress("fine-tuning", clock=lambda: now[0])
    args = SimpleNamespace(num_train_epochs=3)
    state = SimpleNamespace(max_steps=633, global_step=0, is_world_process_zero=True, epoch=0.0)

    progress.on_train_begin(args, state, None)
    for step in range(1, 634):
        now[0] += 0.5  # half a second a step
        state.global_step = step
        if step == 10:
            progress.on_log(args, state, None, logs={"loss": 1.25})
        progress.on_step_end(args, state, None)

    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "fine-tuning: 633 steps = 3 epochs x 211"
    assert lines[1] == "fine-tuning: step 31/633 (5%), 0.50 s/step, eta 5m01s, loss 1.2500"
    assert lines[-1] == "fine-tuning: step 633/633 (100%), 0.50 s/step, eta 0s, loss 1.2500"
    assert 20 <= len(lines) - 1 <= 22  # a line per twentieth of the run (or 30 s), not per step


def test_training_progress_says_where_a_resumed_run_starts(capsys):
    progress = RichProgress("distillation", clock=lambda: 0.0)

    progress.on_train_begin(SimpleNamespace(num_train_epochs=2), SimpleNamespace(
        max_steps=40, global_step=15, is_world_process_zero=True, epoch=1.0), None)

    assert capsys.readouterr().err.strip() == "distillation: 40 steps = 2 epochs x 20, resuming at step 15"


def test_durations_read_as_people_write_them():
    assert [_duration(s) for s in (12.4, 430, 7500)] == ["12s", "7m10s", "2h05m"]


def test_training_progress_prints_at_least_every_30_seconds(capsys):
    now = [0.0]
    progress = RichProgress("fine-tuning", clock=lambda: now[0])
    state = SimpleNamespace(max_steps=10_000, global_step=0, is_world_process_zero=True, epoch=0.0)
    progress.on_train_begin(SimpleNamespace(num_train_epochs=1), state, None)
    capsys.readouterr()

    for step in (1, 2, 3):
        now[0] += 31.0  # slow steps: far from a twentieth of the run, but 30 s apart
        state.global_step = step
        progress.on_step_end(None, state, None)

    assert [line.split(",")[0] for line in capsys.readouterr().err.strip().splitlines()] == [
        "fine-tuning: step 1/10000 (0%)", "fine-tuning: step 2/10000 (0%)", "fine-tuning: step 3/10000 (0%)"]
