"""DSFlash relation head (stage 2): one small transformer pass per unordered segment pair.

Input per image: the backbone's patch tokens of 4 evenly spaced blocks ``(B, 4, D, g, g)``.
:meth:`RelationHead.encode_image` runs once per image:

* feature merge: a trainable ``Linear(4 → 1)`` over the 4 blocks (per-position weighted sum
  plus bias), initialised to the plain mean (weights 1/4, bias 0) — the DSFlash code leaves
  this layer frozen at a random init, which we do not copy;
* ``patch_embed``: ``Conv2d(D → H, kernel = stride = pool)`` -> ``T = floor(g / pool)²``
  tokens (13 × 13 = 169 for 640 px, patch 16, pool 3; the last backbone row/column is dropped).

Per pair ``(s, o)`` the token sequence is ``[CLS, LOC, T × (patch + E(p))]``: CLS is
learnable (ViT-style init, std 0.02: DSFormer's uniform [0, 1) init puts a large constant in
every CLS output that the final LayerNorm passes on, diluting the pair signal); LOC encodes
both boxes normalised to [−1, 1] (``Linear(8 → H/2) → ReLU → Linear(H/2 → H)``); ``E(p)`` is
the mask embedding (:mod:`.mask_embedding`, Alg. 2). The fixed 2-D sine encoding
(:mod:`.position`) is re-added to the patch tokens before every block. Blocks are pre-norm
(``x + MHA(LN x)``, ``x + MLP(LN x)``, GELU) and use :func:`.attention.attend` (SDPA) with
an optional key mask.

Gated bidirectional output — the equations chosen (the paper's Sec. 3.3 text was not
readable; these follow the supplement §8 and the reasons below)::

    x      = LN(CLS output)                       direction-aware pair embedding of (s, o)
    g      = sigmoid(W_g x + b_g)                 elementwise gate, W_g ∈ R^{H×H}
    t_fwd  = g ⊙ x,   t_bwd = (1 − g) ⊙ x         the gate partitions x between directions
    logits(s → o) = F(t_fwd),  logits(o → s) = F(t_bwd)
    F      = Linear(H → classifier_hidden) → ReLU → Linear(→ 1 + R)   (shared; index 0 = NONE)
    L_cons = MSE(t_fwd, t'_bwd) + MSE(t_bwd, t'_fwd)    (t' from the reversed pair (o, s))

Why: the supplement says the gate *partitions* one shared vector into a forward and a
backward branch and that t→, t← no longer encode direction, which is what makes
``t→ ≈ t'←`` a meaningful target; an elementwise sigmoid gate is the simplest partition.
One classifier ``F`` is shared because the t's are direction-free; with two classifiers
the consistency term would tie features that feed different functions. Training runs every
pair together with its reverse in the same batch (Fig. 4; :func:`.pairs.with_reversed`) and
supervises all four outputs; inference runs only ``i < j`` and reads ``i → j`` from
``F(t_fwd)`` and ``j → i`` from ``F(t_bwd)`` — ``N(N−1)/2`` passes for ``N(N−1)`` outputs.
With ``bidirectional: false`` all ``N(N−1)`` ordered pairs are run and ``F(t_fwd)`` is used
(the unidirectional DSFormer-style baseline). Which pairs run and how both directions are
spread onto the ordered pairs is the relation stage (:mod:`dsflash_ros.runtime.relations`).

Optional token reductions (both off by default), chosen per call with :class:`HeadOptions`
(never stored on the module, so two pipelines sharing one model cannot interfere):

* pruning: a pair keeps CLS, LOC and the patch cells its subject or object covers
  (``r_s + r_o > 0``), grown by ``prune_dilation`` cells; kept tokens are packed left and the
  rest is masked out of the attention (a pair with no kept patch keeps CLS + LOC only);
* ToMe: inside blocks ``0 .. L−2`` (merging in the last block cannot change the CLS output),
  after the attention, ``round(tome_ratio · T / num_layers)`` patch tokens per pair are
  merged into their most similar neighbours (:mod:`.token_merging`); with
  ``tome_proportional`` the attention adds ``log(size)`` to the merged keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dsflash_ros.model.attention import attend
from dsflash_ros.model.config import BackboneConfig, HeadConfig
from dsflash_ros.model.mask_embedding import (
    MaskEmbedding,
    gather_pair_ratios,
    mask_ratios,
    prune_keep_mask,
)
from dsflash_ros.model.pair_proposal import PairProposal
from dsflash_ros.model.position import sine_position_encoding
from dsflash_ros.model.token_merging import (
    merge_tokens,
    pack_left,
    tome_tokens_per_block,
)

NUM_FEATURE_BLOCKS = 4
NUM_PREFIX_TOKENS = 2  # CLS, LOC


@dataclass(frozen=True)
class HeadOptions:
    """Run-time switches of the relation head, passed to each call (not model state and not
    part of a checkpoint's config). The defaults are the plain head that export traces."""

    prune: bool = False  # mask-based dynamic pruning of patch tokens
    prune_dilation: int = 1  # grow the kept patch set by this many cells
    tome_ratio: float = 0.0  # share of patch tokens merged by ToMe across the head blocks
    tome_proportional: bool = False  # proportional attention (log size) on merged tokens
    max_pairs_per_chunk: int = 4096  # pairs per batched forward (memory budget)
    # with pruning, pairs run sorted by kept-token count in batches of this many, each padded
    # only to its own longest pair (one batch padded to the longest pair of the frame gave
    # most of the saving back)
    prune_batch: int = 32

    def __post_init__(self) -> None:
        if self.prune_dilation < 0:
            raise ValueError(f"prune_dilation must be >= 0, got {self.prune_dilation}")
        if not 0.0 <= self.tome_ratio < 1.0:
            raise ValueError(f"tome_ratio must be in [0, 1), got {self.tome_ratio}")
        if self.max_pairs_per_chunk < 1:
            raise ValueError(f"max_pairs_per_chunk must be >= 1, got {self.max_pairs_per_chunk}")
        if self.prune_batch < 1:
            raise ValueError(f"prune_batch must be >= 1, got {self.prune_batch}")

    @property
    def exportable(self) -> bool:
        """True when these options are the plain head of the exported graph (no pruning or
        ToMe): what the onnxruntime and TensorRT backends can run."""
        return not self.prune and self.tome_ratio == 0.0


PLAIN = HeadOptions()


@dataclass
class PairOutput:
    """Per pair ``(i, j)`` (``i`` = subject): logits of ``i → j`` and ``j → i`` and the gated
    features they come from."""

    logits_fwd: torch.Tensor  # (P, 1 + R) = F(t_fwd): i -> j
    logits_bwd: torch.Tensor  # (P, 1 + R) = F(t_bwd): j -> i
    t_fwd: torch.Tensor  # (P, H)
    t_bwd: torch.Tensor  # (P, H)


def consistency_loss(
    t_fwd_ij: torch.Tensor,
    t_bwd_ij: torch.Tensor,
    t_fwd_ji: torch.Tensor,
    t_bwd_ji: torch.Tensor,
) -> torch.Tensor:
    """Bidirectional feature consistency: ``MSE(t→_ij, t←_ji) + MSE(t←_ij, t→_ji)``.

    Row ``k`` of the ``_ji`` tensors must be the reverse of pair ``k`` of the ``_ij`` ones.
    """
    if not t_fwd_ij.shape == t_bwd_ij.shape == t_fwd_ji.shape == t_bwd_ji.shape:
        raise ValueError("consistency_loss needs four tensors of the same shape")
    return F.mse_loss(t_fwd_ij, t_bwd_ji) + F.mse_loss(t_bwd_ij, t_fwd_ji)


class HeadBlock(nn.Module):
    """Pre-norm transformer block with SDPA attention and an optional additive/bool key mask."""

    def __init__(self, hidden_size: int, num_heads: int, ffn_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(hidden_size)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.fc1 = nn.Linear(hidden_size, ffn_size)
        self.fc2 = nn.Linear(ffn_size, hidden_size)

    def attention(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, want_keys: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Self-attention of ``LN(x)``; also returns the head-averaged keys for ToMe."""
        b, n, c = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (b, heads, n, d)
        out = attend(q, k, v, attn_mask)
        out = self.proj(out.transpose(1, 2).reshape(b, n, c))
        return out, (k.mean(dim=1) if want_keys else None)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm2(x))))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attention(x, attn_mask)[0]
        return x + self.mlp(x)


class LocationEncoder(nn.Module):
    """LOC token from the subject and object boxes (DSFormer ``CoordEncoder``)."""

    def __init__(self, hidden_size: int, image_size: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.mlp = nn.Sequential(
            nn.Linear(8, hidden_size // 2), nn.ReLU(), nn.Linear(hidden_size // 2, hidden_size)
        )

    def forward(self, sbj_boxes: torch.Tensor, obj_boxes: torch.Tensor) -> torch.Tensor:
        """``(P, 4)`` xyxy model-pixel boxes each -> ``(P, H)``."""
        coords = torch.cat((sbj_boxes, obj_boxes), dim=-1) * (2.0 / self.image_size) - 1.0
        return self.mlp(coords.to(self.mlp[0].weight.dtype))


class RelationHead(nn.Module):
    """DSFlash stage 2 (see the module docstring for the architecture and equations)."""

    def __init__(self, cfg: HeadConfig, backbone_cfg: BackboneConfig) -> None:
        super().__init__()
        h = cfg.hidden_size
        if h % cfg.num_heads or h % 4:
            raise ValueError(
                f"head hidden_size {h} must be divisible by num_heads ({cfg.num_heads}) and by 4"
            )
        if not 1 <= cfg.pool <= backbone_cfg.grid_size:
            raise ValueError(f"head pool {cfg.pool} must be in 1..{backbone_cfg.grid_size}")
        self.cfg = cfg
        self.image_size = backbone_cfg.image_size
        self.feature_dim = backbone_cfg.hidden_size
        self.backbone_grid = backbone_cfg.grid_size
        self.grid = backbone_cfg.grid_size // cfg.pool
        self.cell = cfg.pool * backbone_cfg.patch_size  # model pixels per head patch
        self.num_patches = self.grid * self.grid
        # how the model reads its outputs (fixed by training; the relation stage may still
        # run a bidirectional model unidirectionally, as an argument)
        self.bidirectional = cfg.bidirectional

        self.feature_merge = nn.Linear(NUM_FEATURE_BLOCKS, 1)
        nn.init.constant_(self.feature_merge.weight, 1.0 / NUM_FEATURE_BLOCKS)
        nn.init.zeros_(self.feature_merge.bias)
        self.patch_embed = nn.Conv2d(self.feature_dim, h, kernel_size=cfg.pool, stride=cfg.pool)
        pos = sine_position_encoding(self.grid, self.grid, h)
        self.register_buffer("pos_embed", pos, persistent=False)
        self.cls_token = nn.Parameter(torch.randn(h) * 0.02)  # ViT init (not DSFormer's rand)
        self.loc_encoder = LocationEncoder(h, backbone_cfg.image_size)
        self.mask_embedding = MaskEmbedding(h)
        self.blocks = nn.ModuleList(
            HeadBlock(h, cfg.num_heads, cfg.ffn_size) for _ in range(cfg.num_layers)
        )
        self.norm = nn.LayerNorm(h)
        self.gate = nn.Linear(h, h)
        self.classifier = nn.Sequential(
            nn.Linear(h, cfg.classifier_hidden),
            nn.ReLU(),
            nn.Linear(cfg.classifier_hidden, 1 + cfg.num_predicates),
        )
        self.num_labels = backbone_cfg.num_labels
        # cheap scorer of all pairs that picks the ones the blocks run (pair_topk), if any
        self.proposal: PairProposal | None = None
        if cfg.proposal_hidden > 0:
            cells = (cfg.proposal_grid or self.grid) ** 2
            self.proposal = PairProposal(
                self.num_labels, cells, self.image_size, cfg.proposal_hidden
            )
        self.pair_rows = 0  # pair rows run through the blocks since reset_stats()
        self._token_counts: list[torch.Tensor | int] = []  # see last_tokens_per_block

    def add_proposal(self, hidden: int) -> PairProposal:
        """A fresh pair-proposal scorer of ``hidden`` units (replacing any), recorded in the
        head config so that a saved model rebuilds it."""
        if hidden < 1:
            raise ValueError(f"proposal hidden size must be >= 1, got {hidden}")
        self.cfg.proposal_hidden = hidden
        self.cfg.proposal_grid = self.cfg.proposal_grid or self.grid
        self.proposal = PairProposal(
            self.num_labels, self.cfg.proposal_grid**2, self.image_size, hidden
        )
        return self.proposal

    # ------------------------------------------------------------------ per image
    def encode_image(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, 4, D, g, g)`` backbone block features -> ``(B, T, H)`` patch tokens."""
        g = self.backbone_grid
        if features.ndim != 5 or tuple(features.shape[1:]) != (
            NUM_FEATURE_BLOCKS,
            self.feature_dim,
            g,
            g,
        ):
            raise ValueError(
                f"features must be (B, {NUM_FEATURE_BLOCKS}, {self.feature_dim}, {g}, {g}), "
                f"got {tuple(features.shape)}"
            )
        w = self.feature_merge.weight[0].to(features.dtype)
        merged = torch.einsum("bkdhw,k->bdhw", features, w)
        merged = merged + self.feature_merge.bias.to(features.dtype)
        return self.patch_embed(merged).flatten(2).transpose(1, 2)

    def mask_ratios(self, masks: torch.Tensor) -> torch.Tensor:
        """``(N, S, S)`` masks in the model frame -> ``(N, T)`` cell coverage (Alg. 2, once)."""
        self._check_masks(masks)
        return mask_ratios(masks, self.cell, self.grid)

    # ------------------------------------------------------------------ per pair
    def forward(
        self,
        patch_tokens: torch.Tensor,
        ratios: torch.Tensor,
        boxes: torch.Tensor,
        pairs: torch.Tensor,
        pair_image: torch.Tensor,
        options: HeadOptions = PLAIN,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One unchunked pass over all given pairs -> ``(logits_fwd, logits_bwd, t_fwd, t_bwd)``.

        No input validation or chunking (kept simple for export); use :meth:`forward_pairs`.
        """
        x, pos, size = self._pair_tokens(patch_tokens, ratios, boxes, pairs, pair_image, options)
        x = self._run_blocks(x, pos, size, options)
        feat = self.norm(x[:, 0])
        gate = torch.sigmoid(self.gate(feat))
        t_fwd = gate * feat
        t_bwd = feat - t_fwd  # (1 - g) ⊙ x
        return self.classifier(t_fwd), self.classifier(t_bwd), t_fwd, t_bwd

    def forward_pairs(
        self,
        patch_tokens: torch.Tensor,
        ratios: torch.Tensor,
        boxes: torch.Tensor,
        pairs: torch.Tensor,
        pair_image: torch.Tensor,
        options: HeadOptions = PLAIN,
    ) -> PairOutput:
        """All pairs in batched passes of at most ``options.max_pairs_per_chunk`` pairs.

        ``patch_tokens (B, T, H)`` from :meth:`encode_image`; ``ratios (N, T)`` and
        ``boxes (N, 4)`` (xyxy, model pixels) of all segments of the batch; ``pairs (P, 2)``
        subject/object indices into those ``N``; ``pair_image (P,)`` image of each pair.
        """
        self._check_pair_inputs(patch_tokens, ratios, boxes, pairs, pair_image)
        chunk = options.max_pairs_per_chunk
        order = None
        if options.prune and len(pairs) > options.prune_batch:
            order = self._pairs_by_kept_tokens(ratios, pairs, options)
            pairs, pair_image = pairs[order], pair_image[order]
            chunk = min(chunk, options.prune_batch)
        outs = [
            self(
                patch_tokens,
                ratios,
                boxes,
                pairs[i : i + chunk],
                pair_image[i : i + chunk],
                options,
            )
            for i in range(0, len(pairs), chunk)
        ]
        if not outs:
            r = self.cfg.num_predicates + 1
            h = self.cfg.hidden_size
            z = patch_tokens.new_zeros
            return PairOutput(z(0, r), z(0, r), z(0, h), z(0, h))
        joined = [torch.cat(parts) for parts in zip(*outs)]
        if order is not None:  # back to the caller's pair order
            inverse = torch.empty_like(order)
            inverse[order] = torch.arange(len(order), device=order.device)
            joined = [t[inverse] for t in joined]
        return PairOutput(*joined)

    def _pairs_by_kept_tokens(
        self, ratios: torch.Tensor, pairs: torch.Tensor, options: HeadOptions
    ) -> torch.Tensor:
        """Pair order by the number of patch tokens pruning keeps (ascending)."""
        r_sbj, r_obj = gather_pair_ratios(ratios, pairs)
        keep = prune_keep_mask(r_sbj, r_obj, self.grid, options.prune_dilation)
        return keep.sum(1).argsort(stable=True)

    @property
    def last_tokens_per_block(self) -> list[float]:
        """Mean valid tokens per pair entering each block, for the last chunk run."""
        return [float(c) for c in self._token_counts]

    def reset_stats(self) -> None:
        self.pair_rows = 0
        self._token_counts = []

    # ------------------------------------------------------------------ internals
    def _pair_tokens(
        self,
        patch_tokens: torch.Tensor,
        ratios: torch.Tensor,
        boxes: torch.Tensor,
        pairs: torch.Tensor,
        pair_image: torch.Tensor,
        options: HeadOptions,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Token sequences ``(P, 2 + L, H)``, positional codes and slot sizes (None = all 1)."""
        r_sbj, r_obj = gather_pair_ratios(ratios, pairs)
        num = pairs.shape[0]  # not len(): keeps the pair count symbolic in export
        cls = self.cls_token.to(patch_tokens.dtype).expand(num, 1, -1)
        loc = self.loc_encoder(boxes[pairs[:, 0]], boxes[pairs[:, 1]]).to(patch_tokens.dtype)
        pos = self.pos_embed.to(patch_tokens.dtype)
        size = None
        if options.prune:
            keep = prune_keep_mask(r_sbj, r_obj, self.grid, options.prune_dilation)
            index, counts = pack_left(keep)
            index = index[:, : int(counts.max()) if num else 0]
            patches = patch_tokens[pair_image[:, None], index]  # gather only kept cells
            r_sbj, r_obj = r_sbj.gather(1, index), r_obj.gather(1, index)
            pos = pos[index]  # (P, K, H)
            valid = torch.arange(index.shape[1], device=index.device) < counts[:, None]
            size = torch.cat((valid.new_ones(num, NUM_PREFIX_TOKENS), valid), 1).to(pos.dtype)
        else:
            patches = patch_tokens[pair_image]
            pos = pos[None]
        tokens = patches + self.mask_embedding(r_sbj, r_obj).to(patches.dtype)
        x = torch.cat((cls, loc[:, None], tokens), dim=1)
        prefix = pos.new_zeros(pos.shape[0], NUM_PREFIX_TOKENS, pos.shape[-1])
        return x, torch.cat((prefix, pos), dim=1), size

    @staticmethod
    def _attn_mask(
        size: torch.Tensor | None, dtype: torch.dtype, proportional: bool
    ) -> torch.Tensor | None:
        if size is None:
            return None
        if proportional:
            return size.log().to(dtype)[:, None, None, :]  # log 0 = -inf masks empty slots
        return (size > 0)[:, None, None, :]

    def _run_blocks(
        self, x: torch.Tensor, pos: torch.Tensor, size: torch.Tensor | None, options: HeadOptions
    ) -> torch.Tensor:
        r = tome_tokens_per_block(options.tome_ratio, self.num_patches, len(self.blocks))
        proportional = options.tome_proportional
        attn_mask = self._attn_mask(size, x.dtype, proportional)
        record = not (torch.compiler.is_compiling() or torch.jit.is_tracing())
        counts: list[torch.Tensor | int] = []
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            if record:  # kept as tensors: no device sync on the hot path
                counts.append(x.shape[1] if size is None else (size > 0).sum(1).float().mean())
            x = x + pos
            merge = r > 0 and i < last
            out, keys = block.attention(x, attn_mask, want_keys=merge)
            x = x + out
            if merge:
                if size is None:
                    size = x.new_ones(x.shape[:2])
                pos = pos.expand(x.shape[0], -1, -1)
                x, pos, size = merge_tokens(x, pos, size, keys, r, NUM_PREFIX_TOKENS)
                attn_mask = self._attn_mask(size, x.dtype, proportional)
            x = x + block.mlp(x)
        if record:
            self.pair_rows += x.shape[0]
            self._token_counts = counts
        return x

    def _check_masks(self, masks: torch.Tensor) -> None:
        s = self.image_size
        if masks.ndim != 3 or tuple(masks.shape[1:]) != (s, s):
            raise ValueError(
                f"masks must be (N, {s}, {s}) in the model frame, got {tuple(masks.shape)}"
            )

    def _check_pair_inputs(
        self,
        patch_tokens: torch.Tensor,
        ratios: torch.Tensor,
        boxes: torch.Tensor,
        pairs: torch.Tensor,
        pair_image: torch.Tensor,
    ) -> None:
        t, h = self.num_patches, self.cfg.hidden_size
        if patch_tokens.ndim != 3 or tuple(patch_tokens.shape[1:]) != (t, h):
            raise ValueError(f"patch_tokens must be (B, {t}, {h}), got {tuple(patch_tokens.shape)}")
        if ratios.ndim != 2 or ratios.shape[1] != t:
            raise ValueError(f"ratios must be (N, {t}), got {tuple(ratios.shape)}")
        if boxes.shape != (len(ratios), 4):
            raise ValueError(f"boxes must be ({len(ratios)}, 4), got {tuple(boxes.shape)}")
        if pairs.ndim != 2 or pairs.shape[1] != 2 or pair_image.shape != (len(pairs),):
            raise ValueError(
                f"pairs must be (P, 2) and pair_image (P,), got {tuple(pairs.shape)} and "
                f"{tuple(pair_image.shape)}"
            )
        if pairs.dtype != torch.long or pair_image.dtype != torch.long:
            raise ValueError("pairs and pair_image must be long tensors")
        if len(pairs) == 0:
            return
        if bool((pairs < 0).any()) or bool((pairs >= len(ratios)).any()):
            raise ValueError(f"pair index out of range 0..{len(ratios) - 1}")
        if bool((pair_image < 0).any()) or bool((pair_image >= len(patch_tokens)).any()):
            raise ValueError(f"pair_image out of range 0..{len(patch_tokens) - 1}")
        if bool((pairs[:, 0] == pairs[:, 1]).any()):
            raise ValueError("self-pairs (subject == object) are not allowed")
