import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import shared_path
from release_reference import random_authors_prenet, random_authors_sian, release_sian
from sian.convert import import_weights
from sian.hub import WEIGHTS, load_model, weights_dir
from sian.models import SIAN, create_model
from sian.weights import (
    WeightsError,
    WeightsNotFoundError,
    read_weights_file,
    save_weights,
    sha256_file,
    tensors_sha256,
)


def save_authors_pickle(path, state):
    # The authors' files are legacy (non-zip) torch.save pickles of a plain OrderedDict.
    torch.save({k: v.float() for k, v in state.items()}, path, _use_new_zipfile_serialization=False)
    return path


def test_registry_lists_the_six_published_files():
    published = {name for name, entry in WEIGHTS.items() if not entry.bundled}
    assert published == {f"{a}-{d}" for a in ("sian", "prenet") for d in ("rain100l", "rain100h", "rain1400")}
    assert all(len(e.sha256) == 64 and (e.bundled or e.url.startswith("https://")) for e in WEIGHTS.values())


def test_weights_dir_follows_sian_home_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("SIAN_HOME", str(tmp_path / "home"))
    assert weights_dir() == tmp_path / "home" / "weights"
    monkeypatch.delenv("SIAN_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert weights_dir() == tmp_path / "cache" / "sian" / "weights"


def test_missing_named_weights_say_how_to_get_them():
    with pytest.raises(WeightsNotFoundError) as info:
        load_model("sian-rain100l")
    message = str(info.value)
    assert "sian weights import FILE --name sian-rain100l" in message
    assert WEIGHTS["sian-rain100l"].url in message and "sian weights download" in message


def test_import_of_an_own_checkpoint_drops_dead_tensors_and_round_trips(tmp_path):
    authors = random_authors_sian()
    pth = save_authors_pickle(tmp_path / "mine.pth", authors)
    path = import_weights(pth, "my-sian")
    assert path == weights_dir() / "my-sian.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta, keys = f.metadata(), list(f.keys())
    assert meta["arch"] == "sian" and json.loads(meta["config"])["kernel_mode"] == "release"
    assert meta["source_sha256"] == sha256_file(pth) and meta["variant"] == "sian"
    assert not any("conv_m" in k for k in keys) and len(keys) == 74 - 4 - 12 * 3 + 2 * 3
    model = load_model(path)
    assert isinstance(model, SIAN) and not model.training
    assert torch.equal(model.input_conv.weight, authors["body.tran_conv.weight"].float())


def test_import_of_a_registered_name_checks_the_hash(tmp_path):
    pth = save_authors_pickle(tmp_path / "rain100l.pth", random_authors_sian())
    with pytest.raises(WeightsError, match="is not the published 'sian-rain100l' file"):
        import_weights(pth, "sian-rain100l")
    # --force imports it, but loading by the registered name then refuses the impostor.
    import_weights(pth, "sian-rain100l", force=True)
    with pytest.raises(WeightsError, match="does not hold the registered 'sian-rain100l' weights"):
        load_model("sian-rain100l")


def test_wrong_architecture_names_missing_and_unexpected_keys(tmp_path):
    model = create_model("sian_baseline_lstm")
    path = save_weights(tmp_path / "w.safetensors", model, "sian", create_model("sian").config)
    with pytest.raises(WeightsError) as info:
        load_model(path)
    message = str(info.value)
    assert "missing keys (6)" in message and "levels.0.attention_conv.weight" in message
    pth = save_authors_pickle(tmp_path / "prenet.pth", random_authors_prenet())
    with pytest.raises(WeightsError, match="holds prenet weights, but variant 'sian' is a sian"):
        import_weights(pth, "x", variant="sian")


def test_unexpected_authors_keys_are_named(tmp_path):
    authors = random_authors_prenet()
    authors["extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError, match=r"unexpected keys.*extra\.weight"):
        import_weights(save_authors_pickle(tmp_path / "p.pth", authors), "p")


def test_pickles_are_not_loaded_directly_and_foreign_safetensors_are_refused(tmp_path):
    pth = save_authors_pickle(tmp_path / "p.pth", random_authors_prenet())
    with pytest.raises(WeightsError, match="sian weights import"):
        load_model(pth)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(WeightsError, match="no sian metadata"):
        load_model(foreign)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        load_model(garbage)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_a_pickle_that_needs_code_execution_is_refused_without_trust(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv0.0.weight": _Evil()}, path)
    with pytest.raises(WeightsError, match="--trust-pickle"):
        import_weights(path, "evil")


@pytest.mark.parametrize(
    ("name", "source"),
    [("sian-rain100l", ("weights", "sian_authors", "rain100l.pth")),
     ("prenet-rain100h", ("weights", "prenet_authors", "Rain100H", "PReNet6.pth"))],
)  # fmt: skip
def test_import_authors_files(name, source):
    path = import_weights(shared_path(*source), name)
    model = load_model(name)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["source_sha256"] == WEIGHTS[name].sha256
    assert sum(p.numel() for p in model.parameters()) == (491_939 if name.startswith("sian") else 168_963)


def test_download_verifies_and_imports_and_offline_is_a_clear_error(tmp_path, monkeypatch):
    import dataclasses

    from sian import convert as weights_module

    pth = save_authors_pickle(tmp_path / "remote.pth", random_authors_prenet())
    entry = dataclasses.replace(WEIGHTS["prenet-rain100l"], url=pth.as_uri(), sha256=sha256_file(pth))
    monkeypatch.setitem(weights_module.WEIGHTS, "prenet-rain100l", entry)
    path = weights_module.download_weights("prenet-rain100l")
    assert path.is_file() and load_model("prenet-rain100l").config["res_blocks"] == 5

    tampered = dataclasses.replace(entry, sha256="0" * 64)  # a file whose hash is not the registered one
    monkeypatch.setitem(weights_module.WEIGHTS, "prenet-rain100l", tampered)
    with pytest.raises(WeightsError, match="invalid hash value"):
        weights_module.download_weights("prenet-rain100l")

    gone = dataclasses.replace(entry, url=(tmp_path / "nowhere.pth").as_uri())
    monkeypatch.setitem(weights_module.WEIGHTS, "prenet-rain100l", gone)
    with pytest.raises(WeightsError, match=r"(?s)could not download .*sian weights import FILE --name prenet-rain100l"):
        weights_module.download_weights("prenet-rain100l")


@pytest.mark.slow
def test_import_converts_a_head_of_any_depth(tmp_path):
    """The converter assumed two head blocks though head_blocks is a config key."""
    authors = random_authors_sian(head_blocks=3)
    path = import_weights(save_authors_pickle(tmp_path / "deep.pth", authors), "deep-head")
    model = load_model(path).double()
    assert model.config["head_blocks"] == 3
    rainy = torch.rand(1, 3, 24, 20, dtype=torch.float64)
    with torch.no_grad():
        ours = model(rainy, return_all=True)
    as_stored = {k: v.float().double() for k, v in authors.items()}  # the import stores float32
    reference = release_sian(as_stored, rainy, head_blocks=3)
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(ours, reference, strict=True))


def test_weights_list_reports_an_unreadable_file_and_lists_the_rest(tmp_path):
    from typer.testing import CliRunner

    from sian.cli import app

    folder = weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "broken.safetensors").write_bytes(b"not a safetensors file")
    model = create_model("sian", channels=4, stages=2)
    save_weights(folder / "mine.safetensors", model, "sian", model.config)
    result = CliRunner().invoke(app, ["weights", "list"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "broken" in result.output and "unreadable" in result.output and "mine" in result.output


def test_torch_hub_loads_the_default_model_from_a_checkout():
    from pathlib import Path

    from sian.inference import DEFAULT_MODEL

    repo = Path(__file__).resolve().parents[1]
    model = torch.hub.load(str(repo), "sian", source="local", pretrained=True)
    reference = load_model(DEFAULT_MODEL)
    assert not model.training
    pairs = zip(model.state_dict().values(), reference.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    fresh = torch.hub.load(str(repo), "sian", source="local", pretrained=False, channels=4, stages=2)
    assert fresh.config["channels"] == 4


def test_tensors_hash_ignores_metadata_and_sees_every_tensor_detail(tmp_path):
    state = create_model("prenet").state_dict()
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_weights(first, state, "prenet", {}, step="1")
    save_weights(second, state, "prenet", {}, step="2", note="other metadata")
    assert sha256_file(first) != sha256_file(second)
    digest = tensors_sha256(read_weights_file(first)[2])
    assert digest == tensors_sha256(read_weights_file(second)[2]) == tensors_sha256(state)
    name = next(iter(state))
    changed_value = {**state, name: state[name] + 1}
    changed_dtype = {**state, name: state[name].double()}
    renamed = {("x" + k if k == name else k): v for k, v in state.items()}
    reshaped = {**state, name: state[name].reshape(-1)}
    hashes = {tensors_sha256(s) for s in (changed_value, changed_dtype, renamed, reshaped)}
    assert digest not in hashes and len(hashes) == 4
