"""Checkpoints: any script's model round-trips; the rebuilding script is the one recorded, found or named, and a
script whose source changed is refused unless the caller says otherwise; no code is unpickled."""

import shutil
import textwrap

import numpy as np
import pytest
import torch

from swm_core.checkpoint import (
    FORMAT_VERSION,
    file_sha256,
    import_script,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)

TOY = textwrap.dedent('''
    from torch import nn

    class Toy(nn.Module):
        default_solver = "cem"

        def __init__(self, dim=3, hidden=4):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
            self.stats = None

        def set_stats(self, stats):
            self.stats = stats
''')


@pytest.fixture
def toy(tmp_path):
    """A model script in a user's own folder (not this repository), its module and a checkpoint of it."""
    script = tmp_path / "mine" / "toy_train.py"
    script.parent.mkdir()
    script.write_text(TOY)
    module = import_script(script)
    torch.manual_seed(0)
    model = module.Toy(dim=5, hidden=7)
    stats = {"action": {"mean": np.ones(2), "std": np.full(2, 2.0)}}
    path = save_checkpoint(tmp_path / "ckpt" / "m.pt", model, {"dim": 5, "hidden": 7}, stats, step=12)
    return script, model, path


def test_round_trip_from_a_script_anywhere(toy):
    script, model, path = toy
    loaded, ckpt = load_checkpoint(path)
    assert type(loaded).__name__ == "Toy" and type(loaded) is type(model)  # same file, same module, same class
    assert ckpt["script"] == "toy_train.py" and ckpt["script_path"] == str(script.resolve())
    assert ckpt["script_sha256"] == file_sha256(script) and ckpt["default_solver"] == "cem"
    assert ckpt["extra"] == {"step": 12} and ckpt["format_version"] == FORMAT_VERSION
    x = torch.randn(4, 5)
    torch.testing.assert_close(loaded.net(x), model.net(x))
    torch.testing.assert_close(loaded.stats["action"]["std"], torch.full((2,), 2.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="holds a Toy.*pass a LeWM checkpoint"):
        load_checkpoint(path, expected_class="LeWM")


def test_moved_script_is_found_in_search_dirs_or_named(toy, tmp_path):
    script, model, path = toy
    moved = tmp_path / "project" / "baselines"
    moved.mkdir(parents=True)
    shutil.move(script, moved / script.name)
    with pytest.raises(ValueError, match=r"toy_train.py, which is in none of .*--model-script"):
        load_checkpoint(path)
    x = torch.randn(2, 5)
    loaded, _ = load_checkpoint(path, search_dirs=[tmp_path / "nowhere", moved])
    torch.testing.assert_close(loaded.net(x), model.net(x))
    loaded, _ = load_checkpoint(path, model_script=moved / script.name)
    torch.testing.assert_close(loaded.net(x), model.net(x))
    with pytest.raises(ValueError, match="--model-script .*missing.py' does not exist"):
        load_checkpoint(path, model_script=tmp_path / "missing.py")


def test_changed_script_is_refused_naming_both_files_unless_allowed(toy, tmp_path):
    script, model, path = toy
    original = tmp_path / "kept" / "toy_train.py"
    original.parent.mkdir()
    shutil.copy(script, original)
    script.write_text(TOY + "\n# an edit after training\n")
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(script.resolve()) in message and "source changed since training" in message
    assert "--allow-script-change" in message and "--model-script" in message
    loaded, _ = load_checkpoint(path, allow_script_change=True)  # the user's explicit override
    x = torch.randn(2, 5)
    torch.testing.assert_close(loaded.net(x), model.net(x))
    loaded, _ = load_checkpoint(path, model_script=original)  # an unchanged copy has the recorded hash
    torch.testing.assert_close(loaded.net(x), model.net(x))


def test_model_class_builds_without_any_script_lookup(toy, tmp_path):
    script, model, path = toy
    cls = type(model)
    script.unlink()  # a resuming training script passes its own class: nothing is looked up or imported
    loaded, _ = load_checkpoint(path, model_class=cls)
    assert type(loaded) is cls
    other = type("Other", (torch.nn.Module,), {})
    with pytest.raises(ValueError, match="holds a Toy, not a Other"):
        load_checkpoint(path, model_class=other)


def test_forged_checkpoints_and_bad_files_are_refused(toy, tmp_path):
    script, model, path = toy
    payload = torch.load(path, weights_only=True)
    payload["class_name"] = "Linear"  # a class the script imports but does not define
    torch.save(payload, tmp_path / "forged.pt")
    with pytest.raises(ValueError, match="defines no nn.Module class named 'Linear'"):
        load_checkpoint(tmp_path / "forged.pt")
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(ValueError, match=f"has checkpoint format_version 99; this swm reads version {FORMAT_VERSION}"):
        read_checkpoint(tmp_path / "future.pt")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable swm checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="is not a Python script"):
        import_script(tmp_path / "junk.pt")


def test_a_class_without_a_script_file_cannot_be_checkpointed(tmp_path):
    namespace = {}
    exec("import torch\nclass Inline(torch.nn.Module):\n    pass\n", namespace)  # as in an interactive session
    with pytest.raises(ValueError, match="cannot checkpoint Inline: its module 'builtins' has no .py file"):
        save_checkpoint(tmp_path / "x.pt", namespace["Inline"](), {})
    assert not (tmp_path / "x.pt").exists()


def test_edited_script_gets_its_own_module(tmp_path):
    script = tmp_path / "toy_train.py"
    script.write_text(TOY)
    first = import_script(script)
    assert import_script(script) is first
    script.write_text(TOY.replace("hidden=4", "hidden=5"))
    second = import_script(script)
    assert second is not first and second.Toy().net[0].out_features == 5
