"""A tiny randomly initialised CLIP checkpoint that tests build themselves (no weights can be
installed offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def make_tiny_clip(folder: Path, projection_dim: int = 16, seed: int = 0):
    """A randomly initialised 2-layer CLIP with a word-level tokenizer, saved to ``folder``
    (``save_pretrained`` layout, as a real checkpoint folder). Returns the torch model."""
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    words = "a photo of the cat dog x diagram two people walking on beach at dawn".split()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "<unk>": 2}
    vocab |= {w: i + 3 for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", 1)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
        pad_token="<|endoftext|>", unk_token="<unk>", model_max_length=16,
    )
    torch.manual_seed(seed)
    tiny = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab), max_position_embeddings=16,
            bos_token_id=0, eos_token_id=1, pad_token_id=1, **tiny,
        ),
        vision_config=dict(image_size=32, patch_size=8, **tiny),
        projection_dim=projection_dim,
    )
    model = CLIPModel(config).eval()
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True, "size": {"shortest_edge": 32}, "resample": 3,
        "do_center_crop": True, "crop_size": {"height": 32, "width": 32},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
    }))
    return model
