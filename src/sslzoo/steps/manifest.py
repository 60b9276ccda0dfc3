"""Write the manifest of one dataset split: its images, labels and classes, listed once.

Reads class folders (--images <root>/<class>/<image>) or an MMSelfSup list file (--list, lines
"<path relative to --images> <label>"); every listed file must exist. Writes
{"dataset", "split", "root", "classes", "samples": [[path, label], ...]} (sslzoo.data.manifest),
which later jobs read instead of scanning folders again."""

from __future__ import annotations

import argparse

from sslzoo.data.manifest import BUILDERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=sorted(BUILDERS), help="dataset layout")
    parser.add_argument(
        "--images", required=True, help="image root: class folders, or what --list paths are relative to"
    )
    parser.add_argument(
        "--list", default=None, help="MMSelfSup list file '<relpath> <label>' (default: class folders)"
    )
    parser.add_argument("--split", required=True, help="split name stored in the manifest (train, val, ...)")
    parser.add_argument(
        "--out", required=True, help="manifest to write (resources/manifests/{dataset}_{split}.json)"
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.data.manifest import build_manifest, write_manifest

    manifest = build_manifest(args.dataset, args.images, args.split, args.list)
    write_manifest(manifest, args.out)
    print(f"{args.out}: {len(manifest['samples'])} images, {len(manifest['classes'])} classes")
