"""`audioscene pretrained`: the model zoo: list it, fetch a model ahead, import a file fetched by hand."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def arguments(sub) -> None:
    p = sub.add_parser("pretrained", help="the model zoo: list it, fetch a model ahead, import a file fetched by hand",
                       description="Released AudioSet models by name, usable wherever --run is as "
                                   "--run pretrained:NAME (fetched into the cache on first use: $AUDIOSCENE_HOME, "
                                   "else the user cache folder).",
                       epilog="examples:\n  audioscene pretrained list\n  audioscene pretrained get efficientat_mn10_as\n"
                              "  audioscene pretrained import efficientat_mn10_as mn10_as_mAP_471.pt\n"
                              "  audioscene tag street.wav --run pretrained:efficientat_mn10_as",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=type(p))
    listing = actions.add_parser("list", help="the catalogue: name, published mAP, parameters, rate, licence")
    listing.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or json")
    get = actions.add_parser("get", help="fetch NAME into the cache now (and check it)")
    get.add_argument("name", metavar="NAME")
    imported = actions.add_parser("import", help="a file of NAME downloaded by hand (machines without network)")
    imported.add_argument("name", metavar="NAME")
    imported.add_argument("file", type=Path, metavar="FILE")
    imported.add_argument("--out", type=Path, help="a run folder to write (default: the cache's, which "
                                                    "pretrained:NAME uses)")
    p.set_defaults(func=run)


def run(args) -> None:
    from ...pretrained import CATALOGUE, import_into_cache, import_release, release_named, run_folder

    if args.action == "list":
        rows = [{"name": r.name, "model": r.model, "published": r.published, "source": r.source,
                 "parameters_m": r.parameters_m, "sample_rate": r.frontend.sample_rate, "url": r.url,
                 "sha256": r.sha256, "size": r.size, "licence": r.licence} for r in CATALOGUE.values()]
        if args.format == "json":
            print(json.dumps(rows, indent=2))
            return
        print(f"{'name':34} {'mAP':>6} {'params':>8} {'rate':>6}  licence")
        for row in rows:
            print(f"{row['name']:34} {row['published']['mAP']:6.3f} {row['parameters_m']:7.2f}M "
                  f"{row['sample_rate'] // 1000:4d}k  {row['licence']}")
        print("published mAP on AudioSet's evaluation set (their papers; `--format json` names each source); no "
              "publisher gives checksums: every file is checked by its weights' names and shapes")
    elif args.action == "get":
        release_named(args.name)
        print(f"{args.name}: {run_folder(args.name)}")
    else:
        path = import_release(args.file, args.name, args.out) if args.out else import_into_cache(args.file, args.name)
        print(f"{args.file} ({args.name}) -> {path}; use it as --run {args.out or 'pretrained:' + args.name}")
