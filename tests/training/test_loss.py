"""The masked Dice + CE loss: ignored voxels contribute nothing, as nnU-Net v2 defines it."""

from __future__ import annotations

import torch

from mousecord.labels import IGNORE_VALUE
from mousecord.training.loss import deep_supervision_loss, masked_dice_ce_loss


def _example(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 5, 7, 6, generator=generator)
    target = torch.randint(0, 3, (2, 5, 7, 6), generator=generator)
    target[:, 1:4] = IGNORE_VALUE  # slices 1-3 of each sample are not annotated
    return logits, target


def _loss_and_grad(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = logits.clone().requires_grad_(True)
    loss = masked_dice_ce_loss(logits, target)
    loss.backward()
    return loss.detach(), logits.grad


def test_ignored_labels_change_neither_loss_nor_gradient() -> None:
    """With the network output fixed, the loss and its gradient depend on annotated voxels only.

    What is true, and tested: ignored voxels' logits get exactly zero gradient, and the loss equals the
    loss of the annotated slices alone, so whatever the true labels of unannotated slices are, they cannot
    enter it. What is *not* true in 3D: the image of unannotated slices influences annotated voxels'
    logits through the receptive field; that context is wanted and is not what the ignore label controls.
    """
    logits, target = _example()
    loss, grad = _loss_and_grad(logits, target)
    ignored = (target == IGNORE_VALUE)[:, None].expand_as(grad)
    assert torch.all(grad[ignored] == 0)
    assert grad[~ignored].abs().sum() > 0
    # The same loss on the annotated slices alone (drop slices 1-3): ignored voxels add nothing.
    kept = [0, 4]
    sub_loss, _ = _loss_and_grad(logits[:, :, kept], target[:, kept])
    torch.testing.assert_close(loss, sub_loss)


def test_logits_at_ignored_voxels_do_not_change_loss_or_annotated_gradient() -> None:
    logits, target = _example()
    loss, grad = _loss_and_grad(logits, target)
    changed = logits.clone()
    changed[:, :, 1:4] = torch.randn_like(changed[:, :, 1:4]) * 100
    changed[0, 0, 2, 0, 0] = float("nan")  # even a NaN there is harmless
    loss_changed, grad_changed = _loss_and_grad(changed, target)
    torch.testing.assert_close(loss, loss_changed)
    torch.testing.assert_close(grad, grad_changed)


def test_labels_switched_to_ignore_are_equivalent_to_removing_the_voxels() -> None:
    """Relabelling an annotated slice as ignored gives the loss of the remaining slices only."""
    logits, target = _example()
    more_ignored = target.clone()
    more_ignored[:, 4] = IGNORE_VALUE
    loss, grad = _loss_and_grad(logits, more_ignored)
    sub_loss, _ = _loss_and_grad(logits[:, :, [0]], target[:, [0]])
    torch.testing.assert_close(loss, sub_loss)
    assert torch.all(grad[:, :, 4] == 0)


def test_perfect_prediction_reaches_minus_one() -> None:
    _, target = _example()
    logits = (
        torch.nn.functional.one_hot(torch.where(target == IGNORE_VALUE, 0, target), 3).movedim(-1, 1) * 50.0
    )
    loss = masked_dice_ce_loss(logits.float(), target)
    assert abs(float(loss) + 1) < 1e-4


def test_all_ignored_batch_gives_finite_zero_gradient() -> None:
    logits, target = _example()
    target[:] = IGNORE_VALUE
    loss, grad = _loss_and_grad(logits, target)
    assert torch.isfinite(loss)
    assert torch.all(grad == 0)


def test_deep_supervision_weights_outputs_and_downsamples_target_keeping_ignore() -> None:
    """nnU-Net's weights: 1, 1/2, ... with the lowest output dropped, normalised; the target reaches each
    output by nearest-neighbour (nearest-exact) sampling, which keeps the ignore value."""
    logits, target = _example()
    generator = torch.Generator().manual_seed(1)
    half = torch.randn(2, 3, 3, 4, 3, generator=generator)
    lowest = torch.randn(2, 3, 2, 2, 2, generator=generator)
    loss = deep_supervision_loss([logits, half, lowest], target)

    def nearest(size_in: int, size_out: int) -> torch.Tensor:
        return ((torch.arange(size_out) + 0.5) * size_in / size_out).floor().long()

    index = [nearest(n, m) for n, m in zip(target.shape[1:], half.shape[2:], strict=True)]
    half_target = target[:, index[0]][:, :, index[1]][:, :, :, index[2]]
    expected = 2 / 3 * masked_dice_ce_loss(logits, target) + 1 / 3 * masked_dice_ce_loss(half, half_target)
    torch.testing.assert_close(loss, expected)
    assert (half_target == IGNORE_VALUE).any()  # the ignore value survived the downsampling
    changed_lowest = deep_supervision_loss([logits, half, torch.zeros_like(lowest)], target)
    torch.testing.assert_close(changed_lowest, loss)  # the lowest output has weight 0
    torch.testing.assert_close(deep_supervision_loss([logits], target), masked_dice_ce_loss(logits, target))
