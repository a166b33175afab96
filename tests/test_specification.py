"""Spec validation: every malformed field gets its own one-line error, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from memtail.specification import (
    ExperimentSpec,
    SpecError,
    bundled_specs,
    load_spec,
    spec_from_dict,
)

ROOT = Path(__file__).resolve().parents[1]


#: The specs memtail ships: the README's quickstart and first hour, and CI, run them by name.
SHIPPED = ["digits-cnn", "digits-mlp"]


def test_shipped_specs_are_valid() -> None:
    # Named, not globbed: specs that moved or vanished fail here instead of passing over
    # an empty folder.
    folder = ROOT / "memtail" / "specification" / "bundled"
    assert sorted(p.stem for p in folder.glob("*.toml")) == SHIPPED
    assert bundled_specs() == SHIPPED
    for name in SHIPPED:
        spec = load_spec(name)  # as `memtail run NAME` reads it, from the package's data
        assert spec.name == name
        assert spec == load_spec(folder / f"{name}.toml")


def test_round_trip_through_json() -> None:
    spec = load_spec(ROOT / "memtail" / "specification" / "bundled" / "digits-mlp.toml")
    assert spec_from_dict(spec.to_json()) == spec
    assert spec_from_dict(spec.to_json()).spec_hash() == spec.spec_hash()


def test_overrides_apply_to_dotted_fields() -> None:
    spec = load_spec(
        ROOT / "memtail" / "specification" / "bundled" / "digits-mlp.toml",
        {"trials": 5, "training.epochs": 3, "model.width": 16, "dataset.test_fraction": 0.5},
    )
    assert (spec.trials, spec.training.epochs, spec.model.width) == (5, 3, 16)
    assert spec.dataset.options["test_fraction"] == 0.5


@pytest.mark.parametrize(
    ("raw", "field", "hint"),
    [
        ({"trials": 0}, "trials", "must be > 0"),
        ({"trials": -3}, "trials", "must be > 0"),
        ({"trials": "many"}, "trials", "must be an integer"),
        ({"subset_fraction": 1.0}, "subset_fraction", "must be in (0, 1)"),
        ({"subset_fraction": 0}, "subset_fraction", "must be in (0, 1)"),
        ({"subset_size": -1}, "subset_size", "must be > 0"),
        ({"model": {"width": -1}}, "model.width", ">= 0"),
        ({"training": {"epochs": 0}}, "training.epochs", "must be > 0"),
        ({"training": {"lr": -0.1}}, "training.lr", "must be > 0"),
        ({"training": {"optimizer": "lbfgs"}}, "training.optimizer", "choose one of"),
        ({"training": {"schedule": "magic"}}, "training.schedule", "choose one of"),
        ({"training": {"flip": "yes"}}, "training.flip", "true or false"),
        ({"training": {"label_smoothing": 1.0}}, "training.label_smoothing", "[0, 1)"),
        ({"training": {"epohcs": 3}}, "training.epohcs", "unknown field"),
        ({"estimate": {"confidence": 1.5}}, "estimate.confidence", "(0, 1)"),
        ({"training": {"checkpoint_every": "soon"}}, "training.checkpoint_every", '"20m"'),
        ({"training": {"checkpoint_every": -2}}, "training.checkpoint_every", "epochs"),
        ({"training": {"trials_per_batch": 0}}, "training.trials_per_batch", "[1, 1024]"),
        ({"training": {"trials_per_batch": 5000}}, "training.trials_per_batch", "one trial at"),
        ({"training": {"trials_per_batch": 2.5}}, "training.trials_per_batch", "integer"),
        (
            {"training": {"trials_per_batch": 4, "checkpoint_every": "5"}},
            "training.checkpoint_every",
            "save no checkpoints",
        ),
        ({"estimate": {"fdr": 1.0}}, "estimate.fdr", "[0, 1)"),
        ({"estimate": {"fdr": -0.1}}, "estimate.fdr", "0 is off"),
        ({"estimate": {"fdr_method": "holm"}}, "estimate.fdr_method", "choose one of bh, by"),
        ({"kind": "bogus"}, "kind", "unknown kind"),
        ({"trails": 10}, "trails", "unknown field"),
        ({"dataset": "digits"}, "dataset", "must be a table"),
    ],
)
def test_each_bad_field_is_named(raw: dict, field: str, hint: str) -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict({"name": "x", **raw})
    message = str(info.value)
    assert info.value.field_name == field
    assert message.startswith(f"spec field '{field}':") and hint in message
    assert "\n" not in message


def test_missing_name() -> None:
    with pytest.raises(SpecError, match="'name': missing"):
        spec_from_dict({"trials": 3})


def test_malformed_toml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ntrials = = 3\n')
    with pytest.raises(SpecError, match="'file'.*not valid TOML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")


def test_subset_size_must_leave_examples_out() -> None:
    spec = ExperimentSpec(name="x", subset_size=100)
    with pytest.raises(SpecError, match="'subset_size'.*m=100 for n_train=100"):
        spec.resolve_subset_size(100)
    assert ExperimentSpec(name="x", subset_fraction=0.7).resolve_subset_size(1000) == 700


def test_bundled_specs_load_by_name_and_a_file_wins(tmp_path: Path, monkeypatch) -> None:
    assert load_spec("digits-mlp") == load_spec(
        ROOT / "memtail" / "specification" / "bundled" / "digits-mlp.toml"
    )
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits-mlp").write_text('name = "mine"\n')
    assert load_spec("digits-mlp").name == "mine"
    with pytest.raises(
        SpecError, match="does not exist.*bundled spec \\(digits-cnn, digits-mlp\\)"
    ):
        load_spec("no-such-spec")


def test_probe_specs_carry_their_classifier_and_others_keep_their_hash() -> None:
    probe = spec_from_dict(
        {"name": "p", "kind": "probe", "trials": 5, "probe": {"epochs": 12, "lr": 0.05}}
    )
    assert (probe.probe.epochs, probe.probe.lr, probe.total_trials) == (12, 0.05, 6)
    assert spec_from_dict(probe.to_json()) == probe
    plain = spec_from_dict({"name": "p", "trials": 5})
    # Specs that are not probes hash as they did before probes existed.
    assert "probe" not in plain.to_json() and plain.total_trials == 5
    with pytest.raises(SpecError, match='belongs to kind = "probe"'):
        spec_from_dict({"name": "p", "probe": {"epochs": 3}})
    with pytest.raises(SpecError, match="probe.lr"):
        spec_from_dict({"name": "p", "kind": "probe", "probe": {"lr": -1}})


def test_false_discovery_fields_round_trip_and_others_keep_their_hash() -> None:
    strict = spec_from_dict({"name": "p", "estimate": {"fdr": 0.1, "fdr_method": "by"}})
    assert (strict.estimate.fdr, strict.estimate.fdr_method) == (0.1, "by")
    assert spec_from_dict(strict.to_json()) == strict
    plain = spec_from_dict({"name": "p"})
    # Specs without a level hash as they did before false-discovery control existed.
    assert not {"fdr", "fdr_method"} & set(plain.to_json()["estimate"])
    assert plain.spec_hash() != strict.spec_hash()


def test_checkpoint_intervals_read_as_epochs_or_minutes() -> None:
    from memtail.specification import checkpoint_interval

    assert checkpoint_interval("auto") == (0, 600.0)
    assert checkpoint_interval("off") == checkpoint_interval("0") == (0, 0.0)
    assert checkpoint_interval("5") == (5, 0.0) and checkpoint_interval("20m") == (0, 1200.0)
    every = spec_from_dict({"name": "p", "training": {"checkpoint_every": 3}})
    assert every.training.checkpoint_every == "3"
    assert spec_from_dict(every.to_json()) == every
    # The default leaves the stored JSON, and so the hash, as it was.
    assert "checkpoint_every" not in spec_from_dict({"name": "p"}).to_json()["training"]


def test_trials_per_batch_is_stored_only_when_set() -> None:
    plain = spec_from_dict({"name": "p"})
    assert plain.training.trials_per_batch == 1
    assert "trials_per_batch" not in plain.to_json()["training"]
    batched = spec_from_dict({"name": "p", "training": {"trials_per_batch": 16}})
    assert batched.to_json()["training"]["trials_per_batch"] == 16
    assert spec_from_dict(batched.to_json()) == batched
    assert batched.spec_hash() != plain.spec_hash()
