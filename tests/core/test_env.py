from edgewise.core.env import cpu_info, fingerprint


def test_cpu_info_reads_model_and_isa_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t\t: fpu sse4_2 avx2 avx512_vnni foo\n"
                       "processor\t: 1\nmodel name\t: Example CPU 9000\nflags\t\t: fpu\n")

    info = cpu_info(cpuinfo)

    assert info["model"] == "Example CPU 9000"
    assert info["isa"] == ["sse4_2", "avx2", "avx512_vnni"]


def test_cpu_info_reads_arm_features(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd asimdhp asimddp\n")

    assert cpu_info(cpuinfo)["isa"] == ["asimd", "asimddp", "asimdhp"]


def test_fingerprint_lists_versions_cpu_and_gpu():
    env = fingerprint()

    assert env["packages"]["edgewise"] and env["packages"]["torch"]
    assert "tensorrt" in env["packages"]
    assert env["cpu"]["logical_cores"] >= 1
    assert isinstance(env["gpu"], list)


def _fake_device(root, governor="performance", pinned=True):
    for cpu in ("cpu0", "cpu1"):
        freq = root / "sys/devices/system/cpu" / cpu / "cpufreq"
        freq.mkdir(parents=True)
        (freq / "scaling_governor").write_text(governor + "\n")
        (freq / "scaling_min_freq").write_text("2201600\n" if pinned else "115200\n")
        (freq / "scaling_max_freq").write_text("2201600\n")
        (freq / "cpuinfo_max_freq").write_text("2201600\n")
    (root / "proc").mkdir()
    (root / "proc/meminfo").write_text("MemTotal:       65536000 kB\nMemFree: 1 kB\n")
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text('NAME="Ubuntu"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\n')
    return root


def test_device_facts_read_governor_clocks_memory_and_os(tmp_path):
    from edgewise.core.env import device_facts

    facts = device_facts(_fake_device(tmp_path))

    assert facts["cpu_governor"] == "performance" and facts["cpu_clocks_pinned"] is True
    assert facts["cpu_max_mhz"] == 2201 and facts["memory_gib"] == 62.5
    assert facts["os_release"] == "Ubuntu 22.04.4 LTS" and "jetson" not in facts


def test_device_facts_on_a_jetson_record_power_mode_and_jetson_clocks(tmp_path, monkeypatch):
    from edgewise.core.env import device_facts

    root = _fake_device(tmp_path / "root", pinned=False)
    (root / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 3.0\n")
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_text("NVIDIA Jetson Orin Nano Developer Kit")
    tool = tmp_path / "bin" / "nvpmodel"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho 'NV Power Mode: 15W'\necho 0\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tool.parent))

    facts = device_facts(root)

    assert facts["jetson"] == {"l4t": "# R36 (release), REVISION: 3.0", "nvpmodel": "15W", "jetson_clocks": False,
                               "model": "NVIDIA Jetson Orin Nano Developer Kit"}
