"""Build the lab's base model in two phases, as real bases are made: pre-training, then a mid-training phase.

1. Pre-training (`PretrainConfig`): a tokenizer trained on the lab corpus, then a tiny Qwen3 trained from scratch on
   a mixture of all seven lab tasks in the concise house style, which works every math step out ("10 + 8 = 18.
   18 - 15 = 3. \\boxed{3}"). The default pre-trained model (Lab v3's base) ships with the package.
2. Mid-training (`BuildConfig`): the pre-trained model continues on fresh math items of which a share is answered
   tersely, the whole chain computed in one go ("10 + 8 - 15 = 3. \\boxed{3}"), and on a replay of the other
   tasks. The base comes out with two habits: greedy decoding mostly takes the terse one, which a model this size
   often gets wrong, while its samples also take the worked one. That is the paper's setting in miniature: real but
   incomplete math skill with headroom that teacher traces (which write every step) and the model's own correct
   samples can both reach (docs/lab.md).

A plain PyTorch loop (nanoGPT-style), not a trainer framework: the build must be small, deterministic and
resumable, and nothing here is a method under study (the study's SFT and GRPO use TRL). Deterministic given the
config on one kind of CPU: data order comes from the seed, the weights from torch's seeded RNG, and the thread
count is fixed, since a different number of threads sums floating-point numbers in another order. So does another
instruction set: 30 pre-training steps under ATEN_CPU_CAPABILITY=avx2 give other weights than under avx512.
"""

import functools
import hashlib
import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from rtransfer.lab.generators import GENERATORS, LAB_VERSION
from rtransfer.lab.splits import training_items
from rtransfer.lab.teacher import REASONING, teacher_solution
from rtransfer.lab.tiny import build_tiny_model, train_tokenizer
from rtransfer.paths import cache_dir

CHECKPOINT_EVERY = 50
# Bump when the build's training code (_fit, _encode, the loss) changes. The configs and the generated corpora are
# hashed into the build keys on their own, so neither needs a bump.
BUILD_VERSION = "2"
MID_STREAM = 1000  # mid-training draws its items from train stream seed + MID_STREAM: none seen in pre-training


@dataclass(frozen=True)
class PretrainConfig:
    # About 1.3 M parameters and 2400 steps: the smallest budget tried in which the base learns every lab task in
    # part. That takes longer than a user should wait on 2 CPU cores (bench/lab_build.py), so the default's
    # pre-trained model ships with the package (SHIPPED_PRETRAINED).
    seed: int = 0
    vocab_size: int = 1024
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    # Heads four times wider than hidden_size / heads. Qwen3 normalises queries and keys, which caps an attention
    # logit near sqrt(head_dim) times the norm gains: at 32 attention stayed too flat to match a name with its
    # earlier mention, and the tasks that need it (lab_order, lab_support) sat at chance. At 128 they learn.
    head_dim: int = 128
    train_per_task: int = 12000
    steps: int = 2400
    batch_size: int = 32
    lr: float = 1e-2
    warmup: int = 50
    threads: int = 2
    prompt_weight: float = 0.25

    def key(self) -> str:
        """The pre-training key: it hashes the generated corpus itself, not LAB_VERSION (the tasks' data
        version), so an edited generator cannot leave a stale model in use unnoticed, bumped or not."""
        text = json.dumps({"build": BUILD_VERSION, **asdict(self), "corpus": corpus_hash(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class BuildConfig:
    """The lab base: `pretrain` (None: the pre-trained model shipped with rtransfer) after mid-training."""

    seed: int = 0
    pretrain: PretrainConfig | None = None
    # The share of mid-training math answers written tersely. At 0.7 greedy decoding took the terse habit on nearly
    # every item and lab_arith fell under the 10 % bar (8-12); at 0.5 the base sits at 27 (arith) and 40 (lineq).
    terse_share: float = 0.5
    math_per_task: int = 3000
    replay_per_task: int = 1500
    # Not replayed: lab_support sat at 87.5 after pre-training and rose past the 90 % ceiling (96.5-99) in every
    # mid-training run that replayed it, from 500 to 3000 items and at lr 3e-4 to 2e-3. Without any replay
    # lab_order fell under a blind guess, so the other tasks are replayed.
    no_replay: tuple[str, ...] = ("lab_support",)
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 30
    threads: int = 2
    prompt_weight: float = 0.25

    def key(self) -> str:
        """The build key, what the cached and the shipped base are checked against: the config, the pre-trained
        model it starts from (the shipped one's files, or the pre-training key) and the mid-training corpus."""
        parent = self.pretrain.key() if self.pretrain else shipped_pretrained_fingerprint()
        text = json.dumps(
            {"build": BUILD_VERSION, **asdict(self), "pretrained": parent, "corpus": mid_corpus_hash(self)}
            | self.kind(),
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def kind(self) -> dict[str, str]:
        return {}  # the base's key holds no kind (its key predates the teacher model)

    def math_answer(self, benchmark: str, item, terse: random.Random) -> str:
        """A mid-training math item's answer: terse with probability terse_share, else the house style."""
        return item.data["terse"] if terse.random() < self.terse_share else item.house

    def built_name(self) -> str:
        return f"base-{self.key()}"


@dataclass(frozen=True)
class TeacherConfig(BuildConfig):
    """The lab teacher *model* (on-policy distillation needs a teacher's logits; the lab teacher is a program):
    mid-trained exactly as the base it teaches (same pre-trained model, so the same tokenizer and size; same items,
    steps and replay), with the programmatic teacher's think traces (lab/teacher.py) as every math answer in place
    of the base's terse and house answers. So it writes the traces the off-policy SFT arm learns from, and answers
    the other lab tasks as the base does. `teacher_config(base)` derives it from a base's config."""

    terse_share: float = 0.0  # unused: every math answer is a teacher trace

    def kind(self) -> dict[str, str]:
        return {"kind": "teacher"}

    def math_answer(self, benchmark: str, item, terse: random.Random) -> str:
        return teacher_solution(benchmark, item, think=True, seed=self.seed)

    def built_name(self) -> str:
        return f"teacher-{self.key()}"


TEACHER_PASSES = 3


def teacher_config(base: BuildConfig) -> TeacherConfig:
    """The teacher model of a lab base: its config with the teacher's traces as the math answers, every other task
    replayed, for three times its steps. The base's 300 steps (under one pass) left the teacher at 58.5 / 42.0 on
    lab math, below what the SFT arms reach on the same traces in three epochs: a teacher is meant to master its
    own traces, so it gets the SFT arms' three passes (TEACHER_PASSES). Over those, lab_support, which the base does
    not replay (to stay under the lab's 90 % ceiling, which binds no teacher), fell to a blind guess (47.0): the
    teacher replays it too."""
    values = {f.name: getattr(base, f.name) for f in fields(BuildConfig)}
    return TeacherConfig(**values | {"terse_share": 0.0, "steps": TEACHER_PASSES * base.steps, "no_replay": ()})


def config_of(model_dir: Path) -> BuildConfig:
    """The BuildConfig a built lab base was made with (its lab_build.json), checked against the key it recorded."""
    report = json.loads((Path(model_dir) / "lab_build.json").read_text())
    values = dict(report["config"])
    if values.get("pretrain"):
        values["pretrain"] = PretrainConfig(**values["pretrain"])
    config = BuildConfig(**values | {"no_replay": tuple(values.get("no_replay", ()))})
    if config.key() != report["key"]:
        raise ValueError(f"{model_dir} was built by another version of the lab build: rebuild it (rtransfer lab build)")
    return config


# Seconds, not minutes: for tests and smoke runs. Its scores are near chance; its code path is the full one.
QUICK_PRETRAIN = PretrainConfig(
    vocab_size=400,
    hidden_size=64,
    layers=2,
    heads=4,
    kv_heads=2,
    head_dim=16,
    train_per_task=150,
    steps=30,
    batch_size=16,
    warmup=5,
)
QUICK = BuildConfig(pretrain=QUICK_PRETRAIN, math_per_task=60, replay_per_task=30, steps=10, batch_size=16, warmup=2)


def lab_config(seed: int = 0, quick: bool = False, from_scratch: bool = False) -> BuildConfig:
    """The lab base's config: the default (the shipped pre-trained model, mid-trained), or with another seed or
    `from_scratch` one whose pre-training runs here too."""
    config = QUICK if quick else BuildConfig()
    if seed or from_scratch or config.pretrain:
        return replace(config, seed=seed, pretrain=replace(config.pretrain or PretrainConfig(), seed=seed))
    return config


def conversations(config: PretrainConfig) -> list[tuple[str, str]]:
    """(prompt, house-style answer) pairs of every task's train split, shuffled by the seed."""
    pairs = [
        (item.prompt, item.house)
        for name in GENERATORS
        for item in training_items(name, config.train_per_task, config.seed)
    ]
    random.Random(config.seed).shuffle(pairs)
    return pairs


@functools.lru_cache(maxsize=4)
def mid_conversations(config: BuildConfig) -> tuple[tuple[str, str], ...]:
    """Mid-training's pairs: fresh math items (a share answered tersely; the teacher's: its traces) and a replay of
    the other tasks."""
    terse = random.Random(f"terse:{config.seed}")
    pairs = []
    for name in GENERATORS:
        math = name in REASONING
        n = config.math_per_task if math else 0 if name in config.no_replay else config.replay_per_task
        for item in training_items(name, n, config.seed + MID_STREAM) if n else []:
            answer = config.math_answer(name, item, terse) if math else item.house
            pairs.append((item.prompt, answer))
    random.Random(config.seed).shuffle(pairs)
    return tuple(pairs)


@functools.lru_cache(maxsize=4)
def mid_corpus_hash(config: BuildConfig) -> str:
    return _hash(mid_conversations(config))


def tokenizer_corpus(config: PretrainConfig, pairs: list[tuple[str, str]]) -> list[str]:
    # The teacher's voice is in the corpus too, so that the vocabulary does not penalise the SFT data later on.
    teacher = [
        teacher_solution(name, item, think=True, seed=config.seed)
        for name in REASONING
        for item in training_items(name, 200, config.seed)
    ]
    return [text for pair in pairs for text in pair] + teacher


def _hash(texts) -> str:
    digest = hashlib.sha256()
    for text in texts:
        for part in (text,) if isinstance(text, str) else text:
            digest.update(part.encode())
            digest.update(b"\0")
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=4)
def corpus_hash(config: PretrainConfig) -> str:
    """A hash of everything pre-training learns from: the tokenizer's corpus, which holds every (prompt, house
    answer) pair in training order and the teacher's texts (about a second for the default's 84,000 pairs)."""
    return _hash(tokenizer_corpus(config, conversations(config)))


def _package_path(name: str) -> Path:
    from importlib.resources import files

    return Path(str(files("rtransfer") / "data" / "lab" / name))


SHIPPED_PRETRAINED = "pretrained"  # the default pre-trained model, under rtransfer/data/lab


@functools.cache
def shipped_pretrained_fingerprint() -> str:
    return _hash(sorted((n, b.hex()) for n, b in defining_files(_package_path(SHIPPED_PRETRAINED)).items()))


def shipped_base(config: BuildConfig) -> Path | None:
    """The base (or teacher) model shipped inside the package, if it is the one `config` builds (same key), else
    None."""
    path = _package_path("teacher" if isinstance(config, TeacherConfig) else "base")
    report = path / "lab_build.json"
    if report.exists() and json.loads(report.read_text())["key"] == config.key():
        return path
    return None


def defining_files(path: Path) -> dict[str, bytes]:
    """The files that define a built model: weights, tokenizer, configs (lab_build.json aside: it holds the
    build's duration). Two builds are the same model when these are byte for byte equal."""
    return {
        f.name: f.read_bytes()
        for f in Path(path).iterdir()
        if f.suffix in (".safetensors", ".json") and f.name != "lab_build.json"
    }


def build_base(
    config: BuildConfig = BuildConfig(),
    out: Path | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    rebuild: bool = False,
) -> Path:
    """The base model directory for `config`: built once under the cache root, then reused. The default base
    ships with the package and is copied instead of trained, unless `rebuild` asks to train it again (from the
    shipped pre-trained model, or with `config.pretrain` from scratch)."""
    final = cache_dir("lab") / config.built_name()
    if rebuild and final.exists():
        shutil.rmtree(final)
    if not (final / "lab_build.json").exists():
        shipped = None if rebuild else shipped_base(config)
        if shipped:
            _copy(shipped, final, shipped=True)
        else:
            _mid_train(config, pretrained(config, progress, rebuild), final, progress)
    if out is not None:
        _copy(final, Path(out))
        return Path(out)
    return final


# Names that stand for a lab base wherever a model is asked for (eval, train, probe, study), and the label a run of
# it gets by default.
LAB_MODELS = {"lab": "lab", "lab:quick": "lab-quick"}


def build_teacher(base: str | Path, progress=None, rebuild: bool = False) -> Path:
    """The lab teacher model of the lab base `base` (a name of LAB_MODELS or a built base's directory): shipped
    for the default base, else built once under the cache root (as long as the base's mid-training)."""
    return build_base(teacher_config(config_of(Path(resolve_model(str(base))))), progress=progress, rebuild=rebuild)


def resolve_model(model: str) -> str:
    """A model argument as a local directory or hub id: "lab" is the lab base (copied from the package on first
    use), "lab:quick" its seconds-long smoke version (built on first use); anything else is returned unchanged."""
    return str(build_base(lab_config(quick=model == "lab:quick"))) if model in LAB_MODELS else model


def pretrained(config: BuildConfig, progress=None, rebuild: bool = False) -> Path:
    """The pre-trained model that `config` starts from: the shipped one, or `config.pretrain` trained here once."""
    if config.pretrain is None:
        return _package_path(SHIPPED_PRETRAINED)
    final = cache_dir("lab") / f"pretrained-{config.pretrain.key()}"
    if rebuild and final.exists():
        shutil.rmtree(final)
    if not (final / "lab_build.json").exists():
        _pretrain(config.pretrain, final, progress)
    return final


def _copy(source: Path, target: Path, shipped: bool = False) -> None:
    """Copy a model directory whole or not at all (through a temporary sibling)."""
    tmp = target.with_name(target.name + ".copying")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    if shipped:
        report = json.loads((tmp / "lab_build.json").read_text())
        (tmp / "lab_build.json").write_text(json.dumps({**report, "shipped": True}, indent=2) + "\n")
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def _pretrain(config: PretrainConfig, final: Path, progress) -> None:
    start = time.perf_counter()
    work = final.with_name(final.name + ".partial")
    pairs = conversations(config)
    if not (work / "model" / "config.json").exists():
        tokenizer = train_tokenizer(tokenizer_corpus(config, pairs), config.vocab_size)
        build_tiny_model(
            work / "model",
            tokenizer=tokenizer,
            hidden_size=config.hidden_size,
            layers=config.layers,
            heads=config.heads,
            kv_heads=config.kv_heads,
            head_dim=config.head_dim,
            init_range=0.02,
            seed=config.seed,
        )
    losses = _fit(config, work, pairs, progress)
    report = {"config": asdict(config), "key": config.key(), "corpus": corpus_hash(config), "examples": len(pairs)}
    _finish(work, final, start, losses, report)


def _mid_train(config: BuildConfig, parent: Path, final: Path, progress) -> None:
    start = time.perf_counter()
    work = final.with_name(final.name + ".partial")
    if not (work / "model" / "config.json").exists():
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(parent, work / "model", ignore=shutil.ignore_patterns("lab_build.json"))
    pairs = list(mid_conversations(config))
    losses = _fit(config, work, pairs, progress)
    report = {
        "config": asdict(config),
        "key": config.key(),
        "pretrained": json.loads((parent / "lab_build.json").read_text()),
        "corpus": mid_corpus_hash(config),
        "examples": len(pairs),
    }
    _finish(work, final, start, losses, report)


def _finish(work: Path, final: Path, start: float, losses: list[float], report: dict) -> None:
    import torch

    report |= {
        "build_version": BUILD_VERSION,
        "lab_version": LAB_VERSION,
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
        "seconds": round(time.perf_counter() - start, 1),
        # What bit-identity also depends on (the module docstring).
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    (work / "model" / "lab_build.json").write_text(json.dumps(report, indent=2) + "\n")
    if final.exists():
        shutil.rmtree(final)
    (work / "model").rename(final)
    shutil.rmtree(work)


def _fit(config, work: Path, pairs: list[tuple[str, str]], progress) -> list[float]:
    """Train the model in work/model on `pairs` for config.steps steps, on config.threads threads (the sums
    depend on the count), and save it there; resumes from the checkpoint in `work`. Returns the loss of every
    step. The process gets its thread count back: a training arm that builds its lab teacher first trains on
    its own recipe's count (a build left 2 behind, and the arm trained on them when it built the teacher)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _fit_steps(config, work, pairs, progress)
    finally:
        torch.set_num_threads(before)


def _fit_steps(config, work: Path, pairs: list[tuple[str, str]], progress) -> list[float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(work / "model")
    model = AutoModelForCausalLM.from_pretrained(work / "model", dtype=torch.float32)
    examples = _encode(tokenizer, pairs)
    # Weight decay on matrices only. Decaying the norms' gains, Qwen3's q/k norms above all, shrinks every
    # attention logit until attention is near uniform: the model then never learns to look things up in its
    # prompt (measured: q/k gains at 0.35 after 2000 steps, lookups at chance).
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    gains = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": 0.1}, {"params": gains, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.95),
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, config))
    step, losses = 0, []
    checkpoint = work / "checkpoint.pt"
    if checkpoint.exists():  # resume: same weights, optimizer moments, schedule and data position
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step, losses = state["step"], state["losses"]
    model.train()
    pad = tokenizer.pad_token_id
    while step < config.steps:
        batch = [examples[(step * config.batch_size + i) % len(examples)] for i in range(config.batch_size)]
        ids, labels, is_answer = _collate(batch, pad)
        logits = model(input_ids=ids, attention_mask=(ids != pad).long()).logits
        loss = _per_example_loss(logits, labels, is_answer, config.prompt_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        step += 1
        losses.append(round(loss.item(), 4))
        if progress:
            progress(step, config.steps, losses[-1])
        if step % CHECKPOINT_EVERY == 0 and step < config.steps:
            tmp = checkpoint.with_suffix(".tmp")
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "step": step,
                    "losses": losses,
                },
                tmp,
            )
            tmp.replace(checkpoint)
    model.eval()
    model.save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")
    return losses


def _lr_factor(step: int, config: BuildConfig) -> float:
    import math

    if step < config.warmup:
        return (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def _encode(tokenizer, pairs: list[tuple[str, str]]) -> list[tuple[list[int], int]]:
    """Token ids of each chat turn pair, and where its answer starts (the loss covers only the answer). Batched:
    one template render and one tokenizer call for all pairs, about twice as fast as pair by pair."""
    chats = [[{"role": "user", "content": prompt}] for prompt, _ in pairs]
    heads = tokenizer.apply_chat_template(chats, tokenize=False, add_generation_prompt=True)
    head_ids = tokenizer(heads, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer([answer + "<|im_end|>" for _, answer in pairs], add_special_tokens=False)["input_ids"]
    return [(head + answer, len(head)) for head, answer in zip(head_ids, answer_ids, strict=True)]


def _per_example_loss(logits, labels, is_answer, prompt_weight: float = 0.0):
    """Mean over examples of each example's mean answer-token loss: a two-token Yes/No answer weighs as much as a
    twenty-token worked sum (a plain token mean would let the long answers drown the short ones). With
    `prompt_weight`, each example's mean prompt-token loss is added at that weight (pre-training on the prompts
    too: in three paired runs a quarter raised the math scores)."""
    import torch

    logits, labels, is_answer = logits[:, :-1].float(), labels[:, 1:], is_answer[:, 1:]
    losses = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.clamp(min=0).reshape(-1), reduction="none"
    ).view(labels.shape)

    def mean(mask):
        return (losses * mask).sum(1) / mask.sum(1).clamp(min=1)

    loss = mean(is_answer)
    if prompt_weight:
        loss = loss + prompt_weight * mean((labels != -100) & ~is_answer)
    return loss.mean()


def _collate(batch: list[tuple[list[int], int]], pad: int):
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    is_answer = torch.zeros((len(batch), width), dtype=torch.bool)
    for row, (tokens, answer_at) in enumerate(batch):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        labels[row, : len(tokens)] = torch.tensor(tokens)
        is_answer[row, answer_at : len(tokens)] = True
    return ids, labels, is_answer
