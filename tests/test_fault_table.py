"""The fault table (benchmarks/fault_table.py): each row's fault is performed for real and its answer and losses are
asserted here from the row's details (not from printed text); then the checksums of swm_core.integrity on their
own: recorded by every commit, kept across appends and tags, verified on demand."""

import json
import shutil

import lance
import numpy as np
import pyarrow as pa
import pytest

from swm_core.data import WindowDataset, open_dataset
from swm_core.integrity import CHECKSUM_KEY, CorruptDataError, check_dataset, verify_dataset
from swm_core.lance_writer import LanceWriter, tag_version


@pytest.fixture(scope="module")
def fault(load_script):
    return load_script("benchmarks/fault_table.py")


# ------------------------------------------------------------------------------------------------ each row


def test_unknown_env(fault, tmp_path):
    row = fault.unknown_env(tmp_path)
    assert row.ok, row
    assert "unknown env id 'swm/TwoRom-v1'" in row.details["error"] and "'swm/TwoRoom-v1'" in row.details["error"]


@pytest.mark.parametrize("name, said", [
    ("unknown_fov_key", ["unknown variation key 'agent.colour'", "valid keys", "'agent.color'"]),
    ("fov_out_of_range", ["'agent.color'", "[300, 0, 0]", "outside the allowed range", "255.0"]),
])  # fmt: skip
def test_bad_fov_is_named_and_the_dataset_is_intact(fault, tmp_path, name, said):
    row = fault.ROWS[name](tmp_path)
    assert row.ok and row.details["intact"], row
    for text in said:
        assert text in row.details["error"]


def test_missing_dataset_and_column(fault, tmp_path):
    row = fault.missing_dataset(tmp_path / "a")
    assert row.ok, row
    assert all("no Lance dataset at" in e and "nope.lance" in e for e in row.details["errors"])
    row = fault.missing_column(tmp_path / "b")
    assert row.ok, row
    assert "column 'proprio' is not in" in row.details["error"] and "'action'" in row.details["error"]


def test_truncated_data_file_is_named_and_the_earlier_version_is_intact(fault, tmp_path):
    row = fault.truncated_data_file(tmp_path)
    assert row.ok, row
    assert "truncated or corrupted files" in row.details["error"]
    report = row.details["report"]
    assert report["corrupted"] == [row.details["added"]] and len(report["ok"]) == 1
    bad = next(f for f in report["files"] if f["status"] == "corrupted")
    assert "but the manifest says" in bad["detail"] and row.details["v1_intact"]


def test_flipped_bytes_read_back_wrong_but_verify_names_the_file(fault, tmp_path):
    row = fault.flipped_bytes(tmp_path)
    assert row.ok, row
    assert row.details["silently_wrong"]  # why the checksums exist: the plain read raises nothing
    assert row.details["report"]["corrupted"] == [row.details["file"]]
    assert "SHA-256" in row.details["report"]["files"][0]["detail"]
    assert row.details["file"] in row.details["error"] and row.details["inspect_status"] == 1
    assert f"CORRUPTED {row.details['file']}" in row.details["inspect"]


@pytest.mark.parametrize("name", ["truncated_jpeg", "garbage_jpeg"])
def test_bad_jpeg_cell_names_episode_and_step_and_is_not_copied(fault, tmp_path, name):
    row = fault.ROWS[name](tmp_path)
    assert row.ok, row
    assert "column 'pixels', episode 1, step 7 (row 19): the stored image does not decode" in row.details["read_error"]
    assert "image column 'pixels', episode 1, step 7 is not a readable JPEG" in row.details["convert_error"]
    assert not (tmp_path / "copy.lance").exists()


def test_checkpoint_of_another_env_or_action_size(fault, tmp_path):
    row = fault.checkpoint_mismatch(tmp_path)
    assert row.ok, row
    env, size, resume = row.details["errors"]
    assert "was trained on 'swm/PushT-v1', but the env to plan in is 'swm/TwoRoom-v1'" in env
    assert "expects actions of size 3 per env step" in size
    assert "was trained with action_dim 3" in resume


def test_malicious_checkpoint_runs_nothing(fault, tmp_path):
    row = fault.malicious_checkpoint(tmp_path)
    assert row.details["control_created"]  # the payload is live: loaded unsafely, it runs
    assert not row.details["marker_created"] and not (tmp_path / "pwned").exists()
    assert "not a readable swm checkpoint" in row.details["error"] and row.ok, row


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(fault, tmp_path):
    row = fault.nan_loss(tmp_path)
    assert row.ok, row
    assert "gradient norm became nan at step 3; the last good checkpoint is" in row.details["error"]
    assert row.details["checkpoint_step"] == 3


def test_kill_during_collect_keeps_whole_episodes_and_a_rerun_appends(fault, tmp_path):
    row = fault.kill_collect(tmp_path)
    assert row.ok, row
    kept = row.details["kept"]
    assert kept >= 4 and kept % 2 == 0 and set(row.details["lengths"]) == {11}  # killed after >= 2 commits
    assert row.details["after"] == list(range(kept + 3)) and not row.details["report"]["corrupted"]


def test_kill_during_training_resumes(fault, tmp_path):
    row = fault.kill_training(tmp_path)
    assert row.ok, row
    assert row.details["final_step"] == row.details["killed_at"] + 4
    assert np.isfinite(row.details["max_abs_diff"])  # reported in the table (exact resume: 0)


def test_s3_restart_mid_epoch_gives_the_same_batches(fault, tmp_path):
    row = fault.s3_restart(tmp_path)
    if row.details.get("skipped"):
        pytest.skip("localbucket (dev dependency) is not installed")
    assert row.ok, row
    assert row.details["same"] and row.details["waited"] and row.details["batches"] == row.details["expected"] > 1


def test_zero_and_negative_sizes(fault, tmp_path):
    row = fault.zero_sizes(tmp_path)
    assert row.ok, row
    errors = row.details["errors"]
    assert errors["num_envs=0"] == "num_envs must be >= 1, got 0"
    assert errors["episodes=-1"] == "episodes must be >= 1, got -1"
    assert "batch_size=-8" in errors["batch_size=-8"]
    assert "got 0" in errors["lewm_train.py --batch-size 0"]


def test_main_prints_the_table_and_writes_a_record(fault, tmp_path, capsys):
    rows = fault.main(fault.Args(rows=("unknown_env", "missing_dataset"), out_dir=str(tmp_path)))
    assert [r.fault for r in rows] == ["unknown env id", "missing dataset"]
    record = json.loads((tmp_path / "fault_table-full-rowsunknown_env_missing_dataset.json").read_text())
    table = record["tables"][0]
    assert table["columns"][:4] == ["fault", "what was done", "what the project answered", "what was lost"]
    assert [r[0] for r in table["rows"]] == ["unknown env id", "missing dataset"]
    assert all(r[-1] == "yes" for r in table["rows"])
    assert "2 of 2 rows as promised" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown row"):
        fault.main(fault.Args(rows=("no_such_row",), out_dir=str(tmp_path)))


def test_a_row_that_breaks_is_reported_not_raised(fault, tmp_path, monkeypatch):
    def broken(tmp):
        raise RuntimeError("boom")

    monkeypatch.setitem(fault.ROWS, "unknown_env", broken)
    row = fault.run_row("unknown_env", tmp_path)
    assert not row.ok and "RuntimeError: boom" in row.answer
    with pytest.raises(SystemExit):
        fault.main(fault.Args(rows=("unknown_env",), out_dir=str(tmp_path)))


# ------------------------------------------------------------------------------------------------ checksums


def episodes(n, seed, T=10):
    rng = np.random.default_rng(seed)
    return [{"pixels": rng.integers(0, 256, (T, 8, 8, 3), dtype=np.uint8),
             "action": rng.normal(size=(T, 2)).astype(np.float32)} for _ in range(n)]


def write(path, eps, **kw):
    with LanceWriter(path, env_id="swm/Tiny-v0", **kw) as w:
        for ep in eps:
            w.add_episode(ep)
    return w.version


def test_every_commit_records_its_files_and_appends_and_tags_keep_them(tmp_path):
    path = tmp_path / "d.lance"
    write(path, episodes(2, 0))
    tag_version(path, "first")
    write(path, episodes(1, 1))
    write(path, episodes(3, 2), max_buffer_bytes=1)  # staged: several data files, one commit
    ds = lance.dataset(str(path))

    def files(version):
        fragments = lance.dataset(str(path), version=version).get_fragments()
        return {f.path for frag in fragments for f in frag.metadata.files}

    for v, before in ((1, set()), (2, files(1)), (3, files(2))):  # each commit records exactly the files it adds
        recorded = json.loads(ds.read_transaction(v).transaction_properties[CHECKSUM_KEY])
        assert set(recorded) == files(v) - before and all(len(h) == 64 for h in recorded.values())
    assert len(files(3) - files(2)) >= 2  # the staged commit added several files
    report = check_dataset(path)
    assert len(report["ok"]) == len(report["files"]) >= 5 and not report["unverified"]
    tagged = verify_dataset(path, version="first")
    assert tagged["version"] == 1 and len(tagged["ok"]) == 1 and not tagged["corrupted"]
    assert len(WindowDataset(path, num_steps=2, frameskip=1, split="all", columns=("pixels",), verify=True)) > 0


def test_verify_names_each_corrupted_file_and_other_writers_are_unverified(tmp_path):
    path = tmp_path / "d.lance"
    write(path, episodes(2, 0))
    write(path, episodes(2, 1))
    files = sorted(f for f in verify_dataset(path)["ok"])
    for name in files:  # one byte changed in each, sizes unchanged
        data = bytearray((path / name).read_bytes())
        data[len(data) // 3] ^= 0x01
        (path / name).write_bytes(bytes(data))
    report = verify_dataset(path)
    assert sorted(report["corrupted"]) == files
    with pytest.raises(CorruptDataError) as info:
        WindowDataset(path, num_steps=2, frameskip=1, split="all", verify=True)
    assert all(name in str(info.value) for name in files) and "2 corrupted data file(s) of 2" in str(info.value)
    (path / files[0]).unlink()
    missing = next(f for f in verify_dataset(path)["files"] if f["file"] == files[0])
    assert missing["status"] == "corrupted" and missing["detail"] == "the file is missing"

    other = tmp_path / "other.lance"  # written without LanceWriter (e.g. by stable-worldmodel): nothing recorded
    lance.write_dataset(pa.table({"episode_idx": pa.array([0, 0, 1], pa.int32()), "x": [1.0, 2.0, 3.0]}), str(other))
    report = verify_dataset(other)
    assert report["unverified"] and not report["corrupted"] and "no checksum recorded" in report["files"][0]["detail"]


def test_inspect_script_describes_and_verifies(load_script, tmp_path, capsys):
    inspect_dataset = load_script("scripts/inspect_dataset.py")
    path = tmp_path / "d.lance"
    write(path, episodes(3, 0))
    tag_version(path, "v1")
    assert inspect_dataset.main(inspect_dataset.Args(dataset=str(path), verify=True)) == 0
    out = capsys.readouterr().out
    assert "version 1 (tags: v1 -> v1)" in out and "episodes 3, rows 30" in out and "pixels" in out
    assert "verify version 1: 1 data files, 1 ok, 0 corrupted" in out
    shutil.rmtree(path / "data")
    assert inspect_dataset.main(inspect_dataset.Args(dataset=str(path), verify=True)) == 1
    assert "CORRUPTED data/" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no Lance dataset"):
        inspect_dataset.main(inspect_dataset.Args(dataset=str(tmp_path / "none.lance")))


def test_converted_dataset_carries_checksums(tmp_path):
    from swm_core.convert import convert

    src = tmp_path / "a.lance"
    write(src, episodes(2, 0))
    convert(src, tmp_path / "b.lance")
    assert check_dataset(tmp_path / "b.lance")["ok"] and open_dataset(tmp_path / "b.lance").num_episodes == 2
