"""Evaluation under shift: --variation / --wrapper parsing, both protocols (which frames each shift touches), clean
goal frames in datasets recorded under wrappers, and the flags of every solver main."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from swm_core import RandomPolicy, World
from swm_core.data import open_dataset
from swm_core.shift import parse_schedule, parse_shift
from swm_core.wrappers import Schedule

ROOT = Path(__file__).resolve().parent.parent
ENV = "swm/TwoRoom-v1"
BLUE = [0, 0, 255]
RED = np.array([255, 0, 0], np.uint8)  # Two-Room's default agent color


class Watcher:
    """A policy that stands still and keeps a copy of every observation and goal frame it is shown."""

    def __init__(self):
        self.pixels, self.goals, self.states = [], [], []

    def get_actions(self, infos):
        self.pixels.append(infos["pixels"].copy())
        self.goals.append(infos["goal"].copy())
        self.states.append(infos["state"].copy())
        return np.zeros((len(infos["pixels"]), 2), np.float32)


def has_color(frames, color) -> bool:
    return bool(np.all(np.asarray(frames) == np.asarray(color, np.uint8), axis=-1).any())


# --- parsing ------------------------------------------------------------------------------------------------


def test_parse_shift_turns_strings_into_world_arguments():
    shift = parse_shift(ENV, ["agent.color=0,0,255", "wall.axis=horizontal", "door"],
                        ["noise:std=linear(0,20,100)", "occlusion:num_patches=2,size=0.1,0.3,color=none"])
    assert shift.sample == ("door.color", "door.number", "door.size", "door.position")
    assert shift.values["agent.color"].tolist() == BLUE and int(shift.values["wall.axis"]) == 0
    assert shift.wrappers == (("noise", {"std": Schedule("linear", start=0, end=20, steps=100)}),
                              ("occlusion", {"num_patches": 2, "size": (0.1, 0.3), "color": None}))
    assert shift.options["variation"] == list(shift.sample)
    assert sorted(shift.options["variation_values"]) == ["agent.color", "wall.axis"]
    assert shift.label == ("agent.color=0,0,255; wall.axis=horizontal; door; noise:std=linear(0,20,100); "
                           "occlusion:num_patches=2,size=0.1,0.3,color=none")
    assert shift.describe()["set"] == {"agent.color": BLUE, "wall.axis": 0}
    none = parse_shift(ENV)
    assert not none and none.options is None and none.wrappers == () and none.label == "none"
    assert int(parse_shift("swm/PushT-v1", ["agent.shape=L"]).values["agent.shape"]) == 2  # a choice by name


def test_parse_schedule_syntax():
    assert parse_schedule("cosine(0, 1, 10, episode)") == Schedule("cosine", start=0, end=1, steps=10, clock="episode")
    assert parse_schedule("linear(start=1,end=3,steps=4)") == Schedule("linear", start=1, end=3, steps=4)
    assert parse_schedule("constant(7)") == Schedule("constant", start=7)
    shift = parse_shift(ENV, wrapper=["occlusion:size=linear(0.1,0.2,5),0.3", "blur:kernel=linear(1,9,8,episode)"])
    assert shift.wrappers[0][1]["size"] == (Schedule("linear", start=0.1, end=0.2, steps=5), 0.3)
    assert shift.wrappers[1][1]["kernel"] == Schedule("linear", start=1, end=9, steps=8, clock="episode")


@pytest.mark.parametrize("variation, wrapper, match", [
    (["agent.colour=1"], [], r"unknown variation key 'agent.colour'; valid keys: \['agent.color'"),
    (["agnt"], [], r"unknown variation key 'agnt'; valid keys: 'all', \['agent'"),
    (["agent.color=300,0,0"], [], r"'agent.color': value \[300, 0, 0\] is outside the allowed range"),
    (["agent.speed=20"], [], r"'agent.speed': value 20 is outside the allowed range \[1.75, 10.5\]"),
    (["agent.color=red"], [], r"'agent.color': 'red' is not a number or a comma list of numbers; allowed: Box"),
    (["wall.axis=diagonal"], [], r"'wall.axis': 'diagonal' is not one of \['horizontal', 'vertical'\]"),
    (["agent.color=1,2"], [], r"'agent.color': expected shape \(3,\)"),
    (["agent.color", "agent.color=1,2,3"], [], r"both samples and sets \['agent.color'\]"),
    (["agent.color="], [], r"expected KEY or KEY=VALUE"),
    ([], ["nois"], r"unknown visual wrapper 'nois'; valid names: \['blur', 'chroma_key'"),
    ([], ["noise:sd=3"], r"'noise' got unknown parameter\(s\) \['sd'\]; valid: \['std'\]"),
    ([], ["noise:std=-1"], r"--wrapper 'noise:std=-1': NoiseWrapper: std must be in \[0.0, inf\], got -1"),
    ([], ["noise:std=lin(0,1,2)"], r"kind 'lin' is unknown; valid kinds: \['constant', 'linear'"),
    ([], ["noise:std=linear(0,1,x)"], r"steps must be an integer, got 'x'"),
    ([], ["noise:std=loud"], r"'loud' is not a number, none, true/false or a schedule"),
    ([], ["blur:kernel=4"], r"kernel must be an odd integer >= 1, got 4"),
    ([], ["chroma_key:background=nowhere.png"], r"background 'nowhere.png' is not a file"),
])
def test_bad_input_names_what_is_allowed(variation, wrapper, match):
    with pytest.raises(ValueError, match=match):
        parse_shift(ENV, variation, wrapper)


# --- the episodic protocol ----------------------------------------------------------------------------------


def test_episodic_fov_shift_reaches_observations_goal_and_dynamics():
    """A visual leaf set: observations and goal are drawn with it; a physical leaf sampled: one value per episode."""
    shift = parse_shift(ENV, ["agent.color=0,0,255", "agent.speed"])
    watcher = Watcher()
    with World(ENV, num_envs=2, image_size=32, max_episode_steps=2) as world:
        result = world.evaluate(watcher, episodes=4, options=shift.options)
    assert [v["agent.color"].tolist() for v in result["variations"]] == [BLUE] * 4
    speeds = [float(v["agent.speed"]) for v in result["variations"]]
    assert len(set(speeds)) == 4 and all(1.75 <= s <= 10.5 for s in speeds) and 5.0 not in speeds
    assert has_color(watcher.pixels, BLUE) and has_color(watcher.goals, BLUE)
    assert not has_color(watcher.pixels, RED) and not has_color(watcher.goals, RED)


def test_a_wrapper_rewrites_observations_never_the_goal():
    frames = {}
    for name, wrapper in (("clean", []), ("noisy", ["noise:std=30", "occlusion:num_patches=2"])):
        watcher = Watcher()
        with World(ENV, num_envs=2, image_size=32, max_episode_steps=3,
                   wrappers=parse_shift(ENV, wrapper=wrapper).wrappers) as world:
            world.evaluate(watcher, episodes=2, seed=3)
        frames[name] = watcher
    np.testing.assert_array_equal(np.stack(frames["noisy"].goals), np.stack(frames["clean"].goals))
    np.testing.assert_array_equal(np.stack(frames["noisy"].states), np.stack(frames["clean"].states))
    assert not np.array_equal(np.stack(frames["noisy"].pixels), np.stack(frames["clean"].pixels))


# --- the dataset-driven protocol ----------------------------------------------------------------------------


def collect(path, env_id=ENV, wrappers=(), episodes=3, steps=14):
    with World(env_id, num_envs=1, image_size=32, wrappers=wrappers) as world:
        world.collect(path, episodes=episodes, policy=RandomPolicy(seed=0), encoding="raw",
                      max_episode_steps=steps, progress=False)
    return open_dataset(path)


def clean_render(env_id, sim_state, values):
    """The frame a fresh unwrapped env draws at ``sim_state`` under the FoV ``values``."""
    with World(env_id, num_envs=1, image_size=32) as world:
        world.reset(seed=0, options={"sim_state": sim_state, "variation_values": values})
        return world.infos["pixels"][0].copy()


def recorded_values(ds, row) -> dict:
    cols = [c for c in ds.columns if c.startswith("variation__")]
    got = ds.read_rows(np.array([row]), cols)
    return {c[len("variation__"):].replace("__", "."): got[c][0] for c in cols}


@pytest.mark.parametrize("env_id, key, color", [(ENV, "agent.color", BLUE), ("swm/PushT-v1", "block.color", BLUE)])
def test_dataset_fov_shift_rerenders_the_goal_from_the_recorded_state(tmp_path, env_id, key, color):
    ds = collect(tmp_path / "d.lance", env_id)
    sampled = "agent.speed" if env_id == ENV else "goal.angle"
    shift = parse_shift(env_id, [f"{key}={','.join(map(str, color))}", sampled])
    with World(env_id, num_envs=1, image_size=32, max_episode_steps=2) as world:
        starts, pairs = world.dataset_starts(ds, 3, goal_offset=5, options=shift.options)
        watcher = Watcher()
        result = world.evaluate_from_dataset(ds, episodes=3, goal_offset=5, eval_budget=1, policy=watcher,
                                             options=shift.options)
    assert [v[key].tolist() for v in result["variations"]] == [color] * 3
    drawn = [float(v[sampled]) for v in result["variations"]]
    recorded = float(ds.read_rows(np.array([0]), ["variation__" + sampled.replace(".", "__")])[
        "variation__" + sampled.replace(".", "__")][0])
    assert len(set(drawn)) == 3 and recorded not in drawn  # sampled per episode, not the recorded value
    offsets = dict(zip(ds.episode_ids.tolist(), ds.episode_offsets.tolist()))
    for k in range(3):
        assert "goal_pixels" not in starts[k]["options"]
        goal_row = offsets[int(pairs["episode_idx"][k])] + int(pairs["start_step"][k]) + 5
        values = {**recorded_values(ds, goal_row), key: np.array(color, np.uint8),
                  sampled: result["variations"][k][sampled]}
        goal_sim = ds.read_rows(np.array([goal_row]), ["sim_state"])["sim_state"][0]
        expected = clean_render(env_id, goal_sim, values)
        np.testing.assert_array_equal(watcher.goals[k][0], expected)  # the goal, drawn under the shifted color
        recorded_goal = ds.read_rows(np.array([goal_row]), ["pixels"])["pixels"][0]
        assert not np.array_equal(recorded_goal, expected)
        other = "door.position" if env_id == ENV else "agent.color"  # a leaf the shift leaves at its recorded value
        np.testing.assert_array_equal(result["variations"][k][other], values[other])


def test_dataset_protocol_without_shift_keeps_the_recorded_frame(tmp_path):
    ds = collect(tmp_path / "d.lance")
    with World(ENV, num_envs=1, image_size=32) as world:
        starts, pairs = world.dataset_starts(ds, 2, goal_offset=4)
    offsets = dict(zip(ds.episode_ids.tolist(), ds.episode_offsets.tolist()))
    for k in range(2):
        row = offsets[int(pairs["episode_idx"][k])] + int(pairs["start_step"][k]) + 4
        np.testing.assert_array_equal(starts[k]["options"]["goal_pixels"],
                                      ds.read_rows(np.array([row]), ["pixels"])["pixels"][0])


def test_collect_under_a_wrapper_keeps_clean_goal_frames(tmp_path):
    """pixels: the wrapped frames; pixels_clean: the env's own; the dataset-driven goal is the clean frame, and an
    evaluation under a wrapper never shows a wrapped goal."""
    noise = parse_shift(ENV, wrapper=["noise:std=40"]).wrappers
    ds = collect(tmp_path / "noisy.lance", wrappers=noise, episodes=2, steps=10)
    rows = ds.read_rows(np.arange(ds.num_rows), ["pixels", "pixels_clean", "sim_state"])
    assert not np.array_equal(rows["pixels"], rows["pixels_clean"])
    for r in (0, 7, ds.num_rows - 1):
        np.testing.assert_array_equal(rows["pixels_clean"][r],
                                      clean_render(ENV, rows["sim_state"][r], recorded_values(ds, r)))
    offsets = dict(zip(ds.episode_ids.tolist(), ds.episode_offsets.tolist()))
    with World(ENV, num_envs=1, image_size=32, max_episode_steps=1, wrappers=noise) as world:
        starts, pairs = world.dataset_starts(ds, 3, goal_offset=4)
        watcher = Watcher()
        world.evaluate_from_dataset(ds, episodes=3, goal_offset=4, eval_budget=1, policy=watcher)
    for k in range(3):
        row = offsets[int(pairs["episode_idx"][k])] + int(pairs["start_step"][k]) + 4
        clean = clean_render(ENV, rows["sim_state"][row], recorded_values(ds, row))
        np.testing.assert_array_equal(starts[k]["options"]["goal_pixels"], clean)
        np.testing.assert_array_equal(watcher.goals[k][0], clean)
        assert not np.array_equal(watcher.pixels[k][0], clean_render(ENV, rows["sim_state"][row - 4],
                                                                     recorded_values(ds, row)))  # noisy start


def test_dataset_protocol_rejects_bad_options(tmp_path):
    ds = collect(tmp_path / "d.lance", episodes=1, steps=8)
    with World(ENV, num_envs=1, image_size=32) as world:
        with pytest.raises(ValueError, match=r"takes the options 'variation' and 'variation_values'.*\['sim_state'\]"):
            world.dataset_starts(ds, 1, goal_offset=2, options={"sim_state": [1, 2]})
        with pytest.raises(ValueError, match="unknown variation key 'agent.colour'"):
            world.dataset_starts(ds, 1, goal_offset=2, options={"variation": ["agent.colour"]})
        with pytest.raises(ValueError, match="outside the allowed range"):
            world.dataset_starts(ds, 1, goal_offset=2, options={"variation_values": {"agent.speed": 99}})


# --- the solver mains ---------------------------------------------------------------------------------------

SOLVER_SIZES = {
    "cem": dict(num_samples=4, topk=2, iters=1), "icem": dict(num_samples=4, topk=1, iters=1, keep_elites=0.0),
    "mppi": dict(num_samples=4, iters=1), "predictive_sampling": dict(num_samples=4, iters=1),
    "gd": dict(num_samples=2, iters=1), "pgd": dict(num_samples=2, iters=1, decode_samples=2),
    "grasp": dict(iters=1, sync_every=1, sync_steps=1), "lagrangian": dict(num_samples=2, outer_steps=1, inner_iters=1),
    "categorical_cem": dict(num_samples=4, topk=2, iters=1),
}


@pytest.fixture(scope="module")
def tiny_setup(load_script, tmp_path_factory):
    """A tiny untrained LeWM checkpoint of Two-Room (16 px) and a 16 px Two-Room dataset."""
    from swm_core.checkpoint import save_checkpoint

    tmp = tmp_path_factory.mktemp("shift_mains")
    lewm = load_script("baselines/lewm_train.py")
    config = dict(action_dim=2, action_block=2, history=1, image_size=16, encoder="conv", conv_channels=[4, 8],
                  latent_dim=8, proj_hidden=16, action_hidden=8, pred_depth=1, pred_heads=2, pred_dim_head=4,
                  pred_mlp_dim=16, dropout=0.0)
    ckpt = save_checkpoint(tmp / "tworoom.pt", lewm.LeWM(**config), config, env_id=ENV)
    with World(ENV, num_envs=1, image_size=16) as world:
        world.collect(tmp / "d.lance", episodes=2, policy=RandomPolicy(seed=0), max_episode_steps=12,
                      progress=False)
    return ckpt, tmp / "d.lance", tmp


@pytest.mark.parametrize("solver", sorted(SOLVER_SIZES))
def test_solver_mains_apply_variation_and_wrapper_in_both_protocols(load_script, tiny_setup, monkeypatch, solver):
    import swm_core.wrappers

    ckpt, dataset, tmp = tiny_setup
    frames = []
    original = swm_core.wrappers.NoiseWrapper._transform
    monkeypatch.setattr(swm_core.wrappers.NoiseWrapper, "_transform",
                        lambda self, frame: frames.append(self.value("std")) or original(self, frame))
    module = load_script(f"solvers/{solver}_plan.py")
    out = tmp / f"{solver}.json"
    env_id = "swm/TwoRoomDiscrete-v1" if solver == "categorical_cem" else ENV
    module.main(module.Args(checkpoint=str(ckpt), dataset=str(dataset), env_id=env_id, episodes=2, num_envs=2,
                            goal_offset=3, eval_budget=2, horizon=2, receding_horizon=1, floors=False,
                            variation=("agent.color=0,0,255",), wrapper=("noise:std=7",), output_json=str(out),
                            **SOLVER_SIZES[solver]))
    record = json.loads(out.read_text())
    assert record["shift"]["variation"] == ["agent.color=0,0,255"] and record["shift"]["wrapper"] == ["noise:std=7"]
    for protocol in ("dataset", "episodic"):
        (per_episode,) = record[protocol].values()
        assert per_episode["variations"] == {"agent.color": [BLUE, BLUE]}, protocol
    assert frames and set(frames) == {7.0}  # every observation went through the wrapper


def test_solver_main_rejects_bad_shift_before_planning(load_script, tiny_setup, monkeypatch):
    ckpt, _, _ = tiny_setup
    module = load_script("solvers/cem_plan.py")
    monkeypatch.setattr(module, "World", None)  # any World the main itself built would fail differently
    for variation, wrapper, match in ((("agent.colour=1",), (), "unknown variation key 'agent.colour'"),
                                      ((), ("noise:sd=1",), r"unknown parameter\(s\) \['sd'\]"),
                                      (("agent.radius=99",), (), r"'agent.radius': value 99 is outside")):
        with pytest.raises(ValueError, match=match):
            module.main(module.Args(checkpoint=str(ckpt), episodes=1, variation=variation, wrapper=wrapper))


def test_solver_cli_takes_the_flags(tiny_setup):
    """The command line as typed: tyro parses repeated KEY=VALUE and a schedule with commas."""
    ckpt, _, tmp = tiny_setup
    out = tmp / "cli.json"
    cmd = [sys.executable, "solvers/cem_plan.py", "--checkpoint", str(ckpt), "--episodes", "1", "--num-envs", "1",
           "--eval-budget", "2", "--num-samples", "4", "--topk", "2", "--iters", "1", "--no-floors",
           "--variation", "agent.color=0,0,255", "agent.speed=7", "--wrapper", "noise:std=linear(0,20,10)",
           "--output-json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["episodic"]["cem"]["variations"] == {"agent.color": [BLUE], "agent.speed": [7.0]}
    assert record["shift"]["wrapper"] == ["noise:std=linear(0,20,10)"]
    assert "shift: agent.color=0,0,255; agent.speed=7; noise:std=linear(0,20,10)" in proc.stdout


# --- the baselines that evaluate themselves -----------------------------------------------------------------


@pytest.mark.parametrize("algo", ["gcbc", "gciql", "gcivl"])
def test_gcrl_evaluation_applies_the_shift_in_both_protocols(load_script, tiny_setup, algo):
    import torch

    _, dataset, tmp = tiny_setup
    m = load_script(f"baselines/{algo}_train.py")
    torch.manual_seed(0)
    extra = {} if algo == "gcbc" else {"value_hidden_dims": (4,)}
    model = getattr(m, algo.upper())(action_dim=2, image_size=16, conv_channels=(4,), feature_dim=4, hidden_dims=(4,),
                                      **extra)
    args = m.Args(eval_dataset=str(dataset), episodic=True, floors=False, eval_episodes=2, eval_num_envs=2,
                  goal_offset=3, eval_budget=2, variation=("agent.color=0,0,255",), wrapper=("noise:std=7",),
                  output_json=str(tmp / f"{algo}.json"))
    m.check_args(args)
    m.evaluate_policy(model.eval(), args, torch.device("cpu"), ENV)
    record = json.loads((tmp / f"{algo}.json").read_text())
    assert record["shift"]["wrapper"] == ["noise:std=7"]
    for protocol in ("dataset", "episodic"):
        assert record[protocol][algo]["variations"] == {"agent.color": [BLUE, BLUE]}, protocol
    for bad, match in ((dict(variation=("agent.colour=1",)), "unknown variation key 'agent.colour'"),
                       (dict(wrapper=("nois",)), "unknown visual wrapper 'nois'"),
                       (dict(eval_dataset=None, variation=("agent.color",)), "pass --eval-dataset PATH and/or")):
        with pytest.raises(ValueError, match=match):
            m.check_args(m.Args(**{"eval_dataset": str(dataset), **bad}))


def test_tdmpc2_evaluation_applies_the_shift(load_script, tmp_path):
    import torch

    td = load_script("baselines/tdmpc2_train.py")
    with World(ENV, num_envs=1, image_size=40) as world:
        world.collect(tmp_path / "tr.lance", episodes=2, policy=RandomPolicy(seed=0), max_episode_steps=12,
                      progress=False)
    torch.manual_seed(0)
    model = td.TDMPC2(action_dim=2, action_block=2, image_size=40, num_channels=8, mlp_dim=16, num_q=5,
                      shift_pad=2).eval()
    model.env_id = ENV
    args = td.Args(eval_dataset=str(tmp_path / "tr.lance"), eval_episodes=2, goal_offset=3, eval_budget=2,
                   eval_num_envs=2, plan_horizon=2, num_samples=8, num_elites=2, num_pi_trajs=1, mppi_iterations=1,
                   variation=("agent.color=0,0,255", "agent.speed"), output_json=str(tmp_path / "td.json"))
    td.check_eval_args(args)
    td.evaluate_policies(model, args, torch.device("cpu"))
    record = json.loads((tmp_path / "td.json").read_text())
    assert record["shift"]["sampled"] == ["agent.speed"]
    for per_episode in record["dataset"].values():
        assert per_episode["variations"]["agent.color"] == [BLUE, BLUE]
        assert len(set(per_episode["variations"]["agent.speed"])) == 2
    with pytest.raises(ValueError, match=r"'agent.speed': value 50 is outside the allowed range"):
        td.check_eval_args(td.Args(eval_dataset=str(tmp_path / "tr.lance"), variation=("agent.speed=50",)))
    with pytest.raises(ValueError, match="shift the evaluation: pass --eval-dataset PATH"):
        td.check_eval_args(td.Args(wrapper=("noise",)))


# --- success_table ------------------------------------------------------------------------------------------


def test_success_table_rejects_a_bad_shift_before_collecting_or_training(load_script, tmp_path):
    success_table = load_script("benchmarks/success_table.py")
    for variation, wrapper, match in ((("agent.colour=1",), (), "unknown variation key 'agent.colour'"),
                                      ((), ("noise:std=-3",), r"std must be in \[0.0, inf\]")):
        with pytest.raises(ValueError, match=match):
            success_table.main(success_table.Args(smoke=True, variation=variation, wrapper=wrapper,
                                                  out_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "res")))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "res").exists()


def test_success_table_passes_the_shift_to_every_evaluation_and_notes_it(load_script, tmp_path, monkeypatch):
    success_table = load_script("benchmarks/success_table.py")
    args = success_table.Args(variation=("agent.color=0,0,255",), wrapper=("noise:std=linear(0,20,10)",),
                              out_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "res"))
    flags = ["--variation", "agent.color=0,0,255", "--wrapper", "noise:std=linear(0,20,10)"]
    commands = []
    monkeypatch.setattr(success_table, "planned", lambda cmd, *a: commands.append(cmd) or {"model": 0.0})
    ckpt, data, out = tmp_path / "m.pt", tmp_path / "d.lance", tmp_path / "p.json"
    success_table.plan_with_solver(args, "quick", "lewm", "cem", ckpt, data, out, 0, floors=True)
    success_table.plan_oracle(args, "quick", "cem", ENV, data, out, 0, floors=False)
    success_table.plan_own(args, "quick", "tdmpc2", ckpt, data, out, 0)
    success_table.plan_own(args, "quick", "gcbc", ckpt, data, out, 0)
    assert len(commands) == 4 and all(" ".join(flags) in " ".join(map(str, cmd)) for cmd in commands)
    trained = []

    def fake_run(cmd, log, threads=1):  # training and data collection: never shifted
        trained.append(cmd)
        raise success_table.common.RunFailed("stop here")

    monkeypatch.setattr(success_table.common, "run", fake_run)
    with pytest.raises(success_table.common.RunFailed):
        success_table.train(args, "lewm", data, tmp_path / "ckpt", 0)
    assert trained and not {"--variation", "--wrapper"} & set(trained[0])

    def fake_run_one(args, mode, baseline, planner, seed, train_data, held_out, ckpt_prefix, plan_dir, floors):
        assert plan_dir.name == f"tworoom_full_plans{success_table.shift_tag(args)}" and "_shift-" in plan_dir.name
        return {"model": 50.0, "command": "x", "no-op": 0.0, "random": 10.0}, tmp_path / "m.pt"

    monkeypatch.setattr(success_table, "run_one", fake_run_one)
    monkeypatch.setattr(success_table, "encoder_note", lambda ckpts: "")
    args.baselines, args.seeds, args.envs, args.train_dataset, args.dataset = ("lewm",), 1, (ENV,), str(data), str(data)
    result = success_table.main(args)
    assert result["envs"][ENV]["shift"]["set"] == {"agent.color": BLUE}
    record = json.loads(Path(result["record"]).read_text())
    assert "under the evaluation shift agent.color=0,0,255; noise:std=linear(0,20,10)" in record["title"]
    notes = [n for t in record["tables"] for n in t["notes"]]
    assert any("evaluation shift: agent.color=0,0,255; noise:std=linear(0,20,10) (training data unshifted" in n
               for n in notes)
    assert (tmp_path / "res" / f"success_table{success_table.shift_tag(args)}.json").is_file()


def test_swm_preview_shows_the_shift(tmp_path):
    import cv2

    from swm_core.cli import preview

    out = tmp_path / "p.png"
    preview(ENV, variation=("agent.color=0,0,255",), wrapper=("noise:std=30",), frames=2, image_size=32,
            out=str(out), gif_steps=0)
    grid = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    frames, goals = grid[:32], grid[32:]
    assert has_color(goals, BLUE) and not has_color(goals, RED)  # the goals: shifted color, no noise
    with World(ENV, num_envs=1, image_size=32) as world:  # the same first frame without the wrapper
        world.reset(seed=0, options=parse_shift(ENV, ["agent.color=0,0,255"]).options)
        assert not np.array_equal(frames[:, :32], world.infos["pixels"][0])
        np.testing.assert_array_equal(goals[:, :32], world.infos["goal"][0])
