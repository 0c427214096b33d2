"""DSR losses on rendered semantic-prior images (paper §3, Eq. 2–4) and the Table 1 ablation variants.

All functions take *rendered* tensors (from :func:`pipeline.render.soft.render_semantics`) and per-sample
targets, so they do not depend on the renderer. Inputs are in the 224-px training crop (any size works),
row 0 = top.

Per-sample validity and batch reduction
---------------------------------------
The paper computes the DSR terms "per individual sample to avoid calculating for samples that do not have a
valid segmentation mask. In such cases, the loss is set to zero" (§4, Implementation details). Every function
therefore takes ``valid`` (B,) and returns ``(loss, n_valid)``: invalid samples contribute exactly 0 and
``n_valid`` (a 0-d int64 tensor, no host sync) is reported in the logs. ``reduction`` selects the batch mean:

* ``"valid_mean"`` (default): sum over valid samples / max(n_valid, 1) — the loss of the samples that have
  masks, so its scale does not depend on how many samples in the batch lack one.
* ``"batch_mean"``: sum / B — the official code's ``loss.mean()`` with skipped samples as zeros
  (../shared/reference/DSR_SPIN_EFT_NOTES.md A.6 "Batch reduction").

``valid_pixels`` (B, H, W) bool, where accepted, marks the pixels whose target is *known*: inside the
original image after cropping/rotation (not padding) and inside a sample that has a mask at all. Pixels
outside the keypoint box are *known background* (the mask cleaning sets them to Background on purpose,
DESIGN §4.7), so they stay valid.

Variants (:data:`DSR_LOSSES`, :func:`get_dsr_loss`)
---------------------------------------------------
``dsr_mc``      DSR-MC, image-level soft IoU (Eq. 3) of the rendered summed prior of the valid MC labels.
``dsr_c``       DSR-C, NLL (Eq. 4) of the ε-normalised rendered class distribution.
``dsr_fb``      DSR-FB, full-body silhouette vs the person mask (soft IoU by default).
``soft_distm``  soft-DistM (Eq. 2) of a rendered image vs a binary mask.
``mvp``         DSR-MVP: IoU of the image rendered with the *argmax* (one label per face) prior.

The official code's choices (../shared/reference/DSR_SPIN_EFT_NOTES.md A.5–A.6), for the ``official`` ablation
rows: ``dsr_mc_loss(rowwise=True)`` (row-wise soft IoU), ``dsr_c_loss(ce_on_probs=True)`` (cross-entropy with
log-softmax on top of the rendered probabilities) and :func:`official_class_ratio_weights` (per-class
pixel-ratio weights).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

#: ε in the soft-IoU denominator (the official ``neg_iou_loss``); only matters for empty image pairs.
IOU_EPS: float = 1e-6
#: ε added to every class channel before normalising the rendered class distribution (DSR-C). It is the
#: "uniform" mass of a pixel: where nothing is rendered (Σ_k R_k = 0) the distribution is uniform (NLL =
#: log C); where the body is rendered (Σ_k R_k ≈ coverage ≈ 1) it is ≈ the prior; a class with zero prior
#: costs at most −log(ε / (1 + Cε)) ≈ 6.9 instead of ∞.
DSR_C_EPS: float = 1e-3
#: ε in the soft-DistM denominator ``(Σ R)^{3/2} + ε`` (the official DistM loss).
DISTM_EPS: float = 1e-6
#: Exponent of the soft-DistM normaliser (Eq. 2).
DISTM_POWER: float = 1.5
#: Clamp of the silhouette in the per-pixel binary cross-entropy of DSR-FB (``metric="bce"``).
BCE_EPS: float = 1e-6
#: Threshold that binarises a rendered image for the hard IoU *metric* (:func:`hard_iou`, logging only).
HARD_IOU_THRESHOLD: float = 0.5
#: The official ``get_class_ratio``'s threshold: classes with at most this many pixels of a 224-pixel crop get
#: weight 0 (notes A.5).
OFFICIAL_CLASS_MIN_PIXELS: int = 60
#: Crop side at which :data:`OFFICIAL_CLASS_MIN_PIXELS` is counted.
OFFICIAL_CROP_SIZE: int = 224

Reduction = Literal["valid_mean", "batch_mean"]
#: Allowed values of ``reduction``.
REDUCTIONS: tuple[str, ...] = ("valid_mean", "batch_mean")
FBMetric = Literal["soft_iou", "bce", "soft_distm"]
#: Allowed values of :func:`dsr_fb_loss`'s ``metric``.
FB_METRICS: tuple[str, ...] = ("soft_iou", "bce", "soft_distm")


# ----------------------------------------------------------------------------------------------- helpers
def _check_image_batch(name: str, image: torch.Tensor, like: torch.Tensor) -> None:
    if image.shape != like.shape:
        raise ValueError(f"{name} must have shape {tuple(like.shape)} (B, H, W), got {tuple(image.shape)}")


def _check_valid(valid: torch.Tensor, batch: int) -> torch.Tensor:
    if valid.shape != (batch,):
        raise ValueError(f"valid must be a (B,) = ({batch},) flag tensor, got shape {tuple(valid.shape)}")
    return valid.bool()


def _zero_invalid(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Replace the inputs of invalid samples by zeros, so that not even a NaN there reaches the loss or its
    gradient (masking only the output would still back-propagate ``0 · NaN``)."""
    keep = valid.reshape(-1, *([1] * (x.ndim - 1)))
    return torch.where(keep, x, torch.zeros_like(x))


def _reduce(per_sample: torch.Tensor, valid: torch.Tensor, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero invalid samples (without letting their NaN/inf leak) and average; returns ``(loss, n_valid)``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; allowed values: {', '.join(REDUCTIONS)}")
    per_sample = torch.where(valid, per_sample, torch.zeros_like(per_sample))
    n_valid = valid.sum()
    denom = n_valid.clamp_min(1) if reduction == "valid_mean" else per_sample.new_tensor(float(per_sample.shape[0]))
    return per_sample.sum() / denom.to(per_sample.dtype), n_valid


def _apply_pixel_mask(
    rendered: torch.Tensor, mask: torch.Tensor, valid_pixels: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    mask = mask.to(rendered.dtype)
    if valid_pixels is None:
        return rendered, mask
    _check_image_batch("valid_pixels", valid_pixels, rendered)
    keep = valid_pixels.to(rendered.dtype)
    return rendered * keep, mask * keep


def soft_iou(rendered: torch.Tensor, mask: torch.Tensor, eps: float = IOU_EPS) -> torch.Tensor:
    """Image-level soft IoU per sample: ``Σ(P·G) / (Σ(P + G − P·G) + ε)`` over all pixels.

    Args:
        rendered: (B, H, W) float in [0, 1].
        mask: (B, H, W) float/bool in {0, 1} (a soft target in [0, 1] also works).

    Returns:
        (B,) soft IoU in [0, 1].
    """
    inter = (rendered * mask).sum(dim=(-2, -1))
    union = (rendered + mask - rendered * mask).sum(dim=(-2, -1))
    return inter / (union + eps)


def official_rowwise_soft_iou_loss(rendered: torch.Tensor, mask: torch.Tensor, eps: float = IOU_EPS) -> torch.Tensor:
    """The official DSR ``neg_iou_loss`` as it runs on a 2-D image: a **bug** kept only for comparison.

    ``dims=(1,)`` on an (H, W) image sums within each row, so the official loss is ``1 − mean_rows IoU_row``;
    rows where both images are empty count as IoU 0, so a perfect match does not give 0 (notes A.6).

    Args:
        rendered, mask: (B, H, W).

    Returns:
        (B,) ``1 − (1/H) Σ_rows Σ_x P·G / (Σ_x (P + G − P·G) + ε)``.
    """
    mask = mask.to(rendered.dtype)
    inter = (rendered * mask).sum(dim=-1)
    union = (rendered + mask - rendered * mask).sum(dim=-1)
    return 1.0 - (inter / (union + eps)).mean(dim=-1)


def hard_iou(rendered: torch.Tensor, mask: torch.Tensor, threshold: float = HARD_IOU_THRESHOLD) -> torch.Tensor:
    """Binary IoU of ``rendered > threshold`` vs ``mask`` per sample (a metric for logs: no gradient).

    Returns:
        (B,) float IoU; 1 where both are empty.
    """
    pred = rendered.detach() > threshold
    gt = mask.bool()
    inter = (pred & gt).sum(dim=(-2, -1)).to(rendered.dtype)
    union = (pred | gt).sum(dim=(-2, -1)).to(rendered.dtype)
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def distance_to_mask(mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Euclidean distance (pixels) from every pixel to the nearest mask pixel; 0 inside the mask (Eq. 2's
    ``d(G)``, the official ``distance_transform_edt(1 − M)``).

    Runs on the CPU with SciPy: compute it in the data loader and pass it as ``distance``.

    Args:
        mask: (B, H, W) or (H, W) binary.

    Returns:
        float32 tensor of the same shape, on the CPU. An empty mask gives all zeros (such samples are invalid).
    """
    from scipy.ndimage import (
        distance_transform_edt,  # local: SciPy only needed by this variant
    )

    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    batched = arr.reshape((-1, *arr.shape[-2:])).astype(bool)
    out = np.zeros(batched.shape, dtype=np.float32)
    for i, m in enumerate(batched):
        if m.any():
            out[i] = distance_transform_edt(~m)
    return torch.from_numpy(out.reshape(arr.shape))


# ------------------------------------------------------------------------------------------------- losses
def dsr_mc_loss(
    rendered: torch.Tensor,
    mask_mc: torch.Tensor,
    valid: torch.Tensor,
    *,
    valid_pixels: torch.Tensor | None = None,
    eps: float = IOU_EPS,
    reduction: Reduction = "valid_mean",
    rowwise: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DSR-MC (Eq. 3): ``1 − Σ(P·G) / Σ(P + G − P·G)`` per sample (image-level soft IoU), averaged.

    Eq. 3 prints the IoU itself; as a loss it is ``1 − IoU`` (a perfect render gives 0, a disjoint one 1). The
    sums run over the whole image, not per row (the official row-wise version is a bug, see
    :func:`official_rowwise_soft_iou_loss`).

    Args:
        rendered: (B, H, W) float in [0, 1]: the rendered prior summed over the sample's valid MC labels.
        mask_mc: (B, H, W) {0, 1}: union of the valid MC labels' pixels (LeftArm, RightArm, LeftShoe, RightShoe,
            Face with ≥ 60 px each).
        valid: (B,) bool: the sample has at least one valid MC label.
        valid_pixels: optional (B, H, W) bool: pixels with a known target (see module doc); others are ignored.
        eps: denominator guard.
        reduction: ``"valid_mean"`` or ``"batch_mean"`` (module doc).
        rowwise: the official code's row-wise soft IoU (:func:`official_rowwise_soft_iou_loss`, a bug kept for
            the ``official`` ablation row) instead of Eq. 3.

    Returns:
        ``(loss, n_valid)``: 0-d float tensor and 0-d int64 count of valid samples.
    """
    _check_image_batch("mask_mc", mask_mc, rendered)
    valid = _check_valid(valid, rendered.shape[0])
    p, g = _apply_pixel_mask(_zero_invalid(rendered, valid), mask_mc, valid_pixels)
    per_sample = official_rowwise_soft_iou_loss(p, g, eps) if rowwise else 1.0 - soft_iou(p, g, eps)
    return _reduce(per_sample, valid, reduction)


def dsr_c_loss(
    rendered: torch.Tensor,
    class_map: torch.Tensor,
    valid_pixels: torch.Tensor,
    eps: float = DSR_C_EPS,
    *,
    valid: torch.Tensor | None = None,
    class_weights: torch.Tensor | None = None,
    reduction: Reduction = "valid_mean",
    check_labels: bool = True,
    ce_on_probs: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DSR-C (Eq. 4): NLL of the rendered class distribution at the target class, mean over valid pixels.

    Per pixel the rendered class channels ``R_k`` (the prior summed over each DSR-C class's CIHP labels,
    background 0 off the body) are normalised with an ε guard,
    ``y_k = (R_k + ε) / (Σ_j R_j + C·ε)``, and the loss is ``−log y_{class(pixel)}``. On the body this is the
    prior's class distribution; off the body it is uniform (every class ``1/C``), so covering a pixel is
    rewarded when the prior agrees with its class (e.g. a shirt face on an UpperClothes pixel) and penalised
    when it does not (any face on a Background pixel: the prior's background probability is small).

    **Background pixels count** (decision): Eq. 4 sums over every pixel of the W×H image and the official code
    uses all 224² pixels (background included, notes A.6); they are what keeps the body *inside* the clothing
    ("DSR-C ensures that the rendered body lies within the clothing boundaries", Fig. 3), and the Background
    class exists in Table I for exactly this. Only unknown pixels (``valid_pixels`` False) are dropped.

    Unlike the official code (cross-entropy = log-softmax *on top of* the rendered probabilities, notes A.6),
    the rendered values are normalised directly, as the issue asks; the paper's "log softmax for numerical
    stability" is served by computing ``log(R_k + ε) − log(Σ_j R_j + Cε)``.

    Per sample the NLL is averaged over its valid pixels (optionally weighted by ``class_weights`` of the pixel's
    class, the official ``CrossEntropyLoss(weight=w)`` weighted mean); samples are then reduced like the other
    DSR terms. A sample is valid when ``valid`` (if given) is set and it has at least one valid pixel.

    Args:
        rendered: (B, C, H, W) float ≥ 0, per-class rendered prior (C = 4 for Table I's classes).
        class_map: (B, H, W) int64 class ids in [0, C).
        valid_pixels: (B, H, W) bool, known-target pixels (module doc).
        eps: ε of the normalisation (:data:`DSR_C_EPS`).
        valid: optional (B,) bool sample flags (e.g. the paper skips samples without a valid MC label).
        class_weights: optional (C,) or (B, C) per-class pixel weights (None = Eq. 4's unweighted mean).
        reduction: ``"valid_mean"`` or ``"batch_mean"``.
        check_labels: verify the class ids (one host sync; turn off once the data loader guarantees them).
        ce_on_probs: the official code's loss instead of Eq. 4: ``nn.CrossEntropyLoss`` with the rendered
            probabilities as *logits*, ``−log softmax_k(R)_{class} = logsumexp_k R_k − R_class`` (``eps`` unused).
            The rendered values lie in [0, 1], so the softmax is nearly flat: the per-pixel loss stays within
            ``log C ± 1`` (uniform ``log C`` off the body) and its gradient is weak.

    Returns:
        ``(loss, n_valid)``: 0-d float tensor and 0-d int64 count of valid samples.

    Raises:
        ValueError: shape mismatch, or (with ``check_labels``) a valid pixel whose class is outside [0, C).
    """
    if rendered.ndim != 4:
        raise ValueError(f"rendered must be (B, C, H, W), got shape {tuple(rendered.shape)}")
    batch, n_cls = rendered.shape[:2]
    image = rendered[:, 0]
    _check_image_batch("class_map", class_map, image)
    _check_image_batch("valid_pixels", valid_pixels, image)
    pix = valid_pixels.bool()
    if valid is not None:
        pix = pix & _check_valid(valid, batch)[:, None, None]
    labels = class_map.long()
    if check_labels and bool((((labels < 0) | (labels >= n_cls)) & pix).any()):
        raise ValueError(
            f"class_map has ids outside [0, {n_cls}) at valid pixels (rendered has {n_cls} class channels)"
        )
    labels = labels.clamp(0, n_cls - 1)
    rendered = torch.where(pix[:, None], rendered, torch.zeros_like(rendered))  # unknown pixels: no NaN leaks
    if ce_on_probs:
        nll = torch.logsumexp(rendered, dim=1) - torch.gather(rendered, 1, labels[:, None]).squeeze(1)
    else:
        log_norm = torch.log(rendered.sum(dim=1) + n_cls * eps)  # (B, H, W)
        log_target = torch.log(torch.gather(rendered, 1, labels[:, None]).squeeze(1) + eps)
        nll = log_norm - log_target
    weight = pix.to(rendered.dtype)
    if class_weights is not None:
        cw = class_weights.to(rendered.dtype)
        cw = cw.expand(batch, n_cls) if cw.ndim == 1 else cw
        if cw.shape != (batch, n_cls):
            raise ValueError(
                f"class_weights must be (C,) or (B, C) = ({batch}, {n_cls}), got {tuple(class_weights.shape)}"
            )
        weight = weight * torch.gather(cw, 1, labels.reshape(batch, -1)).reshape_as(weight)
    total_w = weight.sum(dim=(-2, -1))
    per_sample = (nll * weight).sum(dim=(-2, -1)) / total_w.clamp_min(torch.finfo(rendered.dtype).tiny)
    return _reduce(per_sample, total_w > 0, reduction)


def official_class_ratio_weights(
    class_map: torch.Tensor,
    num_classes: int,
    valid_pixels: torch.Tensor | None = None,
    min_pixels: float = float(OFFICIAL_CLASS_MIN_PIXELS),
) -> torch.Tensor:
    """Per-sample DSR-C class weights of the official code (``get_class_ratio``, notes A.5).

    With ``n_k`` the pixels of class k: ``w_k = min_{j: n_j ≥ t} n_j / n_k`` where ``n_k > t``, else 0, with
    ``t = min_pixels``. Rare classes weigh more (the smallest kept class gets 1); the largest (usually Background)
    gets a small weight. A sample without any class above ``t`` gets all zeros (no DSR-C loss).

    The official threshold is 60 pixels of a 224-pixel crop; at another render size R pass
    ``60 · (R/224)²`` (the same image area; :func:`official_min_pixels`).

    Args:
        class_map: (B, H, W) int class ids in [0, C).
        num_classes: C.
        valid_pixels: optional (B, H, W) bool: only these pixels are counted (the official code counts the whole
            crop, padding included, as Background; unknown pixels carry no loss here, so they are not counted).
        min_pixels: t.

    Returns:
        (B, C) float32 weights.
    """
    labels = class_map.long().clamp(0, num_classes - 1)
    onehot = torch.nn.functional.one_hot(labels, num_classes).to(torch.float32)  # (B, H, W, C)
    if valid_pixels is not None:
        _check_image_batch("valid_pixels", valid_pixels, class_map)
        onehot = onehot * valid_pixels[..., None].to(onehot.dtype)
    counts = onehot.sum(dim=(1, 2))  # (B, C)
    big = torch.tensor(float("inf"), device=counts.device)
    smallest_kept = torch.where(counts >= min_pixels, counts, big).amin(dim=1, keepdim=True)  # (B, 1)
    weights = smallest_kept / counts.clamp_min(1.0)
    return torch.where((counts > min_pixels) & torch.isfinite(smallest_kept), weights, torch.zeros_like(weights))


def official_min_pixels(render_size: int) -> float:
    """The official 60-pixel class threshold (of a 224-pixel crop) scaled to a render of side ``render_size``."""
    return OFFICIAL_CLASS_MIN_PIXELS * (render_size / OFFICIAL_CROP_SIZE) ** 2


def dsr_fb_loss(
    silhouette: torch.Tensor,
    mask_fb: torch.Tensor,
    valid: torch.Tensor,
    *,
    metric: FBMetric = "soft_iou",
    valid_pixels: torch.Tensor | None = None,
    distance: torch.Tensor | None = None,
    eps: float = IOU_EPS,
    reduction: Reduction = "valid_mean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """DSR-FB ablation (Table 1): the rendered full-body silhouette vs the person (all non-background) mask.

    ``metric``: ``"soft_iou"`` (default; same formula as DSR-MC), ``"bce"`` (the paper's wording, "a per pixel
    binary classification loss": mean binary cross-entropy over valid pixels) or ``"soft_distm"`` (Table 1's
    "DSR-FB (s-DistM)", Eq. 2).

    Args:
        silhouette: (B, H, W) soft silhouette in [0, 1] (the renderer's second output).
        mask_fb: (B, H, W) {0, 1} person mask.
        valid: (B,) bool.
        metric: see above.
        valid_pixels: optional (B, H, W) bool known-target pixels.
        distance: ``soft_distm`` only: precomputed :func:`distance_to_mask` of ``mask_fb``.
        eps: soft-IoU denominator guard.
        reduction: ``"valid_mean"`` or ``"batch_mean"``.

    Returns:
        ``(loss, n_valid)``.
    """
    if metric == "soft_iou":
        return dsr_mc_loss(silhouette, mask_fb, valid, valid_pixels=valid_pixels, eps=eps, reduction=reduction)
    if metric == "soft_distm":
        return soft_distm_loss(
            silhouette, mask_fb, valid, distance=distance, valid_pixels=valid_pixels, reduction=reduction
        )
    if metric == "bce":
        _check_image_batch("mask_fb", mask_fb, silhouette)
        valid = _check_valid(valid, silhouette.shape[0])
        keep = torch.ones_like(silhouette) if valid_pixels is None else valid_pixels.to(silhouette.dtype)
        if valid_pixels is not None:
            _check_image_batch("valid_pixels", valid_pixels, silhouette)
        s = _zero_invalid(silhouette, valid).clamp(BCE_EPS, 1.0 - BCE_EPS)
        g = mask_fb.to(silhouette.dtype)
        bce = -(g * torch.log(s) + (1.0 - g) * torch.log1p(-s))
        n_pix = keep.sum(dim=(-2, -1))
        per_sample = (bce * keep).sum(dim=(-2, -1)) / n_pix.clamp_min(1.0)
        return _reduce(per_sample, valid & (n_pix > 0), reduction)
    raise ValueError(f"unknown DSR-FB metric {metric!r}; allowed values: {', '.join(FB_METRICS)}")


def soft_distm_loss(
    rendered: torch.Tensor,
    mask: torch.Tensor,
    valid: torch.Tensor,
    *,
    distance: torch.Tensor | None = None,
    valid_pixels: torch.Tensor | None = None,
    eps: float = DISTM_EPS,
    reduction: Reduction = "valid_mean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """soft-DistM (Eq. 2): ``Σ R·d(G) / ((Σ R)^{3/2} + ε)`` per sample, averaged.

    ``d(G)`` is 0 inside the mask and the Euclidean distance in pixels to the nearest mask pixel outside it;
    the ``3/2`` power makes the loss invariant to the rendered area's scale. It only pulls rendered mass
    *inside* the mask (no penalty for uncovered mask pixels).

    Args:
        rendered: (B, H, W) float in [0, 1] (rendered MC prior, or the silhouette for DSR-FB).
        mask: (B, H, W) {0, 1} target.
        valid: (B,) bool.
        distance: optional (B, H, W) precomputed :func:`distance_to_mask` (pixels); computed here (CPU, SciPy)
            when None.
        valid_pixels: optional (B, H, W) bool: rendered mass on unknown pixels is ignored.
        eps: denominator guard.
        reduction: ``"valid_mean"`` or ``"batch_mean"``.

    Returns:
        ``(loss, n_valid)``.
    """
    _check_image_batch("mask", mask, rendered)
    valid = _check_valid(valid, rendered.shape[0])
    dist = distance_to_mask(mask) if distance is None else distance
    _check_image_batch("distance", dist, rendered)
    r, _ = _apply_pixel_mask(_zero_invalid(rendered, valid), mask, valid_pixels)
    dist = dist.to(device=rendered.device, dtype=rendered.dtype)
    per_sample = (r * dist).sum(dim=(-2, -1)) / (r.sum(dim=(-2, -1)) ** DISTM_POWER + eps)
    return _reduce(per_sample, valid, reduction)


def mvp_loss(
    rendered: torch.Tensor,
    mask_mc: torch.Tensor,
    valid: torch.Tensor,
    *,
    valid_pixels: torch.Tensor | None = None,
    eps: float = IOU_EPS,
    reduction: Reduction = "valid_mean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """DSR-MVP ablation (Table 1): IoU loss of the body rendered with the **argmax** prior vs the MC mask.

    The paper's proxy for manual vertex painting takes "the most likely label per vertex" and, "since we have
    1 label per vertex", uses IoU instead of soft IoU. Build the texture with :func:`argmax_prior` (one-hot per
    face, so each face is 1 if its argmax label is one of the sample's valid MC labels, else 0) and render it
    like the DSR-MC texture. The argmax is taken over the *constant* prior, so it needs no gradient; the loss is
    the IoU formula on that binary-textured render, whose only soft part is the rasteriser's coverage — the
    gradient w.r.t. the vertices flows through the renderer's edges exactly as for DSR-MC. Thresholding the
    render itself would make the loss piecewise constant (zero gradient); :func:`hard_iou` does that for logs.

    Args:
        rendered: (B, H, W) render of the argmax texture (values in [0, 1], ≈ {0, 1} inside/outside).
        mask_mc: (B, H, W) {0, 1} MC mask.
        valid: (B,) bool.
        valid_pixels / eps / reduction: as in :func:`dsr_mc_loss`.

    Returns:
        ``(loss, n_valid)``.
    """
    return dsr_mc_loss(rendered, mask_mc, valid, valid_pixels=valid_pixels, eps=eps, reduction=reduction)


def argmax_prior(face_prob: torch.Tensor) -> torch.Tensor:
    """One-hot argmax of a per-face label distribution (the MVP texture source).

    Args:
        face_prob: (F, L) float, e.g. ``semantic_prior.npz['face_prob']`` (L = 20 CIHP labels).

    Returns:
        (F, L) float one-hot, same dtype; summing its columns over a label set gives the MVP texture.
    """
    return torch.nn.functional.one_hot(face_prob.argmax(dim=-1), face_prob.shape[-1]).to(face_prob.dtype)


#: Variant name -> loss function (all return ``(loss, n_valid)``). Term names in the composite are the same.
DSR_LOSSES: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    "dsr_mc": dsr_mc_loss,
    "dsr_c": dsr_c_loss,
    "dsr_fb": dsr_fb_loss,
    "soft_distm": soft_distm_loss,
    "mvp": mvp_loss,
}


def get_dsr_loss(name: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """Loss function of a DSR variant by name.

    Raises:
        ValueError: unknown name (the message lists the allowed ones).
    """
    if name not in DSR_LOSSES:
        raise ValueError(f"unknown DSR loss variant {name!r}; allowed values: {', '.join(DSR_LOSSES)}")
    return DSR_LOSSES[name]
