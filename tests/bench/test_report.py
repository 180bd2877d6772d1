import pytest

from edgewise.bench.report import markdown, speed


@pytest.mark.parametrize(("ratio", "text"), [
    (0.1316, "7.60x faster"), (1.2, "1.20x slower"), (1.0, "1.00x"), (None, ""),
])
def test_speed_reads_as_times_faster_or_slower(ratio, text):
    assert speed(ratio) == text


def test_the_report_table_gives_speed_and_sizes_in_decimal_megabytes():
    latency = {"p50": 5.0, "p50_ci95": [4.9, 5.1], "p90": 5.5, "p99": 6.0, "cv": 0.05}
    row = {"artifact": "student", "backend": "ort-cpu", "batch_size": 1, "seq_len": 128, "status": "ok",
           "latency_ms": latency, "throughput_items_per_s": 190.0, "reference": {"p50_ratio": 0.25}}
    report = {"created_at": "now", "environment": {"cpu": {"model": "cpu", "isa": []}, "packages": {}},
              "config": {}, "reference": "teacher", "results": [row],
              "artifacts": [{"name": "student", "size_bytes": 17_500_000, "parameters": 4_000_000}]}

    text = markdown(report)

    assert "| 4.00x faster | 190.0 |" in text and "| 17.5 | 4.00 M |" in text  # 16.7 would be MiB
    assert "speed vs ref" in text and "includes the spread of the texts' lengths" in text


def test_device_line_names_the_target_and_what_its_latency_depends_on():
    from edgewise.bench.report import device_line

    env = {"os": "Linux 5.15.148-tegra", "packages": {"onnxruntime": "1.20.0"},
           "onnxruntime_providers": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
           "device": {"os_release": "Ubuntu 22.04.5 LTS", "cpu_governor": "schedutil", "cpu_clocks_pinned": True,
                      "memory_gib": 7.4, "jetson": {"model": "Jetson Orin Nano", "nvpmodel": "15W"}},
           "power": {"mean_mw": {"VDD_GPU_SOC": 2500.0}}}

    line = device_line("ssh://nvidia@jetson.local?python=/opt/venv/bin/python3", env)

    assert line == ("Measured on the device **ssh://nvidia@jetson.local**: Linux 5.15.148-tegra (Ubuntu 22.04.5 LTS); "
                    "onnxruntime 1.20.0 (TensorrtExecutionProvider, CUDAExecutionProvider, CPUExecutionProvider); "
                    "governor schedutil; clocks pinned at max; 7.4 GiB; Jetson Orin Nano, power mode 15W; "
                    "power while timed VDD_GPU_SOC 2.50 W.")
