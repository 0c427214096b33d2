"""Graphonomy's Universal human parser (``deeplab_xception_end2end_3d``), CIHP target head, loadable strictly.

Architecture (facts from Gaoyiminggithub/Graphonomy @09e5dd4, see ``shared/reference/GRAPHONOMY_AGORA_SMPL_NOTES.md``
section A; the code here is written from those facts):

- **Backbone** ``xception_features``: modified aligned Xception-65, output stride 16. Returns the deep feature
  (B, 2048, H/16, W/16) and the *pre-ReLU* low-level feature (B, 256, H/4, W/4) taken inside entry block 2.
  Blocks reproduce the original's in-place-ReLU quirk: the first ReLU of a block's ``rep`` rectifies the block
  input in place, so the residual branch (identity or 1x1 conv) sees ``relu(inp)``, not ``inp``.
- **ASPP** (rates 1, 6, 12, 18 + image pooling) -> 256 channels, **decoder** with the 48-channel low-level
  projection -> the feature map ``F`` (B, 256, H/4, W/4).
- **Graph head**: ``F`` is projected onto three label graphs (CIHP 20 nodes = target, PASCAL 7 = source,
  ATR 18 = middle) by a softmax assignment and an *unnormalised sum over pixels*; three rounds of graph
  convolution + intra/inter-graph transfer (adjacency-driven ``Graph_trans`` and feature-similarity transfers);
  the CIHP graph is projected back onto the pixels, added to a 1x1 skip branch and classified into 20 labels,
  then upsampled (bilinear, ``align_corners=True``) to the input size.

Code quirks kept on purpose (the released weights were trained with them):

- every stage reuses ``source_graph_conv1`` / ``target_graph_conv1``; the ATR graph also uses
  ``target_graph_conv1`` (with the ATR adjacency); ``*_graph_conv2/3`` and ``middle_graph_conv*`` are unused;
- ``Graph_trans`` ignores its stored ``adj`` parameter: the adjacency passed at call time replaces it;
- ``transpose_graph_middle2target.adj`` is stored with shape (7, 18) (built with the PASCAL node count).

Unused modules are kept so that ``load_state_dict(strict=True)`` accepts the released ``universal_trained.pth``
(781 tensors, no ``num_batches_tracked``). Only the CIHP (target) head is implemented as a forward path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.parsing.graphs import (
    NUM_ATR_NODES,
    NUM_CIHP_NODES,
    NUM_PASCAL_NODES,
    GraphAdjacency,
    graph_adjacency_arrays,
)

#: Channel widths of the DeepLab v3+ part.
BACKBONE_CHANNELS: int = 2048
LOW_LEVEL_CHANNELS: int = 256
LOW_LEVEL_PROJECTION_CHANNELS: int = 48
ASPP_CHANNELS: int = 256
#: ASPP dilation rates at output stride 16 (rate 1 is the 1x1 branch).
ASPP_RATES: tuple[int, int, int, int] = (1, 6, 12, 18)
#: Xception-65 widths: entry flow, middle flow, exit flow.
ENTRY_CHANNELS: tuple[int, int, int] = (128, 256, 728)
MIDDLE_BLOCKS: int = 16
EXIT_CHANNELS: tuple[int, int, int, int] = (1024, 1536, 1536, 2048)
#: Dilation of the exit-flow separable convolutions conv3..conv5 at output stride 16.
EXIT_DILATION: int = 2
#: Graph head widths (``input_channels``, ``hidden_layers``, ``out_channels`` of the original constructor).
GRAPH_INPUT_CHANNELS: int = 256
GRAPH_HIDDEN: int = 128
GRAPH_OUTPUT_CHANNELS: int = 256
#: Number of graph reasoning stages and of features concatenated per graph before ``fc_graph_*``.
GRAPH_STAGES: int = 3
GRAPH_CONCAT_PARTS: int = 5
#: BN scale of each residual branch's last layer in the random initialisation (keeps activations O(1)).
RANDOM_INIT_RESIDUAL_GAIN: float = 0.25
#: Key suffix of the BatchNorm counters that the (PyTorch 0.4) checkpoint does not contain.
BN_COUNTER_SUFFIX: str = "num_batches_tracked"
#: Prefix added by ``nn.DataParallel`` / DDP wrappers.
DATA_PARALLEL_PREFIX: str = "module."
#: How many keys of each kind a mismatch error lists before summarising.
MAX_KEYS_IN_ERROR: int = 25


def fixed_padding(x: torch.Tensor, kernel_size: int, dilation: int) -> torch.Tensor:
    """Zero-pad (B, C, H, W) so that a 'same' conv of this kernel/dilation keeps H, W at stride 1.

    Total padding is ``k_eff - 1`` with ``k_eff = k + (k - 1)(d - 1)``, split ``total // 2`` before and the
    rest after (TensorFlow-style 'same' padding, as in the original).
    """
    effective = kernel_size + (kernel_size - 1) * (dilation - 1)
    total = effective - 1
    begin = total // 2
    end = total - begin
    return F.pad(x, (begin, end, begin, end))


class SeparableConv2dSame(nn.Module):
    """Depthwise 3x3 (fixed 'same' padding) -> BN -> pointwise 1x1 -> BN; no ReLU inside, no biases.

    Input (B, C_in, H, W) -> output (B, C_out, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            stride=stride,
            padding=0,
            dilation=dilation,
            groups=in_channels,
            bias=False,
        )
        self.depthwise_bn = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pointwise_bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = fixed_padding(x, self.kernel_size, self.dilation)
        x = self.depthwise_bn(self.depthwise(x))
        return self.pointwise_bn(self.pointwise(x))


class SeparableConv2dASPP(nn.Module):
    """Depthwise 3x3 (padding = dilation) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU; no biases.

    Input (B, C_in, H, W) -> output (B, C_out, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, 3, padding=dilation, dilation=dilation, groups=in_channels, bias=False
        )
        self.depthwise_bn = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pointwise_bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.depthwise_bn(self.depthwise(x)))
        return F.relu(self.pointwise_bn(self.pointwise(x)))


class XceptionBlock(nn.Module):
    """One Xception residual block: ``rep`` = [ReLU, SepConv] * reps (+ stride or exit SepConv) plus a skip.

    ``rep`` holds the ReLUs at even indices and the separable convs at odd ones (state-dict names
    ``rep.1``, ``rep.3``, ...); with ``start_with_relu=False`` the leading ReLU is dropped and the convs sit at
    even indices. A 1x1 skip conv + BN exists when the width or the stride changes; it has stride 2 unless
    ``is_last`` (the original's rule).

    Forward, reproducing the original's in-place first ReLU: with ``r = relu(inp)`` if ``start_with_relu`` else
    ``inp``, the output is ``rep_without_first_relu(r) + (skipbn(skip(r)) if skip else r)``. So a middle block
    computes ``rep(inp) + relu(inp)``, not ``rep(inp) + inp``.

    Input (B, C_in, H, W) -> output (B, C_out, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        reps: int,
        stride: int = 1,
        dilation: int = 1,
        start_with_relu: bool = True,
        grow_first: bool = True,
        is_last: bool = False,
    ) -> None:
        super().__init__()
        if out_channels != in_channels or stride != 1:
            self.skip: nn.Conv2d | None = nn.Conv2d(
                in_channels, out_channels, 1, stride=1 if is_last else 2, bias=False
            )
            self.skipbn: nn.BatchNorm2d | None = nn.BatchNorm2d(out_channels)
        else:
            self.skip = None
            self.skipbn = None

        layers: list[nn.Module] = []
        width = in_channels
        if grow_first:
            layers += [nn.ReLU(inplace=False), SeparableConv2dSame(in_channels, out_channels, dilation=dilation)]
            width = out_channels
        for _ in range(reps - 1):
            layers += [nn.ReLU(inplace=True), SeparableConv2dSame(width, width, dilation=dilation)]
        if not grow_first:
            layers += [nn.ReLU(inplace=True), SeparableConv2dSame(in_channels, out_channels, dilation=dilation)]
        if stride != 1:
            layers += [nn.ReLU(inplace=True), SeparableConv2dSame(out_channels, out_channels, stride=2)]
        if is_last:
            layers += [nn.ReLU(inplace=True), SeparableConv2dSame(out_channels, out_channels, dilation=dilation)]
        if not start_with_relu:
            layers = layers[1:]
        else:
            layers[0] = nn.ReLU(inplace=False)  # never mutate the caller's tensor when ``rep`` runs alone
        self.start_with_relu = start_with_relu
        self.rep = nn.Sequential(*layers)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        rectified = F.relu(inp) if self.start_with_relu else inp
        x = rectified
        for layer in list(self.rep)[1 if self.start_with_relu else 0 :]:
            x = layer(x)
        if self.skip is not None and self.skipbn is not None:
            return x + self.skipbn(self.skip(rectified))
        return x + rectified


class EntryBlock2(nn.Module):
    """Entry block 2 (the original's ``Block2``): also returns the decoder's low-level feature.

    ``rep`` = [ReLU, SepConv 128->256, ReLU, SepConv 256->256]; its output, *before* any ReLU, is the low-level
    feature (B, 256, H/4, W/4). ``block2_lastconv`` = [ReLU, SepConv stride 2] then adds the stride-2 1x1 skip of
    ``relu(inp)`` (in-place-ReLU quirk): output (B, 256, H/8, W/8).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.skipbn = nn.BatchNorm2d(out_channels)
        self.block2_lastconv = nn.Sequential(
            nn.ReLU(inplace=False), SeparableConv2dSame(out_channels, out_channels, stride=2)
        )
        self.rep = nn.Sequential(
            nn.ReLU(inplace=False),
            SeparableConv2dSame(in_channels, out_channels),
            nn.ReLU(inplace=True),
            SeparableConv2dSame(out_channels, out_channels),
        )

    def forward(self, inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C_in, H, W) -> (output (B, C_out, H/2, W/2), low-level feature (B, C_out, H, W))."""
        rectified = F.relu(inp)
        low_level = rectified
        for layer in list(self.rep)[1:]:
            low_level = layer(low_level)
        x = self.block2_lastconv(low_level)
        return x + self.skipbn(self.skip(rectified)), low_level


class Xception65(nn.Module):
    """Modified aligned Xception-65 at output stride 16 (state-dict prefix ``xception_features``).

    Input (B, 3, H, W) BGR in [-1, 1] -> (features (B, 2048, H/16, W/16), low-level (B, 256, H/4, W/4)),
    sizes rounded up at every stride-2 step.
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        c1, c2, c3 = ENTRY_CHANNELS
        e1, e2, e3, e4 = EXIT_CHANNELS
        self.conv1 = nn.Conv2d(in_channels, 32, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.block1 = XceptionBlock(64, c1, reps=2, stride=2, start_with_relu=False)
        self.block2 = EntryBlock2(c1, c2)
        self.block3 = XceptionBlock(c2, c3, reps=2, stride=2)
        for index in range(4, 4 + MIDDLE_BLOCKS):
            self.add_module(f"block{index}", XceptionBlock(c3, c3, reps=3))
        self.block20 = XceptionBlock(c3, e1, reps=2, grow_first=False, is_last=True)
        self.conv3 = SeparableConv2dASPP(e1, e2, dilation=EXIT_DILATION)
        self.conv4 = SeparableConv2dASPP(e2, e3, dilation=EXIT_DILATION)
        self.conv5 = SeparableConv2dASPP(e3, e4, dilation=EXIT_DILATION)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.block1(x)
        x, low_level = self.block2(x)
        x = self.block3(x)
        for index in range(4, 4 + MIDDLE_BLOCKS):
            x = getattr(self, f"block{index}")(x)
        x = self.block20(x)
        x = self.conv3(x)
        x = self.conv4(x)
        x = self.conv5(x)
        return x, low_level


class ASPPPointwise(nn.Module):
    """ASPP rate-1 branch: 1x1 conv (no bias) -> BN -> ReLU. (B, C_in, h, w) -> (B, C_out, h, w)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.atrous_convolution = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.atrous_convolution(x)))


class ASPPSeparable(nn.Module):
    """Separable atrous branch (also the decoder's units): ``atrous_convolution`` = :class:`SeparableConv2dASPP`."""

    def __init__(self, in_channels: int, out_channels: int, rate: int) -> None:
        super().__init__()
        self.atrous_convolution = SeparableConv2dASPP(in_channels, out_channels, dilation=rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.atrous_convolution(x)


class FeaturemapsToGraph(nn.Module):
    """Project a feature map onto graph nodes (``Featuremaps_to_Graph``).

    With ``X`` (B, HW, C): ``A = softmax_nodes(X @ pre_fea)`` (B, HW, N) and
    ``G = relu(A^T @ (X @ weight))`` (B, N, hidden). This is a *sum* over pixels, so node magnitudes grow with
    the image area (the original's behaviour; its weights were trained on 512x512 crops).
    """

    def __init__(self, input_channels: int, hidden: int, nodes: int) -> None:
        super().__init__()
        self.pre_fea = nn.Parameter(torch.empty(input_channels, nodes))
        self.weight = nn.Parameter(torch.empty(input_channels, hidden))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.pre_fea)
        nn.init.xavier_uniform_(self.weight)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, N, hidden)."""
        flat = features.flatten(2).transpose(1, 2)
        assignment = torch.softmax(flat @ self.pre_fea, dim=-1)
        return F.relu(assignment.transpose(1, 2) @ (flat @ self.weight))


class GraphConvolution(nn.Module):
    """``out = adj @ (X @ weight)`` (or ``X @ weight`` without adjacency), optionally rectified; no bias."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor, adj: torch.Tensor | None = None, relu: bool = True) -> torch.Tensor:
        """x (B, N, in), adj (N, N) or None -> (B, N, out)."""
        out = x @ self.weight
        if adj is not None:
            out = adj @ out
        return F.relu(out) if relu else out


class GraphTrans(nn.Module):
    """Inter-graph transfer (``Graph_trans``): ``relu(softmax_rows(relu(adj)) @ (X @ weight))``.

    ``adj`` (end_nodes, begin_nodes) is given at call time; the stored ``adj`` parameter only exists so that the
    checkpoint loads strictly and is never read. The original leaves ``weight`` uninitialised; here it is
    Xavier-initialised and ``adj`` zeroed.
    """

    def __init__(self, in_features: int, out_features: int, begin_nodes: int, end_nodes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.adj = nn.Parameter(torch.empty(end_nodes, begin_nodes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)
        nn.init.zeros_(self.adj)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """x (B, begin, in), adj (end, begin) -> (B, end, out)."""
        transfer = torch.softmax(F.relu(adj), dim=-1)
        return F.relu(transfer @ (x @ self.weight))


class GraphToFeaturemaps(nn.Module):
    """Project graph nodes back onto pixels (``Graph_to_Featuremaps_savemem``).

    For pixel feature ``f_p`` (C) and node ``g_n`` (hidden): ``s[p, n] = f_p . node_fea_for_res +
    g_n . node_fea_for_hidden``, softmax over ``n``, ``out_p = relu(sum_n softmax[p, n] (g_n @ weight))``.
    Computed as broadcast sums (B, HW, N) instead of the original's (B, HW, N, C) expansion: same values,
    far less memory. The node count comes from the input graph.
    """

    def __init__(self, input_channels: int, output_channels: int, hidden: int) -> None:
        super().__init__()
        self.node_fea_for_res = nn.Parameter(torch.empty(input_channels, 1))
        self.node_fea_for_hidden = nn.Parameter(torch.empty(hidden, 1))
        self.weight = nn.Parameter(torch.empty(hidden, output_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.node_fea_for_res)
        nn.init.xavier_uniform_(self.node_fea_for_hidden)
        nn.init.xavier_uniform_(self.weight)

    def forward(self, graph: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """graph (B, N, hidden), features (B, C, h, w) -> (B, output_channels, h, w)."""
        batch, _, height, width = features.shape
        flat = features.flatten(2).transpose(1, 2)
        scores = flat @ self.node_fea_for_res + (graph @ self.node_fea_for_hidden).transpose(1, 2)
        out = F.relu(torch.softmax(scores, dim=-1) @ (graph @ self.weight))
        return out.transpose(1, 2).reshape(batch, -1, height, width)


def similarity_transfer(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Feature-similarity transfer: ``softmax_rows(norm(target) @ norm(source)^T) @ source``.

    source (B, Ns, D), target (B, Nt, D) -> (B, Nt, D); ``norm`` is L2 normalisation of each node vector.
    """
    similarity = F.normalize(target, dim=-1) @ F.normalize(source, dim=-1).transpose(1, 2)
    return torch.softmax(similarity, dim=-1) @ source


def _skip_conv(channels: int) -> nn.Sequential:
    """The 1x1 conv (with bias) + ReLU skip branch of each head."""
    return nn.Sequential(nn.Conv2d(channels, channels, 1, bias=True), nn.ReLU())


class GraphonomyUniversal(nn.Module):
    """Graphonomy Universal model (``deeplab_xception_end2end_3d``, os 16, hidden 128) with the CIHP head.

    ``forward(x)`` maps a BGR image batch in [-1, 1], (B, 3, H, W) float32, to CIHP-20 logits (B, 20, H, W).
    The adjacency inputs live in non-persistent buffers (not in the state dict) built from
    :mod:`pipeline.parsing.graphs`; pass ``adjacency`` to override them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.xception_features = Xception65()
        self.aspp1 = ASPPPointwise(BACKBONE_CHANNELS, ASPP_CHANNELS)
        self.aspp2 = ASPPSeparable(BACKBONE_CHANNELS, ASPP_CHANNELS, ASPP_RATES[1])
        self.aspp3 = ASPPSeparable(BACKBONE_CHANNELS, ASPP_CHANNELS, ASPP_RATES[2])
        self.aspp4 = ASPPSeparable(BACKBONE_CHANNELS, ASPP_CHANNELS, ASPP_RATES[3])
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Conv2d(BACKBONE_CHANNELS, ASPP_CHANNELS, 1, bias=False),
            nn.BatchNorm2d(ASPP_CHANNELS),
            nn.ReLU(),
        )
        self.concat_projection_conv1 = nn.Conv2d(5 * ASPP_CHANNELS, ASPP_CHANNELS, 1, bias=False)
        self.concat_projection_bn1 = nn.BatchNorm2d(ASPP_CHANNELS)
        self.feature_projection_conv1 = nn.Conv2d(LOW_LEVEL_CHANNELS, LOW_LEVEL_PROJECTION_CHANNELS, 1, bias=False)
        self.feature_projection_bn1 = nn.BatchNorm2d(LOW_LEVEL_PROJECTION_CHANNELS)
        self.decoder = nn.Sequential(
            ASPPSeparable(ASPP_CHANNELS + LOW_LEVEL_PROJECTION_CHANNELS, GRAPH_INPUT_CHANNELS, 1),
            ASPPSeparable(GRAPH_INPUT_CHANNELS, GRAPH_INPUT_CHANNELS, 1),
        )
        self.semantic = nn.Conv2d(GRAPH_OUTPUT_CHANNELS, NUM_CIHP_NODES, 1)

        hidden = GRAPH_HIDDEN
        # Registration order follows the original so that state-dict order matches the checkpoint's.
        self.source_featuremap_2_graph = FeaturemapsToGraph(GRAPH_INPUT_CHANNELS, hidden, NUM_PASCAL_NODES)
        self.source_graph_conv1 = GraphConvolution(hidden, hidden)
        self.source_graph_conv2 = GraphConvolution(hidden, hidden)
        self.source_graph_conv3 = GraphConvolution(hidden, hidden)
        self.source_graph_2_fea = GraphToFeaturemaps(GRAPH_INPUT_CHANNELS, GRAPH_OUTPUT_CHANNELS, hidden)
        self.source_skip_conv = _skip_conv(GRAPH_INPUT_CHANNELS)
        self.source_semantic = nn.Conv2d(GRAPH_OUTPUT_CHANNELS, NUM_PASCAL_NODES, 1)
        self.middle_semantic = nn.Conv2d(GRAPH_OUTPUT_CHANNELS, NUM_ATR_NODES, 1)
        self.target_featuremap_2_graph = FeaturemapsToGraph(GRAPH_INPUT_CHANNELS, hidden, NUM_CIHP_NODES)
        self.target_graph_conv1 = GraphConvolution(hidden, hidden)
        self.target_graph_conv2 = GraphConvolution(hidden, hidden)
        self.target_graph_conv3 = GraphConvolution(hidden, hidden)
        self.target_graph_2_fea = GraphToFeaturemaps(GRAPH_INPUT_CHANNELS, GRAPH_OUTPUT_CHANNELS, hidden)
        self.target_skip_conv = _skip_conv(GRAPH_INPUT_CHANNELS)
        self.middle_featuremap_2_graph = FeaturemapsToGraph(GRAPH_INPUT_CHANNELS, hidden, NUM_ATR_NODES)
        self.middle_graph_conv1 = GraphConvolution(hidden, hidden)
        self.middle_graph_conv2 = GraphConvolution(hidden, hidden)
        self.middle_graph_conv3 = GraphConvolution(hidden, hidden)
        self.middle_graph_2_fea = GraphToFeaturemaps(GRAPH_INPUT_CHANNELS, GRAPH_OUTPUT_CHANNELS, hidden)
        self.middle_skip_conv = _skip_conv(GRAPH_INPUT_CHANNELS)
        self.transpose_graph_source2target = GraphTrans(hidden, hidden, NUM_PASCAL_NODES, NUM_CIHP_NODES)
        self.transpose_graph_target2source = GraphTrans(hidden, hidden, NUM_CIHP_NODES, NUM_PASCAL_NODES)
        self.transpose_graph_middle2source = GraphTrans(hidden, hidden, NUM_ATR_NODES, NUM_PASCAL_NODES)
        # Quirk: built with end_nodes = PASCAL count in the original (its stored adj is never used).
        self.transpose_graph_middle2target = GraphTrans(hidden, hidden, NUM_ATR_NODES, NUM_PASCAL_NODES)
        self.transpose_graph_source2middle = GraphTrans(hidden, hidden, NUM_PASCAL_NODES, NUM_ATR_NODES)
        self.transpose_graph_target2middle = GraphTrans(hidden, hidden, NUM_CIHP_NODES, NUM_ATR_NODES)
        concat = GRAPH_CONCAT_PARTS * hidden
        self.fc_graph_source = GraphConvolution(concat, hidden)
        self.fc_graph_target = GraphConvolution(concat, hidden)
        self.fc_graph_middle = GraphConvolution(concat, hidden)

        for name, array in graph_adjacency_arrays().items():
            self.register_buffer(name, torch.as_tensor(array, dtype=torch.float32), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random initialisation for tests and benchmarks (real use loads a checkpoint over it).

        Convolutions: Kaiming-normal (fan_in; linear gain for depthwise convs), biases 0; BatchNorm: weight 1,
        bias 0, running stats (0, 1); graph matrices: Xavier-uniform; the last BN of each residual branch is
        scaled by :data:`RANDOM_INIT_RESIDUAL_GAIN` so that a random model has O(1) activations and logits.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                depthwise = module.groups > 1 and module.groups == module.in_channels
                gain = "linear" if depthwise else "relu"  # no ReLU between depthwise and pointwise
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity=gain)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(
                module, (nn.BatchNorm2d, FeaturemapsToGraph, GraphConvolution, GraphTrans, GraphToFeaturemaps)
            ):
                module.reset_parameters()
        # Damp each residual branch so that activations stay O(1) through the 20 blocks.
        for module in self.modules():
            if isinstance(module, (XceptionBlock, EntryBlock2)):
                last = [layer for layer in module.rep if isinstance(layer, SeparableConv2dSame)][-1]
                nn.init.constant_(last.pointwise_bn.weight, RANDOM_INIT_RESIDUAL_GAIN)

    def adjacency(self) -> GraphAdjacency:
        """The adjacency buffers (on the model's device) as a :class:`GraphAdjacency`."""
        return GraphAdjacency(**{name: getattr(self, name) for name in graph_adjacency_arrays()})

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """DeepLab v3+ part: (B, 3, H, W) -> feature map F (B, 256, ceil(H/4), ceil(W/4))."""
        deep, low_level = self.xception_features(x)
        size = deep.shape[-2:]
        pooled = F.interpolate(self.global_avg_pool(deep), size=size, mode="bilinear", align_corners=True)
        aspp = torch.cat([self.aspp1(deep), self.aspp2(deep), self.aspp3(deep), self.aspp4(deep), pooled], dim=1)
        aspp = F.relu(self.concat_projection_bn1(self.concat_projection_conv1(aspp)))
        aspp = F.interpolate(aspp, size=low_level.shape[-2:], mode="bilinear", align_corners=True)
        low_level = F.relu(self.feature_projection_bn1(self.feature_projection_conv1(low_level)))
        return self.decoder(torch.cat([aspp, low_level], dim=1))

    def reason(self, features: torch.Tensor, adjacency: GraphAdjacency | None = None) -> torch.Tensor:
        """Three stages of joint graph reasoning; returns the final CIHP graph (B, 20, 128).

        features: F (B, 256, h, w). Concatenation order per graph (5 x 128 = 640), as in the original:
        [own, similarity(other1 -> own), transfer(other1 -> own), similarity(other2 -> own),
        transfer(other2 -> own)] with (other1, other2) = (source, middle) for the target graph,
        (target, middle) for the source graph and (source, target) for the middle graph.
        """
        adj = adjacency if adjacency is not None else self.adjacency()
        source = self.source_featuremap_2_graph(features)
        target = self.target_featuremap_2_graph(features)
        middle = self.middle_featuremap_2_graph(features)
        for _ in range(GRAPH_STAGES):
            # Weight sharing as in the original: conv1 modules every stage; ATR uses the CIHP conv.
            source = self.source_graph_conv1(source, adj.adj2_source)
            target = self.target_graph_conv1(target, adj.adj1_target)
            middle = self.target_graph_conv1(middle, adj.adj4_middle)

            source_to_target = self.transpose_graph_source2target(source, adj.adj3_transfer_s2t)
            source_to_middle = self.transpose_graph_source2middle(source, adj.adj5_transfer_s2m)
            target_to_source = self.transpose_graph_target2source(target, adj.adj3_transfer_t2s)
            target_to_middle = self.transpose_graph_target2middle(target, adj.adj6_transfer_t2m)
            middle_to_source = self.transpose_graph_middle2source(middle, adj.adj5_transfer_m2s)
            middle_to_target = self.transpose_graph_middle2target(middle, adj.adj6_transfer_m2t)

            new_source = torch.cat(
                [
                    source,
                    similarity_transfer(target, source),
                    target_to_source,
                    similarity_transfer(middle, source),
                    middle_to_source,
                ],
                dim=-1,
            )
            new_target = torch.cat(
                [
                    target,
                    similarity_transfer(source, target),
                    source_to_target,
                    similarity_transfer(middle, target),
                    middle_to_target,
                ],
                dim=-1,
            )
            new_middle = torch.cat(
                [
                    middle,
                    similarity_transfer(source, middle),
                    source_to_middle,
                    similarity_transfer(target, middle),
                    target_to_middle,
                ],
                dim=-1,
            )
            source = self.fc_graph_source(new_source)
            target = self.fc_graph_target(new_target)
            middle = self.fc_graph_middle(new_middle)
        return target

    def forward(self, x: torch.Tensor, adjacency: GraphAdjacency | None = None) -> torch.Tensor:
        """BGR image batch in [-1, 1] (B, 3, H, W) float32 -> CIHP logits (B, 20, H, W) float32."""
        features = self.encode(x)
        target_graph = self.reason(features, adjacency)
        fused = self.target_graph_2_fea(target_graph, features) + self.target_skip_conv(features)
        logits = self.semantic(fused)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=True)


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not match the Universal model (wrong file, wrong model or corrupted)."""


class CheckpointReadError(ValueError):
    """A checkpoint file could not be read as a tensor dictionary."""


def _format_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_KEYS_IN_ERROR])
    more = len(keys) - MAX_KEYS_IN_ERROR
    return f"[{shown}{f', ... and {more} more' if more > 0 else ''}]"


def _unwrap_state_dict(obj: Any, source: str) -> Mapping[str, torch.Tensor]:
    """Accept a bare state dict or one nested under ``state_dict`` / ``model``; strip ``module.`` prefixes."""
    if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for nested in ("state_dict", "model"):
            if isinstance(obj.get(nested), Mapping):
                obj = obj[nested]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointReadError(
            f"{source}: expected a dict of tensors (a Graphonomy state dict), got {type(obj).__name__}; "
            "use universal_trained.pth from the Graphonomy README"
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointReadError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
        state[key.removeprefix(DATA_PARALLEL_PREFIX)] = value
    return state


def read_state_dict(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a checkpoint file as ``{key: tensor}`` without the ``module.`` prefix (``weights_only`` unpickling).

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointReadError: the file is not a torch-saved tensor dictionary.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Graphonomy checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # any unpickling failure gets the same actionable message
        raise CheckpointReadError(
            f"{path}: cannot read as a torch checkpoint of plain tensors "
            f"({type(error).__name__}: {(str(error).splitlines() or [''])[0]}); "
            "expected Graphonomy's universal_trained.pth (a state dict)"
        ) from error
    return dict(_unwrap_state_dict(obj, str(path)))


def checkpoint_mismatches(
    model: nn.Module, state: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """Compare a state dict (``num_batches_tracked`` ignored) with ``model.state_dict()``.

    Returns:
        (missing keys, unexpected keys, shape mismatches as ``"key: file (..) vs model (..)"``).
    """
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith(BN_COUNTER_SUFFIX)}
    given = {k: v for k, v in state.items() if not k.endswith(BN_COUNTER_SUFFIX)}
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = [
        f"{k}: file {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in given and given[k].shape != expected[k].shape
    ]
    return missing, unexpected, mismatched


def load_universal_state_dict(model: GraphonomyUniversal, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` with ``strict=True`` after dropping only ``num_batches_tracked``.

    The model's own BatchNorm counters are kept (the released PyTorch 0.4 checkpoint has none). Any other
    difference raises :class:`CheckpointMismatchError` listing the missing, unexpected and mis-shaped keys and
    naming ``source``.
    """
    state = {k.removeprefix(DATA_PARALLEL_PREFIX): v for k, v in state.items()}
    missing, unexpected, mismatched = checkpoint_mismatches(model, state)
    if missing or unexpected or mismatched:
        hint = (
            " It looks like Graphonomy's CIHP *transfer* model (inference.pth), which has a different head;"
            if any(k.startswith(("transpose_graph.", "fc_graph.")) for k in unexpected)
            else ""
        )
        raise CheckpointMismatchError(
            f"{source} is not a Graphonomy Universal (deeplab_xception_end2end_3d) checkpoint:"
            f" {len(missing)} missing key(s) {_format_keys(missing)};"
            f" {len(unexpected)} unexpected key(s) {_format_keys(unexpected)};"
            f" {len(mismatched)} shape mismatch(es) {_format_keys(mismatched)}.{hint}"
            " Use universal_trained.pth from the Graphonomy README ('Universal trained model')"
            " or re-download it if it is truncated."
        )
    full = {k: v for k, v in state.items() if not k.endswith(BN_COUNTER_SUFFIX)}
    full.update({k: v for k, v in model.state_dict().items() if k.endswith(BN_COUNTER_SUFFIX)})
    model.load_state_dict(full, strict=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> GraphonomyUniversal:
    """Build :class:`GraphonomyUniversal`, load ``path`` strictly (see :func:`load_universal_state_dict`), eval mode.

    ``map_location`` (a device) is where the tensors are read to and where the returned model lives.
    """
    state = read_state_dict(path, map_location)
    model = GraphonomyUniversal()
    load_universal_state_dict(model, state, source=str(path))
    return model.to(torch.device(map_location)).eval()


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (buffers excluded)."""
    return sum(math.prod(p.shape) for p in model.parameters())


def write_random_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """Save a randomly initialised model like the released file (bare state dict, no BN counters; ~160 MB).

    For tests and demo DAG runs of the ``graphonomy`` backend: the weights are random, so the labels are too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = GraphonomyUniversal()
    finally:
        torch.random.set_rng_state(generator_state)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(BN_COUNTER_SUFFIX)}
    torch.save(state, path)
    return path
