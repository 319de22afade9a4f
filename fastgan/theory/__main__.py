"""`python -m fastgan.theory`: the GAN theory, run and drawn.

    python -m fastgan.theory optimal-d   D trained against a known p_g beside D* = p_data/(p_data + p_g), V(D, G)
                                         beside −log 4 + 2·JSD; then an affine G learns (1-D, seconds)
    python -m fastgan.theory g-losses    the three G costs and their gradients against D(G(z)) (instant)
    python -m fastgan.theory ring        vanilla and unrolled GANs on the 8-Gaussian ring over several seeds: mode
                                         coverage table and scatter plots (minutes per run)
    python -m fastgan.theory grid        the same on the 25-Gaussian grid
"""
import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time

from fastgan.gan import G_LOSSES
from fastgan.train import minibatch_pair
from fastgan.utils.atomic import atomic_write

from . import figures
from .g_losses import cost_curves
from .optimal_d import OptimalDConfig, fixed_g_experiment, learning_experiment
from .ring import SweepError, run_sweep, speed_lines, table_markdown, write_report
from .toy_run import ToyRunConfig
from .unrolled import UNROLL_MODES


def _common(p, command):
    p.add_argument("--out", default=None, help=f"output folder (default: runs/theory/{command})")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS threads; the toy networks' matrices are small, and one thread does not wait on "
                        "another on a shared machine (default: %(default)s; 0 = the library's default)")


def build_parser():
    p = argparse.ArgumentParser(prog="python -m fastgan.theory", description="Run and draw the GAN theory.")
    sub = p.add_subparsers(dest="command", required=True)

    d = OptimalDConfig()
    od = sub.add_parser("optimal-d", help="the optimal discriminator and the value of the game, in 1-D")
    _common(od, "optimal-d")
    od.add_argument("--d-steps", type=int, default=d.d_steps,
                    help="D's Adam steps against a fixed G (default: %(default)s)")
    od.add_argument("--g-steps", type=int, default=d.g_steps,
                    help="G's steps in the learning run (default: %(default)s)")
    od.add_argument("--d-steps-per-g", type=int, default=d.d_steps_per_g,
                    help="D's steps before each G step (default: %(default)s)")
    od.add_argument("--g-loss", choices=G_LOSSES, default=d.g_loss, help="G's cost (default: %(default)s)")
    od.add_argument("--seed", type=int, default=d.seed, help="random seed (default: %(default)s)")

    gl = sub.add_parser("g-losses", help="the three generator costs and their gradients against D(G(z))")
    _common(gl, "g-losses")

    r = ToyRunConfig()
    for name in ("ring", "grid"):
        rp = sub.add_parser(name, help=f"vanilla vs unrolled GAN on the {name}: mode coverage over seeds")
        _common(rp, name)
        rp.add_argument("--seeds", type=int, default=5, help="training seeds per variant (default: %(default)s)")
        rp.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed … (default: %(default)s)")
        rp.add_argument("--unroll", type=int, nargs="+", default=[0, 5], metavar="K",
                        help="look-ahead steps of each variant, 0 = vanilla GAN (default: 0 5)")
        rp.add_argument("--unroll-mode", choices=UNROLL_MODES, default="first-order",
                        help="first-order (G's gradient treats the unrolled D as constant) or exact (G's gradient "
                             "runs through the unrolled steps: gradients of gradients) (default: %(default)s)")
        rp.add_argument("--minibatch-disc", type=minibatch_pair, default=(), metavar="B,C",
                        help="give the vanilla GAN's D a minibatch-discrimination layer of B kernels of C dimensions "
                             "(with --unroll 0 only)")
        rp.add_argument("--iters", type=int, default=r.iters, help="training iterations (default: %(default)s)")
        rp.add_argument("--snapshot-every", type=int, default=2500,
                        help="keep G's samples every N iterations for the pictures (default: %(default)s)")
        rp.add_argument("--batch-size", type=int, default=r.batch_size, help="(default: %(default)s)")
        rp.add_argument("--nz", type=int, default=r.nz, help="size of z (default: %(default)s)")
        rp.add_argument("--lr-d", type=float, default=r.lr_d, help="D's Adam lr (default: %(default)s)")
        rp.add_argument("--lr-g", type=float, default=r.lr_g, help="G's Adam lr (default: %(default)s)")
        rp.add_argument("--beta1", type=float, default=r.beta1, help="Adam β1 of both (default: %(default)s)")
        rp.add_argument("--g-loss", choices=G_LOSSES, default=r.g_loss, help="G's cost (default: %(default)s)")
        rp.add_argument("--log-every", type=int, default=r.log_every, help="(default: %(default)s)")
        rp.add_argument("--figure-seed", type=int, default=None,
                        help="the seed whose snapshots are drawn (default: the first)")
        rp.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _limit_threads(threads):
    if threads == 0:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits
    return threadpool_limits(threads)


def _write_json(path, obj):
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def cmd_optimal_d(args, out):
    if args.d_steps < 1 or args.g_steps < 0 or args.d_steps_per_g < 1:
        raise ValueError(f"--d-steps and --d-steps-per-g must be ≥ 1 and --g-steps ≥ 0, got {args.d_steps}, "
                         f"{args.d_steps_per_g} and {args.g_steps}")
    config = dataclasses.replace(OptimalDConfig(), d_steps=args.d_steps, g_steps=args.g_steps,
                                 d_steps_per_g=args.d_steps_per_g, g_loss=args.g_loss, seed=args.seed)
    fixed = fixed_g_experiment(config)
    learning = learning_experiment(config)
    os.makedirs(out, exist_ok=True)
    figures.plot_fixed_g(fixed, os.path.join(out, "optimal_d_fixed_g.png"))
    figures.plot_learning(learning, os.path.join(out, "optimal_d_learning.png"))
    numbers = {"config": dataclasses.asdict(config),
               **{f"fixed_g_{key}": {k: fixed[key][k] for k in ("max_abs_d_error", "value", "c_of_g", "jsd")}
                  for key in ("different", "same")},
               "learning": {k: v[-1] for k, v in learning["curves"].items()}}
    _write_json(os.path.join(out, "optimal_d.json"), numbers)
    for key, title in (("different", "p_g ≠ p_data"), ("same", "p_g = p_data")):
        r = fixed[key]
        print(f"{title}: V(D, G) = {r['value']:.4f}, −log 4 + 2·JSD = {r['c_of_g']:.4f}, "
              f"max |D − D*| = {r['max_abs_d_error']:.3f}")
    last = numbers["learning"]
    print(f"G learned: N({last['loc']:.3f}, {last['scale']:.3f}²) for p_data N({config.data_loc}, "
          f"{config.data_scale}²); V(D, G) = {last['value']:.4f}, −log 4 + 2·JSD = {last['c_of_g']:.4f}")


def cmd_g_losses(args, out):
    curves = cost_curves()
    os.makedirs(out, exist_ok=True)
    figures.plot_g_losses(curves, os.path.join(out, "g_losses.png"))
    _write_json(os.path.join(out, "g_losses.json"),
                {"d": curves["d"].tolist(), **{k: {q: v.tolist() for q, v in c.items()}
                                               for k, c in curves.items() if k != "d"}})
    print(f"wrote {os.path.join(out, 'g_losses.png')}")


def cmd_ring(args, out):
    if args.seeds < 1 or args.snapshot_every < 1:
        raise ValueError(f"--seeds and --snapshot-every must be ≥ 1, got {args.seeds} and {args.snapshot_every}")
    snapshots = tuple(range(0, args.iters + 1, args.snapshot_every))
    base = ToyRunConfig(data=args.command, unroll_mode=args.unroll_mode, iters=args.iters,
                        batch_size=args.batch_size, nz=args.nz, lr_d=args.lr_d, lr_g=args.lr_g, beta1=args.beta1,
                        g_loss=args.g_loss, snapshots=snapshots, log_every=args.log_every,
                        minibatch=tuple(args.minibatch_disc))
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    results = run_sweep(base, args.unroll, seeds, out, progress=not args.no_progress)
    figure_seed = args.first_seed if args.figure_seed is None else args.figure_seed
    rows = write_report(results, out, args.command, figure_seed)
    print(table_markdown(rows, args.command), end="")
    print("\n".join(speed_lines(rows)))


COMMANDS = {"optimal-d": cmd_optimal_d, "g-losses": cmd_g_losses, "ring": cmd_ring, "grid": cmd_ring}


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = args.out or os.path.join("runs", "theory", args.command)
    if args.threads < 0:
        print(f"error: --threads must be ≥ 0, got {args.threads}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        with _limit_threads(args.threads):
            COMMANDS[args.command](args, out)
    except (ValueError, SweepError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"done in {time.perf_counter() - start:.1f} s; outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
