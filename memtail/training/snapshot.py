"""A trial's training state between two optimizer steps: enough to continue bit for bit.

A preemptible GPU or a SLURM time limit can end a worker in the middle of a trial that
trains for hours; the retry should continue, not start again from epoch 0. A
``TrainingState`` holds everything the rest of the training depends on: the model's
parameters and buffers (batch-norm statistics), the optimizer's state (momentum, Adam's
moments and step counts), the step (the learning-rate schedule is a function of it),
every random stream (torch's global generator, used by initialization and dropout; CUDA's;
numpy's; and the trial's own generator, which draws each epoch's order and the
augmentation), and, in the middle of an epoch, that epoch's order, the batches done and
the loss summed so far. Resuming from it on the same device type gives the stored outcome
that the uninterrupted run would have given, bit for bit on the CPU
(``tests/training/test_snapshot.py``).

``encode`` and ``decode`` turn a state into bytes and back with ``torch.save`` and
``torch.load(weights_only=True)``, which loads tensors and plain containers only, never
code: checkpoints come from a shared store. A state that decodes may still not fit the
trial (another network's shapes, a foreign optimizer's state, a position past the
training): ``Checkpointing.restore`` checks it against the freshly built parts before
touching them, and falls back on the earlier states, then on epoch 0, with a warning;
retrying such a trial would only fail it again.
"""

from __future__ import annotations

import copy
import io
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from memtail.training.misfit import misfit

__all__ = [
    "Checkpointing",
    "Preempted",
    "Saver",
    "TrainingState",
    "capture",
    "decode",
    "encode",
    "restore",
]

log = logging.getLogger(__name__)

#: What a state is taken from and restored into: model, optimizer, the trial's generator,
#: and the device (whose CUDA generator is saved too).
Parts = tuple[nn.Module, torch.optim.Optimizer, torch.Generator, torch.device]
#: The training a state must belong to: (examples trained on, batches per epoch, epochs).
Layout = tuple[int, int, int]


class Preempted(Exception):  # noqa: N818 - a signal that the trial stopped, not an error
    """Training stopped because ``Checkpointing.stop`` asked; its state was saved first."""

    def __init__(self, state: TrainingState) -> None:
        super().__init__(f"preempted at epoch {state.epoch + 1}, step {state.step}")
        self.state = state


@dataclass
class TrainingState:
    """Training after ``step`` optimizer steps: ``epoch`` epochs complete and ``batch``
    batches of the next one done (its ``order`` and ``loss_sum`` then set)."""

    epoch: int
    batch: int
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict
    torch_rng: torch.Tensor
    numpy_rng: dict
    generator: torch.Tensor
    cuda_rng: torch.Tensor | None = None
    order: torch.Tensor | None = None
    loss_sum: torch.Tensor | None = None
    #: Training seconds behind this state, over every attempt that contributed.
    seconds: float = 0.0
    #: The device type it was taken on ("cpu", "cuda"): the random streams of one do not
    #: fit the other, so a state resumes only on its own type.
    device: str = "cpu"


@dataclass
class Checkpointing:
    """How a trial saves and resumes: ``save`` receives each state (the caller stores
    it); ``every_epochs`` / ``every_seconds`` say when (0: not by that measure); ``stop``
    is asked before every step and, once true, the state is saved and ``Preempted``
    raised; ``resume``: the state to continue from, ``earlier``: those to fall back on,
    newest first, when it does not fit (iterated lazily: an older state is read only if
    needed); ``owner``: who warnings name ("trial 7")."""

    save: Callable[[TrainingState], None]
    every_epochs: int = 0
    every_seconds: float = 0.0
    stop: Callable[[], bool] = field(default=lambda: False)
    resume: TrainingState | None = None
    earlier: Iterable[TrainingState] = ()
    owner: str = "the trial"

    def restore(self, parts: Parts, layout: Layout) -> TrainingState | None:
        """Restore into ``parts`` the newest state that fits them and ``layout``, and
        return it; None (nothing restored): train from epoch 1."""
        newest = [] if self.resume is None else [self.resume]
        for state in itertools.chain(newest, self.earlier):
            why = misfit(state, parts, layout)
            if why is None:
                try:
                    _restore_or_undo(state, parts)
                except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as error:
                    why = f"restoring it failed: {error}"
            if why is None:
                log.info(
                    "%s: resuming at epoch %d, step %d (%.1f s of training saved)",
                    self.owner, state.epoch + 1, state.step, state.seconds,
                )  # fmt: skip
                return state
            log.warning(
                "%s: checkpoint of epoch %d, step %d ignored: %s; trying the one before it, "
                "else training from epoch 1",
                self.owner, state.epoch + 1, state.step, why,
            )  # fmt: skip
        return None


class Saver:
    """Saves a running training's state when its ``Checkpointing`` says: before a step
    once ``stop`` is true (then raises ``Preempted``), and after each epoch that is due
    by ``every_epochs`` or ``every_seconds``. ``carried``: the training seconds a resumed
    state brought in, so that every saved state counts all the work behind it."""

    def __init__(self, policy: Checkpointing, parts: Parts, carried: float) -> None:
        self.policy, self.parts, self.carried = policy, parts, carried
        self.started = self.last_save = time.perf_counter()

    def seconds(self) -> float:
        """Training seconds behind the state now, earlier attempts' included."""
        return self.carried + time.perf_counter() - self.started

    def before_step(
        self, epoch: int, batch: int, step: int, epoch_order: tuple[torch.Tensor, torch.Tensor]
    ) -> None:
        """Before batch ``batch`` of epoch ``epoch`` (counted from 1): save and stop if
        asked to."""
        if self.policy.stop():
            state = capture(self.parts, (epoch - 1, batch, step), epoch_order, self.seconds())
            self.policy.save(state)
            raise Preempted(state)

    def after_epoch(self, epoch: int, step: int) -> None:
        """After epoch ``epoch`` (not the last: the trial is graded and stored then)."""
        policy, now = self.policy, time.perf_counter()
        due = (policy.every_epochs and epoch % policy.every_epochs == 0) or (
            policy.every_seconds and now - self.last_save >= policy.every_seconds
        )
        if due:
            policy.save(capture(self.parts, (epoch, 0, step), None, self.seconds()))
            self.last_save = time.perf_counter()


def capture(
    parts: Parts,
    position: tuple[int, int, int],
    epoch_order: tuple[torch.Tensor, torch.Tensor] | None,
    seconds: float,
) -> TrainingState:
    """The training state now: ``position`` = (epochs done, batches of the next one done,
    steps), ``epoch_order`` = that epoch's (order, loss so far) in the middle of one."""
    model, optimizer, generator, device = parts
    epoch, batch, step = position
    return TrainingState(
        epoch=epoch,
        batch=batch,
        step=step,
        # A compiled model's parameters are its original module's.
        model=getattr(model, "_orig_mod", model).state_dict(),
        optimizer=optimizer.state_dict(),
        torch_rng=torch.get_rng_state(),
        cuda_rng=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        numpy_rng=_numpy_state(),
        generator=generator.get_state(),
        order=None if epoch_order is None else epoch_order[0],
        loss_sum=None if epoch_order is None else epoch_order[1],
        seconds=seconds,
        device=device.type,
    )


def restore(
    state: TrainingState,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    device: torch.device,
) -> None:
    """Put ``state`` into a freshly built model and optimizer and the random streams."""
    getattr(model, "_orig_mod", model).load_state_dict(state.model)
    optimizer.load_state_dict(state.optimizer)
    torch.set_rng_state(state.torch_rng)
    if device.type == "cuda" and state.cuda_rng is not None:
        torch.cuda.set_rng_state(state.cuda_rng, device)
    _set_numpy_state(state.numpy_rng)
    generator.set_state(state.generator)


def _restore_or_undo(state: TrainingState, parts: Parts) -> None:
    """``restore``, or, if it fails part way, the parts as they were."""
    model, optimizer, generator, device = parts
    module = getattr(model, "_orig_mod", model)
    before = (
        {name: tensor.clone() for name, tensor in module.state_dict().items()},
        copy.deepcopy(optimizer.state_dict()),
        torch.get_rng_state(),
        np.random.get_state(),
        generator.get_state(),
        torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    )
    try:
        restore(state, model, optimizer, generator, device)
    except BaseException:
        module.load_state_dict(before[0])
        optimizer.load_state_dict(before[1])
        torch.set_rng_state(before[2])
        np.random.set_state(before[3])
        generator.set_state(before[4])
        if before[5] is not None:
            torch.cuda.set_rng_state(before[5], device)
        raise


def _numpy_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _set_numpy_state(state: dict) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached"]))


def encode(state: TrainingState) -> bytes:
    buffer = io.BytesIO()
    torch.save({name: getattr(state, name) for name in state.__dataclass_fields__}, buffer)
    return buffer.getvalue()


def decode(data: bytes) -> TrainingState:
    """A state from ``encode``'s bytes, its tensors on the CPU; ValueError if the bytes
    are not one (the artifact store has checked their checksum already)."""
    try:
        values = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - unpickling fails in many ways
        raise ValueError(f"not a training checkpoint: {error}") from error
    if not isinstance(values, dict) or set(values) != set(TrainingState.__dataclass_fields__):
        raise ValueError("not a training checkpoint: unexpected fields")
    for name, kinds in _KINDS.items():
        if not isinstance(values[name], kinds) or isinstance(values[name], bool):
            raise ValueError(
                f"not a training checkpoint: {name} is a {type(values[name]).__name__}"
            )
    if (values["order"] is None) != (values["loss_sum"] is None):
        raise ValueError("not a training checkpoint: an epoch's order without its loss")
    if not all(isinstance(v, torch.Tensor) for v in values["model"].values()):
        raise ValueError("not a training checkpoint: the model's state holds non-tensors")
    return TrainingState(**values)


# What each field of a decoded state must be: the fields of the right names can still
# hold anything torch.load(weights_only=True) produces.
_KINDS: dict[str, type | tuple[type, ...]] = {
    "epoch": int,
    "batch": int,
    "step": int,
    "model": dict,
    "optimizer": dict,
    "torch_rng": torch.Tensor,
    "numpy_rng": dict,
    "generator": torch.Tensor,
    "cuda_rng": (torch.Tensor, type(None)),
    "order": (torch.Tensor, type(None)),
    "loss_sum": (torch.Tensor, type(None)),
    "seconds": (float, int),
    "device": str,
}
