"""Resident memory of the Atari frame replay per stored transition, filled with real Pong transitions.

For each of two capacities, a fresh subprocess builds the `nature` Pong vector env, reads its resident set
size (``/proc/self/statm``), builds a ``FrameReplay`` of that capacity (RAM storage on CPU) and fills it to
capacity through ``AtariCollector`` with uniform random actions (real frames, real game ends), then reads
RSS again. Bytes per transition = RSS growth / agent steps stored; the slope between the two capacities
(RSS growth difference / transition difference) removes fixed costs. Stacked storage of obs + next_obs
would take 2 × 4 × 84 × 84 = 56_448 bytes per transition (28_224 with next_obs shared).
The last line, ``bytes/transition: N``, is the figure at the larger capacity (RSS growth / transitions,
fixed costs included; at 1M transitions they are negligible).
Usage: ``python benchmarks/atari_replay_memory.py [--capacities 10000 30000] [--num-envs 8]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(capacity: int, num_envs: int) -> dict:
    import numpy as np
    import torch

    from lightq.data.frame_replay import FrameReplay
    from lightq.envs.atari import make_atari_vec_env
    from lightq.interaction.atari_collector import AtariCollector

    torch.set_num_threads(1)
    env = make_atari_vec_env("ALE/Pong-v5", num_envs=num_envs, protocol="nature")
    rng = np.random.default_rng(0)
    n_actions = int(env.single_action_space.n)
    policy = lambda obs: rng.integers(0, n_actions, obs.shape[0])  # noqa: E731
    # Warm-up on a tiny buffer so that one-time costs (env buffers, torch/tensordict first-call allocations,
    # sampling temporaries) are paid before the baseline; then a fresh collector on the measured buffer.
    small = FrameReplay(capacity=64 * num_envs, num_streams=num_envs, n_step=1, seed=0)
    warm = AtariCollector(env, small, seed=0)
    warm.step(policy, 200)
    small.sample(32)
    del warm, small
    before = rss_bytes()
    buffer = FrameReplay(capacity=capacity, num_streams=num_envs, n_step=1, seed=0)
    collector = AtariCollector(env, buffer, seed=0)
    collector.step(policy, 1)
    while buffer.count.min() < buffer.segment:  # every stream's segment written at least once
        collector.step(policy, 64)
    buffer.sample(32)  # sampling works on the filled buffer
    after = rss_bytes()
    held = len(buffer)
    last_rows = int(buffer._columns["last"][: buffer.segment * num_envs].sum())  # final-frame rows among those held
    collector.close()
    return {"capacity": capacity, "rows": held, "transitions": held - last_rows, "rss_growth": after - before,
            "env_steps": collector.env_steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacities", type=int, nargs=2, default=[10_000, 30_000])
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.num_envs)))
        return
    results = []
    for capacity in args.capacities:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(capacity), "--num-envs", str(args.num_envs)],
            check=True, capture_output=True, text=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["per_transition"] = r["rss_growth"] / r["transitions"]
        results.append(r)
        print(f"capacity {capacity:>9,}: {r['transitions']:,} transitions + {r['rows'] - r['transitions']} final-frame "
              f"rows held after {r['env_steps']:,} Pong agent steps; RSS growth {r['rss_growth'] / 2**20:.1f} MiB "
              f"= {r['per_transition']:.0f} bytes/transition")
    a, b = results
    slope = (b["rss_growth"] - a["rss_growth"]) / (b["transitions"] - a["transitions"])
    print(f"slope between the capacities: {slope:.0f} bytes/transition "
          f"(1M transitions ≈ {slope * 1e6 / 1e9:.2f} GB; stacked obs+next_obs: 56,448 bytes = 56.4 GB)")
    print(f"bytes/transition: {b['per_transition']:.0f}")


if __name__ == "__main__":
    main()
