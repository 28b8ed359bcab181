"""EoMT stage 1: a plain ViT whose last blocks also carry the segmentation queries.

One forward pass yields the panoptic class/mask logits *and* the patch-token features of four
blocks for the relation head (DSFlash "unified backbone").

Parameter names equal the ``state_dict`` keys of Hugging Face
``EomtDinov3ForUniversalSegmentation`` (flavour ``dinov3``) and ``EomtForUniversalSegmentation``
(flavour ``dinov2``), so their checkpoints load 1:1 (see ``weights.py``).

Inference-first design:

* **Masked attention only while training.** EoMT lets each query attend only to the patches
  inside the mask it predicted before that block, and anneals this away during training
  (:func:`mask_annealing`); released models run without it. ``forward(pixels)`` is therefore
  plain joint self-attention with no intermediate predictions and no data-dependent branch
  (what inference and the ONNX export trace); ``forward(pixels, mask_probs=...)`` is the
  training path: it predicts class/mask logits before every query block (for intermediate
  supervision) and applies each block's attention mask to a random share ``mask_probs[i]``
  of the queries.
* ImageNet mean/std normalisation happens inside the model: the input is RGB in [0, 1].
* The DINOv3 RoPE training augmentation (random shift/jitter/rescale of patch coordinates) is
  not implemented; coordinates are the fixed patch centres in both modes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dsflash_ros.model.attention import attend
from dsflash_ros.model.config import BackboneConfig, ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# LayerNorm2d of the upscale blocks uses a fixed eps in EoMT and in HF (not layer_norm_eps).
UPSCALE_NORM_EPS = 1e-6


class BackboneOutput(NamedTuple):
    class_logits: torch.Tensor  # (B, Q, K+1); the last logit is "no object"
    mask_logits: torch.Tensor  # (B, Q, S/4, S/4)
    features: torch.Tensor  # (B, 4, D, S/16, S/16): raw residual stream of cfg.feature_layers


class TrainingOutput(NamedTuple):
    """The training forward: the final output plus one prediction before each query block."""

    final: BackboneOutput
    intermediate: list[tuple[torch.Tensor, torch.Tensor]]  # (class_logits, mask_logits)


def mask_annealing(
    progress: float, num_blocks: int, windows: Sequence[Sequence[float]] = ()
) -> list[float]:
    """EoMT's per-block probability of masked attention at training ``progress`` in [0, 1].

    Block ``k`` keeps its mask with probability 1 until ``start_k``, decays polynomially
    (power 0.9, as EoMT) to 0 at ``end_k`` and stays off after. Default windows stagger the
    blocks like EoMT's COCO schedule: ``[(k + 1) / (n + 2), (k + 2) / (n + 2)]``, so the last
    ``1 / (n + 2)`` of training runs without any mask, as inference does.
    """
    if not windows:
        windows = [
            ((k + 1) / (num_blocks + 2), (k + 2) / (num_blocks + 2)) for k in range(num_blocks)
        ]
    if len(windows) != num_blocks:
        raise ValueError(f"{len(windows)} annealing windows for {num_blocks} query blocks")
    probs = []
    for start, end in windows:
        if progress < start:
            probs.append(1.0)
        elif progress >= end:
            probs.append(0.0)
        else:
            probs.append(float((1.0 - (progress - start) / (end - start)) ** 0.9))
    return probs


def make_activation(name: str) -> nn.Module:
    """Activation module for a Hugging Face ``hidden_act`` name."""
    factories = {
        "gelu": nn.GELU,
        "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
        "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
        "silu": nn.SiLU,
        "swish": nn.SiLU,
        "relu": nn.ReLU,
    }
    if name not in factories:
        raise ConfigError(f"unsupported activation {name!r}; choose one of {sorted(factories)}")
    return factories[name]()


def num_upscale_blocks(patch_size: int) -> int:
    """2x upsampling blocks that bring the patch grid to 1/4 of the input (EoMT rule)."""
    return max(1, int(math.log2(patch_size)) - 2)


# --------------------------------------------------------------------------- embeddings


class Dinov3Embeddings(nn.Module):
    """Patch conv + CLS + registers; positions come from RoPE inside attention."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.register_tokens = nn.Parameter(torch.zeros(1, cfg.num_register_tokens, d))
        self.patch_embeddings = nn.Conv2d(3, d, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        b = pixels.shape[0]
        patches = self.patch_embeddings(pixels).flatten(2).transpose(1, 2)
        prefix = torch.cat([self.cls_token, self.register_tokens], dim=1).expand(b, -1, -1)
        return torch.cat([prefix, patches], dim=1)


class Dinov2PatchEmbeddings(nn.Module):
    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.projection = nn.Conv2d(
            3, cfg.hidden_size, kernel_size=cfg.patch_size, stride=cfg.patch_size
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.projection(pixels).flatten(2).transpose(1, 2)


class Dinov2Embeddings(nn.Module):
    """Patch conv + learned absolute position embedding (patches only) + CLS + registers."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.register_tokens = nn.Parameter(torch.zeros(1, cfg.num_register_tokens, d))
        self.patch_embeddings = Dinov2PatchEmbeddings(cfg)
        self.position_embeddings = nn.Embedding(cfg.grid_size**2, d)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        b = pixels.shape[0]
        patches = self.patch_embeddings(pixels) + self.position_embeddings.weight
        prefix = torch.cat([self.cls_token, self.register_tokens], dim=1).expand(b, -1, -1)
        return torch.cat([prefix, patches], dim=1)


class PatchRope(nn.Module):
    """DINOv3 2-D rotary embedding for a fixed patch grid (cos/sin precomputed, not saved).

    Patch centres are normalised to [-1, 1]; per head the first half of the rotated channels
    encodes y, x frequencies ``[y0..y_{n-1}, x0..x_{n-1}]`` and is repeated for the second half
    (``rotate_half`` convention).
    """

    def __init__(self, grid: int, head_dim: int, theta: float) -> None:
        super().__init__()
        centres = (torch.arange(0.5, grid, dtype=torch.float32) / grid) * 2.0 - 1.0
        yy, xx = torch.meshgrid(centres, centres, indexing="ij")
        coords = torch.stack([yy, xx], dim=-1).flatten(0, 1)  # (G*G, 2) as (y, x)
        inv_freq = 1.0 / theta ** torch.arange(0, 1, 4 / head_dim, dtype=torch.float32)
        angles = 2 * math.pi * coords[:, :, None] * inv_freq[None, None, :]
        angles = angles.flatten(1, 2).tile(2)  # (G*G, head_dim)
        self.register_buffer("cos", torch.cos(angles), persistent=False)
        self.register_buffer("sin", torch.sin(angles), persistent=False)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cos, self.sin


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_patch_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate only the trailing ``cos.shape[0]`` (patch) tokens of ``x`` (B, H, N, hd).

    Queries, CLS and register tokens sit before the patches and stay unrotated.
    """
    num_patches = cos.shape[0]
    prefix, patches = x.split((x.shape[-2] - num_patches, num_patches), dim=-2)
    patches = patches * cos + rotate_half(patches) * sin
    return torch.cat((prefix, patches), dim=-2)


# --------------------------------------------------------------------------- transformer block


class SelfAttention(nn.Module):
    """Multi-head self-attention (:func:`.attention.attend`: SDPA's fused kernels)."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.num_heads = cfg.num_heads
        dinov3 = cfg.flavour == "dinov3"
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d, bias=not dinov3)  # DINOv3 has no key bias
        self.v_proj = nn.Linear(d, d)
        # the output projection is called o_proj in HF DINOv3 and out_proj in HF DINOv2
        self.out_name = "o_proj" if dinov3 else "out_proj"
        self.add_module(self.out_name, nn.Linear(d, d))

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, n, d = x.shape
        h = self.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, h, d // h).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        if rope is not None:
            q = apply_patch_rope(q, *rope)
            k = apply_patch_rope(k, *rope)
        out = attend(q, k, v, attn_mask)
        out = out.transpose(1, 2).reshape(b, n, d)
        return getattr(self, self.out_name)(out)


class LayerScale(nn.Module):
    def __init__(self, dim: int, value: float) -> None:
        super().__init__()
        self.lambda1 = nn.Parameter(torch.full((dim,), float(value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.lambda1


class Dinov3Mlp(nn.Module):
    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.act = make_activation(cfg.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.up_proj(x)))


class Dinov2Mlp(nn.Module):
    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.act = make_activation(cfg.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class GatedMlp(nn.Module):
    """SwiGLU-style MLP. HF DINOv2-EoMT always gates with SiLU; DINOv3 uses ``hidden_act``."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        d, i = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = nn.Linear(d, i)
        self.up_proj = nn.Linear(d, i)
        self.down_proj = nn.Linear(i, d)
        self.act = nn.SiLU() if cfg.flavour == "dinov2" else make_activation(cfg.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm ViT block with LayerScale on both residual branches."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        d, eps = cfg.hidden_size, cfg.layer_norm_eps
        self.norm1 = nn.LayerNorm(d, eps=eps)
        self.attention = SelfAttention(cfg)
        self.layer_scale1 = LayerScale(d, cfg.layerscale_value)
        self.norm2 = nn.LayerNorm(d, eps=eps)
        if cfg.use_gated_mlp:
            self.mlp: nn.Module = GatedMlp(cfg)
        else:
            self.mlp = Dinov3Mlp(cfg) if cfg.flavour == "dinov3" else Dinov2Mlp(cfg)
        self.layer_scale2 = LayerScale(d, cfg.layerscale_value)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.layer_scale1(self.attention(self.norm1(x), rope, attn_mask))
        return x + self.layer_scale2(self.mlp(self.norm2(x)))


# --------------------------------------------------------------------------- EoMT heads


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of a (B, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps
        )
        return x.permute(0, 3, 1, 2)


class ScaleLayer(nn.Module):
    """2x upsampling: ConvTranspose 2x2/2 -> act -> depthwise 3x3 (no bias) -> LayerNorm2d."""

    def __init__(self, dim: int, act: str) -> None:
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2)
        self.act = make_activation(act)
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim, bias=False)
        self.layernorm2d = LayerNorm2d(dim, eps=UPSCALE_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layernorm2d(self.conv2(self.act(self.conv1(x))))


class ScaleBlock(nn.Module):
    def __init__(self, dim: int, count: int, act: str) -> None:
        super().__init__()
        self.block = nn.ModuleList(ScaleLayer(dim, act) for _ in range(count))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.block:
            x = layer(x)
        return x


class MaskHead(nn.Module):
    """3-layer MLP turning query tokens into mask embeddings."""

    def __init__(self, dim: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, dim)
        self.fc3 = nn.Linear(dim, dim)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


# --------------------------------------------------------------------------- EoMT


def _init_module(module: nn.Module) -> None:
    """ViT-style init (truncated normal, std 0.02; zero biases) for training from scratch.

    Loaded checkpoints overwrite all of it; LayerScale keeps ``cfg.layerscale_value``.
    """
    if isinstance(module, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.trunc_normal_(module.weight, std=0.02)


class EoMTBackbone(nn.Module):
    """EoMT segmenter + feature extractor (see module docstring).

    ``features`` are the *raw residual-stream* outputs of the blocks in ``cfg.feature_layers``
    (patch tokens only), for every block including the last one. (HF's ``hidden_states``
    replaces the last block's output by the post-LayerNorm sequence; we do not, so all four
    features are on the same footing.)
    """

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        d = cfg.hidden_size
        self.grid = cfg.grid_size
        self.num_queries = cfg.num_queries
        self.query_start = cfg.num_layers - cfg.num_blocks

        if cfg.flavour == "dinov3":
            self.embeddings: nn.Module = Dinov3Embeddings(cfg)
            self.rope_embeddings: PatchRope | None = PatchRope(
                self.grid, d // cfg.num_heads, cfg.rope_theta
            )
        else:
            self.embeddings = Dinov2Embeddings(cfg)
            self.rope_embeddings = None
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.layernorm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.query = nn.Embedding(cfg.num_queries, d)
        self.upscale_block = ScaleBlock(d, num_upscale_blocks(cfg.patch_size), cfg.hidden_act)
        self.mask_head = MaskHead(d, cfg.hidden_act)
        self.class_predictor = nn.Linear(d, cfg.num_labels + 1)

        self.apply(_init_module)

        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    def _check_input(self, pixel_values: torch.Tensor) -> None:
        s = self.cfg.image_size
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (3, s, s):
            raise ValueError(
                f"expected pixel_values of shape (B, 3, {s}, {s}) in [0, 1], "
                f"got {tuple(pixel_values.shape)}; letterbox the image first"
            )
        if not pixel_values.is_floating_point():
            raise ValueError(f"pixel_values must be a float tensor, got {pixel_values.dtype}")

    def predict_heads(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class and mask logits from a *normalised* sequence ``[queries, prefix, patches]``."""
        b, q, g = tokens.shape[0], self.num_queries, self.grid
        queries = tokens[:, :q]
        class_logits = self.class_predictor(queries)
        pixels = tokens[:, -g * g :].transpose(1, 2).reshape(b, -1, g, g)
        pixels = self.upscale_block(pixels)
        h, w = pixels.shape[-2:]
        mask_embed = self.mask_head(queries)
        mask_logits = torch.bmm(mask_embed, pixels.flatten(2)).view(b, q, h, w)
        return class_logits, mask_logits

    def query_attention_mask(
        self, mask_logits: torch.Tensor, prob: float, num_tokens: int
    ) -> torch.Tensor:
        """EoMT masked attention for one query block: ``(B, 1, T, T)`` bool, True = attend.

        Query ``q`` sees patch ``p`` only where its current mask logit (bilinearly resized
        to the patch grid) is positive; each (image, query) keeps this restriction with
        probability ``prob`` and attends everywhere otherwise. All other tokens are free.
        """
        b, q, g = mask_logits.shape[0], self.num_queries, self.grid
        mask = torch.ones(b, num_tokens, num_tokens, dtype=torch.bool, device=mask_logits.device)
        inside = F.interpolate(mask_logits.detach().float(), (g, g), mode="bilinear") > 0
        inside = inside.flatten(2)  # (B, Q, g*g)
        unmasked = torch.rand(b, q, device=mask_logits.device) >= prob
        mask[:, :q, -g * g :] = inside | unmasked[..., None]
        return mask[:, None]

    def forward(
        self, pixel_values: torch.Tensor, mask_probs: Sequence[float] | None = None
    ) -> BackboneOutput | TrainingOutput:
        """``pixel_values``: (B, 3, S, S) RGB in [0, 1] (letterboxed, zero padding).

        Without ``mask_probs`` (inference, export): a :class:`BackboneOutput`. With one
        probability per query block (training): a :class:`TrainingOutput` that also holds
        the predictions made before each query block, whose masks restrict the queries'
        attention in that block with the given probability (see :func:`mask_annealing`).
        """
        self._check_input(pixel_values)
        if mask_probs is not None and len(mask_probs) != self.cfg.num_blocks:
            raise ValueError(
                f"need {self.cfg.num_blocks} mask probabilities, got {len(mask_probs)}"
            )
        b, g = pixel_values.shape[0], self.grid
        x = (pixel_values - self.pixel_mean) / self.pixel_std
        x = x.to(self.query.weight.dtype)
        hidden = self.embeddings(x)
        rope = self.rope_embeddings() if self.rope_embeddings is not None else None

        captured: dict[int, torch.Tensor] = {}
        intermediate: list[tuple[torch.Tensor, torch.Tensor]] = []
        wanted = set(self.cfg.feature_layers)
        for idx, layer in enumerate(self.layers):
            if idx == self.query_start:
                queries = self.query.weight.unsqueeze(0).expand(b, -1, -1)
                hidden = torch.cat([queries, hidden], dim=1)
            attn_mask = None
            if mask_probs is not None and idx >= self.query_start:
                class_logits, mask_logits = self.predict_heads(self.layernorm(hidden))
                intermediate.append((class_logits, mask_logits))
                prob = float(mask_probs[idx - self.query_start])
                if prob > 0:
                    attn_mask = self.query_attention_mask(mask_logits, prob, hidden.shape[1])
            hidden = layer(hidden, rope, attn_mask)
            if idx in wanted:
                captured[idx] = hidden[:, -g * g :]

        class_logits, mask_logits = self.predict_heads(self.layernorm(hidden))
        features = torch.stack([captured[i] for i in self.cfg.feature_layers], dim=1)
        features = features.transpose(2, 3).reshape(b, 4, -1, g, g)
        final = BackboneOutput(class_logits, mask_logits, features)
        return final if mask_probs is None else TrainingOutput(final, intermediate)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
