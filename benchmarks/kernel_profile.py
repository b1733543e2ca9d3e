"""A ``jax.profiler`` trace of a few calls of a compiled step, and the table of the kernels it ran.

On a GPU the kernels are the events on the device's stream lines, keyed by the HLO op that launched
them; on a CPU (no device plane) they are the thunks the host threads ran, also keyed by HLO op. Either
way a row is one op: its calls and its time per step, and its share of the step's kernel time.

    rows = profile_step(fn, args, "traces/adam", steps=3)   # args as benchmarks/update_step.py keeps them
    print(kernel_table(rows))
"""

from __future__ import annotations

import collections
import pathlib

import jax


def profile_step(fn, args: list, trace_dir: str, steps: int = 3) -> list[dict]:
    """Runs ``fn(*args)`` ``steps`` times under ``jax.profiler.trace(trace_dir)``, the outputs fed back into
    ``args[:2]`` (params and state, donated), and returns the kernels per step, longest first."""
    jax.block_until_ready(args)
    with jax.profiler.trace(trace_dir):
        for _ in range(steps):
            with jax.profiler.TraceAnnotation("optimizer step"):
                args[:2] = jax.block_until_ready(fn(*args))
    newest = max(pathlib.Path(trace_dir).rglob("*.xplane.pb"), key=lambda p: p.stat().st_mtime)
    return kernels(jax.profiler.ProfileData.from_file(str(newest)), steps)


def _device_events(data, kind: str):
    """(HLO op, kernel name, ns) of each event on a device's lines named ``kind...`` ("Stream #7(Compute)",
    "XLA Ops"); none on a CPU."""
    for plane in data.planes:
        if plane.name.startswith("/device:"):
            for line in plane.lines:
                if line.name.startswith(kind):
                    for event in line.events:
                        stats = dict(event.stats)
                        yield str(stats.get("hlo_op", event.name)), event.name, event.duration_ns


def _host_events(data):
    """(HLO op, event name, ns) of each thunk the host's threads ran (the CPU backend)."""
    for plane in data.planes:
        if plane.name.startswith("/host:"):
            for line in plane.lines:
                for event in line.events:
                    stats = dict(event.stats)
                    if "hlo_op" in stats:
                        yield str(stats["hlo_op"]), event.name, event.duration_ns


def kernels(data, steps: int) -> list[dict]:
    """Per HLO op: ``op``, ``kernel`` (the launched kernel's name, where it differs), ``calls`` and ``us``
    per step, ``share`` of the kernel time; the device's streams (or its "XLA Ops" line) where the trace has
    them, the host's thunks otherwise."""
    events = list(_device_events(data, "Stream")) or list(_device_events(data, "XLA Ops")) or list(_host_events(data))
    calls, nanoseconds, names = collections.Counter(), collections.Counter(), {}
    for op, name, duration in events:
        calls[op] += 1
        nanoseconds[op] += duration
        names.setdefault(op, name)
    total = sum(nanoseconds.values()) or 1
    return [
        {
            "op": op,
            "kernel": names[op] if names[op] != op else "",
            "calls": calls[op] / steps,
            "us": ns / steps / 1e3,
            "share": ns / total,
        }
        for op, ns in nanoseconds.most_common()
    ]


def kernel_table(rows: list[dict], limit: int = 25) -> str:
    """The rows as a Markdown table (the ``limit`` longest ops and a total)."""
    lines = ["| op | kernel | calls/step | µs/step | share |", "|---|---|---|---|---|"]
    for r in rows[:limit]:
        lines.append(f"| {r['op']} | {r['kernel']} | {r['calls']:g} | {r['us']:.1f} | {100 * r['share']:.1f}% |")
    if len(rows) > limit:
        rest = rows[limit:]
        lines.append(
            f"| ({len(rest)} more) | | {sum(r['calls'] for r in rest):g} | {sum(r['us'] for r in rest):.1f} "
            f"| {100 * sum(r['share'] for r in rest):.1f}% |"
        )
    lines.append(f"| total | | {sum(r['calls'] for r in rows):g} | {sum(r['us'] for r in rows):.1f} | 100% |")
    return "\n".join(lines)
