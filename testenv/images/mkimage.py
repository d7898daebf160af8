#!/usr/bin/env python3
"""Packs files into a one-layer container image, in the docker-archive format (what
`docker save` writes and `ctr images import` reads), with no daemon and no registry.

    mkimage.py OUT.tar NAME:TAG [--entrypoint JSON] [--cmd JSON] [--env K=V]... ENTRY...

ENTRY is one of
    PATH=SRC        the host file SRC at PATH in the image (its mode kept, owner root)
    PATH/           an empty directory (mode 0755; tmp/ and var/tmp/ get 1777)
    PATH@TARGET     a symbolic link PATH -> TARGET

Deterministic: entries sorted, owner 0:0, mtime 0, no user or group names, the config's
dates at the epoch and its JSON with sorted keys, so the same files give the same image ID.
"""
import argparse
import hashlib
import io
import json
import os
import sys
import tarfile

def tarinfo(name, **fields):
    info = tarfile.TarInfo(name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    for key, value in fields.items():
        setattr(info, key, value)
    return info

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("ref")
    ap.add_argument("--entrypoint")
    ap.add_argument("--cmd")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--workdir", default="")
    ap.add_argument("entries", nargs="+")
    args = ap.parse_args()
    if ":" not in args.ref.rsplit("/", 1)[-1]:
        sys.exit(f"mkimage.py: image name {args.ref!r} has no :TAG")

    files, links, dirs = {}, {}, set()
    for entry in args.entries:
        if "=" in entry:
            path, src = entry.split("=", 1)
            files[path.strip("/")] = src
        elif entry.endswith("/"):
            dirs.add(entry.strip("/"))
        elif "@" in entry:
            path, target = entry.split("@", 1)
            links[path.strip("/")] = target
        else:
            sys.exit(f"mkimage.py: entry {entry!r} is none of PATH=SRC, PATH/, PATH@TARGET")
    # Every parent directory, explicitly, so the layer's tree is complete.
    for path in list(files) + list(links) + list(dirs):
        parts = path.split("/")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(set(dirs) | set(files) | set(links)):
            if path in files:
                src = files[path]
                with open(src, "rb") as f:
                    data = f.read()
                mode = os.stat(src).st_mode & 0o7777
                tar.addfile(tarinfo(path, size=len(data), mode=mode), io.BytesIO(data))
            elif path in links:
                tar.addfile(tarinfo(path, type=tarfile.SYMTYPE, linkname=links[path], mode=0o777))
            else:
                mode = 0o1777 if path in ("tmp", "var/tmp") else 0o755
                tar.addfile(tarinfo(path, type=tarfile.DIRTYPE, mode=mode))
    layer_bytes = layer.getvalue()
    layer_hex = hashlib.sha256(layer_bytes).hexdigest()

    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + args.env
    config = {"Env": env}
    if args.entrypoint:
        config["Entrypoint"] = json.loads(args.entrypoint)
    if args.cmd:
        config["Cmd"] = json.loads(args.cmd)
    if args.workdir:
        config["WorkingDir"] = args.workdir
    image = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + layer_hex]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "testenv/images/mkimage.py"}],
    }
    config_bytes = json.dumps(image, sort_keys=True, separators=(",", ":")).encode()
    config_hex = hashlib.sha256(config_bytes).hexdigest()
    repo, tag = args.ref.rsplit(":", 1)
    manifest = [{"Config": config_hex + ".json", "RepoTags": [args.ref],
                 "Layers": [layer_hex + "/layer.tar"]}]

    tmp = args.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as out:
        def add(name, data):
            out.addfile(tarinfo(name, size=len(data), mode=0o644), io.BytesIO(data))
        out.addfile(tarinfo(layer_hex, type=tarfile.DIRTYPE, mode=0o755))
        add(layer_hex + "/layer.tar", layer_bytes)
        add(config_hex + ".json", config_bytes)
        add("manifest.json", json.dumps(manifest, sort_keys=True).encode())
        add("repositories", json.dumps({repo: {tag: layer_hex}}, sort_keys=True).encode())
    os.replace(tmp, args.out)
    print(f"{args.out}: {args.ref} sha256:{config_hex} ({len(layer_bytes)} bytes)")

if __name__ == "__main__":
    main()
