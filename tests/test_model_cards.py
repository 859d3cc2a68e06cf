"""The model cards we ship say what the committed results tables hold for exactly those weights.

A card is written when its weights ship (tools/ship_weights.py) from the results tables under docs/results/;
these tests hold every shipped card to those tables, by the weights' hashes, so that a card cannot go stale
when a table, the default model or the weights change.
"""

import csv
import json
import re
from pathlib import Path

import pytest

from sian.hub import DEFAULT_MODEL, PRETRAINED_DIR, WEIGHTS
from sian.weights import read_weights_file, sha256_file, tensors_sha256

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
BUNDLED = sorted(name for name, entry in WEIGHTS.items() if entry.bundled)


def rows(table: str) -> list[dict]:
    with open(RESULTS / table) as f:
        return list(csv.DictReader(f))


def hashes(name: str) -> tuple[str, str]:
    """The shipped file's sha256 and the sha256 of its tensors alone (a run's checkpoint, scored before it
    shipped with other metadata, has the same tensors)."""
    path = PRETRAINED_DIR / f"{name}.safetensors"
    return sha256_file(path), tensors_sha256(read_weights_file(path)[2])


def measured_on(row: dict, name: str) -> bool:
    digest, tensors = hashes(name)
    return row.get("sha256") == digest or row.get("tensors_sha256") == tensors


def card(name: str) -> str:
    return (PRETRAINED_DIR / f"{name}.md").read_text()


@pytest.mark.parametrize("name", BUNDLED)
def test_a_cards_rain100l_score_is_its_weights_row_of_the_results_tables(name):
    # By the weights' hashes alone: a model shipped again under a versioned name keeps the rows scored under its
    # first name.
    found = [r for table in ("synth-rain100l.csv", "rain100l-models.csv") for r in rows(table)
             if int(r["images"]) == 100 and measured_on(r, name)]  # fmt: skip
    assert found, f"no Rain100L test row (all 100 pairs) for the shipped {name}"
    psnr, ssim = float(found[-1]["psnr"]), float(found[-1]["ssim"])
    assert f"**{psnr:.2f} dB / {ssim:.4f}**" in card(name)
    manifest = json.loads((PRETRAINED_DIR / "manifest.json").read_text())
    assert manifest[name]["reference"] == f"{psnr:.2f} / {ssim:.3f}"


@pytest.mark.parametrize("name", BUNDLED)
def test_a_card_names_the_default_model_of_the_package(name):
    text = card(name)
    if name == DEFAULT_MODEL:
        assert "`sian derain` uses it by default" in text
    else:
        assert f"`sian derain --model {name}`" in text
    named = re.findall(r"default model (?:is )?\(?`([^`]+)`", text)
    assert all(default == DEFAULT_MODEL for default in named), named


@pytest.mark.parametrize("name", [n for n in BUNDLED if "## What changed" in card(n)])
def test_a_replacing_card_gives_both_scores_on_the_same_validation_set(name):
    text = card(name)
    incumbent = re.search(r"Replaces `([^`]+)`", text).group(1)
    config = "configs/" + re.search(r"Config `([^`]+)`", text).group(1)
    ours, theirs = (float(v) for v in re.search(r"this model scores (\d+\.\d+) dB, `[^`]+` (\d+\.\d+)", text).groups())
    table = [r for r in rows("validation.csv") if r["config"] == config]
    full = max(int(r["images"]) for r in table)  # a --limit quick look does not count
    table = [r for r in table if int(r["images"]) == full]
    assert ours == round(float([r for r in table if measured_on(r, name)][-1]["psnr"]), 2)
    assert theirs == round(float([r for r in table if measured_on(r, incumbent)][-1]["psnr"]), 2)
    assert incumbent in BUNDLED and f"--model {incumbent}" in text  # the older weights still ship and load


@pytest.mark.parametrize("name", [n for n in BUNDLED if "Held-out heavy streak-bank rain" in card(n)])
def test_a_heavy_cards_held_out_heavy_rain_figure_is_its_weights_row(name):
    found = [r for r in rows("heavy-rain-test.csv") if measured_on(r, name)]
    assert found, f"no held-out heavy rain row for the shipped {name}"
    row = found[-1]
    figure = f"**{float(row['input_psnr']):.2f} -> {float(row['psnr']):.2f} dB ({float(row['gain']):+.2f})**"
    assert figure in card(name)


@pytest.mark.parametrize("name", [n for n in BUNDLED if "## Shipping decision" in card(n)])
def test_a_shipping_decision_quotes_both_models_rows_and_follows_its_rule(name):
    text = card(name)
    incumbent = re.search(r"against `([^`]+)`'s", text).group(1)
    config = "configs/" + re.search(r"Config `([^`]+)`", text).group(1)
    table = [r for r in rows("validation.csv") if r["config"] == config]
    full = max(int(r["images"]) for r in table)
    table = [r for r in table if int(r["images"]) == full]
    ours = json.loads([r for r in table if measured_on(r, name)][-1]["psnr_groups"])
    theirs = json.loads([r for r in table if r["model"] == incumbent][-1]["psnr_groups"])
    heavy = rows("heavy-rain-test.csv")
    ours_heavy = float([r for r in heavy if measured_on(r, name)][-1]["psnr"])
    named = [r for r in heavy if r["model"] in (incumbent, f"checkpoints/{incumbent}/best.safetensors")]
    theirs_heavy = float(named[-1]["psnr"])
    assert (
        f"RainTrainH pairs: {ours['RainTrainH_12']:.2f} dB against `{incumbent}`'s {theirs['RainTrainH_12']:.2f}"
        in text
    )
    assert f"Rain100L pairs: {ours['Rain100L_train']:.2f} dB" in text
    assert f"heavy rain: {ours_heavy:.2f} dB against `{incumbent}`'s {theirs_heavy:.2f}" in text
    assert ours["RainTrainH_12"] > theirs["RainTrainH_12"] and ours["Rain100L_train"] >= 30.0
    assert name == ("sian-heavy" if ours_heavy >= theirs_heavy else "sian-rain100h-style")
