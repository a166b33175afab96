"""Settings from MEMTAIL_* variables: values, and one-line errors naming the variable."""

from __future__ import annotations

import pytest

from memtail.config import ConfigError, Settings
from memtail.work.estimator import scan_backend


def test_values_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "MEMTAIL_COMPILE_MODE": "reduce-overhead",
            "MEMTAIL_ESTIMATOR_DEVICE": "cuda:1",
            "MEMTAIL_LEASE_SECONDS": "300",
            "OTHER": "ignored",
        }
    )
    assert settings.compile_mode == "reduce-overhead"
    assert settings.estimator_device == "cuda:1"
    assert settings.lease_seconds == 300.0
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MEMTAIL_COMPILE_MODE": "fast"}, "MEMTAIL_COMPILE_MODE='fast' is not a torch.compile"),
        ({"MEMTAIL_ESTIMATOR_DEVICE": "gpu"}, "use auto, cpu, cuda or cuda:N"),
        ({"MEMTAIL_LEASE_SECONDS": "soon"}, "MEMTAIL_LEASE_SECONDS='soon' is not a valid float"),
        ({"MEMTAIL_HEARTBEAT_SECONDS": "500"}, "below MEMTAIL_LEASE_SECONDS"),
    ],
)
def test_bad_values_name_the_variable_and_the_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        Settings.from_env(env)
    assert "\n" not in str(error.value)


def test_estimator_device_picks_the_scan() -> None:
    import torch

    assert scan_backend("cpu") == ("auto", "cpu")
    assert scan_backend("cuda:1") == ("cuda", "cuda:1")
    expected = ("cuda", "cuda") if torch.cuda.is_available() else ("auto", "cpu")
    assert scan_backend("auto") == expected
