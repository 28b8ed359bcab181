"""A few steps of both stages on a micro model: files written, resume is exact."""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from dsflash_ros.data.psg import PSGDataset
from dsflash_ros.model.checkpoint import CheckpointMismatchError
from dsflash_ros.model.dsflash import build_model, load_model, save_model
from dsflash_ros.train.cli import backbone_with_fresh_head, config_for_dataset, train_all
from dsflash_ros.train.loop import ModelEMA, Trainer, TrainingError, warmup_cosine
from dsflash_ros.train.recipes import RecipeError, TrainRecipe, load_recipe
from dsflash_ros.train.relations import run_relations
from dsflash_ros.train.segmenter import run_segmenter

from .conftest import micro_config, micro_recipe


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_train_all_writes_checkpoints_metrics_and_final_model(synth_root, tmp_path) -> None:
    recipe = micro_recipe(epochs=1)
    final = train_all(synth_root, tmp_path / "run", micro_config(), recipe)
    assert final == tmp_path / "run" / "model.safetensors"
    for stage in ("segmenter", "relations"):
        assert (tmp_path / "run" / stage / "last.ckpt").is_file()
        rows = _rows(tmp_path / "run" / stage / "metrics.csv")
        assert [r["kind"] for r in rows] == ["train", "train", "epoch"]
        assert float(rows[-1]["epoch_loss"]) > 0
    assert (
        "val_PQ" in rows[0]
        or "val_mR@50" in _rows(tmp_path / "run" / "relations" / "metrics.csv")[-1]
    )
    model, _, extra = load_model(final)
    data = PSGDataset.from_dir(synth_root, "train")
    assert model.config.class_names == list(data.class_names)
    assert model.config.predicate_names == list(data.predicate_names)
    assert extra["stage"] == "final" and extra["recipe"]["seed"] == 3
    assert extra["data"]["num_images"] == 16 and extra["data"]["train_images"] == len(data)
    assert "val_mR@50" in extra["relations_metrics"]
    # the pair-proposal scorer trains with the head (its loss logged, its recall validated)
    assert float(rows[-1]["epoch_loss_prop"]) > 0
    assert "val_pair_R@8" in extra["relations_metrics"]
    # stage 2 trained only the head: backbone identical to the stage-1 export
    seg, _, _ = load_model(tmp_path / "run" / "segmenter" / "model.safetensors")
    for (name, a), b in zip(
        seg.backbone.state_dict().items(), model.backbone.state_dict().values()
    ):
        assert torch.equal(a, b), name
    assert any(
        not torch.equal(a, b)
        for a, b in zip(seg.head.state_dict().values(), model.head.state_dict().values())
    )


@pytest.mark.parametrize("stage", ["segmenter", "relations"])
def test_resume_continues_with_identical_losses(synth_root, tmp_path, stage) -> None:
    recipe = micro_recipe()
    rec = recipe.segmenter if stage == "segmenter" else recipe.relations
    run = run_segmenter if stage == "segmenter" else run_relations
    train = PSGDataset.from_dir(synth_root, "train")
    config = config_for_dataset(micro_config(), train)

    full = run(build_model(config, seed=1), train, None, rec, tmp_path / "full", seed=5)
    first = run(
        build_model(config, seed=1), train, None, rec, tmp_path / "cut", seed=5, stop_after_epoch=1
    )
    assert first.epoch == 1 and first.step == 2
    resumed = run(build_model(config, seed=1), train, None, rec, tmp_path / "cut", 5, resume=True)
    assert resumed.step == full.step == 4
    assert first.last_losses == pytest.approx(full.last_losses[:2], rel=1e-6, abs=1e-7)
    assert resumed.last_losses == pytest.approx(full.last_losses[2:], rel=1e-6, abs=1e-7)
    steps = [
        int(r["step"]) for r in _rows(tmp_path / "cut" / "metrics.csv") if r["kind"] == "train"
    ]
    assert steps == [1, 2, 3, 4]


def test_resume_refuses_a_different_schedule(synth_root, tmp_path) -> None:
    train = PSGDataset.from_dir(synth_root, "train")
    config = config_for_dataset(micro_config(), train)
    rec = micro_recipe(epochs=1).segmenter
    run_segmenter(build_model(config, seed=1), train, None, rec, tmp_path, seed=0)
    longer = micro_recipe(epochs=3).segmenter
    with pytest.raises(TrainingError, match="total steps"):
        run_segmenter(build_model(config, seed=1), train, None, longer, tmp_path, 0, resume=True)


def test_warmup_cosine_schedule() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, warmup_steps=4, total_steps=12, min_ratio=0.1)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1 + 0.45 * (1 + math.cos(7 * math.pi / 8)))
    assert all(a >= b for a, b in itertools.pairwise(lrs[3:]))


def test_recipe_yaml_round_trip_and_errors(tmp_path) -> None:
    recipe = load_recipe("tiny_synth")
    assert recipe.relations.bidirectional_training and recipe.relations.consistency_weight == 0.0
    assert recipe.relations.weight_decay == 0.02 and recipe.relations.grad_clip == 1.0
    path = tmp_path / "r.yaml"
    recipe.to_yaml(path)
    assert TrainRecipe.from_yaml(path) == recipe
    path.write_text("segmenter:\n  epochs: 2\n  learning_rate: 0.1\n")
    with pytest.raises(RecipeError, match="learning_rate"):
        TrainRecipe.from_yaml(path)
    with pytest.raises(RecipeError, match="unknown recipe"):
        load_recipe("no_such_recipe")


def test_trainer_rejects_non_finite_loss(tmp_path) -> None:
    module = torch.nn.Linear(2, 1)
    trainer = Trainer(module, micro_recipe().segmenter, tmp_path, steps_per_epoch=1)

    def step(model, batch, progress):
        return {"loss": model(batch).sum() * float("nan")}

    with pytest.raises(TrainingError, match="non-finite"):
        trainer.fit(lambda epoch: [torch.ones(1, 2)], step)


def test_ema_ramps_up_and_is_applied_temporarily() -> None:
    module = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(module.weight)
    ema = ModelEMA(module, decay=0.995)
    with torch.no_grad():
        module.weight.fill_(1.0)
    ema.update(module)  # first update: decay 1/10 -> shadow 0.9
    assert ema.shadow["weight"].item() == pytest.approx(0.9)
    for _ in range(20):
        ema.update(module)
    assert ema.current_decay() == pytest.approx(22 / 31)  # still ramping up
    ema.updates = 5000
    assert ema.current_decay() == pytest.approx(0.995)
    with ema.applied(module) as m:
        assert m.weight.item() == pytest.approx(ema.shadow["weight"].item())
    assert module.weight.item() == 1.0


def test_second_phase_from_the_command_line(synth_root, tmp_path, capsys) -> None:
    """The embedded model's second phase: `train segmenter --init` continues a segmenter,
    `train relations --init --output` warm-starts the head and writes a final checkpoint."""
    import yaml

    from dsflash_ros.cli import main

    recipe = micro_recipe(epochs=1)
    first = train_all(synth_root, tmp_path / "run", micro_config(), recipe)
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe.to_dict()))
    seg = tmp_path / "run" / "segmenter" / "model.safetensors"
    common = ["--data", str(synth_root), "--recipe", str(recipe_file), "--threads", "1"]
    out = tmp_path / "phase2"
    capsys.readouterr()
    argv = [
        "train",
        "segmenter",
        *common,
        "--init",
        str(seg),
        "--out",
        str(out),
        "--max-steps",
        "1",
    ]
    assert main(argv) == 0
    assert "training epochs 1..1 of 1, 1 steps each" in capsys.readouterr().out  # --max-steps
    seg2 = out / "segmenter" / "model.safetensors"
    final = tmp_path / "final.safetensors"
    args = ["--backbone", str(seg2), "--init", str(first), "--output", str(final)]
    assert main(["train", "relations", *common, *args, "--out", str(out)]) == 0

    model, _, extra = load_model(final)
    assert extra["stage"] == "final" and extra["head_init"] == first.name
    assert "val_mR@50" in extra["relations_metrics"]
    continued, _, _ = load_model(seg2)
    before, _, _ = load_model(seg)
    for (name, a), b in zip(
        continued.backbone.state_dict().items(), model.backbone.state_dict().values()
    ):
        assert torch.equal(a, b), name  # stage 2 of phase 2 runs on the continued backbone
    assert any(  # and the continued backbone trained on from the first phase's
        not torch.equal(a, b)
        for a, b in zip(
            before.backbone.state_dict().values(), continued.backbone.state_dict().values()
        )
    )


def test_stage2_takes_the_backbone_and_a_fresh_seeded_head(tmp_path) -> None:
    trained = build_model(micro_config(), seed=3)
    with torch.no_grad():  # a "trained" backbone and head, both unlike any seeded init
        for p in trained.parameters():
            p.add_(0.5)
    path = save_model(tmp_path / "seg.safetensors", trained)
    model = backbone_with_fresh_head(path, seed=7)
    fresh = build_model(micro_config(), seed=7)
    for name, t in model.backbone.state_dict().items():
        assert torch.equal(t, trained.backbone.state_dict()[name]), name
    for name, t in model.head.state_dict().items():
        assert torch.equal(t, fresh.head.state_dict()[name]), name

    # a checkpoint missing a backbone tensor is an error, not a silently fresh backbone
    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    dropped = next(k for k in tensors if k.startswith("backbone."))
    del tensors[dropped]
    partial = tmp_path / "partial.safetensors"
    save_file(tensors, partial, metadata=metadata)
    with pytest.raises(CheckpointMismatchError, match=dropped.removeprefix("backbone.")):
        backbone_with_fresh_head(partial, seed=7)


def test_stage2_head_warm_start_takes_the_head_of_another_checkpoint(tmp_path) -> None:
    backbone_src = build_model(micro_config(), seed=3)
    head_src = build_model(micro_config(), seed=5)
    with torch.no_grad():  # both unlike any seeded init
        for p in backbone_src.parameters():
            p.add_(0.5)
        for p in head_src.parameters():
            p.sub_(0.25)
    seg = save_model(tmp_path / "seg.safetensors", backbone_src)
    old = save_model(tmp_path / "old.safetensors", head_src)
    model = backbone_with_fresh_head(seg, seed=7, head_init=old)
    for name, t in model.backbone.state_dict().items():
        assert torch.equal(t, backbone_src.backbone.state_dict()[name]), name
    for name, t in model.head.state_dict().items():
        assert torch.equal(t, head_src.head.state_dict()[name]), name

    # a checkpoint without any fitting head tensor is an error, not a silently fresh head
    with safe_open(old, "pt") as f:
        metadata = f.metadata()
    tensors = {k: v for k, v in load_file(old).items() if not k.startswith("head.")}
    headless = tmp_path / "headless.safetensors"
    save_file(tensors, headless, metadata=metadata)
    with pytest.raises(ValueError, match="no relation-head tensor"):
        backbone_with_fresh_head(seg, seed=7, head_init=headless)


def test_proposals_alone_on_a_finished_model(synth_root, tmp_path) -> None:
    """`dsflash train proposals`: a model without a scorer gains one; its backbone and the
    rest of its head stay bit for bit, and the scorer learns (loss falls)."""
    import yaml

    from dsflash_ros.cli import main
    from dsflash_ros.train.relation_loss import proposal_targets

    data = PSGDataset.from_dir(synth_root, "train")
    cfg = config_for_dataset(micro_config(), data)
    cfg.head.proposal_hidden = 0
    before = build_model(cfg, seed=5)
    assert before.head.proposal is None
    src = save_model(tmp_path / "plain.safetensors", before, {"stage": "final"})
    recipe_file = tmp_path / "recipe.yaml"
    recipe = micro_recipe(epochs=3, max_steps_per_epoch=4)
    recipe.relations.lr = 1e-2
    recipe_file.write_text(yaml.safe_dump(recipe.to_dict()))
    out = tmp_path / "with_proposals.safetensors"
    args = ["--data", str(synth_root), "--recipe", str(recipe_file), "--threads", "1"]
    args += ["--model", str(src), "--output", str(out), "--out", str(tmp_path / "run")]
    assert main(["train", "proposals", *args]) == 0

    after, _, extra = load_model(out)
    assert after.head.proposal is not None and after.config.head.proposal_hidden == 64
    old = {**before.state_dict()}
    for name, tensor in after.state_dict().items():
        if name.startswith("head.proposal."):
            continue
        assert torch.equal(tensor, old.pop(name)), name
    assert not old  # nothing else was added or lost
    rows = _rows(tmp_path / "run" / "proposals" / "metrics.csv")
    epochs = [float(r["epoch_loss_prop"]) for r in rows if r["kind"] == "epoch"]
    assert len(epochs) == 3 and epochs[-1] < epochs[0]
    assert "val_pair_R@8" in extra["proposals_metrics"]
    # targets: every unordered pair, 1 where a relation joins it in either direction
    pairs, targets = proposal_targets([torch.tensor([[2, 0, 1]]), torch.zeros(0, 3)], [3, 2])
    assert pairs.tolist() == [[0, 1], [0, 2], [1, 2], [3, 4]]
    assert targets.tolist() == [False, True, False, False]


def test_stage2_recipe_changes_the_head_and_warm_starts_a_coarser_pooling(
    synth_root, tmp_path
) -> None:
    """A recipe's ``head: {pool: 2}`` on a backbone saved with pool 1: the warm-started head's
    patch tokens start as the 2x2 means of the old head's, and the run saves the new pooling."""
    import dataclasses

    from dsflash_ros.model.config import with_head
    from dsflash_ros.train.cli import train_relations

    config = config_for_dataset(micro_config(), PSGDataset.from_dir(synth_root, "train"))
    fine = build_model(with_head(config, {"pool": 1}), seed=5)
    with torch.no_grad():
        for p in fine.head.parameters():
            p.sub_(0.25)
    old = save_model(tmp_path / "fine.safetensors", fine)
    model = backbone_with_fresh_head(old, seed=7, head_init=old, head_changes={"pool": 2})
    assert model.head.grid == fine.head.grid // 2 and model.config.head.proposal_grid == 0
    g = fine.head.backbone_grid
    features = torch.randn(1, 4, fine.head.feature_dim, g, g)
    with torch.no_grad():
        fine_tokens = fine.head.encode_image(features)  # (1, g*g, H)
        grid = fine_tokens.transpose(1, 2).reshape(1, -1, g, g)
        expected = torch.nn.functional.avg_pool2d(grid, 2).flatten(2).transpose(1, 2)
        assert torch.allclose(model.head.encode_image(features), expected, atol=1e-5)
    assert torch.equal(model.head.cls_token, fine.head.cls_token)  # the rest loads as is

    recipe = dataclasses.replace(micro_recipe(epochs=1), head={"pool": 4})
    trained = train_relations(synth_root, old, tmp_path / "run", recipe, output=tmp_path / "m")
    saved, _, _ = load_model(trained)
    assert saved.config.head.pool == 4 and saved.head.num_patches == 1
    with pytest.raises(RecipeError, match="poool"):
        TrainRecipe.from_dict({"head": {"poool": 4}})
