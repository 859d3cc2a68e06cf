"""Every heavy-rain model on every heavy test we have, in one table: docs/results/heavy-models.md.

    python benchmarks/heavy_models.py

Computes nothing: it gathers the rows the scoring benchmarks committed, each found by the model's name (a run's
checkpoint, given to them as checkpoints/<run>/best.safetensors, by its run's name), the last row of each:

- held-out streak-bank heavy rain, inputs 14-20 dB (`python benchmarks/heavy_rain_test.py --band 14 20`);
- denser: two stacked draws (`... --stack 2 --band 11 16 --limit 40`);
- another renderer: the Photoshop recipe, three draws (`... --preset classic --stack 3 --band 11 16 --limit 40`);
- Rain100H's own rain: the 3 held-out RainTrainH pairs, and their rain layers over 20 held-out photos
  (`python benchmarks/validate_models.py --config configs/sian-raintrainh.yaml`, its groups RainTrainH_12 and
  synthetic), with the 20 held-out Rain100L training pairs of the same run (group Rain100L_train);
- the Rain100L test set (`python benchmarks/results_rain100l.py`).

No Rain100H test image is used: that set is held by others, who will run it.
"""

from __future__ import annotations

import json

from results_files import REPO, RUN_NAMES, read_csv, run_name

RESULTS = REPO / "docs" / "results"
OUT = RESULTS / "heavy-models.md"
MODELS = ["rainy input", "sian-heavy", "sian-rain100h-style", "sian-raintrainh", "sian-streaks-heavy", "sian-general",
          "sian-synth-heavy", "sian-rain100h"]  # fmt: skip
HEAVY = {"streak-bank heavy": "heavy-rain-test.csv", "two stacked draws": "heavy-rain-test-stack2.csv",
         "classic renderer": "heavy-rain-test-classic-stack3.csv"}  # fmt: skip
RAINTRAINH = "configs/sian-raintrainh.yaml"


def shipped_names() -> dict[str, str]:
    """A run whose shipping rule named it (raintrainh: sian-heavy or sian-rain100h-style) goes by that name."""
    manifest = json.loads((REPO / "src/sian/pretrained/manifest.json").read_text())
    return {RUN_NAMES[entry["preset"]]: name for name, entry in manifest.items()
            if RUN_NAMES.get(entry["preset"]) not in (None, name)}  # fmt: skip


def last_rows(table: str, **key: str) -> dict[str, dict]:
    """The last row of each model in a results table (rows matching ``key``), by the name it ships under."""
    rows, shipped = {}, shipped_names()
    for row in read_csv(RESULTS / table):
        if all(row.get(field) == value for field, value in key.items()):
            name = run_name(row["model"])
            rows[shipped.get(name, name)] = row
    return rows


def cell(row: dict | None, value: str) -> str:
    return f"{float(row[value]):.2f}" if row and row.get(value) else "-"


def main() -> None:
    heavy = {name: last_rows(table) for name, table in HEAVY.items()}
    validation = last_rows("validation.csv", config=RAINTRAINH)
    rain100l = last_rows("rain100l-models.csv", images="100")
    header = ["model", *(f"{name} (input)" for name in HEAVY), "RainTrainH held-out pairs", "their rain, 20 photos",
              "Rain100L held-out pairs", "Rain100L test"]  # fmt: skip
    lines = ["Made by `python benchmarks/heavy_models.py` from the committed tables it names; Y-PSNR (dB), "
             "whole images. Inputs in brackets; `-`: not measured.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
    for model in MODELS:
        groups = json.loads(validation[model]["psnr_groups"]) if validation.get(model, {}).get("psnr_groups") else {}
        cells = [f"{cell(rows.get(model), 'psnr')} ({cell(rows.get(model), 'input_psnr')})" for rows in heavy.values()]
        cells += [f"{groups[g]:.2f}" if g in groups else "-" for g in ("RainTrainH_12", "synthetic", "Rain100L_train")]
        cells.append(cell(rain100l.get(model), "psnr"))
        if any(c not in ("-", "- (-)") for c in cells):
            lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    lines += ["", "`sian-rain100h` is the authors' Rain100H SIAN, trained on all 1800 RainTrainH pairs, the 12 we "
              "hold among them."]  # fmt: skip
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
