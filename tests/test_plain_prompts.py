"""The 40 out-of-vocabulary prompts: well-formed targets, and no word a training caption is built from."""
import re

from musicgen_core.eval.prompts import load_plain_prompts
from musicgen_core.train.describe import PACKAGE_WORDS
from musicgen_core.train.real import SOURCES, VALID_PACKAGES
from musicgen_core.train.styles import STYLES


def test_forty_distinct_prompts_with_known_targets():
    rows = load_plain_prompts()
    assert len(rows) == 40 and len({p for p, _ in rows}) == 40
    labels = {f"style:{s.name}" for s in STYLES} | {f"real:{s.package}" for s in SOURCES
                                                    if s.package not in VALID_PACKAGES}
    assert all(targets and set(targets) <= labels for _, targets in rows)
    assert {t for _, targets in rows for t in targets} >= {f"style:{s.name}" for s in STYLES}  # every style asked


def test_no_prompt_uses_the_training_vocabulary():
    """Every synthetic caption names one of its style's synonyms and every real caption one of its package's genre
    phrases (or "instrumental music"): a prompt with none of them is no training caption, and reaches its style only
    through what the text encoder knows."""
    phrases = {s.name.replace("_", " ") for s in STYLES} | {w for s in STYLES for w in s.synonyms}
    phrases |= {g for genres, _ in PACKAGE_WORDS.values() for g in genres} | {"instrumental music"}
    for prompt, _ in load_plain_prompts():
        used = [w for w in phrases if re.search(rf"\b{re.escape(w.lower())}\b", prompt.lower())]
        assert not used, f"{prompt!r} uses {used}"
