# Record episodes of a native swm env to a Lance dataset: `python scripts/collect.py --help`.
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import tyro

from swm_core import MixturePolicy, RandomPolicy, World, expert_policy
from swm_core.data import open_dataset
from swm_core.jpeg import check_jpeg_subsampling
from swm_core.lance_writer import check_tag, tag_version
from swm_core.s3 import is_s3, s3_storage_options


@dataclass
class Args:
    env_id: str = "swm/TwoRoom-v1"
    """the swm env to record (swm/PushT-v1, swm/TwoRoom-v1, swm/TwoRoomDiscrete-v1, swm/TwoRoomMultiDiscrete-v1)"""
    output: str = "data/two_room.lance"
    """where the Lance dataset goes (local path or s3://bucket/path); an existing dataset is appended to"""
    episodes: int = 100
    """number of episodes to record"""
    num_envs: int = 4
    """envs stepped together"""
    image_size: int = 64
    """rendered frame size in pixels"""
    max_episode_steps: int = 100
    """steps per episode"""
    policy: str = "mix"
    """which policy acts: 'random', 'expert' or 'mix' (expert with probability expert_fraction per episode)"""
    expert_fraction: float = 0.7
    """with policy 'mix', the probability that an episode is driven by the expert"""
    expert_noise: float = 0.3
    """Gaussian noise added to expert actions (diversity in the data)"""
    variation: list[str] = field(default_factory=list)
    """FoV keys to sample per episode, in addition to the env's defaults (e.g. agent.color background; 'all')"""
    encoding: str = "jpeg"
    """image encoding: 'jpeg' or 'raw'"""
    jpeg_subsampling: str = "444"
    """JPEG chroma subsampling: '444' (full colour resolution), '422' or '420' (smaller files, faster decoding)"""
    stop_on_success: bool = False
    """end an episode when the env reports success (default: run every episode to max_episode_steps)"""
    commit_every: int = 50
    """finished episodes per atomic Lance commit (an interrupted run keeps every committed batch)"""
    seed: int = 0
    """episode e is reset with seed seed + e; policies are seeded from it too"""
    tag: str | None = None
    """tag the dataset version this run ends on with this name (checked before anything is recorded)"""
    endpoint: str | None = None
    """S3 endpoint URL for an s3:// --output (default: $AWS_ENDPOINT_URL), e.g. http://127.0.0.1:9000"""
    access_key_id: str | None = None
    """S3 access key (default: $AWS_ACCESS_KEY_ID)"""
    secret_access_key: str | None = None
    """S3 secret key (default: $AWS_SECRET_ACCESS_KEY)"""
    region: str | None = None
    """S3 region (default: $AWS_REGION)"""


def make_policy(args: Args):
    if args.policy == "random":
        return RandomPolicy(seed=args.seed)
    if "TwoRoom" in args.env_id:
        kwargs = {"noise": args.expert_noise, "keep_moving": True}
    elif "PushT" in args.env_id:
        kwargs = {"noise_std": args.expert_noise}
    else:  # the classic-control, Reacher and Cube experts
        kwargs = {"noise": args.expert_noise}
    expert = expert_policy(args.env_id, seed=args.seed, **kwargs)
    if args.policy == "expert":
        return expert
    if args.policy == "mix":
        if not 0.0 <= args.expert_fraction <= 1.0:
            raise ValueError(f"--expert-fraction must be in [0, 1], got {args.expert_fraction}")
        return MixturePolicy([expert, RandomPolicy(seed=args.seed + 1)],
                             [args.expert_fraction, 1.0 - args.expert_fraction], seed=args.seed)
    raise ValueError(f"--policy must be one of 'random', 'expert', 'mix'; got {args.policy!r}")


if __name__ == "__main__":
    args = tyro.cli(Args)
    if args.encoding not in ("jpeg", "raw"):
        raise SystemExit(f"--encoding must be 'jpeg' or 'raw', got {args.encoding!r}")
    try:
        check_jpeg_subsampling(args.jpeg_subsampling)
    except ValueError as err:
        raise SystemExit(f"--jpeg-subsampling: {err}") from None
    storage_options = (s3_storage_options(args.endpoint, args.access_key_id, args.secret_access_key, args.region)
                       if is_s3(args.output) else None)  # fmt: skip
    if args.tag is not None:
        try:
            check_tag(args.tag, args.output, storage_options)
        except ValueError as err:
            raise SystemExit(f"--tag: {err}") from None
    world = World(args.env_id, num_envs=args.num_envs, image_size=args.image_size,
                  max_episode_steps=args.max_episode_steps, seed=args.seed)
    policy = make_policy(args)
    options = {"variation": args.variation} if args.variation else None
    t0 = time.perf_counter()
    world.collect(args.output, episodes=args.episodes, seed=args.seed, options=options, policy=policy,
                  encoding=args.encoding, jpeg_subsampling=args.jpeg_subsampling, stop_on_success=args.stop_on_success,
                  commit_every=args.commit_every, storage_options=storage_options)
    elapsed = time.perf_counter() - t0
    if args.tag is not None:
        print(f"tagged version {tag_version(args.output, args.tag, None, storage_options)} as {args.tag!r}")
    ds = open_dataset(args.output, storage_options)
    steps = args.episodes * args.max_episode_steps
    print(f"wrote {args.episodes} episodes to {args.output} in {elapsed:.1f}s ({steps / elapsed:,.0f} steps/s); "
          f"dataset now holds {ds.num_episodes} episodes, {ds.num_rows} rows")
    print(f"mean episode length {np.mean(ds.episode_lengths):.1f}")
