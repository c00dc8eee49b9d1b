"""Tiny Qwen3-architecture models with a locally trained tokenizer, saved as normal HF model directories.

Every command that takes `--model` accepts them, so tests and the lab exercise the same code paths as a real
model, on a CPU, with no hub.
"""

from collections.abc import Iterable
from pathlib import Path

# A Qwen3-style ChatML template, with Qwen3's `enable_thinking` switch: thinking off pre-fills an empty block.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK = ["<think>", "</think>"]  # added tokens that decoding keeps, as in Qwen3

DEFAULT_CORPUS = (
    "What is 12 plus 30? The answer is \\boxed{42}.",
    "Question: Which of the following is a bone? Answer: femur",
    "Let me think step by step. Wait, let me check. Alternatively, the answer is (B).",
    "The quick brown fox jumps over the lazy dog. Is this plausible? yes no",
    "Solve for x: 2x + 3 = 7. So x = 2. Final Answer: \\boxed{2}",
)


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on `corpus`, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Digits one by one, as Qwen's tokenizers do: arithmetic is learnable when numbers are not arbitrary merges.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", clean_up_tokenization_spaces=False
    )
    fast.add_tokens(THINK)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(
    out: str | Path,
    *,
    corpus: Iterable[str] = DEFAULT_CORPUS,
    vocab_size: int = 512,
    tokenizer=None,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    head_dim: int | None = None,
    init_range: float = 0.3,
    seed: int = 0,
) -> Path:
    """A randomly initialised Qwen3 model and its tokenizer (given, or trained on `corpus`), saved to `out`
    (safetensors + tokenizer files)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    out = Path(out)
    tokenizer = tokenizer or train_tokenizer(corpus, vocab_size)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim or hidden_size // heads,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        initializer_range=init_range,  # wider than the usual 0.02, so that a random model's outputs vary
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
