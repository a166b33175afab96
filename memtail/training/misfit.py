"""Why a training state that decodes cannot continue a trial's training anyway.

A checkpoint whose bytes pass their checksum can still be another network's, carry an
optimizer state of other shapes, or stand at a position of another batch size or subset:
``load_state_dict`` would refuse some of it half way through, and take the rest silently
until the first step or index fails, in every attempt of the trial. ``misfit`` says why
before anything is loaded, so the caller can fall back on an earlier state instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from memtail.training.snapshot import Layout, Parts, TrainingState

__all__ = ["misfit"]


def misfit(state: TrainingState, parts: Parts, layout: Layout) -> str | None:
    """Why ``state`` cannot continue the training of ``parts`` laid out as ``layout``, or
    None. Checks what loading would not: ``load_state_dict`` takes an optimizer state of
    any shape (the first step would fail), and a position from another batch size or
    subset would index past the data."""
    model, optimizer, generator, device = parts
    if state.device != device.type:
        # The random streams of one device type do not fit the other.
        return f"it was taken on {state.device} and cannot resume on {device.type}"
    return (
        _model_misfit(state.model, getattr(model, "_orig_mod", model).state_dict())
        or _optimizer_misfit(state.optimizer, optimizer)
        or _streams_misfit(state, generator)
        or _position_misfit(state, layout)
    )


def _model_misfit(saved: dict[str, torch.Tensor], wanted: dict[str, torch.Tensor]) -> str | None:
    if set(saved) != set(wanted):
        missing, extra = sorted(set(wanted) - set(saved)), sorted(set(saved) - set(wanted))
        return f"the model's parameters differ (missing {missing[:3]}, unexpected {extra[:3]})"
    for name, tensor in wanted.items():
        got = saved[name]
        if got.shape != tensor.shape or got.dtype != tensor.dtype:
            return (
                f"model parameter {name!r} is {got.dtype} {tuple(got.shape)} where the "
                f"network has {tensor.dtype} {tuple(tensor.shape)}"
            )
    return None


def _optimizer_misfit(saved: dict, optimizer: torch.optim.Optimizer) -> str | None:
    groups, state = saved.get("param_groups"), saved.get("state")
    if not isinstance(groups, list) or not isinstance(state, dict):
        return "the optimizer state has no param_groups or state"
    params = [p for group in optimizer.param_groups for p in group["params"]]
    try:
        ids = [i for group in groups for i in group["params"]]
    except (TypeError, KeyError):
        return "the optimizer state's param_groups list no parameters"
    sizes = [len(group["params"]) for group in optimizer.param_groups]
    if [len(group["params"]) for group in groups] != sizes:
        return f"the optimizer state has parameter groups of {len(ids)} where {sizes} are needed"
    by_id = dict(zip(ids, params, strict=True))
    for key, values in state.items():
        if key not in by_id or not isinstance(values, dict):
            return f"the optimizer state names parameter {key!r}, which the network lacks"
        for name, value in values.items():
            # Per-parameter buffers (momentum, Adam's moments) have the parameter's
            # shape; scalars (a step count) have none.
            if isinstance(value, torch.Tensor) and value.ndim and value.shape != by_id[key].shape:
                return (
                    f"the optimizer's {name!r} of parameter {key} is {tuple(value.shape)} "
                    f"where the parameter is {tuple(by_id[key].shape)}"
                )
    return None


def _streams_misfit(state: TrainingState, generator: torch.Generator) -> str | None:
    if state.torch_rng.shape != torch.get_rng_state().shape:
        return "torch's random state has the wrong size"
    if state.generator.shape != generator.get_state().shape:
        return "the trial's generator state has the wrong size"
    keys = state.numpy_rng.get("keys")
    if not isinstance(keys, torch.Tensor) or keys.shape != (624,):
        return "numpy's random state has the wrong size"
    return None


def _position_misfit(state: TrainingState, layout: Layout) -> str | None:
    examples, batches, epochs = layout
    if not (0 <= state.epoch < epochs and 0 <= state.batch < batches):
        return f"epoch {state.epoch + 1}, batch {state.batch} is outside the training"
    if state.step != state.epoch * batches + state.batch:
        return f"step {state.step} does not match {batches} batches per epoch"
    if state.order is None:
        return "it is in the middle of an epoch without that epoch's order" if state.batch else None
    order = state.order
    if order.shape != (examples,) or not torch.equal(
        torch.sort(order.long()).values, torch.arange(examples)
    ):
        return f"its epoch order is not an order of the {examples} examples trained on"
    if state.loss_sum is None or state.loss_sum.ndim:
        return "its epoch's loss so far is not one number"
    return None
