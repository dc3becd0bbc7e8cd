"""``python -m analysis RESULTS_DIR [--out DIR]``: draw every figure of a results store."""

from __future__ import annotations

import argparse
import sys

from benchmark.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis",
        description="Draw the figures of a results store (a study directory or a results root) "
                    "and write index.html.")
    parser.add_argument("results_dir", help="a study's results directory (with rows/) or a root")
    parser.add_argument("--out", default=None, help="output directory (default <study>/figures)")
    parser.add_argument("--traversal-jobs", nargs="*", default=None, metavar="ID",
                        help="job or model ids to draw latent traversals for (default: one per "
                             "dataset and method; give none to skip traversals)")
    parser.add_argument("--efficiency-score", default=None, metavar="METRIC.KEY",
                        help="score plotted against efficiency (default factor_vae.eval_accuracy)")
    parser.add_argument("--compare", nargs=2, default=None, metavar="STUDY",
                        help="compare two studies of a results root (default: each imported "
                             "study against each of ours)")
    parser.add_argument("--view-points", type=int, default=None, metavar="N",
                        help="observations per t-SNE map of the traversed models' mean codes; 0: "
                             "none (default: the spec's figures.view_points, else 2000)")
    args = parser.parse_args(argv)
    from analysis.figures import DEFAULT_EFFICIENCY_SCORE, draw_all

    try:
        if args.view_points is not None and args.view_points < 0:
            raise UserError(f"--view-points must be >= 0, got {args.view_points}")
        rep = draw_all(args.results_dir, args.out, traversal_jobs=args.traversal_jobs,
                       efficiency_score=args.efficiency_score or DEFAULT_EFFICIENCY_SCORE,
                       compare=args.compare, view_points=args.view_points)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(rep.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
