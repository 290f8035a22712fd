"""Calibration of the FID-type intervals and comparisons on synthetic Gaussian features, where the true
Fréchet distance is known in closed form (the figures of docs/metrics.md#calibration).

    python -m metrics.calibration [--trials 200] [--seed 0] [--case NAME ...]

prints, per case (the suite's set sizes and feature size, and the recommended ones), the coverage of
the 95 % interval, the share of "inconclusive" verdicts between two sets drawn from one
distribution, the power to detect a 10 % and a 25 % larger distance, and the coverage the old
percentile bootstrap of the plug-in value had; then the power analysis: the difference a
comparison detects with 80 % power, by generated and real set size.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
from scipy.linalg import expm
from tqdm.auto import tqdm

from metrics.block_fid import position_mean
from metrics.fid import distance, factor, frechet, frechet_distance, gaussian, trace_sqrt
from metrics.stats import compare, difference, fake_key, z_score

# Covariance eigenvalues of the embedded image proxy's 64-d features on the lhqc test set (measured:
# trace 99-101, seven attribute directions, then a tail falling about as 1/j^2).
PROXY_TOP = (34.8, 20.3, 11.5, 10.4, 9.4, 7.5, 5.8)
SHIFT = 0.3  # mean shift per unit of t, in units of sqrt(trace)
WARP = 0.5  # covariance warp per unit of t (scale of the random generator matrix)


def spectrum(kind: str, dim: int) -> np.ndarray:
    """Covariance eigenvalues of the same trace: ``proxy`` (like the embedded image proxy's features; about 9
    effective dimensions), ``power`` (falling as 1/k, about 45 of 64) or ``flat`` (isotropic, all 64)."""
    proxy = np.r_[PROXY_TOP, 0.94 / np.arange(1, dim + 1) ** 2][:dim]
    shape = {"proxy": proxy, "power": 1.0 / np.arange(1, dim + 1), "flat": np.ones(dim)}[kind]
    return shape * proxy.sum() / shape.sum()


@dataclass(frozen=True)
class Case:
    """A calibration setting: set sizes, block positions, feature spectrum and true distance per position."""
    name: str
    n_real: int
    n_fake: int
    distances: tuple[float, ...] = (30.0,)  # true Fréchet distance of each block position
    spectrum: str = "proxy"
    dim: int = 64
    rho: float = 0.5  # correlation of an image's blocks (shared latent)
    # conditional tasks: generated sample i is made from real item i (its first frame, its known half) and its
    # latent has correlation ``pairing`` with that item's; the scorer compares against all real items ("all")
    # or only those no sample was made from ("disjoint", what `nuwa eval` does: docs/metrics.md)
    pairing: float = 0.0
    reference: str = "all"


X4 = (41.7, 38.8, 46.8, 49.3)  # per-position Block-FID(x4) of the embedded run (docs/results.md)
CASES = {c.name: c for c in [
    Case("fid-x1", 256, 64),  # today's config: t2i 64 images, lhqc 256 test images
    Case("block-fid-x4", 256, 32, X4),  # t2i_wide 32 images x 4 block positions
    Case("outpaint", 256, 32),  # 32 per direction, one extended region
    Case("fvd", 64, 16),  # animate 16 clips, lhqv 64 test clips
    Case("same-distribution-flat", 256, 64, (0.0,), spectrum="flat"),  # the example: isotropic, n = D
    Case("flat-n<D", 256, 32, (30.0,), spectrum="flat"),
    Case("power-law-n<2r", 256, 64, spectrum="power"),  # below RELIABLE samples per effective dimension
    Case("power-law-n>2r", 256, 128, spectrum="power"),  # above it
    Case("recommended-x1", 1024, 512),  # docs/metrics.md#recommended-sizes
    Case("recommended-x4", 1024, 256, X4),
    Case("recommended-outpaint", 1024, 256),
    Case("recommended-fvd", 256, 128),
    # Table 3's setting: 128 animations, each from the first frame of one of 384 real clips, scored against the
    # real clips including (before) or excluding (now) the 128 they started from
    Case("paired-fvd-same-items", 384, 128, (1.0,), pairing=0.98),
    Case("paired-fvd-disjoint", 384, 128, (1.0,), pairing=0.98, reference="disjoint"),
]}


class World:
    """The populations of a case: real N(0, Sigma), generated block p N(mu_p, B_p Sigma B_p^T) at the
    case's true distance (scaled by ``factor``), an image's blocks correlated by ``rho``."""

    def __init__(self, case: Case, factor: float = 1.0, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.case, d = case, case.dim
        rotation = np.linalg.qr(rng.normal(size=(d, d)))[0]
        self.root = rotation * np.sqrt(spectrum(case.spectrum, d)) @ rotation.T  # Sigma^1/2
        self.cov = self.root @ self.root
        direction = rng.normal(size=d)
        self.direction = direction / np.linalg.norm(direction) * SHIFT * np.sqrt(np.trace(self.cov))
        self.generator = WARP * rng.normal(size=(d, d)) / np.sqrt(d)
        self.params = [self.at(self.solve(factor * fd)) for fd in case.distances]

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance root of the generated population at warp t (t = 0: the real one)."""
        return t * self.direction, expm(t * self.generator) @ self.root

    def truth(self, t: float) -> float:
        mu, root = self.at(t)
        return frechet_distance(np.zeros(self.case.dim), self.cov, mu, root @ root.T)

    def solve(self, distance: float) -> float:
        """The warp t whose true Fréchet distance is ``distance`` (bisection; it grows with t)."""
        lo, hi = 0.0, 1.0
        while self.truth(hi) < distance:
            lo, hi = hi, 2 * hi
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.truth(mid) < distance else (lo, mid)
        return (lo + hi) / 2

    @property
    def distance(self) -> float:
        """The true Block-FID: the mean over positions of the true Fréchet distance."""
        return float(np.mean([frechet_distance(np.zeros(self.case.dim), self.cov, mu, r @ r.T) for mu, r in self.params]))

    def real(self, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(size=(self.case.n_real, self.case.dim)) @ self.root.T

    def fake(self, rng: np.random.Generator, real: np.ndarray | None = None) -> np.ndarray:
        """[N, P, D]: block p of image i from position p's population, blocks of one image correlated; with
        ``case.pairing``, image i made from ``real[i]`` (its latent correlated with that item's; the
        populations, so the true distance, stay the same)."""
        n, d, rho = self.case.n_fake, self.case.dim, self.case.rho
        shared = rng.normal(size=(n, 1, d))
        z = np.sqrt(rho) * shared + np.sqrt(1 - rho) * rng.normal(size=(n, len(self.params), d))
        if self.case.pairing:
            given = np.linalg.solve(self.root, real[:n].T).T  # the conditioning items' latents (root is symmetric)
            z = self.case.pairing * given[:, None, :] + np.sqrt(1 - self.case.pairing ** 2) * z
        return np.stack([mu + z[:, p] @ r.T for p, (mu, r) in enumerate(self.params)], axis=1)

    def reference(self, real: np.ndarray) -> np.ndarray:
        """The real features a generated set is scored against: all, or those no sample was made from."""
        return real[self.case.n_fake:] if self.case.reference == "disjoint" else real


def estimate(real: np.ndarray, fake: np.ndarray, *, ci: float, groups: int = 64) -> dict:
    """Block-FID (FID at one position) of [M, D] real and [N, P, D] generated features, as the CLI scores it."""
    key = fake_key(fake.shape[0], 0)
    return position_mean([frechet(real, fake[:, p], fake_set=key, groups=groups, ci=ci) for p in range(fake.shape[1])], ci)


def old_interval(real: np.ndarray, fake: np.ndarray, *, ci: float, resamples: int, rng: np.random.Generator) -> tuple[float, float]:
    """The percentile bootstrap this suite used before: plug-in Block-FID on generated sets resampled with replacement."""
    mu_r, cov_r = gaussian(real)
    factor_r = factor(cov_r)

    def plugin(x: np.ndarray) -> float:
        mu, cov = gaussian(x)
        return distance(mu_r, cov_r, mu, cov, trace_sqrt(factor_r, cov))

    n = fake.shape[0]
    reps = [np.mean([plugin(fake[idx, p]) for p in range(fake.shape[1])]) for idx in (rng.integers(0, n, n) for _ in range(resamples))]
    lo, hi = np.quantile(reps, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


def coverage(case: Case, trials: int, *, ci: float = 0.95, seed: int = 0, old: int = 0) -> dict:
    """Share of trials whose interval contains the true distance (and the old bootstrap's, with ``old`` resamples)."""
    world, rng, resampling = World(case, seed=seed), np.random.default_rng(seed + 1), np.random.default_rng(seed + 4)
    truth, hits, old_hits, widths = world.distance, 0, 0, []
    for _ in tqdm(range(trials), desc=f"coverage {case.name}", leave=False):
        real = world.real(rng)
        fake = world.fake(rng, real)
        real = world.reference(real)
        r = estimate(real, fake, ci=ci)
        hits += r["ci_low"] <= truth <= r["ci_high"]
        widths.append(r["ci_high"] - r["ci_low"])
        if old:
            lo, hi = old_interval(real, fake, ci=ci, resamples=old, rng=resampling)
            old_hits += lo <= truth <= hi
    return {"truth": truth, "coverage": hits / trials, "width": float(np.mean(widths)),
            "old_coverage": old_hits / trials if old else None}


def verdicts(case: Case, trials: int, *, factor: float, ci: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Verdicts of "A (true distance d) has the lower distance than B (d * factor)", both scored on the same
    prompts against one real set: shares of held / not held / inconclusive over ``trials``."""
    a, b = World(case, seed=seed), World(case, factor=factor, seed=seed)
    rng = np.random.default_rng(seed + 2)
    counts = {"held": 0, "not held": 0, "inconclusive": 0}
    for _ in tqdm(range(trials), desc=f"verdicts {case.name} x{factor}", leave=False):
        real = a.real(rng)
        fake_a, fake_b = a.fake(rng, real), b.fake(rng, real)
        real = a.reference(real)
        ra, rb = estimate(real, fake_a, ci=ci), estimate(real, fake_b, ci=ci)
        counts[compare(ra, rb, higher_is_better=False, ci=ci)["verdict"]] += 1
    return {k: v / trials for k, v in counts.items()}


def detectable(case: Case, trials: int, *, ci: float = 0.95, power: float = 0.8, seed: int = 0) -> dict:
    """The standard error of A - B for two sets of one distribution (mean over ``trials``), and from it the
    difference detected with probability ``power``: (z_ci + z_power) * se, also as a share of the distance."""
    world, rng = World(case, seed=seed), np.random.default_rng(seed + 3)
    ses = []
    for _ in tqdm(range(trials), desc=f"se {case.name}", leave=False):
        real = world.real(rng)
        fake_a, fake_b = world.fake(rng, real), world.fake(rng, real)
        real = world.reference(real)
        ses.append(difference(estimate(real, fake_a, ci=ci), estimate(real, fake_b, ci=ci))["se"])
    se = float(np.mean(ses))
    effect = (z_score(ci) + z_score(2 * power - 1)) * se
    return {"se": se, "detectable": effect, "share": effect / world.distance}


def calibration_table(names: list[str], trials: int, seed: int, old: int) -> None:
    print("| case | real | generated x positions | spectrum | true distance | coverage | mean width | "
          "null: inconclusive | power +10 % | power +25 % | old bootstrap coverage |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        case = CASES[name]
        cov = coverage(case, trials, seed=seed, old=old)
        null = verdicts(case, trials, factor=1.0, seed=seed)["inconclusive"]
        power = [f"{verdicts(case, trials, factor=f, seed=seed)['held']:.1%}" if any(case.distances) else "" for f in (1.1, 1.25)]
        old_cov = "" if cov["old_coverage"] is None else f"{cov['old_coverage']:.1%}"
        print(f"| {name} | {case.n_real} | {case.n_fake} x {len(case.distances)} | {case.spectrum} | {cov['truth']:.1f} | "
              f"{cov['coverage']:.1%} | {cov['width']:.1f} | {null:.1%} | {power[0]} | {power[1]} | {old_cov} |", flush=True)


def power_table(sizes: list[int], n_real: list[int], trials: int, seed: int) -> None:
    """The difference of two Block-FIDs (x1: one position, distance 30; x4: the embedded run's four) that a
    comparison detects with 80 % power, by generated and real set size."""
    print("| generated n | real n | x1: se of A - B | x1: detectable (80 %) | x4: se of A - B | x4: detectable (80 %) |")
    print("|---|---|---|---|---|---|")
    for m in n_real:
        for n in sizes:
            cells = [detectable(Case(f"{kind} n={n} m={m}", m, n, distances), trials, seed=seed)
                     for kind, distances in (("x1", (30.0,)), ("x4", X4))]
            print(f"| {n} | {m} | " + " | ".join(f"{c['se']:.2f} | {c['detectable']:.1f} ({c['share']:.0%})" for c in cells) + " |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m metrics.calibration", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--old-resamples", type=int, default=100, help="bootstrap resamples of the old interval (0: skip it)")
    parser.add_argument("--case", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--power-n", nargs="*", type=int, default=[32, 64, 128, 256, 512, 1024],
                        help="generated set sizes of the power analysis (none: skip it)")
    parser.add_argument("--power-real", nargs="*", type=int, default=[256, 1024], help="real set sizes of the power analysis")
    parser.add_argument("--power-trials", type=int, default=50, help="trials per standard error of the power analysis")
    args = parser.parse_args(argv)
    print(f"{args.trials} trials per figure, 95 % intervals, seed {args.seed}\n")
    calibration_table(args.case, args.trials, args.seed, args.old_resamples)
    if args.power_n:
        print(f"\nPower analysis ({args.power_trials} trials per standard error)\n")
        power_table(args.power_n, args.power_real, args.power_trials, args.seed)


if __name__ == "__main__":
    main()
