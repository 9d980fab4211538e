"""The embedded demo suite: small, deterministic, SYNTHETIC versions of sst, quora, sts and
cfimdb.

Used when no ``--data-dir`` is given, so the first command of the README runs on a fresh
machine with no download. The examples are generated from word lists with a fixed seed; the
labels follow simple rules (word polarity, word overlap) that a model can learn. Scores on
them say nothing about real-language quality. ``cfimdb`` (binary polarity of longer reviews
written with sst's words) is the demo's new task for transfer: sst is its nearest task by
construction.
"""

from __future__ import annotations

import random

POSITIVE = ["good", "great", "fine", "lovely", "superb", "bright", "warm", "funny", "clever", "best"]
NEGATIVE = ["bad", "awful", "dull", "poor", "boring", "weak", "cold", "sad", "worst", "ugly"]
NEUTRAL = ["the", "a", "film", "movie", "story", "plot", "cast", "scene", "was", "is", "and",
           "with", "very", "quite", "really", "this", "that", "of", "it", "its"]
NOUNS = ["cat", "dog", "car", "house", "tree", "river", "city", "book", "phone", "train",
         "bird", "road", "music", "coffee", "game", "garden", "school", "market", "window", "bread",
         "horse", "ship", "lamp", "chair", "table", "apple", "storm", "field", "bridge", "letter"]
VERBS = ["sees", "likes", "finds", "moves", "buys", "takes", "opens", "paints", "sells", "makes"]
SYNONYMS = {"sees": "watches", "likes": "enjoys", "finds": "discovers", "moves": "shifts",
            "buys": "purchases", "takes": "grabs", "opens": "unlocks", "paints": "colors",
            "sells": "trades", "makes": "builds"}

SIZES = {"train": 2000, "dev": 300}
Example = tuple[str, "str | None", float]


def tokenizer_vocab() -> list[str]:
    """A word-level vocabulary covering the demo suite (tests build tokenizers from it)."""
    words = POSITIVE + NEGATIVE + NEUTRAL + NOUNS + VERBS + list(SYNONYMS.values())
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(words))


def _sentiment(rng: random.Random) -> Example:
    pos, neg = rng.randint(0, 3), rng.randint(0, 3)
    words = rng.sample(NEUTRAL, 5) + rng.choices(POSITIVE, k=pos) + rng.choices(NEGATIVE, k=neg)
    rng.shuffle(words)
    return " ".join(words), None, float(min(4, max(0, 2 + pos - neg)))


def _clause(rng: random.Random) -> list[str]:
    return [rng.choice(NOUNS), rng.choice(VERBS), rng.choice(NOUNS), rng.choice(NOUNS)]


def _paraphrase(rng: random.Random) -> Example:
    s1 = _clause(rng)
    if rng.random() < 0.5:  # paraphrase: swap verbs for synonyms, keep content words
        s2 = [SYNONYMS.get(w, w) for w in s1]
        label = 1.0
    else:  # not a paraphrase: same verb, mostly other nouns
        s2 = [rng.choice(NOUNS), s1[1], rng.choice(NOUNS), s1[3] if rng.random() < 0.3 else rng.choice(NOUNS)]
        label = 0.0
    return " ".join(s1), " ".join(s2), label


def _similarity(rng: random.Random) -> Example:
    s1 = rng.sample(NOUNS, 5)
    keep = rng.randint(0, 5)
    rest = [w for w in NOUNS if w not in s1]
    s2 = s1[:keep] + rng.sample(rest, 5 - keep)
    rng.shuffle(s2)
    return " ".join(s1), " ".join(s2), float(keep)


def _review(rng: random.Random) -> Example:
    pos = rng.randint(0, 4)
    neg = rng.choice([n for n in range(5) if n != pos])  # never a tie: the label is defined
    words = rng.sample(NEUTRAL, 8) + rng.choices(POSITIVE, k=pos) + rng.choices(NEGATIVE, k=neg)
    rng.shuffle(words)
    return " ".join(words), None, float(pos > neg)


GENERATORS = {"sst": _sentiment, "quora": _paraphrase, "sts": _similarity, "cfimdb": _review}


def demo_examples(task: str, split: str) -> list[Example]:
    """Deterministic examples of a demo task's split (independent of the training seed)."""
    if task not in GENERATORS:
        raise ValueError(f"the demo suite has tasks {', '.join(GENERATORS)}; got {task!r} "
                         "(pass --data-dir for real data)")
    n = SIZES.get(split, SIZES["dev"])
    rng = random.Random(f"{task}/{split}")
    return [GENERATORS[task](rng) for _ in range(n)]
