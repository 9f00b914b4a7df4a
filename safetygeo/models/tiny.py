"""Tiny decoder models and tokenizers built offline, for tests, benchmarks and examples.

Nothing here touches the network: tokenizers are trained in memory with the
``tokenizers`` library (byte-level BPE, so any string round-trips) and models are built
from small random configs of the real Hugging Face classes, so every code path is the one
a real checkpoint takes.

Example:
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> model, tok = tiny_model_and_tokenizer("llama", n_layers=2, d_model=32)
    >>> model.config.num_hidden_layers, tok.chat_template is not None
    (2, True)
"""

from __future__ import annotations

from typing import Any

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from safetygeo.errors import SafetyGeoError

ARCHS = ("llama", "mistral", "qwen2", "gemma", "gpt2")

# Chat templates in the style of the real model families (written for safetygeo; each
# puts the user's instruction between a fixed prefix and a fixed post-instruction suffix).
CHAT_TEMPLATES: dict[str, str] = {
    "llama": (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
        "<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
    "mistral": (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }}"
        " [/INST]{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    ),
    "qwen2": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "gemma": (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}<start_of_turn>"
        "{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] }}"
        "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    ),
}

SPECIAL_TOKENS = [
    "<|pad|>", "<|bos|>", "<|eos|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "[INST]", "[/INST]", "<|im_start|>", "<|im_end|>", "<start_of_turn>", "<end_of_turn>",
]

_WORDS = (
    "the a an of to and in is it you that he was for on are with as I his they be at one "
    "have this from or had by hot word but what some we can out other were all there when up "
    "use your how said each she which do their time if will way about many then them write "
    "would like so these her long make thing see him two has look more day could go come did "
    "number sound no most people my over know water than call first who may down side been "
    "now find any new work part take get place made live where after back little only round "
    "man year came show every good me give our under name very through just form sentence "
    "great think say help low line differ turn cause much mean before move right boy old too "
    "same tell does set three want air well also play small end put home read hand port large "
    "spell add even land here must big high such follow act why ask men change went light kind "
    "off need house picture try us again animal point mother world near build self earth "
    "father head stand own page should country found answer school grow study still learn "
    "plant cover food sun four between state keep eye never last let thought city tree cross "
    "farm hard start might story saw far sea draw left late run don't while press close night "
    "real life few north open seem together next white children begin got walk example ease "
    "paper group always music those both mark often letter until mile river car feet care "
    "second book carry took science eat room friend began idea fish mountain stop once base "
    "hear horse cut sure watch color face wood main enough plain girl usual young ready above "
    "ever red list though feel talk bird soon body dog family direct pose leave song measure "
    "door product black short numeral class wind question happen complete ship area half rock "
    "order fire south problem piece told knew pass since top whole king space heard best hour "
    "better true during hundred five remember step early hold west ground interest reach fast "
    "verb sing listen six table travel less morning ten simple several vowel toward war lay "
    "against pattern slow center love person money serve appear road map rain rule govern pull "
    "cold notice voice unit power town fine certain fly fall lead cry dark machine note wait "
    "plan figure star box noun field rest correct able pound done beauty drive stood contain "
    "front teach week final gave green oh quick develop ocean warm free minute strong special "
    "mind behind clear tail produce fact street inch multiply nothing course stay wheel full "
    "force blue object decide surface deep moon island foot system busy test record boat "
    "common gold possible plane stead dry wonder laugh thousand ago ran check game shape "
    "equate miss brought heat snow tire bring yes distant fill east paint language among "
    "bomb weapon hack steal poison attack explain recipe cake garden poem sorry cannot can't "
    "refuse help harmful illegal Sure here is step instructions how make build create "
    "user assistant model system"
).split()


def _corpus(n_lines: int = 400, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    lines = []
    for _ in range(n_lines):
        k = int(torch.randint(4, 14, (1,), generator=g))
        idx = torch.randint(0, len(_WORDS), (k,), generator=g).tolist()
        words = [_WORDS[i] for i in idx]
        lines.append(" ".join(words).capitalize() + ("?" if idx[0] % 3 == 0 else "."))
    return lines


def build_tokenizer(
    template: str | None = "llama",
    vocab_size: int = 512,
    seed: int = 0,
    extra_tokens: tuple[str, ...] = (),
) -> PreTrainedTokenizerFast:
    """Train a small byte-level BPE tokenizer offline and wrap it for transformers.

    Args:
        template: key of :data:`CHAT_TEMPLATES` for the tokenizer's chat template, or
            ``None`` for a tokenizer without one (like GPT-2).
        vocab_size: target vocabulary size (special tokens included).
        seed: seed of the synthetic training corpus (same seed → same tokenizer).
        extra_tokens: whole words added as single (non-special) tokens.

    Example:
        >>> tok = build_tokenizer("qwen2")
        >>> tok.decode(tok("Write a poem.")["input_ids"])
        'Write a poem.'
    """
    if template is not None and template not in CHAT_TEMPLATES:
        raise SafetyGeoError(f"unknown template {template!r}; choose from {sorted(CHAT_TEMPLATES)}")
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(_corpus(seed=seed), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        pad_token="<|pad|>",
        clean_up_tokenization_spaces=False,
    )
    if extra_tokens:
        tok.add_tokens(list(extra_tokens))
    if template is not None:
        tok.chat_template = CHAT_TEMPLATES[template]
    tok.init_kwargs["name_or_path"] = f"safetygeo-tiny-{template or 'plain'}"
    tok.name_or_path = f"safetygeo-tiny-{template or 'plain'}"
    return tok


def tiny_config(
    arch: str = "llama",
    *,
    vocab_size: int = 512,
    n_layers: int = 2,
    d_model: int = 32,
    n_heads: int = 4,
    d_mlp: int | None = None,
    max_positions: int = 256,
) -> transformers.PretrainedConfig:
    """A small random-init config of a real architecture family (see :data:`ARCHS`)."""
    d_mlp = d_mlp or 2 * d_model
    head_dim = d_model // n_heads
    common: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=d_model,
        intermediate_size=d_mlp,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=max(1, n_heads // 2),
        max_position_embeddings=max_positions,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    if arch == "llama":
        return transformers.LlamaConfig(**common)
    if arch == "mistral":
        return transformers.MistralConfig(**common, sliding_window=None)
    if arch == "qwen2":
        return transformers.Qwen2Config(**common)
    if arch == "gemma":
        return transformers.GemmaConfig(**common, head_dim=head_dim)
    if arch == "gpt2":
        return transformers.GPT2Config(
            vocab_size=vocab_size, n_embd=d_model, n_layer=n_layers, n_head=n_heads,
            n_inner=d_mlp, n_positions=max_positions, bos_token_id=1, eos_token_id=2,
            pad_token_id=0,
        )
    raise SafetyGeoError(f"unknown tiny architecture {arch!r}; choose from {ARCHS}")


def tiny_model(arch: str = "llama", *, seed: int = 0, **config_kwargs: int) -> PreTrainedModel:
    """Build a random-init causal LM of ``arch`` from :func:`tiny_config` (eval mode, fp32).

    Example:
        >>> m = tiny_model("gpt2", n_layers=3, d_model=16, n_heads=2)
        >>> type(m).__name__
        'GPT2LMHeadModel'
    """
    config = tiny_config(arch, **config_kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(config)
    return model.eval()


def tiny_model_and_tokenizer(
    arch: str = "llama", *, seed: int = 0, template: str | None = "auto", **config_kwargs: int
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A tiny model with a matching offline tokenizer.

    ``template="auto"`` picks the family's template (none for GPT-2, like the real one).
    """
    if template == "auto":
        template = None if arch == "gpt2" else arch
    tok = build_tokenizer(template, vocab_size=config_kwargs.get("vocab_size", 512), seed=seed)
    config_kwargs.setdefault("vocab_size", len(tok))
    model = tiny_model(arch, seed=seed, **config_kwargs)
    return model, tok
