"""``scatter export kubernetes|compose DEPLOYMENT.toml [-o DIR]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from root.errors import ConfigError
from scatter.export import Images, build_target, compose_file, kubernetes_manifests, kubernetes_stream
from scatter.runtime import load_deployment


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scatter export",
        description="Write Kubernetes manifests or a Compose file for a deployment file "
        "(the one `scatter up` runs); docs/deploy.md, 'Export any deployment'.",
    )
    parser.add_argument("format", choices=["kubernetes", "compose"], help="what to write")
    parser.add_argument("config", type=Path, help="deployment file (TOML) with an optional [deploy] table")
    parser.add_argument(
        "-o", "--out", type=Path, help="folder to write into (kubernetes: 00-namespace.yaml ..., "
        "compose: compose.yaml); default: stdout"
    )  # fmt: skip
    parser.add_argument("--image", default="", help="image of every container (beats [deploy] image)")
    parser.add_argument("--leaf-image", default="", help="image of the leaves (beats --image)")
    parser.add_argument("--merge-image", default="", help="image of the merge (beats --image)")
    parser.add_argument("--root-image", default="", help="image of the root (beats --image)")
    parser.add_argument("--namespace", default="", help="Kubernetes namespace (beats [deploy] namespace)")
    args = parser.parse_args(argv)
    try:
        spec = load_deployment(args.config)
        target = build_target(
            spec, Images(args.image, args.leaf_image, args.merge_image, args.root_image), args.namespace
        )
        source = str(args.config)
        if args.format == "kubernetes" and args.out is None:
            files = {"-": kubernetes_stream(target, source)}
        elif args.format == "kubernetes":
            files = kubernetes_manifests(target, source, str(args.out))
        else:
            out = args.out / "compose.yaml" if args.out else Path("compose.yaml")
            files = {"compose.yaml": compose_file(target, source, str(out))}
    except ConfigError as exc:
        print(f"scatter export: {exc}", file=sys.stderr)
        return 2
    if args.out is None:
        sys.stdout.write("".join(files.values()))
        return 0
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (args.out / name).write_text(text)
    except OSError as exc:
        print(f"scatter export: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    print(f"scatter export: wrote {', '.join(str(args.out / n) for n in files)}", file=sys.stderr)
    return 0
