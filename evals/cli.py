"""`speclm eval {redshift,retention,ablation,agent}` and `speclm report`.

Other eval modules (retention, ablation, agent scenarios, classes) register their own `eval`
subcommands through ``register_eval(eval_subparsers)``. Heavy imports (torch, matplotlib) stay inside the handlers.
"""
from __future__ import annotations

import importlib

EVAL_MODULES = ("speclm.evals.retention", "speclm.evals.ablation", "speclm.evals.scenarios", "speclm.evals.classes",
                "speclm.evals.planner")


def register(subparsers) -> None:
    ev = subparsers.add_parser("eval", help="evaluate adapters (redshift, retention, ablation, agent)",
                               description="Evaluations of a speclm adapter; each writes machine-readable "
                                           "results that `speclm report` turns into one HTML page.")
    esub = ev.add_subparsers(dest="eval_command", metavar="SUBCOMMAND")
    ev.set_defaults(func=lambda args: (ev.print_help(), 1)[1])

    p = esub.add_parser(
        "redshift", help="held-out redshift accuracy vs a kNN and a constant baseline",
        description="Predict redshifts of held-out spectra with an adapter (constrained decoding, p(z) "
                    "median and 68%% interval), compare with a kNN on the same preprocessed vectors and "
                    "with always answering the training median; writes report.json and pred_vs_true.png "
                    "into --out and prints a table. Refuses evaluation sets that overlap the training set.")
    from speclm.evals.redshift import RedshiftEvalConfig

    RedshiftEvalConfig.add_arguments(p, ("adapter", "base", "dataset", "folder", "limit", "seed", "train_dataset",
                                         "knn", "refine", "z_min", "z_max", "unconstrained", "out", "batch_size",
                                         "device"))
    p.add_argument("--split", default="val", choices=("val", "test", "train", "unassigned"),
                   help="split of --dataset (default val; 'train' is refused for the adapter's own dataset)")
    p.add_argument("--class", dest="catalog_class", default=None, choices=("GALAXY", "QSO", "STAR"),
                   help="--folder: keep files whose catalog CLASS is this")
    p.add_argument("--no-cache", action="store_true",
                   help="do not cache preprocessed vectors inside the dataset directories (read-only data)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_redshift)

    c = esub.add_parser(
        "calibrate", help="fit the p(z) temperature on simulated validation spectra (68%% coverage)",
        description="Compute the adapter's digit logits once on a simulated held-out split, choose the "
                    "temperature whose 68%% intervals cover 68%% of the true z, and (with --write) store it "
                    "in the adapter card; real spectra are never used, so they stay an honest test.")
    c.add_argument("--adapter", required=True, help="adapter directory, or 'bundled'")
    c.add_argument("--dataset", required=True, help="simulated dataset directory")
    c.add_argument("--split", default="val", choices=("val", "test"), help="held-out split (default val)")
    c.add_argument("--limit", type=int, default=300, help="spectra used (seeded subset; default 300)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--snr-bins", type=int, default=0,
                   help="also fit T inside this many equal-count bins of r-band S/N (0: one global T)")
    c.add_argument("--outlier", action="store_true",
                   help="also fit the outlier weight (p(z) mass spread over the model's domain) so the 99%% "
                        "intervals hold 99%% of the truths, per S/N bin with --snr-bins")
    c.add_argument("--tail", type=float, default=0.99,
                   help="with --outlier: the share of truths the 99%% intervals must hold (default 0.99, "
                        "calibrated tails; e.g. 0.995 for conservative tails and fewer confidently wrong answers)")
    c.add_argument("--floor-local", type=float, default=0.0,
                   help="with --outlier: the share of the outlier mass put beside the model's own p(z) (its p(z) "
                        "broadened by a Gaussian of --floor-sigma) instead of evenly over the domain (default 0)")
    c.add_argument("--floor-sigma", type=float, default=0.01, help="the local floor's Gaussian sigma in z (default 0.01)")
    c.add_argument("--logits", default=None,
                   help="digit logits stored by benchmarks/pz_logits.py for this adapter's weights and this split "
                        "(the model is not run again)")
    c.add_argument("--write", action="store_true", help="store the fitted temperature in the adapter card")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=_calibrate)

    for name in EVAL_MODULES:  # each eval module registers its own subcommand
        importlib.import_module(name).register_eval(esub)

    r = subparsers.add_parser(
        "report", help="one self-contained HTML report of the evals",
        description="Combine a redshift eval directory, a retention JSON, an ablation table and a sample "
                    "conversation into one HTML file (figure embedded, CSS inline). Missing parts are "
                    "shown as 'not run' with the command that makes them.")
    r.add_argument("--out", default="report.html", help="output HTML file (default report.html)")
    r.add_argument("--eval", dest="eval_dir", default=None, help="directory written by `speclm eval redshift`")
    r.add_argument("--retention", default=None, help="JSON from `speclm eval retention`")
    r.add_argument("--ablation", default=None, help="Markdown or JSON table from `speclm eval ablation`")
    r.add_argument("--conversation", default=None, help="JSON transcript from `speclm demo --json`")
    r.add_argument("--title", default="speclm evaluation report", help="page title")
    r.set_defaults(func=_report)


def _redshift(args) -> int:
    from speclm.evals.redshift import RedshiftEvalConfig, run_redshift_eval, summary_table

    cfg = RedshiftEvalConfig.from_args(args, split="" if args.split == "unassigned" else args.split,
                                       cache_features=not args.no_cache, progress=not args.no_progress)
    report = run_redshift_eval(cfg)
    print(summary_table(report))
    print(f"wrote {cfg.out}/report.json and {cfg.out}/pred_vs_true.png")
    return 0


def _calibrate(args) -> int:
    from speclm.evals.redshift import calibrate_temperature

    out = calibrate_temperature(args.adapter, args.dataset, split=args.split, limit=args.limit, seed=args.seed,
                                write=args.write, progress=not args.no_progress, snr_bins=args.snr_bins,
                                outlier=args.outlier, tail=args.tail, logits=args.logits,
                                floor_local=args.floor_local, floor_sigma=args.floor_sigma)
    print(f"p(z) temperature T = {out['pz_temperature']:.3g}: 68% coverage {out['coverage_at_T']:.1%} "
          f"(raw model, T = 1: {out['coverage_at_T1']:.1%}) on {out['n']} spectra of {out['dataset']} [{out['split']}]"
          + ("; written to the adapter card" if args.write else "; not written (pass --write)"))
    for b in out.get("snr_bins", []):
        print(f"  S/N {b['snr_lo']:.1f}-{b['snr_hi']:.1f} (median {b['snr_median']:.1f}, {b['n']} spectra): "
              f"T = {b['T']:.3g}, coverage {b['coverage_68']:.1%} (at the global T: {b['coverage_at_global_T']:.1%})")
    if "pz_outlier" in out:
        print(f"outlier weight {out['pz_outlier']:.3g}: 99% coverage {out['coverage_99']:.1%} "
              f"(without: {out['coverage_99_without_outlier']:.1%})")
        for b in out.get("snr_bins", []):
            print(f"  S/N {b['snr_median']:.1f}: w = {b['outlier_w']:.3g}, T = {b['outlier_T']:.3g}, 68% coverage "
                  f"{b['outlier_coverage_68']:.1%}, 99% coverage {b['outlier_coverage_99']:.1%} "
                  f"(w = 0: {b['outlier_coverage_99_at_w0']:.1%})")
    if "pz_temperature_snr" in out:
        t = out["pz_temperature_snr"]
        print("  table (non-increasing in S/N): " + ", ".join(f"S/N {a:.1f} -> T {b:.3g}" for a, b in zip(t["snr"], t["T"])))
    if "pz_outlier_snr" in out:
        t = out["pz_outlier_snr"]
        print("  outlier table: " + ", ".join(f"S/N {a:.1f} -> w {b:.3g}" for a, b in zip(t["snr"], t["w"])))
    return 0


def _report(args) -> int:
    from speclm.evals.report import write_report

    out = write_report(args.out, eval_dir=args.eval_dir, retention=args.retention, ablation=args.ablation,
                       conversation=args.conversation, title=args.title)
    print(f"wrote {out}")
    return 0
