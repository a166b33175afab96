"""Dataset and model names are checked by the training layer that owns the registries."""

from __future__ import annotations

import pytest

from memtail.specification import SpecError, load_spec, spec_from_dict
from memtail.training.registry import check_names


@pytest.mark.parametrize(
    ("raw", "field", "hint"),
    [
        ({"dataset": {"name": "imagenet22k"}}, "dataset.name", "unknown dataset"),
        ({"model": {"name": "transformer9000"}}, "model.name", "unknown model"),
    ],
)
def test_each_bad_field_is_named(raw: dict, field: str, hint: str) -> None:
    with pytest.raises(SpecError) as info:
        check_names(spec_from_dict({"name": "x", **raw}))
    message = str(info.value)
    assert info.value.field_name == field
    assert message.startswith(f"spec field '{field}':") and hint in message
    assert "\n" not in message


def test_known_names_pass_unchanged() -> None:
    spec = load_spec("digits-mlp")
    assert check_names(spec) is spec
    assert check_names(spec_from_dict({"name": "x", "model": {"name": "densenet121"}}))
