"""The real world end to end (issue #16): stand-ins of every licensed file, in the real formats and under their
real names, and the whole DAG to results/eval_3dpw.csv with a copy of config/real.example.yaml pointing at them.

The stand-ins come from the tiny open world (:func:`pipeline.world.standins.write_real_standins`); the pipeline
cannot tell them from the licensed files. This is the README's "Real assets" recipe, followed literally with
``/data`` replaced by a temporary folder and tests/config_real_tiny.yaml for the sizes. It takes ≈ 3 min on
2 cores (Graphonomy's Universal model on the CPU parses every scan view and training image).
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.world.standins import SMPL_DOWNLOAD_NAMES, write_real_standins
from tests.conftest import ROOT, run_snakemake


@pytest.fixture(scope="module")
def real_work(tiny_project: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A work folder set up as the README says (config/ with the defaults and the user's copy of the example),
    and the stand-in /data root."""
    data = tmp_path_factory.mktemp("data")
    write_real_standins(tiny_project, data)
    work = tmp_path_factory.mktemp("real")
    (work / "config").mkdir()
    shutil.copy(ROOT / "config" / "config.yaml", work / "config" / "config.yaml")
    text = (ROOT / "config" / "real.example.yaml").read_text().replace(": /data/", f": {data}/")
    (work / "config" / "my_real.yaml").write_text(text)
    shutil.copy(ROOT / "tests" / "config_real_tiny.yaml", work / "config" / "tiny.yaml")
    return work, data


def test_stand_ins_look_like_the_downloads(real_work: tuple[Path, Path]) -> None:
    _, data = real_work
    for name in SMPL_DOWNLOAD_NAMES.values():
        raw = (data / "smpl" / "models" / name).read_bytes()
        assert raw[:2] == b"\x80\x02" and b"chumpy.ch" in raw and b"scipy.sparse.csc\n" in raw
    assert "chumpy" not in sys.modules
    for rel in ("spin/data/J_regressor_h36m.npy", "spin/data/J_regressor_extra.npy", "spin/data/smpl_mean_params.npz",
                "spin/data/model_checkpoint.pt", "graphonomy/universal_trained.pth",
                "eft/eft_fit/COCO2014-All-ver01.json", "spin/data/dataset_extras/3dpw_test.npz"):
        assert (data / rel).is_file(), rel


def test_missing_files_are_listed_in_one_message(real_work: tuple[Path, Path], tmp_path: Path) -> None:
    """A dry run of the example config as shipped (no /data files) lists every slot with where to obtain it."""
    work = tmp_path / "bare"
    (work / "config").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "config.yaml", work / "config" / "config.yaml")
    res = run_snakemake(work, "-n", "--configfile", str(ROOT / "config" / "real.example.yaml"), timeout=300)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    for key in ("assets.body_models", "assets.j_regressor_h36m", "assets.j_regressor_extra", "assets.scans",
                "assets.graphonomy_checkpoint", "assets.smpl_mean_params", "assets.pretrained_checkpoint",
                "assets.train_datasets.coco_eft", "assets.train_datasets.h36m", "assets.test_datasets.3dpw",
                "assets.test_datasets.mpi_inf_3dhp"):
        assert f"config key {key}" in out, key
    assert "15 asset slot(s) are missing" in out and "smpl.is.tue.mpg.de" in out and "fetch_data.sh" in out
    assert "Traceback" not in out.split("MissingAssetError")[0]


def test_empty_scan_folder_and_empty_dataset_stop_before_any_job(real_work: tuple[Path, Path], tmp_path: Path) -> None:
    work, data = real_work
    empty_scans = tmp_path / "scans"
    empty_scans.mkdir()
    cfg = yaml.safe_load((work / "config" / "my_real.yaml").read_text())
    cfg["assets"]["scans"] = str(empty_scans)
    cfg["assets"]["train_datasets"]["h36m"]["images"] = str(tmp_path / "no_images")
    (work / "config" / "broken.yaml").write_text(yaml.safe_dump(cfg))
    res = run_snakemake(work, "-n", "--configfile", str(work / "config/broken.yaml"), str(work / "config/tiny.yaml"),
                        timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "2 asset slot(s)" in out, out[-3000:]
    assert "config key assets.scans" in out and "no scan in it" in out
    assert "config key assets.train_datasets.h36m: images" in out and "no such folder" in out


def test_the_real_world_runs_to_the_3dpw_table(real_work: tuple[Path, Path]) -> None:
    """The README's recipe to results/eval_3dpw.csv. Takes ≈ 3 min on 2 cores, because that is a whole DAG with
    Graphonomy's Universal network parsing every scan view and training image on the CPU."""
    work, _ = real_work
    res = run_snakemake(work, "--configfile", str(work / "config/my_real.yaml"), str(work / "config/tiny.yaml"), "--",
                        "results/eval_3dpw.csv", timeout=1500)
    out = res.stdout + res.stderr
    first_error = out.find("Error in rule")
    assert res.returncode == 0, (out[first_error:first_error + 6000] if first_error >= 0 else "") + out[-3000:]
    rows = list(csv.DictReader((work / "results/eval_3dpw.csv").open()))
    assert [r["run"] for r in rows] == ["mean-params", "pretrained", "sd", "dsr"]
    for row in rows:
        assert 0 < float(row["mpjpe_mm"]) < 5000 and 0 < float(row["pve_mm"]) < 5000, row
    # the real-world rules ran, the open world's did not
    logs = {p.parent.name + "/" + p.stem for p in (work / "logs").rglob("*.log")}
    assert "real/prepare_body_model" in logs and not any(name.startswith("world/") for name in logs), sorted(logs)
    report = (work / "resources/body_models/prepare_report.json").read_text()
    assert "basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl" in report
    # Graphonomy parsed the scan views and the training images (the rendered backend reads no label maps here)
    assert list((work / "results/prior").rglob("*.h5")) or list((work / "results/prior").rglob("*.npz"))
    assert (work / "results/masks/coco_eft.h5").is_file()
