"""Scoring targets under K contexts with a decoder-only generator: LM head on target positions only vs on all.

`hf_etrag.modeling.contexts.target_logprobs` right-aligns each (passage + query + target) row and asks the model
for the logits of the last T + 1 positions (`logits_to_keep`), so the vocabulary projection and the logits
tensor cover the target, not the ~170 passage tokens before it. The peer is the same packed rows through the
whole model with logits at every position, then gathered (what the library did before, and what a plain
`model(input_ids).logits` costs). Same random model shaped like SmolLM2-135M (30 layers, hidden 576, vocabulary
49,152), same rows; repeats alternate the two; the throughput ratio (ours / all positions) is printed last.

    python benchmarks/decoder_scoring.py                   # B*K = 20 rows of ~170 context + 8 target tokens
    python benchmarks/decoder_scoring.py --rows 40 --layers 4
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from hf_etrag.modeling.contexts import _gather_logprobs, append_targets, target_logprobs


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20, help="contexts scored at once (batch x K)")
    parser.add_argument("--context", type=int, default=176, help="longest context (passage + query) tokens")
    parser.add_argument("--target", type=int, default=8, help="target tokens (eos included)")
    parser.add_argument("--layers", type=int, default=30, help="decoder layers (SmolLM2-135M: 30)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    return parser


def all_positions(model, context, mask, labels, pad_id):
    input_ids, attention_mask, read_positions = append_targets(context, mask, labels, pad_id)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    target_logits = logits.gather(1, read_positions.unsqueeze(-1).expand(-1, -1, logits.size(-1)))
    return _gather_logprobs(target_logits, labels.clamp(min=pad_id))


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=args.layers,
        num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048, tie_word_embeddings=True,
        pad_token_id=0,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    lengths = torch.randint(max(1, args.context - 50), args.context + 1, (args.rows,))
    context = torch.randint(1, config.vocab_size, (args.rows, args.context))
    mask = (torch.arange(args.context).unsqueeze(0) < lengths.unsqueeze(1)).long()
    context = context * mask
    labels = torch.randint(1, config.vocab_size, (args.rows, args.target))
    labels[::3, args.target // 2 :] = -100  # targets of different lengths
    print(
        f"{args.rows} rows, context {int(lengths.min())}-{args.context} + target <= {args.target} tokens, "
        f"{args.layers} layers x 576, vocab 49,152, {torch.get_num_threads()} threads"
    )
    valid = labels != -100
    with torch.no_grad():
        ours, _ = target_logprobs(model, context, mask, labels, pad_id=0)
        theirs = all_positions(model, context, mask, labels, 0)
        print(f"max |difference| of target log-probs: {(ours - theirs)[valid].abs().max().item():.2e}")
        times: dict[str, list[float]] = {"target positions": [], "all positions": []}
        for repeat in range(args.repeats):
            order = ["target positions", "all positions"][:: 1 if repeat % 2 == 0 else -1]
            for name in order:
                start = time.perf_counter()
                if name == "target positions":
                    target_logprobs(model, context, mask, labels, pad_id=0)
                else:
                    all_positions(model, context, mask, labels, 0)
                times[name].append(time.perf_counter() - start)
            print(
                f"repeat {repeat + 1}: target positions {times['target positions'][-1]:.3f} s, "
                f"all positions {times['all positions'][-1]:.3f} s"
            )
    ours_s, theirs_s = statistics.median(times["target positions"]), statistics.median(times["all positions"])
    print(
        f"median: target positions {args.rows / ours_s:.1f} rows/s, all positions {args.rows / theirs_s:.1f} rows/s"
    )
    print(f"scoring throughput ratio (target positions / all positions): {theirs_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
