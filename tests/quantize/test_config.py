import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.quantize.config import CalibrationMethod, QuantizeConfig, QuantMethod, search_config


def test_quantize_config_accepts_comma_separated_and_repeated_names():
    config = QuantizeConfig(exclude_op=("Gather,Softmax", "Gather"), exclude_node="a, b")

    assert config.exclude_op == ("Gather", "Softmax") and config.exclude_node == ("a", "b")


def test_quantize_config_parses_enums_and_fallback_counts():
    config = QuantizeConfig(method="static", calibration_method="entropy", fallback_layers="1,3")

    assert config.method is QuantMethod.STATIC and config.calibration_method is CalibrationMethod.ENTROPY
    assert config.fallback_layers == (1, 3) and config.needs_calibration


@pytest.mark.parametrize("kwargs, fragment", [
    ({"method": "int4"}, "method must be one of dynamic, static, fp16, inc"),
    ({"samples": 0}, "samples must be >= 1"),
    ({"percentile": 10}, "percentile must be in (50, 100]"),
    ({"max_accuracy_drop": -1}, "max_accuracy_drop must be between 0 and 100"),
    ({"fallback_layers": "0"}, "fallback_layers must be counts >= 1"),
    ({"method": "fp16", "max_accuracy_drop": 1}, "drop --method fp16 / inc"),
    ({"activation_type": "int8"}, "dynamic quantization always uses uint8 activations"),
    ({"atol": 0}, "atol must be > 0"),
])
def test_quantize_config_rejects_bad_values_with_what_is_accepted(kwargs, fragment):
    with pytest.raises(EdgewiseError, match=fragment.replace("(", r"\(").replace("]", r"\]")):
        QuantizeConfig(**kwargs)


def test_search_preset_needs_calibration_data():
    config = search_config(0.5)

    assert config.max_accuracy_drop == 0.5 and config.needs_calibration and config.method is QuantMethod.DYNAMIC
