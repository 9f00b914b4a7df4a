"""The :class:`Method` API (one small file per defense / attack) and the method registry.

A method says what is trained and how; the trainer core (:mod:`safetygeo.training.core`)
does the rest (optimizer, schedule, accumulation, checkpoints, resume) through
``transformers.Trainer``. A method:

* names itself (``name``) and holds its hyper-parameters in a dataclass (``config``, an
  instance of ``config_class``; recorded in the manifest);
* declares the data *roles* it consumes (``roles``, e.g. ``("harmful", "harmless")``) and
  turns the user's data into plain text records (:meth:`Method.records`; the manifest
  stores their hashes);
* tokenizes them into the rows the trainer's data loader iterates (:meth:`Method.setup`)
  and batches rows (:meth:`Method.collate`);
* computes ``loss(model, batch) -> (loss, logs)`` for one micro-batch (a mean over that
  micro-batch; the core divides by the accumulation steps);
* optionally runs extra work on the *current* model before each micro-batch's loss
  (:meth:`Method.before_step`, e.g. R2D2's GCG steps on its suffix pool). It runs with the
  model in eval mode and every trainable parameter's ``requires_grad`` off, so a
  ``backward()`` inside it (e.g. gradients w.r.t. one-hot tokens) never leaves ``.grad`` on
  the parameters being trained;
* optionally keeps mutable state (``state_dict`` / ``load_state_dict``: tensors and JSON
  values) that is saved in every checkpoint and restored on resume, so that a resumed run
  equals an uninterrupted one.

Example:
    >>> {"sft", "harmful_sft"} <= set(available_methods())
    True
    >>> get_method("sft").name
    'sft'
    >>> get_method("dpo")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    safetygeo.training.errors.UnknownMethodError: unknown training method 'dpo'; known methods: ...
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from safetygeo.activations.logits import pad_id_of
from safetygeo.data.records import pad_right
from safetygeo.models.handle import ModelHandle
from safetygeo.training.config import TrainConfig
from safetygeo.training.errors import (
    EmptyDatasetError,
    TrainConfigError,
    TrainingError,
    UnknownMethodError,
)


@dataclass(frozen=True)
class StepContext:
    """What :meth:`Method.before_step` sees.

    Attributes:
        handle: the model's handle; ``handle.model`` runs the model being trained (under LoRA
            the adapters are injected into it), ``handle.tokenizer`` / ``handle.encode`` /
            ``handle.chat_template()`` format prompts exactly as the geometry code does.
        model: the module the trainer optimizes (a ``PeftModel`` under LoRA).
        step: optimizer steps completed before this one (0 for the first step).
        micro_step: index of this micro-batch within the step's gradient accumulation.
        config: the run's :class:`TrainConfig`.
    """

    handle: ModelHandle
    model: nn.Module
    step: int
    micro_step: int
    config: TrainConfig


@dataclass(frozen=True)
class NoConfig:
    """Hyper-parameters of a method that has none."""


class Method:
    """Base class of training methods (see the module docstring for the contract).

    Subclasses set ``name``, ``config_class``, ``roles`` (``required_roles`` must be
    given) and implement :meth:`records`, :meth:`setup` and :meth:`loss`.
    """

    name: ClassVar[str] = ""
    _registered_as: ClassVar[str | None] = None
    config_class: ClassVar[type] = NoConfig
    roles: ClassVar[tuple[str, ...]] = ("train",)
    required_roles: ClassVar[tuple[str, ...]] = ()
    #: Named starting configs (``get_method(name, preset="cpu")``, ``--method-opt
    #: preset=cpu``); explicit options apply on top.
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def __init__(self, config: Any = None, *, preset: str | None = None, **overrides: Any) -> None:
        if preset is not None or (isinstance(config, Mapping) and "preset" in config):
            config = apply_preset(config, preset, self.presets, self.name)
        self.config = make_config(self.config_class, config, overrides, what=f"{self.name} config")
        self.pad_id = 0

    # -- identity ----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """``{"name", "config"}`` as recorded in the manifest."""
        return {"name": self.name, "config": config_to_dict(self.config)}

    def default_train_config(self) -> TrainConfig:
        """The :class:`TrainConfig` used when the caller gives none."""
        return TrainConfig()

    # -- trainer -----------------------------------------------------------------------
    def training_arguments(self, config: TrainConfig, output_dir: str, *, progress: bool) -> Any:
        """The trainer's arguments for ``config`` (default:
        :meth:`TrainConfig.training_arguments`; an RL method returns e.g. TRL's
        ``GRPOConfig`` with the same fields plus its own)."""
        return config.training_arguments(output_dir, progress=progress)

    def build_trainer(self, **kwargs: Any) -> Any | None:
        """A trainer of the method's own, or ``None`` for the core's ``MethodTrainer``.

        ``kwargs`` are the core's: ``model``, ``args`` (from :meth:`training_arguments`),
        ``train_dataset`` (the rows of :meth:`setup`), ``data_collator``,
        ``processing_class``, ``callbacks`` and the trajectory keywords ``method``,
        ``handle``, ``train_config``, ``trajectory_dir``, ``manifest``. The trainer must
        mix in :class:`~safetygeo.training.trainer.TrajectoryTrainerMixin` so that checkpoints,
        resume and the manifest work as for every other method.
        """
        return None

    # -- data --------------------------------------------------------------------------
    def split_data(self, data: Any) -> dict[str, Any]:
        """Map ``data`` onto this method's roles.

        A mapping is taken as ``{role: data}`` (unknown roles are an error); anything else
        is the data of the first role.
        """
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.roles))
            if unknown:
                raise TrainingError(
                    f"method {self.name!r} has no data role(s) {unknown}; its roles: {list(self.roles)}"
                )
            parts = dict(data)
        else:
            parts = {self.roles[0]: data}
        missing = [r for r in self.required_roles if r not in parts or parts[r] is None]
        if missing:
            raise TrainingError(
                f"method {self.name!r} needs data for role(s) {missing}; given: {sorted(parts)}"
            )
        parts = {k: v for k, v in parts.items() if v is not None}
        if not parts:
            raise EmptyDatasetError(f"method {self.name!r} got no data (roles: {list(self.roles)})")
        return parts

    def records(self, data: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """Canonical text records per role (what is hashed into the manifest)."""
        raise NotImplementedError

    def setup(
        self, handle: ModelHandle, records: Mapping[str, list[dict[str, Any]]], config: TrainConfig
    ) -> Sequence[dict[str, Any]]:
        """Tokenize ``records``; return the rows the trainer iterates (shuffled by it).

        The default remembers the tokenizer's pad id for :meth:`collate`; subclasses call
        ``super().setup(...)`` and build their rows.
        """
        self.pad_id = pad_id_of(handle)
        return []

    def collate(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Tensor]:
        """Batch rows (default: right-padded ``input_ids`` / ``labels`` + ``attention_mask``)."""
        return pad_right(rows, self.pad_id)

    # -- optimisation --------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Scalar loss of one micro-batch and metrics to log (averaged between log steps)."""
        raise NotImplementedError

    def before_step(self, ctx: StepContext, batch: Mapping[str, Tensor]) -> dict[str, float]:
        """Work on the current model before this micro-batch's loss; returns metrics."""
        return {}

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Mutable state to checkpoint: top-level tensors and JSON-serializable values."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state:
            raise TrainingError(f"method {self.name!r} has no state but a checkpoint holds some")


# ----------------------------------------------------------------------------- configs
def config_to_dict(config: Any) -> dict[str, Any]:
    """A method config dataclass as a JSON-ready dict (tuples become lists)."""
    def conv(v: Any) -> Any:
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return {k: conv(v) for k, v in dataclasses.asdict(config).items()}


def make_config(cls: type, config: Any, overrides: Mapping[str, Any], *, what: str) -> Any:
    """Build a config dataclass from ``None`` / a mapping / an instance plus ``overrides``.

    Raises:
        TrainConfigError: unknown keys (named) or a config of the wrong type.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    if config is None:
        values: dict[str, Any] = {}
    elif isinstance(config, Mapping):
        values = dict(config)
    elif isinstance(config, cls):
        values = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls)}
    else:
        raise TrainConfigError(f"{what} must be a {cls.__name__} or a mapping, got {type(config).__name__}")
    values.update(overrides)
    unknown = sorted(set(values) - names)
    if unknown:
        raise TrainConfigError(f"unknown {what} key(s) {unknown}; known: {sorted(names)}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise TrainConfigError(f"invalid {what}: {exc}") from exc


def apply_preset(config: Any, preset: str | None, presets: Mapping[str, Mapping[str, Any]],
                 what: str) -> Any:
    """The config mapping a method starts from when a named preset is asked for.

    ``preset`` (or a ``"preset"`` key of a mapping ``config``, as ``--method-opt
    preset=cpu`` gives it) selects ``presets[preset]``; the mapping's other keys win over it.

    Raises:
        TrainConfigError: unknown preset, or a preset together with a config instance.

    Example:
        >>> apply_preset({"preset": "cpu", "b": 2}, None, {"cpu": {"a": 1, "b": 1}}, "m")
        {'a': 1, 'b': 2}
    """
    if isinstance(config, Mapping) and "preset" in config:
        config = dict(config)
        given = config.pop("preset")
        preset = preset if preset is not None else given
    if preset is None:
        return config
    if preset not in presets:
        raise TrainConfigError(f"unknown {what} preset {preset!r}; presets: {sorted(presets)}")
    if config is not None and not isinstance(config, Mapping):
        raise TrainConfigError(f"pass either a preset or a {what} config instance, not both")
    return {**presets[preset], **(config or {})}


# ----------------------------------------------------------------------------- registry
#: The package whose modules are the built-in methods: every module in it is imported on the
#: first registry lookup, and each registers its classes itself (``@register_method``).
METHODS_PACKAGE = "safetygeo.training.methods"
_REGISTRY: dict[str, type[Method]] = {}
#: Built-in method modules that could not be imported (module → reason): an optional
#: dependency is missing. Their methods are not listed.
UNAVAILABLE: dict[str, str] = {}
_MODULES: list[Any] | None = None


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` available to :func:`get_method` under ``cls.name``.

    The one registration a method needs: a module in ``training/methods/`` whose class is
    decorated is found by :func:`available_methods` without any table.

    Raises:
        TrainingError: empty name, or the name is taken by another class.
    """
    if not isinstance(cls, type) or not issubclass(cls, Method) or not cls.name:
        raise TrainingError(f"{cls!r} must be a Method subclass with a non-empty name")
    other = _REGISTRY.get(cls.name)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise TrainingError(f"method name {cls.name!r} is already registered by {other!r}")
    _REGISTRY[cls.name] = cls
    cls._registered_as = cls.name
    return cls


def discover_methods() -> None:
    """Import every module of :data:`METHODS_PACKAGE` (once) and make sure the classes they
    registered are in the registry.

    A module whose import fails on a missing third-party package is skipped and recorded in
    :data:`UNAVAILABLE`; any other import error is raised (a broken method file is a bug).
    """
    global _MODULES
    if _MODULES is None:
        package = importlib.import_module(METHODS_PACKAGE)
        modules = []
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_"):
                continue
            module = f"{METHODS_PACKAGE}.{info.name}"
            try:
                modules.append(importlib.import_module(module))
            except ModuleNotFoundError as exc:
                if exc.name is None or exc.name.split(".")[0] == "safetygeo":
                    raise
                UNAVAILABLE[module] = f"needs {exc.name!r}"
        _MODULES = modules
    for mod in _MODULES:  # a registry swapped out (tests) gets the built-ins back
        for obj in vars(mod).values():
            if (isinstance(obj, type) and issubclass(obj, Method)
                    and obj.__dict__.get("_registered_as") == obj.name):
                _REGISTRY.setdefault(obj.name, obj)


def available_methods() -> tuple[str, ...]:
    """Names :func:`get_method` accepts, sorted."""
    discover_methods()
    return tuple(sorted(_REGISTRY))


def get_method_class(name: str) -> type[Method]:
    """The :class:`Method` subclass registered as ``name``.

    Raises:
        UnknownMethodError: the name is not registered (the message lists the known ones).
    """
    if name not in _REGISTRY:
        discover_methods()
    if name in _REGISTRY:
        return _REGISTRY[name]
    missing = f" (not importable: {UNAVAILABLE})" if UNAVAILABLE else ""
    raise UnknownMethodError(
        f"unknown training method {name!r}; known methods: {', '.join(available_methods())}"
        + missing
    )


def get_method(name: str | Method, config: Any = None, **overrides: Any) -> Method:
    """An instance of the method ``name`` with its config (a dataclass, a mapping, or
    ``None`` for the defaults) and keyword overrides. A :class:`Method` is returned as is.

    Example:
        >>> get_method("sft", refusal="No.").config.refusal
        'No.'
    """
    if isinstance(name, Method):
        if config is not None or overrides:
            raise TrainingError("pass config / overrides when constructing a Method instance")
        return name
    return get_method_class(name)(config, **overrides)
