"""scripts/validate_models.py applies the committed issue 15 rule (rules 1 and 2) to its validation rows."""

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))  # the script imports its neighbours, as when it runs
spec = importlib.util.spec_from_file_location("validate_models", REPO / "scripts" / "validate_models.py")
validate_models = importlib.util.module_from_spec(spec)
spec.loader.exec_module(validate_models)
decide = validate_models.decide

GENERAL, HEAVY = "configs/sian-general.yaml", "configs/sian-streaks-heavy.yaml"
SHIPPED = {"sian-synth-light", "sian-synth-heavy", "sian-rain100l-ours"}


def row(config: str, model: str, psnr: float, images: int = 40) -> dict:
    return {"config": config, "model": model, "psnr": str(psnr), "images": str(images)}


def scores(general: dict[str, float], heavy: dict[str, float]) -> list[dict]:
    return [row(GENERAL, m, p) for m, p in general.items()] + [row(HEAVY, m, p) for m, p in heavy.items()]


CANDIDATES = {"general": "checkpoints/sian-general/best.safetensors",
              "heavy": "checkpoints/sian-streaks-heavy/best.safetensors"}  # fmt: skip


def test_better_candidates_ship_and_the_best_on_the_general_set_is_default():
    rows = scores(
        {"sian-synth-light": 30.0, "sian-synth-heavy": 25.0, "sian-rain100l-ours": 36.0,
         CANDIDATES["general"]: 35.0, CANDIDATES["heavy"]: 33.0},
        {"sian-synth-heavy": 20.0, CANDIDATES["heavy"]: 27.0, CANDIDATES["general"]: 26.0},
    )  # fmt: skip
    lines = decide(rows, SHIPPED)
    assert lines[0].startswith("- `sian-general` ships (rule 1): 35.00 dB")
    assert lines[1].startswith("- `sian-streaks-heavy` ships (rule 1): 27.00 dB")
    # sian-rain100l-ours scores highest but was trained on Rain100L pairs only: not eligible
    assert lines[2].startswith("- default (rule 2): `sian-general`, 35.00 dB")


def test_a_candidate_that_does_not_beat_its_incumbent_is_neither_shipped_nor_default():
    rows = scores(
        {"sian-synth-light": 30.0, "sian-synth-heavy": 25.0, CANDIDATES["general"]: 29.9,
         CANDIDATES["heavy"]: 31.0},
        {"sian-synth-heavy": 20.0, CANDIDATES["heavy"]: 27.0, CANDIDATES["general"]: 26.0},
    )  # fmt: skip
    lines = decide(rows, SHIPPED)
    assert "`sian-general` does not ship" in lines[0]
    assert lines[2].startswith("- default (rule 2): `sian-streaks-heavy`, 31.00 dB")


def test_a_candidate_scored_before_the_other_is_decided_alone_and_the_default_is_provisional():
    rows = scores({"sian-synth-light": 30.0, "sian-synth-heavy": 25.0, CANDIDATES["general"]: 35.0},
                  {"sian-synth-heavy": 20.0})  # fmt: skip
    lines = decide(rows, SHIPPED)
    assert lines[0].startswith("- `sian-general` ships (rule 1): 35.00 dB")
    assert "not decided, no score on `configs/sian-streaks-heavy.yaml` for sian-streaks-heavy" in lines[1]
    assert lines[2].startswith("- default (rule 2): `sian-general`, 35.00 dB")
    assert lines[3].startswith("- provisional: `sian-streaks-heavy` not decided yet")


def test_no_default_without_an_eligible_model_scored_on_the_general_set():
    rows = scores({"sian-rain100l-ours": 36.0}, {"sian-synth-heavy": 20.0})
    lines = decide(rows, SHIPPED)
    assert lines[2].startswith("- default: not decided")


def test_a_quick_look_does_not_count_and_the_latest_score_of_a_run_does():
    rows = scores({"sian-synth-light": 30.0, CANDIDATES["general"]: 29.0}, {"sian-synth-heavy": 20.0})
    rows += [
        row(GENERAL, CANDIDATES["general"], 40.0, images=4),  # --limit 2: two of each source
        row(GENERAL, CANDIDATES["general"], 31.0),
        row(HEAVY, CANDIDATES["heavy"], 21.0),
    ]
    lines = decide(rows, SHIPPED)
    assert lines[0].startswith("- `sian-general` ships (rule 1): 31.00 dB")


def test_a_shipped_copy_of_a_scored_checkpoint_is_not_scored_again():
    """Pins the re-scoring of the shipped sian-general: the cache was keyed by the weight FILE's hash, and the
    shipped copy (same tensors, other metadata) has another, so it was scored a second time (~5 min)."""
    old_row = {"config": GENERAL, "model": CANDIDATES["general"], "sha256": "checkpoint-file", "images": "40"}
    rows = [old_row]  # cached before the tensors' hash was recorded
    candidates = {"sian-general": (Path("shipped.safetensors"), "shipped-file", "tensors"),  # listed first
                  CANDIDATES["general"]: (Path("best.safetensors"), "checkpoint-file", "tensors")}  # fmt: skip
    validate_models.backfill_tensors(rows, candidates)
    assert old_row["tensors_sha256"] == "tensors"
    assert validate_models.is_cached(rows, "shipped-file", "tensors", config=GENERAL, images="40")
    assert not validate_models.is_cached(rows, "shipped-file", "tensors", config=HEAVY, images="40")
    assert not validate_models.is_cached(rows, "other-file", "other-tensors", config=GENERAL, images="40")


def test_a_row_measured_in_this_run_caches_the_shipped_twin_listed_after_it():
    """Pins the second scoring of sian-general on the heavy set (2026-11-27): a row appended in the same run held
    ``images`` as a number, the cache key as text, so its twin (same tensors) did not find it and was scored again."""
    rows = [{"config": HEAVY, "model": "sian-general", "sha256": "shipped-file", "tensors_sha256": "tensors",
             "images": 40}]  # fmt: skip
    assert validate_models.is_cached(rows, "checkpoint-file", "tensors", config=HEAVY, images="40")
    assert not validate_models.is_cached(rows, "checkpoint-file", "tensors", config=HEAVY, images="20")
