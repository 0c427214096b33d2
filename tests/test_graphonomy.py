"""Graphonomy Universal parser: checkpoint compatibility, graph constants, network quirks and the TTA.

All tests use a randomly initialised model (no weights can be downloaded) on images of at most ~100 px.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.parsing import graphs
from pipeline.parsing.checkpoint import (
    CHECKPOINT_CONFIG_KEY,
    CHECKPOINT_FILE_NAME,
    GRAPHONOMY_URL,
    MissingCheckpointError,
    check_checkpoint,
)
from pipeline.parsing.graphonomy import (
    CheckpointMismatchError,
    FeaturemapsToGraph,
    GraphonomyUniversal,
    GraphToFeaturemaps,
    XceptionBlock,
    count_parameters,
    load_checkpoint,
    write_random_checkpoint,
)
from pipeline.parsing.infer import GraphonomyParser, preprocess, select_scales
from pipeline.parsing.labels import PALETTE, flip_label_map, flip_permutation

SHARED_REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"
KEYS_FILE = SHARED_REFERENCE / "graphonomy_universal_checkpoint_keys.txt"
CONSTANTS_FILE = SHARED_REFERENCE / "graphonomy_graph_constants.txt"
#: Facts from the reference study: checkpoint tensors, BN counters, parameter count of the Universal model.
CHECKPOINT_KEYS = 781
BN_COUNTERS = 146
UNIVERSAL_PARAMETERS = 41_960_775


def _state_without_counters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def _random_image(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random RGB image (uint8) with a left/right asymmetry."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR)).copy()
    image[:, : width // 3] //= 2
    return image


@pytest.fixture(scope="module")
def model() -> GraphonomyUniversal:
    torch.manual_seed(0)
    return GraphonomyUniversal().eval()


@pytest.fixture(scope="module")
def checkpoint(model: GraphonomyUniversal, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random model saved like the released file: bare state dict without BN counters."""
    path = tmp_path_factory.mktemp("graphonomy") / CHECKPOINT_FILE_NAME
    torch.save(_state_without_counters(model), path)
    return path


# --- checkpoint compatibility ------------------------------------------------------------------------------------


def test_state_dict_equals_reference_keys_and_shapes(model: GraphonomyUniversal) -> None:
    if not KEYS_FILE.is_file():
        pytest.skip(f"reference key list {KEYS_FILE} absent (../shared not checked out beside the clone)")
    reference: dict[str, tuple[int, ...]] = {}
    for line in KEYS_FILE.read_text().splitlines():
        if line.strip():
            key, shape, _dtype = line.split("\t")
            reference[key] = tuple(ast.literal_eval(shape))
    state = model.state_dict()
    mine = {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(reference) == CHECKPOINT_KEYS
    assert sorted(set(reference) - set(mine)) == []
    assert sorted(set(mine) - set(reference)) == []
    assert {k: s for k, s in mine.items() if reference[k] != s} == {}
    assert sum(k.endswith("num_batches_tracked") for k in state) == BN_COUNTERS
    assert count_parameters(model) == UNIVERSAL_PARAMETERS
    # The adjacency inputs are buffers that must stay out of the state dict.
    assert not any(k.startswith("adj") for k in state)


def test_strict_load_round_trip_with_module_prefix(model: GraphonomyUniversal, tmp_path: Path) -> None:
    state = _state_without_counters(model)
    assert len(state) == CHECKPOINT_KEYS
    path = tmp_path / "wrapped.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    loaded = load_checkpoint(path, map_location="cpu")
    assert not loaded.training
    loaded_state = loaded.state_dict()
    assert all(torch.equal(loaded_state[k], v) for k, v in state.items())


def test_missing_graph_key_is_named(model: GraphonomyUniversal, tmp_path: Path) -> None:
    state = _state_without_counters(model)
    del state["transpose_graph_source2target.weight"]
    path = tmp_path / "missing_key.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "transpose_graph_source2target.weight" in message
    assert "1 missing key(s)" in message and "0 unexpected" in message
    assert str(path) in message and CHECKPOINT_FILE_NAME in message


def test_wrong_shape_and_unexpected_key_are_named(model: GraphonomyUniversal, tmp_path: Path) -> None:
    state = _state_without_counters(model)
    state["semantic.weight"] = torch.zeros(19, 256, 1, 1)
    state["transpose_graph.weight"] = torch.zeros(128, 128)  # a key of the CIHP transfer model
    path = tmp_path / "wrong_shape.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "semantic.weight: file (19, 256, 1, 1) vs model (20, 256, 1, 1)" in message
    assert "1 unexpected key(s) [transpose_graph.weight]" in message
    assert "transfer" in message and str(path) in message


# --- graph constants -----------------------------------------------------------------------------------------------


def test_preprocess_adj_hand_values() -> None:
    pascal = graphs.preprocess_adj(graphs.PASCAL_GRAPH)
    # Node 0 has only a self-loop: A+I = 2 on the diagonal, degree 2 -> 1.
    np.testing.assert_allclose(np.diag(pascal), [1, 2 / 3, 2 / 5, 1 / 2, 2 / 3, 1 / 2, 2 / 3])
    assert pascal[1, 2] == pytest.approx(1 / math.sqrt(3 * 5))
    cihp = graphs.preprocess_adj(graphs.CIHP_GRAPH)
    np.testing.assert_array_equal(cihp[0], np.eye(20)[0])  # isolated Background
    np.testing.assert_allclose(cihp, cihp.T)
    assert cihp[1, 13] == pytest.approx(1 / math.sqrt(3 * 6))  # Hat (deg 2+1) - Face (deg 5+1)


def test_graph_constants_match_reference_file() -> None:
    if not CONSTANTS_FILE.is_file():
        pytest.skip(f"reference constants {CONSTANTS_FILE} absent (../shared not checked out beside the clone)")
    sections: dict[str, str] = {}
    for block in CONSTANTS_FILE.read_text().split("\n## ")[1:]:
        head, body = block.split("\n", 1)
        sections[head.split()[0]] = body.strip()

    def array(name: str) -> np.ndarray:
        return np.array(ast.literal_eval(sections[name].removeprefix("array(").removesuffix(")")))

    for name, graph in (("pascal", graphs.PASCAL_GRAPH), ("cihp", graphs.CIHP_GRAPH), ("atr", graphs.ATR_GRAPH)):
        listed = {int(k): tuple(v) for k, v in ast.literal_eval(sections[f"{name}_graph"]).items()}
        assert listed == dict(graph)
        np.testing.assert_allclose(graphs.preprocess_adj(graph), array(f"preprocess_adj({name}_graph)"), atol=1e-8)
    np.testing.assert_array_equal(graphs.CIHP2PASCAL_NLP_ADJ, array("cihp2pascal_nlp_adj"))
    np.testing.assert_array_equal(graphs.PASCAL2ATR_NLP_ADJ, array("pascal2atr_nlp_adj"))
    np.testing.assert_array_equal(graphs.CIHP2ATR_NLP_ADJ, array("cihp2atr_nlp_adj"))


def test_adjacency_inputs_shapes_and_orientation() -> None:
    adj = graphs.build_graph_adjacency()
    shapes = {k: tuple(v.shape) for k, v in adj.as_dict().items()}
    assert shapes == {
        "adj1_target": (20, 20),
        "adj2_source": (7, 7),
        "adj3_transfer_s2t": (20, 7),
        "adj3_transfer_t2s": (7, 20),
        "adj4_middle": (18, 18),
        "adj5_transfer_s2m": (18, 7),
        "adj5_transfer_m2s": (7, 18),
        "adj6_transfer_t2m": (18, 20),
        "adj6_transfer_m2t": (20, 18),
    }
    assert adj.adj3_transfer_s2t.dtype == torch.float32
    # Row = receiving node: CIHP Face (13) <- PASCAL Head (1).
    assert adj.adj3_transfer_s2t[13, 1].item() == pytest.approx(0.63882953)
    assert adj.adj6_transfer_m2t[19, 10].item() == pytest.approx(1.0)  # CIHP RightShoe <- ATR Right-shoe


# --- network quirks ------------------------------------------------------------------------------------------------


def test_block_identity_skip_sees_relu_of_input() -> None:
    torch.manual_seed(1)
    block = XceptionBlock(8, 8, reps=3).eval()
    inp = torch.randn(2, 8, 9, 11)
    assert (inp < 0).any()
    out = block(inp)
    expected = block.rep(inp.clone()) + torch.relu(inp)
    torch.testing.assert_close(out, expected)
    # The quirk matters: the naive residual rep(inp) + inp differs wherever inp < 0.
    assert not torch.allclose(out, block.rep(inp.clone()) + inp)


def test_block_conv_skip_sees_relu_of_input() -> None:
    torch.manual_seed(2)
    block = XceptionBlock(8, 16, reps=2, stride=2).eval()
    assert [type(m).__name__ for m in block.rep][1::2] == ["SeparableConv2dSame"] * 3
    inp = torch.randn(1, 8, 9, 11)
    out = block(inp)
    assert out.shape == (1, 16, 5, 6)
    torch.testing.assert_close(out, block.rep(inp.clone()) + block.skipbn(block.skip(torch.relu(inp))))


def test_featuremap_projection_is_a_pixel_sum() -> None:
    torch.manual_seed(3)
    project = FeaturemapsToGraph(16, 8, nodes=5)
    features = torch.randn(1, 16, 6, 7)
    tiled = torch.cat([features, features], dim=-1)  # same pixels twice -> twice the node features
    torch.testing.assert_close(project(tiled), 2 * project(features))


def test_graph_to_featuremaps_matches_expanded_formula() -> None:
    """The broadcast implementation equals the original's per-(pixel, node) expansion."""
    torch.manual_seed(4)
    project = GraphToFeaturemaps(input_channels=6, output_channels=5, hidden=4)
    graph = torch.randn(2, 3, 4)  # (B, N, hidden)
    features = torch.randn(2, 6, 2, 3)  # (B, C, h, w)
    flat = features.flatten(2).transpose(1, 2)  # (B, HW, C)
    pairs = torch.cat(
        [flat[:, :, None, :].expand(-1, -1, 3, -1), graph[:, None, :, :].expand(-1, 6, -1, -1)], dim=-1
    )  # (B, HW, N, C + hidden)
    node_vector = torch.cat([project.node_fea_for_res, project.node_fea_for_hidden])[:, 0]
    attention = torch.softmax(pairs @ node_vector, dim=-1)  # (B, HW, N)
    expected = torch.relu(torch.einsum("bpn,bnc->bpc", attention, graph @ project.weight))
    expected = expected.transpose(1, 2).reshape(2, 5, 2, 3)
    torch.testing.assert_close(project(graph, features), expected)


def test_cihp_logits_ignore_unused_modules(model: GraphonomyUniversal) -> None:
    x = preprocess(_random_image(40, 48, seed=4))
    with torch.inference_mode():
        reference = model(x)
    assert reference.shape == (1, 20, 40, 48)

    def logits_after(perturb: str) -> torch.Tensor:
        parameter = model.get_parameter(perturb)
        saved = parameter.detach().clone()
        with torch.no_grad():
            parameter.add_(torch.randn_like(parameter))
        try:
            with torch.inference_mode():
                return model(x)
        finally:
            with torch.no_grad():
                parameter.copy_(saved)

    for unused in ("transpose_graph_source2target.adj", "middle_graph_conv1.weight", "target_graph_conv2.weight"):
        torch.testing.assert_close(logits_after(unused), reference, msg=unused)
    for used in ("transpose_graph_middle2target.weight", "fc_graph_middle.weight", "source_graph_conv1.weight"):
        assert not torch.allclose(logits_after(used), reference), used


# --- preprocessing and test-time augmentation ----------------------------------------------------------------------


def test_preprocess_bgr_order_and_range() -> None:
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    image[0, 0] = (255, 0, 51)  # R, G, B
    image[1, 2] = (0, 255, 255)
    x = preprocess(image)
    assert x.shape == (1, 3, 2, 3) and x.dtype == torch.float32
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([51 * 2 / 255 - 1, -1.0, 1.0]))  # B, G, R
    torch.testing.assert_close(x[0, :, 1, 2], torch.tensor([1.0, 1.0, -1.0]))
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    assert preprocess(np.zeros((45, 61, 3), np.uint8), scale=0.5).shape == (1, 3, 22, 30)


def test_scale_rule_for_large_images() -> None:
    default = (0.5, 0.75, 1.0, 1.5)
    assert select_scales(1080, 1080) == default
    assert select_scales(1081, 640) == (1.0,)
    assert select_scales(480, 1920, scales=(0.5, 2.0)) == (1.0,)
    assert select_scales(100, 100, scales=[0.75]) == (0.75,)
    with pytest.raises(ValueError, match="positive"):
        select_scales(10, 10, scales=[0.0])


def test_flip_equivariance_and_odd_output_size(model: GraphonomyUniversal) -> None:
    parser = GraphonomyParser(model, device="cpu", scales=(0.75, 1.0), flip=True)
    image = _random_image(45, 61, seed=5)
    labels, probs = parser.parse_with_probs(image)
    assert labels.shape == (45, 61) and labels.dtype == np.uint8
    assert probs.shape == (20, 45, 61)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(labels, probs.argmax(0))
    assert parser.last_stats is not None and parser.last_stats.scales == (0.75, 1.0)
    assert parser.last_stats.peak_memory_bytes > 0

    flipped_labels, flipped_probs = parser.parse_with_probs(np.ascontiguousarray(image[:, ::-1]))
    np.testing.assert_allclose(flipped_probs, probs[flip_permutation()][:, :, ::-1], atol=1e-6)
    logits = parser.fused_logits(image).numpy()
    flipped_logits = parser.fused_logits(np.ascontiguousarray(image[:, ::-1])).numpy()
    np.testing.assert_allclose(flipped_logits, logits[flip_permutation()][:, :, ::-1], atol=1e-5)
    top2 = np.sort(logits, axis=0)[-2:]
    decided = top2[1] - top2[0] > 1e-5  # labels may differ only at exact (float-noise) ties
    assert decided.mean() > 0.99
    np.testing.assert_array_equal(flipped_labels[decided], flip_label_map(labels)[decided])
    # Left/right labels must occur for the channel swap to be exercised.
    assert np.isin(labels, [14, 15, 16, 17, 18, 19]).mean() > 0.01
    # Image and mirror as one batch of 2 or as two passes: the same fused logits.
    assert not parser.flip_in_batch  # CPU default
    batched = GraphonomyParser(model, device="cpu", scales=(0.75, 1.0), flip_in_batch=True)
    np.testing.assert_allclose(batched.fused_logits(image).numpy(), logits, atol=1e-5)


def test_without_flip_single_scale_equals_network_argmax(model: GraphonomyUniversal) -> None:
    image = _random_image(33, 40, seed=6)
    parser = GraphonomyParser(model, device="cpu", scales=(1.0,), flip=False)
    with torch.inference_mode():
        direct = model(preprocess(image))[0].argmax(0).numpy()
    np.testing.assert_array_equal(parser.parse(image), direct)


def test_missing_checkpoint_message(tmp_path: Path) -> None:
    for configured in (None, tmp_path / "nowhere" / CHECKPOINT_FILE_NAME):
        with pytest.raises(MissingCheckpointError) as info:
            check_checkpoint(configured, CHECKPOINT_CONFIG_KEY)
        assert isinstance(info.value, FileNotFoundError)
        message = str(info.value)
        assert CHECKPOINT_CONFIG_KEY in message
        assert CHECKPOINT_FILE_NAME in message
        assert GRAPHONOMY_URL in message and "Google Drive" in message
    with pytest.raises(MissingCheckpointError, match="prior.my_key"):
        GraphonomyParser(tmp_path / "absent.pth", device="cpu", config_key="prior.my_key")


def test_write_random_checkpoint_is_seeded_and_loads(model: GraphonomyUniversal, tmp_path: Path) -> None:
    path = write_random_checkpoint(tmp_path / "random" / CHECKPOINT_FILE_NAME, seed=0)
    state = torch.load(path, weights_only=True)
    assert len(state) == CHECKPOINT_KEYS  # no BatchNorm counters, like the released file
    reference = model.state_dict()  # the module fixture is GraphonomyUniversal() under seed 0 too
    assert all(torch.equal(reference[k], v) for k, v in state.items())
    assert isinstance(load_checkpoint(path), GraphonomyUniversal)


def test_cli_writes_palette_pngs(checkpoint: Path, tmp_path: Path) -> None:
    from pipeline.parsing.__main__ import main

    image = _random_image(37, 50, seed=7)
    source = tmp_path / "person.jpg"
    Image.fromarray(image).save(source, quality=95)
    out = tmp_path / "labels"
    assert (
        main([str(source), "--checkpoint", str(checkpoint), "--out", str(out), "--scales", "1.0", "--device", "cpu"])
        == 0
    )
    written = Image.open(out / "person.png")
    assert written.mode == "P" and written.size == (50, 37)
    palette = np.array(written.getpalette()[: 3 * len(PALETTE)], dtype=np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(palette, PALETTE)
    labels = np.asarray(written)
    # The CLI (strict load of the saved checkpoint + TTA) gives what the in-memory parser gives.
    rgb = np.asarray(Image.open(source).convert("RGB"))
    reference = GraphonomyParser(load_checkpoint(checkpoint), device="cpu", scales=(1.0,)).parse(rgb)
    np.testing.assert_array_equal(labels, reference)
