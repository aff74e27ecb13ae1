"""LeRobot v2/v3 folders as a converter source (read only): ``meta/info.json``, ``data/**.parquet``,
``videos/**.mp4``. One camera key becomes ``pixels``, ``observation.state`` becomes ``proprio``; other numeric
features keep their names."""

from __future__ import annotations

import glob
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from swm_core.convert.source import Source, arrow_to_numpy, check_requested
from swm_core.video import VideoReader


def _lerobot_episode_meta(root: Path) -> dict[int, dict]:
    """meta/episodes: v3 parquet files or v2 episodes.jsonl -> {episode_index: row dict}."""
    rows: dict[int, dict] = {}
    files = sorted(glob.glob(str(root / "meta" / "episodes" / "**" / "*.parquet"), recursive=True))
    for f in files:
        for r in pq.read_table(f).to_pylist():
            rows[int(r["episode_index"])] = r
    jsonl = root / "meta" / "episodes.jsonl"
    if not rows and jsonl.exists():
        for line in jsonl.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rows[int(r["episode_index"])] = r
    return rows


def _read_info(root: Path) -> dict:
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{root} is not a LeRobot folder: {info_path} is missing")
    try:
        return json.loads(info_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{info_path} is corrupted: {err}") from None


def _check_keys(root: Path, features: dict, camera_key: str | None, state_key: str, action_key: str) -> str:
    """The camera key to read (default: the first video or image feature), after checking the three keys."""
    cameras = [k for k, v in features.items() if v.get("dtype") in ("video", "image")]
    if camera_key is None:
        if not cameras:
            raise ValueError(f"{root}: no video or image feature in meta/info.json (features: {list(features)})")
        camera_key = cameras[0]
    elif camera_key not in cameras:
        raise ValueError(f"{root}: camera key {camera_key!r} is not a video/image feature; available: {cameras}")
    if state_key not in features:
        raise ValueError(f"{root}: state key {state_key!r} is not a feature (features: {list(features)})")
    if action_key not in features:
        raise ValueError(f"{root}: action key {action_key!r} is not a feature (features: {list(features)})")
    return camera_key


def _read_table(root: Path, wanted: list[str], image_key: str | None) -> pa.Table:
    """The columns ``wanted`` (plus episode_index, frame_index, timestamp and the ``image_key`` column of an image
    camera) of every parquet file under data/, concatenated."""
    files = sorted(glob.glob(str(root / "data" / "**" / "*.parquet"), recursive=True))
    if not files:
        raise ValueError(f"{root}: no parquet files under data/")
    read_cols = list(dict.fromkeys(["episode_index", "frame_index", "timestamp", *wanted]))
    if image_key is not None:
        read_cols.append(image_key)
    tables = []
    for f in files:
        try:
            t = pq.read_table(f)
        except Exception as err:
            raise ValueError(f"{f}: not a readable parquet file (truncated or corrupted?): {err}") from None
        missing = [c for c in read_cols if c not in t.column_names]
        if missing:
            raise ValueError(f"{f} lacks column(s) {missing} declared in meta/info.json")
        tables.append(t.select(read_cols))
    return pa.concat_tables(tables)


def _sort_episodes(root: Path, table: pa.Table) -> tuple:
    """(table sorted by episode and frame, episode ids, start rows, lengths), after checking that each episode's
    frame_index runs 0..n-1."""
    ep_col = table.column("episode_index").to_numpy()
    fr_col = table.column("frame_index").to_numpy()
    order = np.lexsort((fr_col, ep_col))
    table = table.take(pa.array(order))
    ep_col, fr_col = ep_col[order], fr_col[order]
    ids, starts = np.unique(ep_col, return_index=True)
    lengths = np.diff(np.append(starts, len(ep_col))).astype(np.int64)
    for e, s, n in zip(ids, starts, lengths):
        if not np.array_equal(fr_col[s : s + n], np.arange(n)):
            raise ValueError(f"{root}: episode {int(e)} has frame_index values that are not 0..{n - 1}")
    return table, ids, starts, lengths


def _check_lengths(root: Path, ids, lengths, ep_meta: dict[int, dict]) -> None:
    for e, n in zip(ids, lengths):
        m = ep_meta.get(int(e))
        if m is not None and "length" in m and int(m["length"]) != int(n):
            raise ValueError(f"{root}: episode {int(e)} has {n} rows in data/ but length {m['length']} in meta "
                             "(mismatched episode lengths)")


def _pixel_shapes(feature: dict) -> dict[str, tuple]:
    """{"pixels": (H, W, C)} from a camera feature's shape (channel-first shapes reordered), or {} if unknown."""
    shape = feature.get("shape") or []
    names = feature.get("names") or []
    if len(shape) == 3 and names and list(names)[0] in ("channels", "channel"):
        shape = [shape[1], shape[2], shape[0]]
    return {"pixels": tuple(int(s) for s in shape)} if len(shape) == 3 else {}


class _Camera:
    """The frames of one camera key: decoded from the episode's video segment, or from parquet image cells."""

    def __init__(self, root: Path, info: dict, ep_meta: dict[int, dict], key: str, fps: float):
        self.root, self.info, self.ep_meta, self.key, self.fps = root, info, ep_meta, key, fps
        self.is_video = info.get("features", {})[key].get("dtype") == "video"

    def video_file(self, e: int) -> tuple[Path, float]:
        """(video file, start time in seconds) of episode ``e``."""
        root, camera_key, m = self.root, self.key, self.ep_meta.get(e, {})
        chunks = int(self.info.get("chunks_size") or 1000)
        template = self.info.get("video_path")
        fmt = {"video_key": camera_key, "episode_index": e, "episode_chunk": e // chunks,
               "chunk_index": int(m.get(f"videos/{camera_key}/chunk_index", e // chunks)),
               "file_index": int(m.get(f"videos/{camera_key}/file_index", 0))}
        start = float(m.get(f"videos/{camera_key}/from_timestamp", 0.0))
        if template and "{episode_index" not in template and f"videos/{camera_key}/from_timestamp" not in m:
            # v3: several episodes share a file; without the episode's offset we would read another's frames
            raise ValueError(f"{root}: episode {e} has no 'videos/{camera_key}/from_timestamp' in meta/episodes/, "
                             f"which a LeRobot v3 folder (video files shared by episodes: {template!r}) needs to "
                             "find the episode's frames")
        if template:
            return root / template.format(**fmt), start
        hits = glob.glob(str(root / "videos" / "**" / camera_key / f"episode_{e:06d}.mp4"), recursive=True)
        if not hits:
            raise ValueError(f"{root}: no video for camera {camera_key!r}, episode {e} under videos/")
        return Path(hits[0]), start

    def frames(self, e: int, rows: pa.Table, readers: dict[Path, VideoReader]) -> np.ndarray:
        """uint8 (T, H, W, 3) frames of episode ``e`` (its ``rows``); ``readers`` keeps the open video file."""
        if not self.is_video:
            from PIL import Image

            cells = rows.column(self.key).to_pylist()
            return np.stack([np.asarray(Image.open(io.BytesIO(c["bytes"])).convert("RGB")) for c in cells])
        root, camera_key, fps = self.root, self.key, self.fps
        file, start = self.video_file(e)
        if file not in readers:
            if not file.exists():
                raise FileNotFoundError(f"{root}: video {file} for camera {camera_key!r} is missing")
            readers.clear()
            readers[file] = VideoReader(file, fps=fps)
        ts = rows.column("timestamp").to_numpy().astype(np.float64)
        end = self.ep_meta.get(e, {}).get(f"videos/{camera_key}/to_timestamp")
        if end is not None and len(ts) and start + ts.max() > float(end) + 0.5 / fps:
            raise ValueError(f"{root}: episode {e} (camera {camera_key!r}) has frames up to "
                             f"{start + ts.max():.3f}s but its video segment ends at {float(end):.3f}s "
                             "(mismatched episode lengths)")
        idx = np.round((start + ts) * fps).astype(np.int64)
        try:
            return readers[file].read(idx)
        except ValueError as err:
            raise ValueError(f"{root}: episode {e} (camera {camera_key!r}): {err} "
                             "(mismatched episode lengths?)") from err


def lerobot_source(path, camera_key: str | None = None, state_key: str = "observation.state",
                   action_key: str = "action", columns=None) -> Source:
    """Open a LeRobot v2/v3 folder as a :class:`Source` (see the module docstring)."""
    root = Path(path)
    info = _read_info(root)
    features: dict = info.get("features", {})
    fps = float(info.get("fps") or 10)
    camera_key = _check_keys(root, features, camera_key, state_key, action_key)
    numeric = [k for k, v in features.items() if v.get("dtype") not in ("video", "image", "string")]
    wanted = [k for k in numeric if k not in ("episode_index",)]
    image_key = camera_key if features[camera_key].get("dtype") == "image" else None
    table, ids, starts, lengths = _sort_episodes(root, _read_table(root, wanted, image_key))
    ep_meta = _lerobot_episode_meta(root)
    _check_lengths(root, ids, lengths, ep_meta)

    rename = {state_key: "proprio", camera_key: "pixels", "frame_index": "step_idx"}
    out_cols = ["step_idx", "pixels"] + [rename.get(k, k) for k in wanted if k not in ("frame_index",)]
    out_cols = list(dict.fromkeys(out_cols))
    columns = check_requested(columns, out_cols, root)
    cols = [c for c in out_cols if columns is None or c in columns or c in ("step_idx",)]
    shapes = _pixel_shapes(features[camera_key])
    camera = _Camera(root, info, ep_meta, camera_key, fps)
    if camera.is_video:
        first_file = camera.video_file(int(ids[0]))[0]
        if not first_file.exists():
            raise FileNotFoundError(f"{root}: video {first_file} for camera {camera_key!r} is missing")

    meta = {"env_id": info.get("robot_type") and f"lerobot/{info.get('robot_type')}", "control_hz": fps,
            "fov_keys": [], "encoding": "jpeg", "layout": "lerobot", "lerobot_version": info.get("codebase_version"),
            "camera_key": camera_key}

    def episodes(jpeg_bytes: bool):
        readers: dict[Path, VideoReader] = {}
        try:
            for e, s, n in zip(ids.tolist(), starts.tolist(), lengths.tolist()):
                rows = table.slice(s, n)
                ep = {}
                if "pixels" in cols:
                    ep["pixels"] = camera.frames(e, rows, readers)
                for k in wanted:
                    name = rename.get(k, k)
                    if name in cols:
                        ep[name] = arrow_to_numpy(rows.column(k), (), k, root)
                yield {c: ep[c] for c in cols}
        finally:
            for r in readers.values():
                r.close()

    src = Source(str(root), "lerobot", cols, ["pixels"] if "pixels" in cols else [], shapes, lengths, meta,
                 episodes)
    src.meta["episode_ids"] = ids.tolist()
    return src
