"""vLLM sizing for GRPO and on-policy SFT: the recipe's vLLM fields reach TRL, the dry-run check refuses a colocated
engine that cannot hold the model (from a config alone, no weights), and the reward grades in parallel."""

import json
import threading
from dataclasses import replace

import pytest

from rtransfer.grading import math as math_grader
from rtransfer.train import rewards, sizing
from rtransfer.train.config import RecipeError, load_recipe, recipe_path

# Qwen3-14B-Base's and Qwen3-0.6B-Base's config.json (the sizes that matter; no weights anywhere).
QWEN3 = {
    "architectures": ["Qwen3ForCausalLM"],
    "model_type": "qwen3",
    "head_dim": 128,
    "num_key_value_heads": 8,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000,
    "rms_norm_eps": 1e-06,
    "hidden_act": "silu",
    "attention_bias": False,
    "torch_dtype": "bfloat16",
}
QWEN3_14B = {**QWEN3, "hidden_size": 5120, "intermediate_size": 17408, "num_hidden_layers": 40}
QWEN3_14B |= {"num_attention_heads": 40, "tie_word_embeddings": False}
QWEN3_06B = {**QWEN3, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28}
QWEN3_06B |= {"num_attention_heads": 16, "tie_word_embeddings": True}


def saved_config(folder, config: dict) -> str:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


@pytest.fixture(scope="module")
def qwen14b(tmp_path_factory) -> str:
    return saved_config(tmp_path_factory.mktemp("configs") / "Qwen3-14B-Base", QWEN3_14B)


@pytest.fixture(scope="module")
def qwen06b(tmp_path_factory) -> str:
    return saved_config(tmp_path_factory.mktemp("configs") / "Qwen3-0.6B-Base", QWEN3_06B)


def colocated(**values):
    return replace(load_recipe("grpo"), use_vllm=True, vllm_mode="colocate", **values)


def test_the_vllm_fields_reach_trls_grpo_config(tmp_path):
    from trl import GRPOConfig

    def config(recipe):
        return GRPOConfig(
            output_dir=str(tmp_path),
            per_device_train_batch_size=recipe.batch_size,
            num_generations=recipe.rollouts,
            steps_per_generation=recipe.steps_per_generation,
            bf16=False,
            report_to="none",
            **sizing.vllm_arguments(recipe),
        )

    unireason = load_recipe("grpo", recipe_path("unireason"))
    args = config(unireason)
    assert (args.use_vllm, args.vllm_mode, args.vllm_tensor_parallel_size) == (True, "colocate", 2)
    assert (args.vllm_gpu_memory_utilization, args.vllm_enable_sleep_mode) == (0.55, True)
    assert (args.vllm_max_model_length, args.vllm_importance_sampling_correction) == (22528, True)
    assert args.vllm_server_base_url is None  # not set: TRL's host and port apply

    server = load_recipe(
        "grpo", overrides=["use_vllm=true", "vllm_mode=server", "vllm_server_base_url=http://node7:8000"]
    )
    server = replace(server, vllm_importance_sampling_correction=False)
    args = config(server)
    assert (args.vllm_mode, args.vllm_server_base_url) == ("server", "http://node7:8000")
    assert args.vllm_max_model_length is None  # 0: the model's own context
    assert args.vllm_importance_sampling_correction is False


def test_parameters_are_counted_from_the_config_alone(qwen14b, qwen06b):
    big, small = sizing.model_shape(qwen14b), sizing.model_shape(qwen06b)
    assert abs(big.parameters / 14.8e9 - 1) < 0.01  # Qwen3-14B: 14.8B parameters (model card)
    assert abs(small.parameters / 0.596e9 - 1) < 0.01  # Qwen3-0.6B: 0.6B, 0.44B without the tied embedding
    assert (big.name, big.layers, big.kv_heads, big.head_dim, big.max_positions) == (
        "Qwen3-14B-Base",
        40,
        8,
        128,
        32768,
    )


def test_a_colocated_vllm_that_cannot_hold_14b_is_refused(qwen14b):
    # TRL's defaults on an 80 GiB GPU: 24 GiB for 27.5 GiB of weights.
    problem = sizing.colocate_problem(colocated(gpu_memory_gib=80.0), qwen14b, processes=8)
    assert problem.startswith("vLLM colocate: 0.3 × 80 GiB = 24.0 GiB cannot hold Qwen3-14B-Base's 27.5 GiB")
    assert "tensor parallel 1 plus one 32768-token sequence's KV cache (5.0 GiB)" in problem
    with pytest.raises(sizing.SizingError, match="raise vllm_gpu_memory_utilization"):
        sizing.check_colocate(colocated(gpu_memory_gib=80.0), qwen14b, processes=8)
    # Weights alone would fit 0.36 × 80 = 28.8 GiB; the KV cache of one 32K-token sequence (5 GiB) does not.
    assert "at least 32.5 GiB" in sizing.colocate_problem(
        colocated(gpu_memory_gib=80.0, vllm_gpu_memory_utilization=0.36), qwen14b, processes=8
    )


def test_tensor_parallel_2_at_0_6_holds_14b(qwen14b):
    recipe = colocated(gpu_memory_gib=80.0, vllm_tensor_parallel_size=2, vllm_gpu_memory_utilization=0.6)
    assert sizing.colocate_problem(recipe, qwen14b, processes=8) is None
    assert sizing.check_colocate(recipe, qwen14b, processes=8) is None
    estimate = sizing.colocate_estimate(recipe, qwen14b)
    # 48 GiB: 13.75 GiB of weights per GPU, 2.5 GiB per 32K-token sequence (4 of the 8 KV heads on each GPU)
    assert (round(estimate.weights_gib, 2), round(estimate.kv_gib, 2), estimate.sequences) == (13.75, 2.5, 13)


def test_tensor_parallel_must_divide_processes_and_heads(qwen14b):
    recipe = colocated(gpu_memory_gib=140.0, vllm_tensor_parallel_size=3)
    assert "does not divide the 8 training processes" in sizing.colocate_problem(recipe, qwen14b, processes=8)
    assert "does not divide Qwen3-14B-Base's 40 attention heads" in sizing.colocate_problem(recipe, qwen14b, 9)


def test_the_context_cannot_exceed_the_models(qwen14b):
    recipe = colocated(gpu_memory_gib=140.0, vllm_max_model_length=40000)
    assert "exceeds Qwen3-14B-Base's context of 32768" in sizing.colocate_problem(recipe, qwen14b, processes=1)


def test_the_launchers_process_count_is_used(qwen14b, monkeypatch):
    recipe = colocated(gpu_memory_gib=140.0, vllm_tensor_parallel_size=2)
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert "does not divide the 3 training processes" in sizing.colocate_problem(recipe, qwen14b)
    monkeypatch.delenv("WORLD_SIZE")  # a plain process: the launch to come is not known
    assert sizing.colocate_problem(recipe, qwen14b) is None


def test_what_cannot_be_checked_is_a_note(qwen14b, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this test's machine may have a GPU
    unchecked = colocated()  # gpu_memory_gib 0: the visible GPU's, and there is none
    assert sizing.colocate_problem(unchecked, qwen14b, processes=8) is None
    assert sizing.check_colocate(unchecked, qwen14b, processes=8) == (
        "vLLM colocate memory not checked: no GPU here; give gpu_memory_gib (the training GPUs' memory)"
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    note = sizing.colocate_note(colocated(gpu_memory_gib=80.0), "nobody/no-such-model")
    assert note == (
        "vLLM colocate memory not checked: no local config of nobody/no-such-model "
        "(neither a local folder nor in the local Hugging Face cache)"
    )
    # Neither applies without colocated vLLM.
    plain = load_recipe("grpo")
    assert sizing.colocate_note(plain, "nobody/no-such-model") is None
    assert sizing.colocate_problem(replace(plain, gpu_memory_gib=1.0), qwen14b) is None


def test_the_shipped_recipes_fit_their_gpus(qwen14b, qwen06b):
    unireason = load_recipe("grpo", recipe_path("unireason"))
    assert sizing.check_colocate(unireason, qwen14b, processes=8) is None  # 8 × H100 80GB, as declared
    estimate = sizing.colocate_estimate(unireason, qwen14b)
    assert estimate.gpu_source == "gpu_memory_gib" and estimate.sequences >= 10  # room for 10+ full rollouts
    # qwen3-0.6b generates with HF by default; with vLLM, on a 24 GiB GPU
    small = load_recipe("grpo", recipe_path("qwen3-0.6b"), ["use_vllm=true", "gpu_memory_gib=24"])
    assert sizing.check_colocate(small, qwen06b, processes=1) is None
    assert sizing.colocate_estimate(small, qwen06b).sequences >= 10


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("vllm_gpu_memory_utilization=1.5", "a share in (0, 1]"),
        ("vllm_tensor_parallel_size=0", "vllm_tensor_parallel_size must be > 0"),
        ("vllm_max_model_length=160", "leaves no room for a prompt beside max_completion_length 160"),
        ("gpu_memory_gib=-1", "must be >= 0"),
    ],
)
def test_impossible_vllm_values_are_recipe_errors(override, message):
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace("]", r"\]")):
        load_recipe("grpo", overrides=[override])


# Real answers: boxed, unboxed, wrong, a draft box inside <think>, equivalent forms, chat messages, empty.
ANSWERS = [
    ("so the answer is $\\boxed{42}$.", "42", 1.0),
    ("The total is 17", "17", 1.0),
    ("\\boxed{5}", "6", 0.0),
    ("<think>maybe \\boxed{3}</think> Final answer: \\boxed{4}", "4", 1.0),
    ("<think>surely \\boxed{4}</think> Final answer: \\boxed{3}", "4", 0.0),
    ("$\\boxed{\\frac{1}{2}}$", "0.5", 1.0),
    ([{"role": "assistant", "content": "x = \\boxed{9}"}], "9", 1.0),
    ([{"role": "assistant", "content": "I cannot tell."}], "9", 0.0),
    ("", "1", 0.0),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}", 1.0),
    ("The answer is 12, not 13", "13", 0.0),
]


def test_the_reward_grades_in_parallel_in_order(monkeypatch):
    completions = [c for c, _, _ in ANSWERS] * 3
    golds = [g for _, g, _ in ANSWERS] * 3
    serial = [
        math_grader.grade_math(rewards.completion_text(c), g).score for c, g in zip(completions, golds, strict=True)
    ]
    assert serial == [score for _, _, score in ANSWERS] * 3

    math_grader.set_workers(3)
    busy, most, lock = [0], [0], threading.Lock()
    grade = math_grader.grade_math

    def counted(text, gold):
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        try:
            return grade(text, gold)
        finally:
            with lock:
                busy[0] -= 1

    monkeypatch.setattr(math_grader, "grade_math", counted)
    try:
        assert rewards.grader_workers() == 3
        assert rewards.correctness_reward(completions, golds, prompts=None) == serial
        assert most[0] > 1  # graded at once, not one by one
    finally:
        math_grader.shutdown()  # the next grade starts the default pool
    assert rewards.correctness_reward.__name__ == "correctness_reward"  # TRL logs rewards by this name
    with pytest.raises(ValueError, match="2 completions for 1 answers"):
        rewards.correctness_reward(["\\boxed{1}", "\\boxed{2}"], ["1"])
