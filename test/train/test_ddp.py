"""Both stages under ``torchrun`` with 2 CPU processes (gloo): weights stay identical."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import dsflash_ros
from dsflash_ros.data.psg import PSGDataset
from dsflash_ros.train.cli import config_for_dataset

from .conftest import micro_config, micro_recipe

REPO_ROOT = Path(dsflash_ros.__file__).resolve().parents[1]
WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch

    from dsflash_ros.data.psg import PSGDataset
    from dsflash_ros.model.config import ModelConfig
    from dsflash_ros.model.dsflash import build_model
    from dsflash_ros.train.loop import init_distributed
    from dsflash_ros.train.recipes import TrainRecipe
    from dsflash_ros.train.relations import run_relations
    from dsflash_ros.train.segmenter import run_segmenter

    data_root, work = sys.argv[1], Path(sys.argv[2])
    info = init_distributed("cpu")
    assert info.world_size == 2, info
    torch.set_num_threads(1)
    config = ModelConfig.from_yaml(work / "config.yaml")
    recipe = TrainRecipe.from_yaml(work / "recipe.yaml")
    train = PSGDataset.from_dir(data_root, "train")
    model = build_model(config, seed=info.rank)  # different init per rank: DDP broadcasts
    seg = run_segmenter(model, train, None, recipe.segmenter, work / "seg", 0, info)
    rel = run_relations(model, train, None, recipe.relations, work / "rel", 0, info)
    torch.save(
        {"state": model.state_dict(), "losses": seg.last_losses + rel.last_losses},
        work / f"rank{info.rank}.pt",
    )
    """
)


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_weights(synth_root, tmp_path) -> None:
    train = PSGDataset.from_dir(synth_root, "train")
    config_for_dataset(micro_config(), train).to_yaml(tmp_path / "config.yaml")
    micro_recipe(epochs=1, max_steps_per_epoch=1, ema_decay=0.0).to_yaml(tmp_path / "recipe.yaml")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, str(script), str(synth_root), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    # each rank saw different images (different losses) but gradients were averaged
    assert r0["losses"] != r1["losses"]
    for name, tensor in r0["state"].items():
        assert torch.equal(tensor, r1["state"][name]), name
    # only rank 0 wrote the run files, once per stage
    for stage in ("seg", "rel"):
        assert (tmp_path / stage / "last.ckpt").is_file()
        rows = (tmp_path / stage / "metrics.csv").read_text().strip().splitlines()
        assert len(rows) == 3  # header, one train row, one epoch row
