"""Small randomly initialised models of the seed's families (Pythia/GPT-NeoX, Phi, Llama),
saved as local model folders: Study B's random initialisations where no pretrained weights
of that family fit a CPU or can be fetched (config/families-cpu.yaml, issue 32).

    python -m vermem.models.shapes config/families-cpu     # writes <family>-shape/ folders

Each folder holds a Hugging Face config.json and a small byte-level BPE tokenizer
(`TOKENIZER_VOCAB` tokens, every lowercase letter one token) shared by the three. The
shapes keep each family's architecture (GPT-NeoX: parallel residual, partial rotary; Phi:
one LayerNorm for attention and MLP, partial rotary, dense output; Llama: RMSNorm,
grouped-query attention, gated MLP) at one small size, so that the family is the only
difference between them. No weights: config/families-cpu.yaml trains them from `random`
only (dynamics.model_inits), which builds the model from its config (the precheck asks
no weight files of such a model: vermem.models.loading.uses).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

TOKENIZER_VOCAB = 320
LAYERS, WIDTH, HEADS, CONTEXT = 4, 128, 4, 256
# the text the shared tokenizer is trained on (a pangram and some code: every letter)
TEXT = ["The quick brown fox jumps over the lazy dog. " * 4,
        "def area(r):\n    return 3.14159 * r ** 2  # (0-9)\n",
        "abcdefghijklmnopqrstuvwxyz " * 4] * 8
SHAPES: dict[str, dict[str, Any]] = {
    "pythia-shape": {"model_type": "gpt_neox", "hidden_size": WIDTH,
                     "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
                     "intermediate_size": 4 * WIDTH, "rotary_pct": 0.25,
                     "use_parallel_residual": True, "max_position_embeddings": CONTEXT},
    "phi-shape": {"model_type": "phi", "hidden_size": WIDTH, "num_hidden_layers": LAYERS,
                  "num_attention_heads": HEADS, "intermediate_size": 4 * WIDTH,
                  "partial_rotary_factor": 0.5, "max_position_embeddings": CONTEXT},
    "llama-shape": {"model_type": "llama", "hidden_size": WIDTH, "num_hidden_layers": LAYERS,
                    "num_attention_heads": HEADS, "num_key_value_heads": HEADS // 2,
                    "intermediate_size": 344, "max_position_embeddings": CONTEXT},
}


def tokenizer():
    from vermem.models.organism import train_tokenizer

    return train_tokenizer(TEXT, TOKENIZER_VOCAB)


def write(name: str, folder: str | Path, tok=None) -> Path:
    """Save the config of model `name` (a key of SHAPES) with the shared tokenizer in
    `folder`."""
    from transformers import AutoConfig

    tok = tok or tokenizer()
    spec = dict(SHAPES[name])
    kind = spec.pop("model_type")
    cfg = AutoConfig.for_model(kind, vocab_size=len(tok), bos_token_id=tok.eos_token_id,
                               eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id,
                               tie_word_embeddings=False, **spec)
    folder = Path(folder)
    cfg.architectures = [{"gpt_neox": "GPTNeoXForCausalLM", "phi": "PhiForCausalLM",
                          "llama": "LlamaForCausalLM"}[kind]]
    cfg.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> None:
    out = Path((argv if argv is not None else sys.argv[1:])[0])
    tok = tokenizer()
    for name in SHAPES:
        print(write(name, out / name, tok))


if __name__ == "__main__":
    main()
