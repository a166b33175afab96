"""Values a spec or a dataset file may hold that can never train are refused before
anything is allocated or written: one line naming the field, the bound and why it is
there, exit status 2, no row."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from memtail.cli.main import main
from tests.cli.test_bad_input import BASE, _refused, _rows, _spec_text, _with

SYNTHETIC = BASE["dataset"]
DIGITS = {"name": "digits"}
HUGE = 10**12

# (dataset section, field, value, what the one line says)
DATASET_VALUES = [
    (SYNTHETIC, "seed", -1, "spec field 'dataset.seed': must be in [0, 9,223,372,036,854,775,807]"),
    (DIGITS, "seed", -1, "spec field 'dataset.seed': must be in [0, "),
    (SYNTHETIC, "subpopulations", HUGE, "spec field 'dataset.subpopulations': must be in [10, "),
    (SYNTHETIC, "subpopulations", 3, "spec field 'dataset.subpopulations': must be in [10, "),
    (SYNTHETIC, "n_train", HUGE, "spec field 'dataset.n_train': must be in [2, 10,000,000]"),
    # A 400-digit value is quoted cut short, not in full.
    (SYNTHETIC, "n_train", 10**400, "must be in [2, 10,000,000] (got 10000000000000000000...)"),
    (SYNTHETIC, "n_test", HUGE, "spec field 'dataset.n_test': must be in [1, 10,000,000]"),
    (SYNTHETIC, "n_test", 0, "spec field 'dataset.n_test': must be in [1, "),
    (SYNTHETIC, "dim", HUGE, "spec field 'dataset.dim': must be in [1, 100,000]"),
    (SYNTHETIC, "dim", 0, "spec field 'dataset.dim': must be in [1, "),
    (SYNTHETIC, "num_classes", 1, "spec field 'dataset.num_classes': must be in [2, 60]"),
    (SYNTHETIC, "noise", 1e300, "spec field 'dataset.noise': must be in [0, 1,000]"),
    # Beyond a float's range, as TOML may write it.
    pytest.param(SYNTHETIC, "noise", 2**1024, "'dataset.noise': must be a finite", id="noise-big"),
    (SYNTHETIC, "exponent", -1.0, "spec field 'dataset.exponent': must be in [0, 100]"),
    (SYNTHETIC, "label_noise", 1.0, "spec field 'dataset.label_noise': must be in [0, 1)"),
    (SYNTHETIC, "seed", True, "spec field 'dataset.seed': must be an integer, got True"),
    (DIGITS, "test_fraction", 0.001, "spec field 'dataset.test_fraction': 0.001 leaves digit 0"),
    (DIGITS, "test_fraction", 0.999, "spec field 'dataset.test_fraction': 0.999 leaves digit 0"),
    ({"name": "imagefolder"}, "image_size", 10**6, "'dataset.image_size': must be in [1, 1,024]"),
]


@pytest.mark.parametrize(("dataset", "key", "value", "message"), DATASET_VALUES)
def test_dataset_options_are_bounded_before_anything_is_allocated(
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dataset: dict,
    key: str,
    value: object,
    message: str,
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text({**BASE, "dataset": {**dataset, key: value}}))
    code = main(["--database-url", db_url, "experiment", "create", str(spec)])
    _refused(capsys, code, message)
    assert _rows(db_url) == 0


def test_a_bad_seed_is_refused_by_run_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text(BASE))
    out = tmp_path / "out"
    run = ["run", str(spec), "--out", str(out), "--workers", "1"]
    _refused(capsys, main([*run, "--seed", "-1"]), "spec field 'seed': must be in [0, ")
    _refused(capsys, main([*run, "--set", "dataset.seed=-1"]), "spec field 'dataset.seed'")
    _refused(capsys, main([*run, "--set", f"dataset.n_train={HUGE}"]), "'dataset.n_train'")
    database = out / "memtail.db"
    assert not database.exists() or _rows(f"sqlite:///{database}") == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("٥", "(got '٥'; use the digits 0-9)"),  # Arabic-Indic five: int() reads it as 5
        ("²", "(got '²'; use the digits 0-9)"),  # superscript two: isdigit(), but not int()
        ("٥m", "(got '٥m'; use the digits 0-9)"),
        ("5 m", 'must be "auto", "off"'),
    ],
)
def test_checkpoint_every_takes_ascii_digits_only(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text({**BASE, "training": {"epochs": 1, "checkpoint_every": value}}))
    code = main(["--database-url", sqlite_url, "experiment", "create", str(spec)])
    _refused(capsys, code, "spec field 'training.checkpoint_every'", message)
    assert _rows(sqlite_url) == 0


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"depth": 1_000_000}, "spec field 'model.depth': must be in [0, 1,000] (got 1000000)"),
        ({"depth": -1}, "spec field 'model.depth': must be in [0, 1,000]"),
        ({"depth": 10**400}, "'model.depth': must be in [0, 1,000] (got 10000000000000000000...)"),
        # 1,000 layers of 65,536 x 65,536: counted at 4.3 x 10^12, never built.
        ({"depth": 1_000, "width": 65_536}, "'model.depth': gives mlp 4,290,740,617,226 "),
        ({"name": "cnn", "width": 65_536}, "spec field 'model.width': gives cnn 386,"),
    ],
)
def test_a_network_too_large_is_refused_from_its_shapes(
    sqlite_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    model: dict,
    message: str,
) -> None:
    import memtail.training.registry as registry

    def never(*args: object, **kwargs: object) -> None:
        pytest.fail("the network was built to be counted")  # minutes for depth 10^6

    monkeypatch.setattr(registry, "build_model", never)
    dataset = {"name": "digits"} if model.get("name") == "cnn" else SYNTHETIC
    section = {"name": "mlp", "width": 16, **model}
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text({**BASE, "dataset": dataset, "model": section}))
    code = main(["--database-url", sqlite_url, "experiment", "create", str(spec)])
    _refused(capsys, code, message)
    assert _rows(sqlite_url) == 0


def _arrays(**changes: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.normal(size=(40, 4)),
        "y_train": np.arange(40) % 3,
        "x_test": rng.normal(size=(10, 4)),
        "y_test": np.arange(10) % 3,
    }
    return {**arrays, **changes}


def _claiming(path: Path, key: str, shape: tuple[int, ...], compression: int) -> None:
    """An npz whose ``key`` has a header claiming ``shape`` and no data after it."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, array in _arrays().items():
            with archive.open(f"{name}.npy", "w") as member:
                if name == key:
                    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
                    np.lib.format.write_array_header_2_0(member, header)
                else:
                    np.lib.format.write_array(member, array)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (_arrays(x_test=np.zeros((0, 4)), y_test=np.zeros(0, dtype=np.int64)),
         "x_test has no examples"),
        (_arrays(x_train=np.ones((40, 4), dtype=bool)), "x_train holds booleans"),
        (_arrays(x_test=np.ones((10, 2, 2), dtype=bool)), "x_test holds booleans"),
        (_arrays(y_train=np.full(40, 2)), "y_train has a single class (2)"),
        (_arrays(y_test=np.arange(10) % 5), "y_test has labels that never occur in y_train (3, 4)"),
        (_arrays(x_train=np.zeros((40, 0))), "x_train has shape (40, 0)"),
        (_arrays(x_train=np.zeros(40)), "x_train has shape (40,)"),
        (_arrays(y_test=np.zeros((10, 2), dtype=np.int64)), "y_test has shape (10, 2)"),
        (_arrays(x_test=np.array([b"x"] * 10)), "x_test has dtype |S1; store numbers"),
    ],
)  # fmt: skip
def test_npz_datasets_that_cannot_train_are_refused(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], arrays: dict, message: str
) -> None:
    np.savez(tmp_path / "data.npz", **arrays)
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text({**BASE, "dataset": {"name": "npz", "path": "data.npz"}}))
    create = ["--database-url", db_url, "experiment", "create", str(spec)]
    code = main(["--data-root", str(tmp_path), *create])
    _refused(capsys, code, "spec field 'dataset.path'", message)
    assert _rows(db_url) == 0


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize("key", ["x_train", "x_test"])
def test_an_npz_header_claiming_too_much_is_refused_before_reading(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, compression: int
) -> None:
    _claiming(tmp_path / "data.npz", key, (10**6, 10**6), compression)
    spec = tmp_path / "spec.toml"
    dataset = {"name": "npz", "path": str(tmp_path / "data.npz")}
    spec.write_text(_spec_text({**BASE, "dataset": dataset}))
    code = main(["--database-url", sqlite_url, "experiment", "create", str(spec)])
    _refused(
        capsys, code, f"{key} has shape (1000000, 1000000), 1,000,000,000,000 values; at most "
    )
    assert _rows(sqlite_url) == 0


def test_files_that_are_not_npz_archives_say_so(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "one.npy", np.zeros(3))
    spec = tmp_path / "spec.toml"
    create = ["--database-url", sqlite_url, "experiment", "create", str(spec)]
    for path, message in ((tmp_path / "one.npy", "is not an .npz archive"),
                          (tmp_path, "is a folder; give the .npz file")):  # fmt: skip
        spec.write_text(_spec_text({**BASE, "dataset": {"name": "npz", "path": str(path)}}))
        _refused(capsys, main(create), "spec field 'dataset.path'", message)
    assert _rows(sqlite_url) == 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("training.lr", 1e-300, "spec field 'training.lr': must be in [1e-09, 100]"),
        ("estimate.confidence", 0.05, "as a confidence, an error rate of 0.05 is 0.95"),
        ("estimate.confidence", 0.3, "'estimate.confidence': must be in (0, 1), at least 0.5"),
        # Augmentation of vectors would be skipped without a word.
        ("training.flip", True, "'training.flip': augments images, but synthetic-longtail has"),
        ("training.crop", 2, "'training.crop': augments images, but synthetic-longtail has"),
    ],
)
def test_values_that_would_train_nothing_are_refused(
    sqlite_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    field: str,
    value: object,
    message: str,
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text(_with(field, value)))
    code = main(["--database-url", sqlite_url, "experiment", "create", str(spec)])
    _refused(capsys, code, message)
    assert _rows(sqlite_url) == 0


def test_images_may_still_be_augmented(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.toml"
    training = {"epochs": 1, "flip": True, "crop": 2}
    spec.write_text(_spec_text({**BASE, "dataset": DIGITS, "training": training}))
    assert main(["--database-url", sqlite_url, "experiment", "create", str(spec)]) == 0
    assert _rows(sqlite_url) > 0


@pytest.mark.parametrize("value", ["٥", "²", "٣.٥"])
def test_settings_take_ascii_digits_only(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("MEMTAIL_MAX_ATTEMPTS", value)
    _refused(capsys, main(["--database-url", sqlite_url, "status"]), "MEMTAIL_MAX_ATTEMPTS=")
    monkeypatch.delenv("MEMTAIL_MAX_ATTEMPTS")
    monkeypatch.setenv("MEMTAIL_LEASE_SECONDS", value)
    _refused(capsys, main(["--database-url", sqlite_url, "status"]), "MEMTAIL_LEASE_SECONDS=")


def test_an_imagefolder_of_one_class_is_refused(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.training.test_datasets import _write_images

    for split in ("train", "test"):
        _write_images(tmp_path / "images", split, {"cat": 3})
    spec = tmp_path / "spec.toml"
    dataset = {"name": "imagefolder", "path": str(tmp_path / "images"), "image_size": 8}
    spec.write_text(_spec_text({**BASE, "dataset": dataset}))
    code = main(["--database-url", sqlite_url, "experiment", "create", str(spec)])
    _refused(capsys, code, "spec field 'dataset.path':", "train has one class folder (cat)")
    assert _rows(sqlite_url) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("options = 3", "spec field 'model.options': must be a table of options, got int"),
        ("options = [1]", "spec field 'model.options': must be a table of options, got list"),
    ],
)
def test_options_are_a_table(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text(BASE).replace("width = 16", f"width = 16\n{text}"))
    _refused(capsys, main(["--database-url", sqlite_url, "experiment", "create", str(spec)]),
             message)  # fmt: skip
    # --set reaches fields of sections, never tables below them.
    create = ["--database-url", sqlite_url, "experiment", "create", str(spec), "--set"]
    spec.write_text(_spec_text(BASE))
    _refused(capsys, main([*create, "dataset.options.noise=1"]),
             "spec field 'dataset.options.noise': spec fields are FIELD or SECTION.FIELD; "
             "e.g. dataset.noise")  # fmt: skip
    assert _rows(sqlite_url) == 0
