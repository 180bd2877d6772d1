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
