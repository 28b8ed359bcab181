"""dsflash model: inspect a checkpoint (info) or build one from foreign weights (convert)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dsflash_ros.model.provenance import REAL, SYNTHETIC

HELP = "inspect or annotate a model checkpoint, or convert a pretrained EoMT model to one"
_SHOWN_NAMES = 8  # names listed before "..." unless --all


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    info = sub.add_parser(
        "info", help="describe a checkpoint", description="describe a DSFlash checkpoint"
    )
    info.add_argument("path", metavar="PATH", help="checkpoint (.safetensors)")
    info.add_argument("--all", action="store_true", help="list every class and predicate")
    info.add_argument("--json", action="store_true", help="print the description as JSON")
    info.set_defaults(_action=_info)

    conv = sub.add_parser(
        "convert",
        help="build a checkpoint from a pretrained EoMT model (directory, file or Hub id)",
        description="build a DSFlash checkpoint from a pretrained EoMT model -- a Hugging "
        "Face save_pretrained directory, an original tue-mps checkpoint (pytorch_model.bin or "
        "a Lightning .ckpt), or a Hugging Face Hub model id such as "
        "tue-mps/coco_panoptic_eomt_large_640 (downloaded once into the Hub cache) -- "
        "optionally with the trained relation head of another DSFlash checkpoint",
    )
    conv.add_argument(
        "source",
        nargs="?",
        metavar="EOMT",
        help="HF EoMT directory, tue-mps checkpoint file, or Hub model id (org/name)",
    )
    conv.add_argument("--hf-eomt", metavar="DIR", help="same as EOMT (older spelling)")
    conv.add_argument(
        "--head", metavar="CKPT", help="take the trained relation head from this checkpoint"
    )
    conv.add_argument("--out", required=True, metavar="PATH", help="output checkpoint path")
    conv.add_argument("--name", help="model name stored in the checkpoint")
    conv.add_argument("--revision", help="Hub branch, tag or commit (default: main)")
    conv.add_argument(
        "--dinov3-base",
        metavar="DIR|ID",
        help="tue-mps DINOv3 checkpoints: the DINOv3 weights their backbone deltas add to "
        "(e.g. facebook/dinov3-vits16-pretrain-lvd1689m, gated)",
    )
    conv.add_argument(
        "--num-blocks",
        type=int,
        metavar="N",
        help="tue-mps checkpoints without attn_mask_probs: query blocks (S/B 3, L 4, g 5)",
    )
    conv.add_argument(
        "--image-size",
        type=int,
        metavar="PX",
        help="tue-mps DINOv3 checkpoints: the input size trained for",
    )
    conv.set_defaults(_action=_convert)

    note = sub.add_parser(
        "annotate",
        help="record a checkpoint's training domain, recommended thresholds and input size",
        description="rewrite a checkpoint with its training domain and/or recommended "
        "operating thresholds in its metadata (weights and config unchanged)",
    )
    note.add_argument("path", metavar="PATH", help="checkpoint (.safetensors)")
    note.add_argument(
        "--domain",
        choices=(SYNTHETIC, REAL),
        help="training domain: synthetic (warns at run time) or real",
    )
    note.add_argument("--score-threshold", type=float, metavar="S", help="recommended")
    note.add_argument("--relation-threshold", type=float, metavar="S", help="recommended")
    note.add_argument(
        "--input-size",
        type=int,
        metavar="PX",
        help="recommended square model input (the pipeline's default input_size)",
    )
    note.add_argument("--out", metavar="PATH", help="write here instead of in place")
    note.set_defaults(_action=_annotate)


def run(args: argparse.Namespace) -> int:
    return args._action(args)


def _abbreviate(names: list[str], show_all: bool) -> str:
    if show_all or len(names) <= _SHOWN_NAMES + 2:
        return ", ".join(names)
    return ", ".join(names[:_SHOWN_NAMES]) + f", ... (+{len(names) - _SHOWN_NAMES} more)"


def describe_checkpoint(path: str | Path) -> dict[str, Any]:
    """Everything ``info`` prints, as plain data (no model is built)."""
    from dsflash_ros.model.checkpoint import file_id, model_id, read_checkpoint
    from dsflash_ros.model.provenance import ModelFacts

    path = Path(path)
    state, cfg, extra = read_checkpoint(path)
    facts = ModelFacts.from_extra(extra)
    name_and_file = f"{cfg.name}-{file_id(path)}"

    def params(prefix: str) -> int:
        return sum(t.numel() for k, t in state.items() if k.startswith(prefix))

    b, h = cfg.backbone, cfg.head
    return {
        "file": path.name,
        "size_mb": round(path.stat().st_size / 2**20, 2),
        "name": cfg.name,
        "model_id": name_and_file,
        "content_hash": model_id(cfg, state),
        "image_size": b.image_size,
        "recommended_input_size": facts.input_size,
        "backbone": {
            "flavour": b.flavour,
            "hidden_size": b.hidden_size,
            "layers": b.num_layers,
            "heads": b.num_heads,
            "patch_size": b.patch_size,
            "queries": b.num_queries,
            "query_blocks": b.num_blocks,
            "feature_layers": list(b.feature_layers),
            "parameters": params("backbone."),
        },
        "head": {
            "hidden_size": h.hidden_size,
            "layers": h.num_layers,
            "pool": h.pool,
            "bidirectional": h.bidirectional,
            "pair_proposals": h.proposal_hidden > 0,  # pair_topk works
            "parameters": params("head."),
        },
        "classes": list(cfg.class_names),
        "things": sum(cfg.is_thing),
        "predicates": list(cfg.predicate_names),
        "domain": facts.domain,
        "recommended_thresholds": facts.thresholds,
        "warning": facts.warning(name_and_file),
        "provenance": extra,
    }


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n:,}"


def _info(args: argparse.Namespace) -> int:
    from dsflash_ros.model.provenance import DOMAIN_KEY, THRESHOLDS_KEY

    d = describe_checkpoint(args.path)
    if d["warning"]:
        print(f"warning: {d['warning']}", file=sys.stderr)
    if args.json:
        json.dump(d, sys.stdout, indent=2)
        print()
        return 0
    b, h = d["backbone"], d["head"]
    classes, predicates = d["classes"], d["predicates"]
    lines = [
        f"file:        {d['file']} ({d['size_mb']} MB)",
        f"name:        {d['name']}",
        f"model id:    {d['model_id']} (content hash {d['content_hash']})",
        f"image size:  {d['image_size']} px (patch {b['patch_size']}, "
        f"{d['image_size'] // b['patch_size']}x{d['image_size'] // b['patch_size']} tokens)",
        f"backbone:    EoMT-{b['flavour']}, {b['layers']} blocks x {b['hidden_size']} wide, "
        f"{b['queries']} queries in the last {b['query_blocks']} blocks, features from blocks "
        f"{b['feature_layers']}: {_millions(b['parameters'])} parameters",
        f"head:        {h['layers']} blocks x {h['hidden_size']} wide, pool {h['pool']}, "
        f"{'bidirectional' if h['bidirectional'] else 'unidirectional'}, "
        f"{'with' if h['pair_proposals'] else 'no'} pair-proposal scorer (pair_topk): "
        f"{_millions(h['parameters'])} parameters",
        f"parameters:  {_millions(b['parameters'] + h['parameters'])} in all",
        f"classes:     {len(classes)} ({d['things']} things, {len(classes) - d['things']} "
        f"stuff): {_abbreviate(classes, args.all)}",
        f"predicates:  {len(predicates)}: {_abbreviate(predicates, args.all)}",
        f"domain:      {d['domain'] or 'not recorded'}",
        "thresholds:  "
        + (
            ", ".join(f"{k} {v:g}" for k, v in d["recommended_thresholds"].items())
            + " (recommended by the checkpoint; used where you set none)"
            if d["recommended_thresholds"]
            else "none recommended (built-in defaults apply)"
        ),
    ]
    rest = {k: v for k, v in d["provenance"].items() if k not in (DOMAIN_KEY, THRESHOLDS_KEY)}
    if rest:
        lines.append("provenance:")
        for key, value in rest.items():
            text = json.dumps(value) if isinstance(value, dict | list) else str(value)
            lines.append(f"  {key}: {text}")
    else:
        lines.append("provenance:  (none recorded)")
    print("\n".join(lines))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from dsflash_ros.model.convert_eomt import convert_to_file

    if bool(args.source) == bool(args.hf_eomt):
        raise ValueError("give the EoMT model once: EOMT (directory, file or Hub id)")
    path, conversion = convert_to_file(
        args.source or args.hf_eomt,
        args.out,
        args.head,
        args.name,
        revision=args.revision,
        dinov3_base=args.dinov3_base,
        num_blocks=args.num_blocks,
        image_size=args.image_size,
    )
    for note in conversion.notes:
        print(f"note: {note}", file=sys.stderr)
    cfg = conversion.model.config
    print(
        f"wrote {path}: {cfg.name}, {cfg.backbone.image_size} px, "
        f"{len(cfg.class_names)} classes, {len(cfg.predicate_names)} predicates, head "
        f"{'trained' if conversion.extra.get('head_trained') else 'untrained'}"
    )
    return 0


def _annotate(args: argparse.Namespace) -> int:
    from dsflash_ros.model.checkpoint import read_checkpoint, read_metadata, update_metadata
    from dsflash_ros.model.config import at_input_size
    from dsflash_ros.model.provenance import (
        DOMAIN_KEY,
        INPUT_SIZE_KEY,
        THRESHOLDS_KEY,
        check_input_size,
        check_thresholds,
    )

    changes: dict[str, Any] = {}
    if args.domain:
        changes[DOMAIN_KEY] = args.domain
    given = {
        k: getattr(args, k)
        for k in ("score_threshold", "relation_threshold")
        if getattr(args, k) is not None
    }
    if given:
        current = read_metadata(args.path).get(THRESHOLDS_KEY) or {}
        changes[THRESHOLDS_KEY] = check_thresholds({**current, **given}, "thresholds")
    if args.input_size is not None:
        size = check_input_size(args.input_size, "--input-size")
        at_input_size(read_checkpoint(args.path)[1], size)  # the model can run at it
        changes[INPUT_SIZE_KEY] = size
    if not changes:
        raise ValueError("nothing to record: give --domain, a threshold and/or --input-size")
    path = update_metadata(args.path, changes, args.out)
    print(f"wrote {path}: " + ", ".join(f"{k} {json.dumps(v)}" for k, v in changes.items()))
    return 0
