"""How big and how fast the bench runs: the full run or `--quick`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Settings:
    """Choices shared by the scenarios.

    `scale` multiplies every nominal duration (the emulator's and the
    runner's alike) for rate-bound runs, where whole windows must pass: at
    0.05 a 60 s window takes 3 s and the runner's one-second margin between
    its windows and the server's is 50 ms, more than the tens of ms its
    event loop can lag behind the gate (at 0.01 it met 429s). `small_scale`
    is used where a batch finishes in about one latency, so that the
    runner's fixed costs in real milliseconds stay small against the scaled
    latency (at 0.01 a "10 s" job takes 100 ms, and fifteen jobs' ledger
    commits and submits already take tens of them).
    """

    quick: bool = False
    scale: float = 0.05
    small_scale: float = 0.25

    @classmethod
    def make(cls, quick: bool) -> Settings:
        """The full bench, or a smoke run of under a minute (noisier: faster scales)."""
        if quick:
            return cls(quick=True, scale=0.02, small_scale=0.05)
        return cls()
