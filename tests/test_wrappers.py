"""Visual wrappers: each rewrites the frame as specified, never the goal or state, seeded and reproducible."""

import math

import gymnasium as gym
import numpy as np
import pytest

from swm_core.wrappers import (
    WRAPPERS,
    BlurWrapper,
    ChromaKeyWrapper,
    ColorJitterWrapper,
    CutoutWrapper,
    GrayscaleWrapper,
    MovingPatchWrapper,
    NoiseWrapper,
    OcclusionWrapper,
    RandomConvWrapper,
    RandomShiftWrapper,
    ResolutionWrapper,
    Schedule,
    apply_wrappers,
    make_wrapper,
)

# --- a tiny env following the swm obs/info contract ---------------------------------------------------------


def scene_frame(env):
    """Gradient background with a colored square at the agent position (and a pure-white corner)."""
    s = env.size
    yy, xx = np.mgrid[0:s, 0:s]
    img = np.stack([xx * 255 // (s - 1), yy * 255 // (s - 1), np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    y, x = np.rint(env.pos).astype(int)
    img[max(y - 3, 0) : y + 3, max(x - 3, 0) : x + 3] = (220, 30, 40)
    img[:6, :6] = 255
    return img


class FakeEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, size=32, frame_fn=scene_frame):
        self.size = size
        self.frame_fn = frame_fn
        self.observation_space = gym.spaces.Dict(
            {
                "pixels": gym.spaces.Box(0, 255, (size, size, 3), np.uint8),
                "proprio": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
            }
        )
        self.action_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        self.goal = np.zeros((size, size, 3), np.uint8)
        self.goal[::2, :, 1] = 200  # a pattern no wrapper would produce by accident
        self.pos = np.zeros(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(0.25, 0.75, size=2) * (self.size - 1)
        info = self._info()
        return {"pixels": info["pixels"], "proprio": info["proprio"]}, info

    def step(self, action):
        self.pos = np.clip(self.pos + 3 * np.asarray(action, dtype=np.float64), 0, self.size - 1)
        info = self._info()
        obs = {"pixels": info["pixels"], "proprio": info["proprio"]}
        return obs, -float(np.linalg.norm(self.pos)), False, False, info

    def get_sim_state(self):
        return self.pos.astype(np.float64).copy()

    def set_sim_state(self, sim_state):
        self.pos = np.asarray(sim_state, dtype=np.float64).copy()

    def render(self):
        return self.frame_fn(self)

    def _info(self):
        state = self.pos.astype(np.float32)
        return {
            "pixels": self.frame_fn(self),
            "goal": self.goal,
            "proprio": state.copy(),
            "state": state,
            "goal_state": np.zeros(2, np.float32),
            "goal_proprio": np.zeros(2, np.float32),
            "sim_state": self.get_sim_state(),
            "success": False,
            "variation": {},
        }


def const_frame(value):
    def fn(env):
        return np.full((env.size, env.size, 3), value, np.uint8)

    return fn


def fixed_frame(img):
    return lambda env: img.copy()


ACTIONS = np.random.default_rng(123).uniform(-1, 1, size=(6, 2)).astype(np.float32)
VIDEO = np.random.default_rng(7).integers(0, 256, size=(4, 10, 12, 3), dtype=np.uint8)

# one setting per wrapper that visibly changes the scene frame
SETTINGS = {
    "noise": {"std": 12.0},
    "blur": {"kernel": 5, "sigma": 1.5},
    "color_jitter": {"brightness": 0.5, "contrast": 0.5, "saturation": 0.5, "hue": 0.2},
    "grayscale": {},
    "occlusion": {"num_patches": 2, "size": (0.2, 0.3), "color": None},
    "cutout": {"num_patches": 2, "size": (0.2, 0.3)},
    "random_conv": {"kernel": 3},
    "resolution": {"scale": 0.25},
    "random_shift": {"pad": 4},
    "moving_patch": {"num_patches": 2, "size": 0.2, "speed": 3.0},
    "chroma_key": {"background": VIDEO, "key_color": (255, 255, 255)},
}
RANDOM = (
    "noise",
    "color_jitter",
    "occlusion",
    "cutout",
    "random_conv",
    "random_shift",
    "moving_patch",
    "chroma_key",
)


def rollout(env, seed, actions=ACTIONS):
    obs, info = env.reset(seed=seed)
    out = [(obs, 0.0, info)]
    for a in actions:
        obs, reward, _, _, info = env.step(a)
        out.append((obs, reward, info))
    return out


# --- registry and contract ----------------------------------------------------------------------------------


def test_registry_has_the_11_wrappers_and_rejects_unknown_names():
    assert set(WRAPPERS) == {
        "noise",
        "blur",
        "color_jitter",
        "grayscale",
        "occlusion",
        "cutout",
        "random_conv",
        "resolution",
        "random_shift",
        "moving_patch",
        "chroma_key",
    }
    with pytest.raises(ValueError, match=r"unknown visual wrapper 'fog'.*valid names.*'blur'.*'noise'"):
        make_wrapper("fog", FakeEnv())
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['sigma'\].*valid: \['std'\]"):
        make_wrapper("noise", FakeEnv(), sigma=3)
    assert isinstance(make_wrapper("blur", FakeEnv(), kernel=3), BlurWrapper)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_rewrites_pixels_but_never_goal_or_state(name):
    bare = rollout(FakeEnv(), seed=5)
    env = make_wrapper(name, FakeEnv(), **SETTINGS[name])
    wrapped = rollout(env, seed=5)
    changed = False
    for (obs_b, rew_b, info_b), (obs_w, rew_w, info_w) in zip(bare, wrapped):
        assert obs_w["pixels"] is info_w["pixels"]
        assert obs_w["pixels"].dtype == np.uint8 and obs_w["pixels"].shape == obs_b["pixels"].shape
        changed |= not np.array_equal(obs_w["pixels"], obs_b["pixels"])
        assert info_w["goal"] is env.unwrapped.goal and np.array_equal(info_w["goal"], info_b["goal"])
        assert rew_w == rew_b
        np.testing.assert_array_equal(obs_w["proprio"], obs_b["proprio"])
        for key in ("proprio", "state", "goal_state", "goal_proprio", "sim_state", "success"):
            np.testing.assert_array_equal(info_w[key], info_b[key])
    assert changed, f"{name} never changed the frame"
    assert not np.array_equal(env.unwrapped.goal[::2, :, 1], 0)  # goal buffer not written in place
    # World reaches the simulator through .unwrapped / get_wrapper_attr
    assert env.unwrapped.set_sim_state is not None
    env.get_wrapper_attr("set_sim_state")(np.array([10.0, 11.0]))
    np.testing.assert_array_equal(env.unwrapped.get_sim_state(), [10.0, 11.0])
    np.testing.assert_array_equal(env.render(), wrapped[-1][0]["pixels"])


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_same_seed_same_frames(name):
    a = rollout(make_wrapper(name, FakeEnv(), **SETTINGS[name]), seed=11)
    env_b = make_wrapper(name, FakeEnv(), **SETTINGS[name])
    b = rollout(env_b, seed=11)
    for (oa, _, _), (ob, _, _) in zip(a, b):
        np.testing.assert_array_equal(oa["pixels"], ob["pixels"])
    again = rollout(env_b, seed=11)  # re-seeding the same instance replays too
    for (oa, _, _), (ob, _, _) in zip(a, again):
        np.testing.assert_array_equal(oa["pixels"], ob["pixels"])
    if name in RANDOM:
        # a static scene, so only the wrapper's own randomness can tell the seeds apart
        img = scene_frame(FakeEnv())
        c = rollout(make_wrapper(name, FakeEnv(frame_fn=fixed_frame(img)), **SETTINGS[name]), seed=12)
        d = rollout(make_wrapper(name, FakeEnv(frame_fn=fixed_frame(img)), **SETTINGS[name]), seed=11)
        assert any(not np.array_equal(x[0]["pixels"], y[0]["pixels"]) for x, y in zip(c, d))


def test_bad_frames_are_rejected():
    env = NoiseWrapper(FakeEnv(frame_fn=lambda e: np.zeros((e.size, e.size, 3), np.float32)))
    with pytest.raises(ValueError, match="uint8 \\(H, W, 3\\)"):
        env.reset(seed=0)


def test_apply_wrappers_specs_and_stacked_streams():
    env = apply_wrappers(
        FakeEnv(frame_fn=const_frame(128), size=64),
        ["grayscale", ("noise", {"std": 10.0}), {"name": "noise", "std": 10.0}, lambda e: e],
    )
    assert (
        isinstance(env, NoiseWrapper)
        and isinstance(env.env, NoiseWrapper)
        and isinstance(env.env.env, GrayscaleWrapper)
    )
    # two stacked noise wrappers draw independent noise: std sqrt(10^2 + 10^2), not 20
    frames = [o["pixels"].astype(float) - 128 for o, _, _ in rollout(env, seed=0)]
    assert abs(np.std(frames) - math.sqrt(200)) < 0.5
    with pytest.raises(ValueError, match="bad wrapper spec"):
        apply_wrappers(FakeEnv(), [42])


# --- each wrapper's effect ----------------------------------------------------------------------------------


def test_noise_has_the_set_std_and_is_fresh_every_frame():
    env = NoiseWrapper(FakeEnv(size=64, frame_fn=const_frame(128)), std=10.0)
    (o0, _, _), (o1, _, _), *_ = rollout(env, seed=3)
    diff = o0["pixels"].astype(float) - 128
    assert abs(diff.mean()) < 0.2 and abs(diff.std() - 10.0) < 0.3  # 12288 samples: se of std ~ 0.06
    assert not np.array_equal(o0["pixels"], o1["pixels"])
    env0 = NoiseWrapper(FakeEnv(), std=0.0)
    o, _ = env0.reset(seed=0)
    np.testing.assert_array_equal(o["pixels"], env0.unwrapped.frame_fn(env0.unwrapped))


def test_blur_impulse_response_is_the_gaussian_kernel():
    img = np.zeros((21, 21, 3), np.uint8)
    img[10, 10] = 255
    env = BlurWrapper(FakeEnv(size=21, frame_fn=fixed_frame(img)), kernel=5, sigma=1.0)
    out, _ = env.reset(seed=0)
    g = np.exp(-(np.arange(-2, 3) ** 2) / 2.0)
    g /= g.sum()
    expected = np.outer(g, g) * 255
    got = out["pixels"][8:13, 8:13, 0].astype(float)
    assert np.abs(got - expected).max() <= 1.0
    assert out["pixels"].astype(int).sum() == pytest.approx(3 * 255, abs=3 * 25)
    assert out["pixels"][:8].max() == 0  # nothing beyond the 5x5 kernel
    assert np.all(out["pixels"][..., 0] == out["pixels"][..., 2])


def test_color_jitter_brightness_is_per_episode():
    env = ColorJitterWrapper(
        FakeEnv(frame_fn=const_frame(100)), brightness=0.4, contrast=0, saturation=0, hue=0
    )
    factors = []
    for seed in range(6):
        episode = rollout(env, seed=seed)
        f = env.factors()[0]
        assert 0.6 <= f <= 1.4
        for obs, _, _ in episode:  # the same factor on every frame of the episode
            assert np.all(obs["pixels"] == round(100 * f))
        factors.append(f)
    assert len(set(np.round(factors, 6))) == 6


def test_color_jitter_saturation_contrast_and_hue():
    rng = np.random.default_rng(0)
    img = rng.integers(60, 200, size=(16, 16, 3), dtype=np.uint8)
    img[0, 0] = (120, 120, 120)
    luma = img.astype(float) @ [0.299, 0.587, 0.114]
    sat = ColorJitterWrapper(
        FakeEnv(size=16, frame_fn=fixed_frame(img)), brightness=0, contrast=0, saturation=1.0, hue=0
    )
    out = sat.reset(seed=1)[0]["pixels"].astype(float)
    fs = sat.factors()[2]
    assert fs != 1
    np.testing.assert_array_equal(out[0, 0], 120)  # gray stays gray
    inside = np.all((out > 0) & (out < 255), axis=-1)  # luma kept where nothing clipped
    assert np.abs(out @ [0.299, 0.587, 0.114] - luma)[inside].max() <= 1.0
    np.testing.assert_allclose(
        out[inside], np.rint(luma[..., None] + (img - luma[..., None]) * fs)[inside], atol=1.0
    )

    con = ColorJitterWrapper(
        FakeEnv(size=16, frame_fn=fixed_frame(img)), brightness=0, contrast=0.3, saturation=0, hue=0
    )
    out = con.reset(seed=2)[0]["pixels"].astype(float)
    fc = con.factors()[1]
    np.testing.assert_allclose(out, np.rint((img - luma.mean()) * fc + luma.mean()), atol=1.0)

    hue = ColorJitterWrapper(
        FakeEnv(size=16, frame_fn=fixed_frame(img)), brightness=0, contrast=0, saturation=0, hue=0.5
    )
    out = hue.reset(seed=3)[0]["pixels"].astype(int)
    assert abs(hue.factors()[3]) > 0.01
    np.testing.assert_array_equal(out[0, 0], 120)
    # a hue rotation keeps each pixel's max and min channel (HSV value and saturation)
    assert np.abs(out.max(-1) - img.max(-1)).max() <= 1 and np.abs(out.min(-1) - img.min(-1)).max() <= 1
    assert np.abs(out - img).max() > 10


def test_grayscale_equal_channels_with_bt601_weights():
    img = np.zeros((8, 8, 3), np.uint8)
    img[0, 0], img[0, 1], img[0, 2], img[0, 3] = (255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30)
    out = GrayscaleWrapper(FakeEnv(size=8, frame_fn=fixed_frame(img))).reset(seed=0)[0]["pixels"]
    assert np.all(out[..., 0] == out[..., 1]) and np.all(out[..., 1] == out[..., 2])
    assert out[0, :4, 0].tolist() == [76, 150, 29, 18]  # 76.245, 149.685, 29.07, 17.89
    half = GrayscaleWrapper(FakeEnv(size=8, frame_fn=fixed_frame(img)), amount=0.5).reset(seed=0)[0]["pixels"]
    assert half[0, 0].tolist() == [166, 38, 38]  # 255 + (76.245 - 255)/2, 0 + 76.245/2


def black_squares(frame):
    """(top, left, side) of the black region, which must be one solid square."""
    ys, xs = np.nonzero(np.all(frame == 0, axis=-1))
    top, left, h, w = ys.min(), xs.min(), ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    assert h == w and len(ys) == h * w, "the black region is not one full square"
    return int(top), int(left), int(h)


def test_occlusion_patch_has_the_set_size_and_is_fixed_per_episode():
    env = OcclusionWrapper(FakeEnv(size=50, frame_fn=const_frame(255)), num_patches=1, size=(0.2, 0.4))
    boxes = set()
    for seed in range(8):
        episode = rollout(env, seed=seed)
        box = black_squares(episode[0][0]["pixels"])
        assert 10 <= box[2] <= 20
        assert all(black_squares(o["pixels"]) == box for o, _, _ in episode)
        boxes.add(box)
    assert len(boxes) >= 6
    many = OcclusionWrapper(FakeEnv(size=50, frame_fn=const_frame(255)), num_patches=3, size=0.1, color=None)
    out = many.reset(seed=0)[0]["pixels"]
    assert many.patches[:, 2].tolist() == [5, 5, 5]
    covered = np.zeros((50, 50), bool)
    for (top, left, side), color in reversed(list(zip(many.patches, many.colors))):  # later patches on top
        region = np.zeros((50, 50), bool)
        region[top : top + side, left : left + side] = True
        assert np.all(out[region & ~covered] == color)
        covered |= region
    changed = np.any(out != 255, axis=-1)
    mask = np.zeros((50, 50), bool)
    for top, left, side in many.patches:
        mask[top : top + side, left : left + side] = True
    assert not np.any(changed & ~mask)  # nothing outside the patches
    assert len({tuple(c) for c in many.colors}) == 3  # random color per patch


def test_cutout_is_redrawn_every_frame():
    env = CutoutWrapper(FakeEnv(size=50, frame_fn=const_frame(255)), num_patches=1, size=(0.2, 0.4))
    boxes = [black_squares(o["pixels"]) for o, _, _ in rollout(env, seed=0)]
    assert all(10 <= side <= 20 for _, _, side in boxes)
    assert len(set(boxes)) >= 5  # 7 frames, fresh patch each


def test_random_conv_is_a_fixed_per_episode_convolution():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
    env = RandomConvWrapper(FakeEnv(size=12, frame_fn=fixed_frame(img)), kernel=3)
    episode = rollout(env, seed=4)
    out = episode[0][0]["pixels"]
    for obs, _, _ in episode:  # static scene, fixed weights -> same frame
        np.testing.assert_array_equal(obs["pixels"], out)
    w = env.weights  # (dy, dx, in, out)
    x = img.astype(float) / 255 - 0.5
    y, xx = 5, 7
    manual = sum(x[y + dy - 1, xx + dx - 1] @ w[dy, dx] for dy in range(3) for dx in range(3))
    np.testing.assert_allclose(
        out[y, xx], np.clip(np.rint((np.clip(manual + 0.5, 0, 1)) * 255), 0, 255), atol=1
    )
    w0 = env.weights.copy()
    env.reset(seed=5)
    assert not np.allclose(env.weights, w0)
    flat = RandomConvWrapper(FakeEnv(size=12, frame_fn=const_frame(200)))
    flat_out = flat.reset(seed=0)[0]["pixels"]
    assert np.all(flat_out == flat_out[0, 0])  # a constant image stays constant (reflect borders)


def test_resolution_averages_blocks():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    out = ResolutionWrapper(FakeEnv(size=64, frame_fn=fixed_frame(img)), scale=0.25).reset(seed=0)[0][
        "pixels"
    ]
    blocks = out.reshape(16, 4, 16, 4, 3).astype(int)
    assert np.all(blocks == blocks[:, :1, :, :1])  # constant 4x4 blocks
    means = img.reshape(16, 4, 16, 4, 3).mean(axis=(1, 3))
    assert np.abs(blocks[:, 0, :, 0] - means).max() <= 1.0
    detail_in = np.abs(np.diff(img.astype(int), axis=1)).mean()
    detail_out = np.abs(np.diff(out.astype(int), axis=1)).mean()
    assert detail_out < detail_in / 3


def test_random_shift_moves_content_at_most_pad():
    img = np.zeros((48, 48, 3), np.uint8)
    img[20, 25] = 255
    env = RandomShiftWrapper(FakeEnv(size=48, frame_fn=fixed_frame(img)), pad=4)
    shifts = set()
    env.reset(seed=0)
    for _ in range(30):
        out = env.step(np.zeros(2, np.float32))[0]["pixels"]
        ys, xs = np.nonzero(out[..., 0])
        assert len(ys) == 1
        dy, dx = ys[0] - 20, xs[0] - 25
        assert (dy, dx) == env.shift and abs(dy) <= 4 and abs(dx) <= 4
        shifts.add((dy, dx))
    assert len(shifts) >= 10
    still = RandomShiftWrapper(FakeEnv(size=48, frame_fn=fixed_frame(img)), pad=0).reset(seed=0)[0]["pixels"]
    np.testing.assert_array_equal(still, img)


def test_moving_patch_moves_at_speed_and_bounces_inside():
    env = MovingPatchWrapper(
        FakeEnv(size=50, frame_fn=const_frame(255)), num_patches=1, size=0.2, speed=7.0, color=(0, 0, 0)
    )
    env.reset(seed=0)
    positions = [env.positions[0].copy()]
    assert black_squares(env.render())[2] == 10
    for _ in range(40):
        out = env.step(np.zeros(2, np.float32))[0]["pixels"]
        top, left, side = black_squares(out)  # a full 10x10 patch, inside the frame
        assert side == 10 and (top, left) == tuple(np.rint(env.positions[0]).astype(int))
        positions.append(env.positions[0].copy())
    positions = np.array(positions)
    assert positions.min() >= 0 and positions.max() <= 40
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    assert np.all(steps <= 7.0 + 1e-9) and np.isclose(np.median(steps), 7.0)  # shorter only on a bounce
    dirs = np.sign(np.diff(positions, axis=0))
    assert np.any(dirs[1:] * dirs[:-1] < 0)  # it bounced
    env.reset(seed=0)
    np.testing.assert_allclose(env.positions[0], positions[0])  # replays from the same start


def test_chroma_key_replaces_exactly_the_key_pixels():
    img = np.full((6, 6, 3), 100, np.uint8)
    img[0, :] = (0, 255, 0)  # key
    img[1, :3] = (5, 250, 3)  # within tolerance 10
    img[1, 3:] = (30, 255, 0)  # outside
    img[2, 0] = (11, 255, 0)  # just outside
    bg = np.random.default_rng(3).integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    env = ChromaKeyWrapper(
        FakeEnv(size=6, frame_fn=fixed_frame(img)), background=bg, key_color=(0, 255, 0), tolerance=10
    )
    out = env.reset(seed=0)[0]["pixels"]
    expected = np.zeros((6, 6), bool)
    expected[0, :], expected[1, :3] = True, True
    np.testing.assert_array_equal(out[expected], bg[expected])
    np.testing.assert_array_equal(out[~expected], img[~expected])

    video = np.stack([np.full((3, 4, 3), 10 * k, np.uint8) for k in range(5)])  # resized to 6x6
    vid = ChromaKeyWrapper(
        FakeEnv(size=6, frame_fn=fixed_frame(img)),
        background=video,
        key_color=(0, 255, 0),
        random_start=False,
    )
    seen = [o["pixels"][0, 0, 0] for o, _, _ in rollout(vid, seed=0, actions=np.zeros((7, 2), np.float32))]
    assert seen == [0, 10, 20, 30, 40, 0, 10, 20]  # one video frame per env step, looping
    assert vid.reset(seed=0)[0]["pixels"][1, 0].tolist() == [5, 250, 3]  # tolerance 0: near-key pixels kept
    starts = set()
    rand = ChromaKeyWrapper(
        FakeEnv(size=6, frame_fn=fixed_frame(img)), background=video, key_color=(0, 255, 0)
    )
    for seed in range(10):
        rand.reset(seed=seed)
        starts.add(rand.start_frame)
    assert len(starts) >= 3


# --- schedules ----------------------------------------------------------------------------------------------


def test_schedule_values():
    assert Schedule("constant", start=3)(1000) == 3
    lin = Schedule("linear", start=0, end=30, steps=100)
    assert [lin(t) for t in (0, 50, 100, 500)] == [0, 15, 30, 30]
    cos = Schedule("cosine", start=0, end=30, steps=100)
    assert cos(50) == pytest.approx(15) and cos(25) == pytest.approx(4.393398282) and cos(100) == 30
    exp = Schedule("exponential", start=1, end=100, steps=100)
    assert (
        exp(50) == pytest.approx(10) and exp(25) == pytest.approx(10**0.5) and exp(200) == pytest.approx(100)
    )
    sin = Schedule("sinusoidal", start=0, end=10, steps=100)
    assert [round(sin(t), 9) for t in (0, 25, 50, 75, 100, 150)] == [0, 5, 10, 5, 0, 10]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "step"}, "kind 'step' is unknown; valid kinds"),
        ({"kind": "linear", "steps": 0}, "steps must be an integer >= 1"),
        ({"kind": "exponential", "start": 0, "end": 5}, "nonzero start and end"),
        ({"kind": "linear", "start": float("nan")}, "finite"),
        ({"clock": "wall"}, "clock 'wall' is unknown"),
    ],
)
def test_bad_schedules_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Schedule(**kwargs)


def test_scheduled_noise_follows_env_steps():
    env = NoiseWrapper(
        FakeEnv(size=64, frame_fn=const_frame(128)),
        std={"kind": "linear", "start": 0, "end": 30, "steps": 100},
    )
    obs, _ = env.reset(seed=0)
    assert np.all(obs["pixels"] == 128)  # std 0 at step 0
    for _ in range(50):
        obs = env.step(np.zeros(2, np.float32))[0]
    assert env.value("std") == 15
    assert abs(obs["pixels"].astype(float).std() - 15) < 0.5
    env.reset(seed=0)
    assert env.value("std") == 15  # total clock: resets do not rewind
    per_ep = NoiseWrapper(FakeEnv(), std=Schedule("linear", start=0, end=30, steps=100, clock="episode"))
    per_ep.reset(seed=0)
    for _ in range(10):
        per_ep.step(np.zeros(2, np.float32))
    assert per_ep.value("std") == 3
    per_ep.reset()
    assert per_ep.value("std") == 0


def test_schedules_count_env_steps_on_their_clock():
    """clock 'total': env steps since the wrapper was built, across resets; 'episode': steps since the last reset.
    Checked on the frames: grayscale with amount linear 0 -> 1 over 4 steps, two episodes of 2 steps."""
    img = scene_frame(FakeEnv(size=8))
    x = img.astype(np.float32)
    gray = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    for clock, amounts in (("total", [0, 0.25, 0.5, 0.5, 0.75, 1.0]), ("episode", [0, 0.25, 0.5, 0, 0.25, 0.5])):
        env = GrayscaleWrapper(FakeEnv(size=8, frame_fn=fixed_frame(img)),
                               amount=Schedule("linear", start=0, end=1, steps=4, clock=clock))
        frames = []
        for episode in range(2):
            frames.append(env.reset(seed=episode)[0]["pixels"])
            frames += [env.step(np.zeros(2, np.float32))[0]["pixels"] for _ in range(2)]
        expected = [np.clip(np.rint(np.broadcast_to(x + (gray - x) * np.float32(a), x.shape)), 0, 255).astype(np.uint8)
                    for a in amounts]
        np.testing.assert_array_equal(np.stack(frames), np.stack(expected), err_msg=clock)


def test_integer_parameters_follow_schedules_rounded():
    """The 5 wrappers whose parameters were integers only take schedules too, read rounded (kernels odd)."""
    shift = RandomShiftWrapper(FakeEnv(size=16), pad=Schedule("linear", start=0, end=3, steps=3))
    blur = BlurWrapper(FakeEnv(size=16), kernel={"kind": "linear", "start": 1, "end": 9, "steps": 8})
    key = ChromaKeyWrapper(FakeEnv(size=16, frame_fn=const_frame(250)), background=VIDEO,
                           tolerance=Schedule("linear", start=0, end=10, steps=2))
    cut = CutoutWrapper(FakeEnv(size=20, frame_fn=const_frame(255)), num_patches=Schedule("linear", start=0, end=2,
                        steps=2), size=(Schedule("linear", start=0.1, end=0.5, steps=2), 0.5))
    pads, kernels, masked, patches = [], [], [], []
    for env in (shift, blur, key, cut):
        env.reset(seed=0)
    for _ in range(3):
        pads.append(shift.pad)
        kernels.append(blur.kernel)
        masked.append(int(key.mask(np.full((4, 4, 3), 250, np.uint8)).sum()))
        frame = cut.step(np.zeros(2, np.float32))[0]["pixels"]
        patches.append((cut.num_patches, cut.size, int((frame == 0).all(-1).sum())))
        for env in (shift, blur, key):
            env.step(np.zeros(2, np.float32))
    assert pads == [0, 1, 2] and kernels == [1, 3, 3]  # 1 -> 2 -> 3: nearest odd, ties upward
    assert masked == [0, 16, 16]  # tolerance 0, 5, 10 around white: 250 is within 5
    assert [p[0] for p in patches] == [1, 2, 2] and patches[-1][1] == (0.5, 0.5)
    assert patches[-1][2] > 0  # the patches were drawn
    assert RandomConvWrapper(FakeEnv(), kernel=Schedule("linear", start=3, end=5, steps=2)).kernel == 3


# --- validation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("noise", {"std": -1.0}, r"NoiseWrapper: std must be in \[0.0, inf\], got -1.0"),
        ("noise", {"std": Schedule("linear", start=5, end=-5, steps=10)}, "std must be in"),
        ("noise", {"std": "loud"}, "std: expected a number"),
        ("blur", {"kernel": 4}, "kernel must be an odd integer >= 1, got 4"),
        ("blur", {"sigma": -0.5}, "sigma must be in"),
        ("color_jitter", {"hue": 0.6}, r"hue must be in \[0.0, 0.5\]"),
        ("color_jitter", {"brightness": -0.1}, "brightness must be in"),
        ("grayscale", {"amount": 1.5}, "amount must be in"),
        ("occlusion", {"size": (0.5, 0.2)}, "size must be a fraction"),
        ("occlusion", {"num_patches": -1}, "num_patches must be an integer >= 0"),
        ("cutout", {"color": (300, 0, 0)}, "color must be an RGB triple"),
        ("random_conv", {"kernel": 2}, "kernel must be an odd integer"),
        ("resolution", {"scale": 0.0}, r"scale must be in \(0, 1\]"),
        ("resolution", {"scale": 1.5}, "scale must be in"),
        ("random_shift", {"pad": 2.5}, "pad must be an integer >= 0"),
        ("random_shift", {"pad": Schedule("linear", start=2, end=-1, steps=3)}, "pad must be an integer >= 0 or a"),
        ("occlusion", {"size": (Schedule("linear", start=0.1, end=1.5, steps=3), 0.2)}, "size must be a fraction"),
        ("moving_patch", {"speed": -1}, "speed must be in"),
        ("moving_patch", {"size": 0}, "size must be a fraction"),
        ("chroma_key", {"background": np.zeros((4, 4, 3), np.float32)}, "background must be a uint8 image"),
        (
            "chroma_key",
            {"background": VIDEO, "tolerance": 300},
            r"tolerance must be an integer in \[0, 255\]",
        ),
        ("chroma_key", {"background": VIDEO, "key_color": (1, 2)}, "key_color must be an RGB triple"),
    ],
)
def test_bad_parameters_raise_naming_them(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_wrapper(name, FakeEnv(), **kwargs)


# --- a native env -------------------------------------------------------------------------------------------


def test_wraps_a_native_env():
    pytest.importorskip("swm_core.envs.two_room")
    import swm_core.envs  # noqa: F401  (registers swm/*)

    bare = gym.make("swm/TwoRoom-v1")
    env = apply_wrappers(
        gym.make("swm/TwoRoom-v1"), [("noise", {"std": 8.0}), ("occlusion", {"num_patches": 2})]
    )
    _, info_b = bare.reset(seed=0)
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(info["goal"], info_b["goal"])
    np.testing.assert_array_equal(info["state"], info_b["state"])
    assert obs["pixels"].shape == info_b["pixels"].shape and not np.array_equal(
        obs["pixels"], info_b["pixels"]
    )
    action = np.zeros(env.action_space.shape, np.float32)
    _, _, _, _, info_b = bare.step(action)
    _, _, _, _, info = env.step(action)
    np.testing.assert_array_equal(info["sim_state"], info_b["sim_state"])
    sim = env.unwrapped.get_sim_state()
    env.unwrapped.set_sim_state(sim)
    np.testing.assert_array_equal(env.unwrapped.get_sim_state(), sim)
