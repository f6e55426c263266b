r"""Returns and baselines: the scales that multiply :math:`\log \pi(a_t|s_t)`.

Arrays are time-major: ``rewards[t, i]`` is the reward of env ``i`` at vector step ``t``
and ``dones[t, i]`` says its episode ended with that step.  A done cuts every sum, so one
column can hold several consecutive episodes.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def discounted_returns(
    rewards: NDArray[np.floating], dones: NDArray[np.bool_], gamma: float
) -> FloatArray:
    r"""Discounted return to the end of each episode (vanilla REINFORCE's :math:`Q`).

    .. math:: Q_t = \sum_{k \ge 0} \gamma^k r_{t+k}

    summed up to and including the step where the episode ends, computed backwards as
    :math:`Q_t = r_t + \gamma (1 - d_t) Q_{t+1}`.  Only entries whose episode ends inside
    the array are complete; later ones are truncated at the array's end.
    """
    r = np.asarray(rewards, dtype=np.float64)
    d = np.asarray(dones, dtype=bool)
    out = np.empty_like(r)
    # One row per iteration, a few hundred per update: written into preallocated rows
    # (the same products and sums) because allocating per row cost more than the maths.
    carried = np.empty(r.shape[1:], dtype=np.float64)
    later = np.zeros(r.shape[1:], dtype=np.float64)
    for t in range(r.shape[0] - 1, -1, -1):
        np.multiply(later, gamma, out=carried)
        np.copyto(carried, 0.0, where=d[t])
        later = np.add(r[t], carried, out=out[t])
    return out


def discounted_returns_at(
    rewards: NDArray[np.floating], dones: NDArray[np.bool_], mask: NDArray[np.bool_], gamma: float
) -> FloatArray:
    """:func:`discounted_returns` where ``mask`` is true, bit for bit (other entries are
    not meant to be read).

    An update needs the returns of its batch only, while the buffer holds every env's
    partial episode: the whole-buffer recursion cost three NumPy calls per row (a fifth
    of a one-episode-batch trial's time went there). Here each column that has a masked
    entry is walked back from the end of its last masked entry's episode with Python
    floats: per element the same product ``later * gamma``, the same reset to 0.0 at a
    done and the same sum ``r + carried`` in IEEE double, so the same values
    (``tests/test_returns.py`` compares both on random buffers).
    """
    r = np.asarray(rewards, dtype=np.float64)
    d = np.asarray(dones, dtype=bool)
    out = np.zeros_like(r)
    horizon = r.shape[0]
    cols, rows = np.nonzero(np.asarray(mask, dtype=bool).T)  # column-major: per column
    if cols.size == 0:
        return out
    splits = np.flatnonzero(np.diff(cols)) + 1
    firsts = np.concatenate(([0], splits))
    lasts = np.concatenate((splits, [cols.size])) - 1
    for col, lo, hi in zip(
        cols[firsts].tolist(), rows[firsts].tolist(), rows[lasts].tolist(), strict=True
    ):
        column_dones = d[hi:, col]
        ends = np.flatnonzero(column_dones)
        # The last masked entry's episode ends at its first done; an unfinished one is
        # truncated at the array's end, as the whole-buffer recursion truncates it.
        stop = hi + int(ends[0]) if ends.size else horizon - 1
        values = r[lo : stop + 1, col].tolist()
        ended = d[lo : stop + 1, col].tolist()
        later = 0.0
        for k in range(len(values) - 1, -1, -1):
            later = values[k] + (0.0 if ended[k] else later * gamma)
            values[k] = later
        out[lo : stop + 1, col] = values
    return out


def nstep_returns(
    rewards: NDArray[np.floating], dones: NDArray[np.bool_], gamma: float, n: int
) -> FloatArray:
    r"""N-step discounted return, with no bootstrap (the "unrolled" reward of the chapter).

    .. math:: R^{(n)}_t = \sum_{k=0}^{n-1} \gamma^k r_{t+k} \prod_{j=0}^{k-1} (1 - d_{t+j})

    The product stops the sum at the end of the episode.  Entries whose window reaches past
    the array's end are incomplete; callers take only the ready ones (see
    :func:`nstep_ready`).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    r = np.asarray(rewards, dtype=np.float64)
    d = np.asarray(dones, dtype=bool)
    horizon = r.shape[0]
    out = r.copy()
    alive = ~d
    for k in range(1, n):
        if k >= horizon:
            break
        shifted = np.zeros_like(r)
        shifted[: horizon - k] = r[k:]
        out += (gamma**k) * np.where(alive, shifted, 0.0)
        next_done = np.zeros_like(d)
        next_done[: horizon - k] = d[k:]
        alive = alive & ~next_done
    return out


def nstep_ready(dones: NDArray[np.bool_], n: int) -> NDArray[np.bool_]:
    """Which entries of :func:`nstep_returns` are final.

    Entry ``t`` is final when its window of ``n`` steps lies inside the array, or, for the
    last ``n - 1`` rows, when its episode ends before the array does.
    """
    d = np.asarray(dones, dtype=bool)
    ready = episode_ready(d)
    ready[: max(d.shape[0] - n + 1, 0)] = True
    return ready


def episode_ready(dones: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Entries whose episode ends inside the array (their full return is known)."""
    d = np.asarray(dones, dtype=bool)
    return np.flip(np.logical_or.accumulate(np.flip(d, axis=0), axis=0), axis=0)


class MeanBaseline:
    r"""Mean of the returns seen so far, the chapter's baseline.

    For the :math:`i`-th return overall, :math:`b_i = \frac{1}{i} \sum_{j \le i} R_j`
    (each return counts towards its own baseline, as in the book's code).  With a
    ``window`` only the last ``window`` returns count.
    """

    def __init__(self, window: int | None = None) -> None:
        self.window = window
        self.total = 0.0
        self.count = 0
        self._tail = np.zeros(0, dtype=np.float64)

    def __call__(self, returns: NDArray[np.floating]) -> FloatArray:
        r = np.asarray(returns, dtype=np.float64).reshape(-1)
        if self.window is None:
            sums = self.total + np.cumsum(r)
            counts = self.count + np.arange(1, r.size + 1)
            self.total = float(sums[-1]) if r.size else self.total
            self.count += r.size
            return sums / counts
        history = np.concatenate([self._tail, r])
        csum = np.concatenate([[0.0], np.cumsum(history)])
        ends = np.arange(self._tail.size + 1, history.size + 1)
        starts = np.maximum(ends - self.window, 0)
        self._tail = history[-(self.window - 1) :] if self.window > 1 else history[:0]
        means: FloatArray = (csum[ends] - csum[starts]) / (ends - starts)
        return means
