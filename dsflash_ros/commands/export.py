"""dsflash export: ONNX graphs (backbone + dynamic-pairs head) or TensorRT engines."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export the model to ONNX (backbone + relation head) or build TensorRT engines"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dsflash_ros.runtime.export import DEFAULT_EXPORTER, DEFAULT_OPSET, EXPORTERS

    p.add_argument("target", choices=("onnx", "tensorrt"), help="what to produce")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="checkpoint (.safetensors) to export")
    src.add_argument("--preset", help="random-weight preset instead (tiny, S, B, L)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--precision",
        default=None,
        choices=("fp32", "fp16", "bf16"),
        help="onnx: graph compute type; tensorrt: engine precision "
        "(default: fp32 for onnx, fp16 for tensorrt)",
    )
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (17..23)")
    p.add_argument(
        "--exporter",
        default=DEFAULT_EXPORTER,
        choices=EXPORTERS,
        help="torch.onnx exporter",
    )
    p.add_argument("--image-size", type=int, default=0, help="override the preset's input size")
    p.add_argument("--seed", type=int, default=0, help="seed of a --preset model")
    p.add_argument(
        "--check",
        action="store_true",
        help="onnx: compare onnxruntime with torch (fails beyond tolerance)",
    )
    p.add_argument("--device", default="cuda", help="tensorrt: the GPU to build for")
    p.add_argument(
        "--max-objects",
        type=int,
        default=50,
        help="tensorrt: most segments per frame the head engine accepts",
    )


def _model(args: argparse.Namespace):
    from dsflash_ros.model.config import load_preset
    from dsflash_ros.model.dsflash import DSFlash, load_model

    if args.model:
        if args.image_size:
            raise ValueError("--image-size only applies to --preset (a checkpoint has its own)")
        model, model_id, _ = load_model(Path(args.model))
        return model, model_id
    import torch

    cfg = load_preset(args.preset)
    if args.image_size:
        cfg.backbone.image_size = args.image_size
    torch.manual_seed(args.seed)
    return DSFlash(cfg).eval(), f"{args.preset}-random-seed{args.seed}"


def run(args: argparse.Namespace) -> int:
    from dsflash_ros.progress import progress

    model, model_id = _model(args)
    out = Path(args.out)
    if args.target == "onnx":
        from dsflash_ros.runtime.export import check_onnx, export_onnx

        # export, then the parity check: in a log, a status line every interval meanwhile
        with progress(total=2 if args.check else 1, desc="export onnx", unit="step") as bar:
            export = export_onnx(
                model, out, opset=args.opset, precision=args.precision or "fp32",
                exporter=args.exporter,
            )  # fmt: skip
            bar.update(1)
            checks = check_onnx(model, export) if args.check else {}
            bar.update(1 if args.check else 0)
        print(f"{model_id}: wrote {', '.join(p.name for p in export.files())} to {out}")
        if args.check:
            for name, r in checks.items():
                diffs = ", ".join(f"{k} {v:.2e}" for k, v in r.max_abs_diff.items())
                print(
                    f"  {name}: max |onnxruntime - torch| {diffs} "
                    f"(atol {r.atol}, rtol {r.rtol}): ok"
                )
        return 0
    from dsflash_ros.runtime.backends.trt_backend import TensorRTBackend

    with progress(total=1, desc="export tensorrt", unit="engine set") as bar:
        backend = TensorRTBackend(
            model,
            args.device,
            args.precision or "fp16",
            cache_dir=out,
            opset=args.opset,
            exporter=args.exporter,
            max_objects=args.max_objects,
        )
        bar.update(1)
    state = ", ".join(f"{g} {'built' if b else 'cached'}" for g, b in backend.built.items())
    print(f"{model_id}: {backend.describe()}: {state}; engines under {out / 'tensorrt'}")
    return 0
