"""A tiny random causal LM for fast tests: a 2-layer Llama (hidden 64), float32 on the CPU, with a
byte-level BPE tokenizer trained in memory on a few sentences, wrapped like a loaded model."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from generator_service.lm_loading import LoadedLM

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "Answer the question using the fact. Reply with the answer only.",
    "Question: What is the capital of France? Fact: France capital Paris",
    "Paris is the capital and largest city of France, on the river Seine.",
    "Berlin is the capital of Germany. France borders Spain. Tom Hanks was born in Concord, California.",
]


def tiny_tokenizer(chat_template: str | None = CHAT_TEMPLATE) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    wrapped.chat_template = chat_template
    return wrapped


def tiny_llama(vocab_size: int, attention: str = "sdpa", seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.2,  # large weights, so the context visibly changes the output
        attn_implementation=attention,
    )
    return LlamaForCausalLM(config).eval()


def tiny_lm(chat_template: str | None = CHAT_TEMPLATE, attention: str = "sdpa") -> LoadedLM:
    tokenizer = tiny_tokenizer(chat_template)
    model = tiny_llama(len(tokenizer), attention)
    return LoadedLM(
        model=model, tokenizer=tokenizer, name="tiny-llama", device=torch.device("cpu"), dtype=torch.float32
    )
