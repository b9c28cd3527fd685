"""Kill test: SIGKILL a training run at random moments, resume from "latest" each time, and compare the result with
an uninterrupted run (issue 14, item 4).

A tiny random retriever and BART (`hf_etrag.tiny_models`) train on the synthetic knowledge base for `--steps`
optimiser steps, with a checkpoint after every step (`passage_index/` included, `save_total_limit` 2) and an index
refresh every `--refresh-steps`. The tokenizer, the tokenised data and the initial weights are prepared once and
read by every run (the WordPiece trainer breaks ties differently from process to process). Then:

1. a reference run trains without interruption;
2. `--kills` times: a run starts (resuming with `resume_from_checkpoint="latest"` once a complete checkpoint
   exists), and is SIGKILLed a uniformly random time after its first training step begins, within the time the
   reference needed for twice `steps / kills` steps (or the steps still to go, if fewer); after each kill the
   script records what was being written (a checkpoint marked in progress or a temporary folder means the kill hit
   a save), the newest complete checkpoint, whether every file a resume needs is in it, and what transformers' own
   `get_last_checkpoint` would have picked;
3. a last run resumes and finishes.

The final model weights (every tensor) and passage index (embeddings, step built at) must equal the reference's,
bit for bit.

    python benchmarks/kill_resume.py                  # 12 kills over a 36-step run
    python benchmarks/kill_resume.py --kills 3        # a quick look

Prints one line per kill, then the totals; the last line reads
`kills: N (M during a checkpoint save) ...; final weights equal: yes; final index equal: yes`. Exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESUME_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json", "passage_index")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=12, help="SIGKILLs before the run may finish")
    parser.add_argument("--steps", type=int, default=36, help="optimiser steps of the run")
    parser.add_argument("--refresh-steps", type=int, default=3, help="re-encode the corpus every N steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--workdir", help="keep the runs here (default: a temporary folder, removed)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: train into this output_dir
    return parser


# ---- the training run (a subprocess) ------------------------------------------------------------------------------
def prepare(root: Path) -> None:
    """Tokenizer, tokenised corpus and questions, and initial weights, written once for every run to read."""
    import torch

    from hf_etrag import EtragModel, tokenize_corpus
    from hf_etrag.data import make_synthetic_knowledge_base, tokenize_qa_dataset
    from hf_etrag.tiny_models import tiny_etrag_config, train_wordpiece_tokenizer

    knowledge_base = make_synthetic_knowledge_base(n_people=12, seed=1)
    tokenizer = train_wordpiece_tokenizer(
        list(knowledge_base.corpus["text"]) + list(knowledge_base.train["question"]), vocab_size=400
    )
    corpus = tokenize_corpus(knowledge_base.corpus, tokenizer, max_passage_length=48)
    ids = [str(i) for i in corpus["id"]]
    tokenize_qa_dataset(knowledge_base.train, tokenizer, passage_ids=ids).save_to_disk(str(root / "train"))
    corpus.save_to_disk(str(root / "corpus"))
    torch.manual_seed(0)
    EtragModel(tiny_etrag_config(tokenizer)).save_pretrained(root / "initial")


def train(root: Path, output_dir: Path, steps: int, refresh_steps: int, progress: Path) -> None:
    import torch
    from datasets import load_from_disk
    from transformers import TrainerCallback

    from hf_etrag import EtragModel, EtragTrainer, EtragTrainingArguments, PassageIndex
    from hf_etrag.training.checkpoints import latest_checkpoint

    torch.set_num_threads(1)

    class Progress(TrainerCallback):
        """Writes when the first step begins, and (a second line) when training ends."""

        def on_step_begin(self, args, state, control, **kwargs):
            if not progress.exists():
                progress.write_text(f"{time.time()}\n")

        def on_train_end(self, args, state, control, **kwargs):
            if progress.exists():
                progress.write_text(progress.read_text() + f"{time.time()}\n")

    model = EtragModel.from_pretrained(root / "initial")
    args = EtragTrainingArguments(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        logging_steps=1,
        save_strategy="steps",
        save_steps=1,
        save_total_limit=2,
        refresh_steps=refresh_steps,
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        log_level="error",
    )
    trainer = EtragTrainer(
        model,
        args,
        index=PassageIndex(load_from_disk(str(root / "corpus"))),
        train_dataset=load_from_disk(str(root / "train")),
        callbacks=[Progress()],
    )
    trainer.train(resume_from_checkpoint="latest" if latest_checkpoint(output_dir) else None)
    trainer.save_model(str(output_dir / "final"))


def start_run(root: Path, output_dir: Path, args: argparse.Namespace, progress: Path) -> subprocess.Popen:
    progress.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--worker", str(output_dir), "--workdir", str(root)]
    command += ["--steps", str(args.steps), "--refresh-steps", str(args.refresh_steps)]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "KILL_PROGRESS": str(progress),
    }
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


# ---- the driver ------------------------------------------------------------------------------------------------
def after_kill(output_dir: Path) -> dict:
    """What a kill left: was a save in progress, which checkpoint "latest" picks, and whether it is resumable."""
    from transformers.trainer_utils import get_last_checkpoint

    from hf_etrag.training.checkpoints import IN_PROGRESS_MARKER, latest_checkpoint

    entries = list(output_dir.iterdir()) if output_dir.is_dir() else []
    in_save = any((p / IN_PROGRESS_MARKER).exists() for p in entries) or any(
        p.name.startswith(".") for p in entries
    )
    in_save = in_save or any(
        q.name.startswith(".")
        for p in entries
        if p.is_dir() and p.name.startswith("checkpoint-")
        for q in p.iterdir()
    )
    latest = latest_checkpoint(output_dir)
    missing = [name for name in RESUME_FILES if latest and not (Path(latest) / name).exists()]
    theirs = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    return {
        "in_save": in_save,
        "latest": Path(latest).name if latest else None,
        "missing": missing,
        "transformers_pick": Path(theirs).name if theirs else None,
        "transformers_pick_incomplete": bool(theirs) and theirs != latest,
    }


def compare(reference: Path, resumed: Path) -> tuple[bool, bool]:
    import numpy as np
    from safetensors.numpy import load_file

    from hf_etrag import PassageIndex

    a, b = load_file(str(reference / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    weights = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    ia, ib = PassageIndex.load(reference / "passage_index"), PassageIndex.load(resumed / "passage_index")
    index = bool(np.array_equal(ia.embeddings, ib.embeddings)) and ia.built_at_step == ib.built_at_step
    return weights, index


def run_to_end(process: subprocess.Popen) -> None:
    _, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"a training run failed (exit {process.returncode}):\n{stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.worker:
        train(
            Path(args.workdir),
            Path(args.worker),
            args.steps,
            args.refresh_steps,
            Path(os.environ["KILL_PROGRESS"]),
        )
        return 0
    rng = random.Random(args.seed)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="kill_resume-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        prepare(root)
        progress = root / "progress"
        begin = time.time()
        reference = start_run(root, root / "reference", args, progress)
        run_to_end(reference)
        first_step, end = (float(line) for line in progress.read_text().split())
        train_seconds = end - first_step
        print(
            f"kill test: {args.steps} steps, a checkpoint every step (save_total_limit 2), refresh every "
            f"{args.refresh_steps}; reference run {time.time() - begin:.1f} s ({train_seconds:.1f} s training)"
        )
        output_dir, kills, in_save, bad_latest, their_bad = root / "killed", 0, 0, 0, 0
        while kills < args.kills:
            process = start_run(root, output_dir, args, progress)
            while not progress.exists() and process.poll() is None:
                time.sleep(0.02)
            if process.poll() is not None:  # finished before it could be killed: start over from scratch
                run_to_end(process)
                shutil.rmtree(output_dir)
                continue
            step_from = after_kill(output_dir)["latest"] if output_dir.is_dir() else None
            remaining = args.steps - (int(step_from.split("-")[1]) if step_from else 0)
            # Within twice the time of the steps each kill should let pass (steps / kills), so that the kills spread
            # over the whole run; never past the end.
            window = min(remaining, max(1, round(2 * args.steps / args.kills)))
            delay = rng.uniform(0, train_seconds * window / args.steps)
            time.sleep(delay)
            if process.poll() is not None:
                run_to_end(process)
                shutil.rmtree(output_dir)
                continue
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            state = after_kill(output_dir)
            in_save += state["in_save"]
            bad_latest += bool(state["missing"])
            their_bad += state["transformers_pick_incomplete"]
            print(
                f"kill {kills:>2}: {delay:5.2f} s into training from {step_from or 'scratch'}; "
                f"{'during a checkpoint save' if state['in_save'] else 'between saves'}; latest: {state['latest']}"
                f"{' MISSING ' + str(state['missing']) if state['missing'] else ''}; transformers' "
                f"get_last_checkpoint: {state['transformers_pick']}"
                f"{' (incomplete)' if state['transformers_pick_incomplete'] else ''}"
            )
        run_to_end(start_run(root, output_dir, args, progress))
        weights, index = compare(root / "reference" / "final", output_dir / "final")
        ok = weights and index and bad_latest == 0
        print(
            f"latest complete checkpoint missing a resume file after a kill: {bad_latest} of {kills}; transformers' "
            f"get_last_checkpoint would have picked an incomplete checkpoint after {their_bad} of {kills}; "
            f"{time.time() - started:.0f} s wall"
        )
        print(
            f"kills: {kills} ({in_save} during a checkpoint save); resumed run completed: yes; final weights equal: "
            f"{'yes' if weights else 'no'}; final index equal: {'yes' if index else 'no'}"
        )
        return 0 if ok else 1
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
