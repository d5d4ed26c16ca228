"""The architectures each stage supports (`SUPPORTED_MODEL_TYPES`).
"""

from __future__ import annotations

SUPPORTED_MODEL_TYPES = ("gpt_neox", "gpt_neo", "gpt2", "llama", "mistral", "qwen2")
