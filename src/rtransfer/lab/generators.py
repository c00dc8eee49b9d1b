"""Procedural problems for the lab's seven benchmarks, two or three per group, each from a seeded RNG.

Every generator returns an Item: the prompt, the gold answer, the answer written in the lab's concise house
style (what the base model is pre-trained on) and the fields a grader or the teacher needs. Generators know
nothing about models or graders. Difficulty is set so that a CPU-sized model reaches partial skill: chains of
operations, several entities to keep apart, counting constraints.
"""

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The lab's data version, which every lab task carries (benchmark versions in run manifests): bump when a generator
# or the house style changes. The base's build key (build.BuildConfig.key) hashes the generated corpus itself.
LAB_VERSION = "3"

LETTERS = "ABCD"
NAMES = ("Ann", "Bob", "Cal", "Dia", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jon", "Kim", "Leo", "Mia", "Ned", "Ola")
THINGS = ("apples", "books", "coins", "cards", "shells", "stamps", "pens", "marbles")
COLORS = ("red", "blue", "green", "black", "white", "yellow")
OBJECTS = ("kite", "ball", "hat", "cup", "bike", "box")
PLACES = ("Oslo", "Rome", "Lima", "Cairo", "Paris", "Tokyo", "Quito", "Dakar")
PETS = ("cat", "dog", "fish", "bird", "frog", "horse")
WORDS = (
    "apple",
    "river",
    "stone",
    "cloud",
    "green",
    "music",
    "light",
    "ocean",
    "tiger",
    "bread",
    "chair",
    "dream",
    "garden",
    "winter",
    "summer",
    "forest",
    "candle",
    "silver",
    "window",
    "market",
    "island",
    "planet",
    "rabbit",
    "school",
    "letter",
    "bridge",
    "castle",
    "dragon",
    "flower",
    "mirror",
    "pencil",
    "rocket",
    "saddle",
    "tunnel",
    "violin",
    "wagon",
    "yellow",
    "zebra",
    "honey",
    "lemon",
)


@dataclass(frozen=True)
class Item:
    prompt: str
    answer: str  # the gold answer, as its grader expects it (a number, a letter, a span, "Yes"/"No", ...)
    house: str  # the answer in the base model's concise house style
    # data["terse"] on math items: the same answer with the whole chain computed in one go, which part of the base's
    # mid-training data uses instead of the worked house style (build.py)
    data: dict[str, Any] = field(default_factory=dict)


def arith(rng: random.Random) -> Item:
    """Two steps of + and − on a stock of things (math)."""
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    total = rng.randint(3, 15)
    steps, lines, chain = [], [f"{name} has {total} {thing}."], [str(total)]
    for _ in range(2):
        if rng.random() < 0.5 or total < 4:
            n = rng.randint(2, 9)
            lines.append(rng.choice(("{n} more are added.", "{name} gets {n} more.", "{name} finds {n} more.")))
            steps.append(f"{total} + {n} = {total + n}.")
            chain.append(f"+ {n}")
            total += n
        else:
            n = rng.randint(1, total - 1)
            lines.append(rng.choice(("{name} gives away {n}.", "{name} loses {n}.", "{n} are sold.")))
            steps.append(f"{total} - {n} = {total - n}.")
            chain.append(f"- {n}")
            total -= n
        lines[-1] = lines[-1].format(name=name, n=n)
    prompt = " ".join(lines) + f" How many {thing} does {name} have now?"
    house = " ".join(steps) + f" \\boxed{{{total}}}"
    terse = f"{' '.join(chain)} = {total}. \\boxed{{{total}}}"
    return Item(prompt, str(total), house, {"steps": steps, "terse": terse})


def lineq(rng: random.Random) -> Item:
    """A linear equation a·x + b = c (or a·x − b = c) with an integer solution (math)."""
    a, x, b = rng.randint(2, 5), rng.randint(0, 10), rng.randint(1, 15)
    if rng.random() < 0.5:
        c, lhs, undo = a * x + b, f"{a}x + {b}", f"{a * x + b} - {b}"
    else:
        c, lhs, undo = a * x - b, f"{a}x - {b}", f"{a * x - b} + {b}"
    house = f"{a}x = {undo} = {a * x}. x = {x}. \\boxed{{{x}}}"
    terse = f"x = ({undo}) / {a} = {x}. \\boxed{{{x}}}"
    return Item(f"Solve for x: {lhs} = {c}.", str(x), house, {"a": a, "b": b, "c": c, "terse": terse})


def _choice_prompt(question: str, options: list[str]) -> str:
    listed = " ".join(f"{letter}) {o}" for letter, o in zip(LETTERS, options, strict=True))
    return f"{question}\nOptions: {listed}"


# Why the options of the two multiple-choice tasks are in a fixed order (counts, consecutive values): a base this
# small does not learn, within the lab's budget, to look the letter of its answer up in a shuffled list (measured:
# chance at 2400 steps, with the letter before or after the option, while it solved the reasoning itself). With
# ordered options the letter follows from the answer, and the score measures the reasoning.


def order(rng: random.Random) -> Item:
    """Four people ordered by three shuffled "older than" facts; how many of them are older than a given one
    (other reasoning)."""
    people = rng.sample(NAMES, 4)  # from oldest to youngest
    facts = [f"{people[i]} is older than {people[i + 1]}." for i in range(3)]
    rng.shuffle(facts)
    rank = rng.randrange(4)
    person, options, letter = people[rank], ["0", "1", "2", "3"], LETTERS[rank]
    prompt = _choice_prompt(" ".join(facts) + f" How many people are older than {person}?", options)
    # The house answer finds the person in the chain by comparing names one by one, counting as it goes. A base
    # this small learns to compare two names, not to look a name's position up in a list (measured: chance at
    # "Older than X: n" after a correct chain, in every run).
    checks = ", ".join(f"{i} {p} {'yes' if p == person else 'no'}" for i, p in enumerate(people[: rank + 1]))
    house = f"Order: {' > '.join(people)}. Find {person}: {checks}. \\boxed{{{letter}}}"
    return Item(prompt, letter, house, {"options": options, "order": people, "rank": rank})


OPS = {"+": lambda v, n: v + n, "-": lambda v, n: v - n, "*": lambda v, n: v * n}


def trace(rng: random.Random) -> Item:
    """What a short program prints (other reasoning), as multiple choice. Every value stays a single digit, so
    the program is about following the updates, not about long arithmetic."""
    values = [rng.randint(0, 9)]
    lines = [f"x = {values[0]}"]
    for _ in range(2):
        op = rng.choice([o for o in "+-*" if 0 <= OPS[o](values[-1], 2) <= 9])
        n = 2 if op == "*" else rng.choice([n for n in range(1, 7) if 0 <= OPS[op](values[-1], n) <= 9])
        lines.append(f"x = x {op} {n}")
        values.append(OPS[op](values[-1], n))
    result = values[-1]
    first = rng.randint(max(0, result - 3), min(result, 6))  # four consecutive values around the result
    options, letter = [str(v) for v in range(first, first + 4)], LETTERS[result - first]
    prompt = _choice_prompt("What does this program print?\n" + "\n".join([*lines, "print(x)"]), options)
    house = f"x = {', '.join(str(v) for v in values)}. Prints {result}. \\boxed{{{letter}}}"
    return Item(prompt, letter, house, {"options": options, "values": values})


ENDINGS = ("That is all.", "The end.", "Thank you.")


# IFEval-style constraints, written with IFEval's own instruction ids and kwargs so IFEval's checkers grade them.
# (No language-detection instructions: langdetect is unreliable on a few words.)
def _capitals(rng):
    w = rng.sample(WORDS, 2)
    return (
        f"Write the words {w[0]} and {w[1]} in capital letters.",
        f"{w[0].upper()} {w[1].upper()}",
        ("change_case:capital_word_frequency", {"capital_relation": "at least", "capital_frequency": 2}),
    )


def _quoted(rng):
    w = rng.choice(WORDS)
    return (
        f"Write a sentence about {w} and wrap your entire response in double quotation marks.",
        f'"I like {w}."',
        ("startend:quotation", {}),
    )


def _title(rng):
    w = rng.sample(WORDS, 2)
    title = f"{w[0]} {w[1]}".title()
    return (
        f"Give a title for a poem about {w[0]} and {w[1]}, wrapped in double angular brackets like <<title>>.",
        f"<<{title}>>",
        ("detectable_format:title", {}),
    )


def _exactly(instruction: str, count: str, n: int, relation: str = "relation", **kwargs) -> tuple:
    """IFEval has no "exactly n": it is the pair of checks "at least n" and "less than n + 1"."""
    return tuple(
        (instruction, {**kwargs, relation: rel, count: k}) for rel, k in (("at least", n), ("less than", n + 1))
    )


def _words(rng):
    n = rng.randint(3, 12)
    topic = rng.choice(WORDS)
    text = " ".join([topic, *rng.choices(WORDS, k=n - 1)])
    return (
        f"Write exactly {n} words about {topic}.",
        text,
        *_exactly("length_constraints:number_words", "num_words", n),
    )


def _bullets(rng):
    n = rng.randint(2, 7)
    items = rng.sample(WORDS, n)
    topic = rng.choice(WORDS)
    return (
        f"List exactly {n} words that go with {topic}, as markdown bullet points.",
        "\n".join(f"* {w}" for w in items),
        ("detectable_format:number_bullet_lists", {"num_bullets": n}),
    )


def _ending(rng):
    w = rng.choice(WORDS)
    phrase = rng.choice(ENDINGS)
    return (
        f"Say one thing about {w} and end your response with the exact phrase '{phrase}'.",
        f"I like {w}. {phrase}",
        ("startend:end_checker", {"end_phrase": phrase}),
    )


def _frequency(rng):
    w, n = rng.choice(WORDS), rng.randint(2, 8)
    return (
        f"Write a line that uses the word {w} exactly {n} times.",
        " ".join([w] * n),
        *_exactly("keywords:frequency", "frequency", n, keyword=w),
    )


def _paragraphs(rng):
    n, w = rng.randint(2, 7), rng.choice(WORDS)
    return (
        f"Write {n} paragraphs about {w}, separated by the markdown divider ***.",
        "\n***\n".join(f"I like {w}." for _ in range(n)),
        ("length_constraints:number_paragraphs", {"num_paragraphs": n}),
    )


# The base is pre-trained on one instruction per prompt (fmt); lab_format's test split also holds pairs
# (fmt_pair), which no split trains on: IFEval's prompts carry one to three instructions.
FORMATS = (_capitals, _quoted, _title, _words, _bullets, _ending, _frequency, _paragraphs)


def _in_quotes(rng, response):
    return ", and wrap your entire response in double quotation marks", f'"{response}"', ("startend:quotation", {})


def _with_ending(rng, response):
    phrase = rng.choice(ENDINGS)
    check = ("startend:end_checker", {"end_phrase": phrase})
    after = "\n" if "\n" in response else " "  # on a line of its own after a list or paragraphs
    return f", and end your response with the exact phrase '{phrase}'", f"{response}{after}{phrase}", check


def _in_capitals(rng, response):
    # Only after instructions that fix the number of words, so that the check can ask for that many.
    n = len(re.findall(r"\w+", response))
    check = ("change_case:capital_word_frequency", {"capital_relation": "at least", "capital_frequency": n})
    return " in capital letters", response.upper(), check


# An instruction and a second one on the whole response, in the words of the single instructions; only pairs
# that one answer can satisfy (an end phrase would break an exact word count, for one).
PAIRS = (
    (_words, _in_quotes),
    (_words, _in_capitals),
    (_bullets, _with_ending),
    (_bullets, _in_capitals),
    (_frequency, _in_quotes),
    (_frequency, _in_capitals),
    (_paragraphs, _with_ending),
    (_paragraphs, _in_quotes),
    (_title, _with_ending),
    (_capitals, _in_quotes),
    (_capitals, _with_ending),
    (_ending, _in_quotes),
)


def _format_item(prompt: str, response: str, instructions) -> Item:
    ids = [i for i, _ in instructions]
    return Item(prompt, response, response, {"instruction_id_list": ids, "kwargs": [k for _, k in instructions]})


def fmt(rng: random.Random) -> Item:
    """One format-constrained instruction, checked IFEval-style (non-reasoning)."""
    prompt, response, *instructions = rng.choice(FORMATS)(rng)
    return _format_item(prompt, response, instructions)


def fmt_pair(rng: random.Random) -> Item:
    """Two format-constrained instructions in one prompt."""
    single, second = rng.choice(PAIRS)
    prompt, response, *instructions = single(rng)
    clause, response, instruction = second(rng, response)
    return _format_item(prompt.removesuffix(".") + clause + ".", response, [*instructions, instruction])


def story(rng: random.Random) -> Item:
    """Short-story question answering, scored by F1 (non-reasoning): two people, three attributes each."""
    a, b = rng.sample(NAMES, 2)
    facts = {}
    sentences = []
    for person in (a, b):
        color, obj, place, pet = rng.choice(COLORS), rng.choice(OBJECTS), rng.choice(PLACES), rng.choice(PETS)
        facts[person] = {"object": f"a {color} {obj}", "place": place, "pet": f"a {pet}"}
        sentences += [f"{person} has a {color} {obj}.", f"{person} lives in {place}.", f"{person} owns a {pet}."]
    rng.shuffle(sentences)
    person, kind = rng.choice((a, b)), rng.choice(("object", "place", "pet"))
    question = {
        "object": f"What does {person} have?",
        "place": f"Where does {person} live?",
        "pet": f"What pet does {person} own?",
    }[kind]
    answer = facts[person][kind]
    return Item(f"Story: {' '.join(sentences)}\nQuestion: {question}", answer, answer, {"person": person, "kind": kind})


def support(rng: random.Random) -> Item:
    """Is an answer supported by the passage? Yes/No (non-reasoning). The passage tells about two people; half
    of the answers are altered to a value the passage does not hold."""
    a, b = rng.sample(NAMES, 2)
    sentences, facts = [], {}
    for person in (a, b):
        place, pet, color = rng.choice(PLACES), rng.choice(PETS), rng.choice(COLORS)
        facts[person] = {"place": place, "pet": pet, "color": color}
        sentences += [f"{person} lives in {place}.", f"{person} has a {color} {pet}."]
    person = rng.choice((a, b))
    kind, question = rng.choice(
        (
            ("place", f"Where does {person} live?"),
            ("pet", f"What pet does {person} have?"),
            ("color", f"What color is {person}'s pet?"),
        )
    )
    true, pool = facts[person][kind], {"place": PLACES, "pet": PETS, "color": COLORS}[kind]
    supported = rng.random() < 0.5
    shown = true if supported else rng.choice([x for x in pool if x not in (facts[a][kind], facts[b][kind])])
    prompt = (
        f"Passage: {' '.join(sentences)}\nQuestion: {question}\nAnswer: {shown}\n"
        "Is the answer supported by the passage? Answer Yes or No."
    )
    gold = "Yes" if supported else "No"
    # The answer under judgement, then the passage's own value, then the verdict: the comparison is between two
    # nearby words.
    house = f"{shown} / {true}. {gold}"
    return Item(prompt, gold, house, {"supported": supported, "true": true, "shown": shown, "person": person})


GENERATORS: dict[str, Callable[[random.Random], Item]] = {
    "lab_arith": arith,
    "lab_lineq": lineq,
    "lab_order": order,
    "lab_trace": trace,
    "lab_format": fmt,
    "lab_story": story,
    "lab_support": support,
}

# Test-only items: drawn into a task's test split beside GENERATORS' items, held out of every train split.
HELD_OUT: dict[str, Callable[[random.Random], Item]] = {"lab_format": fmt_pair}
