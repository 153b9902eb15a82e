"""Dice + cross-entropy with an ignore value, as nnU-Net v2 defines it for sparse annotations.

MONAI's DiceCELoss has no ignore index, so this is the masked version: voxels whose target is the ignore
value are removed from both terms. Cross-entropy is the mean over annotated voxels (0 when a batch has
none); soft Dice uses softmax probabilities multiplied by the annotated mask, foreground classes only,
``(2 * tp + smooth) / (2 * tp + fp + fn + smooth)`` summed over the batch ("batch Dice"), and the loss is
``ce - mean(dice)`` (nnU-Net's DC_and_CE_loss with weights 1 and 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional

from mousecord.labels import IGNORE_VALUE


def masked_dice_ce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_value: int = IGNORE_VALUE,
    smooth: float = 1e-5,
    batch_dice: bool = True,
) -> torch.Tensor:
    """Dice + CE over the voxels whose target is not ``ignore_value``.

    Args:
        logits: (B, C, *spatial) raw network outputs.
        target: (B, *spatial) integer labels in [0, C) or ``ignore_value``.
        smooth: Dice smoothing term (nnU-Net's 1e-5).
        batch_dice: sum Dice statistics over the batch (nnU-Net 3d_fullres) instead of per sample.

    Returns:
        A scalar tensor. Changing ``target`` or ``logits`` at ignored voxels changes neither it nor its
        gradient with respect to the logits of annotated voxels.
    """
    if logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match")
    num_classes = logits.shape[1]
    annotated = target != ignore_value
    safe_target = torch.where(annotated, target, torch.zeros_like(target)).long()
    # Ignored voxels' logits are replaced by constants, so nothing there (not even NaN) reaches the loss.
    logits = torch.where(annotated[:, None], logits.float(), torch.zeros((), device=logits.device))
    mask = annotated.to(logits.dtype)
    voxel_ce = functional.cross_entropy(logits, safe_target, reduction="none")
    ce = (voxel_ce * mask).sum() / mask.sum().clamp_min(1.0)

    probabilities = torch.softmax(logits, dim=1) * mask[:, None]
    one_hot = functional.one_hot(safe_target, num_classes).movedim(-1, 1).to(logits.dtype) * mask[:, None]
    axes = [0, *range(2, logits.ndim)] if batch_dice else list(range(2, logits.ndim))
    intersection = (probabilities * one_hot).sum(axes)
    total = probabilities.sum(axes) + one_hot.sum(axes)
    dice = (2 * intersection + smooth) / (total + smooth).clamp_min(1e-8)
    foreground_dice = dice[1:] if batch_dice else dice[:, 1:]
    return ce - foreground_dice.mean()


def deep_supervision_loss(
    outputs: list[torch.Tensor] | tuple[torch.Tensor, ...],
    target: torch.Tensor,
    *,
    ignore_value: int = IGNORE_VALUE,
) -> torch.Tensor:
    """nnU-Net's deep supervision: weights 1/2^i over decoder outputs (lowest dropped), normalised to 1.

    The target is downsampled to each output with nearest neighbour, which keeps the ignore value.
    """
    weights = [1 / 2**index for index in range(len(outputs))]
    if len(weights) > 1:
        weights[-1] = 0.0
    total = sum(weights)
    loss = torch.zeros((), device=outputs[0].device)
    for weight, output in zip(weights, outputs, strict=True):
        if weight == 0:
            continue
        scaled = target
        if output.shape[2:] != target.shape[1:]:
            scaled = functional.interpolate(
                target[:, None].float(), size=output.shape[2:], mode="nearest-exact"
            )
            scaled = scaled[:, 0].long()
        loss = loss + weight / total * masked_dice_ce_loss(output, scaled, ignore_value=ignore_value)
    return loss


__all__ = ["deep_supervision_loss", "masked_dice_ce_loss"]
