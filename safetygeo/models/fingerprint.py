"""Model fingerprints: identify a model by its config, architecture and a sample of weights.

Used wherever a saved artifact must be matched to the model it came from (trajectories,
sweeps, reports).

Example:
    >>> from safetygeo.models.tiny import tiny_model
    >>> fp = model_fingerprint(tiny_model(n_layers=1, d_model=16))
    >>> sorted(fp)
    ['arch_sha256', 'config_sha256', 'dtype', 'model_type', 'n_params', 'weights_sha256']
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from safetygeo._identity import sha256_json

__all__ = ["model_fingerprint"]

#: Config keys that do not change what a model computes (paths, versions, dtype, ...).
_VOLATILE_CONFIG_KEYS = frozenset({
    "_name_or_path", "name_or_path", "transformers_version", "dtype", "torch_dtype",
    "_attn_implementation", "_attn_implementation_internal", "_attn_implementation_autoset",
    "attn_implementation", "use_cache", "output_attentions", "output_hidden_states",
    "return_dict", "_commit_hash", "pad_token_id", "bos_token_id", "eos_token_id",
    "_experts_implementation", "experts_implementation", "architectures",
})


def model_fingerprint(model: nn.Module) -> dict[str, Any]:
    """Identify a model by its config, its architecture and a sample of its weights.

    ``config_sha256``: the config minus bookkeeping keys (paths, versions, dtype, attention
    implementation, special-token ids); ``arch_sha256``: every parameter's name and shape;
    ``dtype``: the parameters' dtype(s); ``weights_sha256``: the first and last 16 values of every parameter (cheap even
    for 7B models, and enough to tell two random inits or two fine-tunes apart).

    Example:
        >>> from safetygeo.models.tiny import tiny_model
        >>> a, b = tiny_model(n_layers=1, d_model=16, seed=0), tiny_model(n_layers=1, d_model=16, seed=1)
        >>> fa, fb = model_fingerprint(a), model_fingerprint(b)
        >>> fa["arch_sha256"] == fb["arch_sha256"], fa["weights_sha256"] == fb["weights_sha256"]
        (True, False)
    """
    cfg = getattr(model, "config", None)
    cfg_dict = cfg.to_dict() if cfg is not None else {}

    def strip(d: Any) -> Any:
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if k not in _VOLATILE_CONFIG_KEYS}
        return d

    h = hashlib.sha256()
    arch = []
    dtypes: set[str] = set()
    n_params = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            arch.append([name, list(p.shape)])
            dtypes.add(str(p.dtype).replace("torch.", ""))
            n_params += p.numel()
            flat = p.detach().reshape(-1)
            sample = torch.cat([flat[:16], flat[-16:]]).to("cpu", torch.float64)
            h.update(name.encode())
            h.update(sample.numpy().tobytes())
    return {
        "model_type": cfg_dict.get("model_type"),
        "config_sha256": sha256_json(strip(cfg_dict)),
        "arch_sha256": sha256_json(arch),
        "weights_sha256": h.hexdigest(),
        "dtype": ",".join(sorted(dtypes)),
        "n_params": n_params,
    }
