"""Build dist/balsamd.pyz from shiv.toml: one file that runs balsamd with a bare python3.

    python scripts/build_zipapp.py [--python-version 3.11] [--platform manylinux2014_x86_64]
                                   [--output PATH] [--build-id ID]

shiv builds the zipapp from a site-packages directory filled by pip (for another Python
version or platform, pip fetches the matching binary wheels).  The shiv bootstrap is then
replaced by scripts/zipapp_main.py, which extracts node-locally and without locks.  With
reproducible = true the same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def load_config(path: Path) -> dict:
    config = tomllib.loads(path.read_text())["zipapp"]
    for key in ("output", "entry_point", "python", "requirements"):
        if key not in config:
            raise SystemExit(f"{path}: [zipapp] needs the key {key!r}")
    return config


def pip_install(target: Path, requirements: list[str], python_version: str | None, platform: str | None) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(target)]
    if python_version or platform:
        command += ["--only-binary=:all:", "--implementation", "cp"]
        if python_version:
            command += ["--python-version", python_version]
        if platform:
            command += ["--platform", platform]
    subprocess.run([*command, *requirements, str(ROOT)], check=True)
    for junk in target.glob("*.dist-info/RECORD"):
        junk.unlink()  # holds per-build hashes of compiled files; not needed to run


def build(config: dict, output: Path, python_version: str | None, platform: str | None, build_id: str | None) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        packages = Path(tmp) / "site-packages"
        pip_install(packages, config["requirements"], python_version, platform)
        for cache in packages.rglob("__pycache__"):
            shutil.rmtree(cache)
        raw = Path(tmp) / "raw.pyz"
        command = [
            sys.executable, "-m", "shiv", "--site-packages", str(packages), "-e", config["entry_point"],
            "-o", str(raw), "-p", config["python"],
            "--compressed" if config.get("compressed", True) else "--uncompressed",
        ]  # fmt: skip
        if config.get("reproducible", True):
            command.append("--reproducible")
        if build_id:
            command += ["--build-id", build_id]
        env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "315532800")}
        subprocess.run(command, check=True, env=env)
        output.parent.mkdir(parents=True, exist_ok=True)
        rewrite(raw, output, config)
    return output


def rewrite(raw: Path, output: Path, config: dict) -> None:
    """Copy the zipapp with our bootstrap as __main__.py and shiv's own bootstrap left out."""
    bootstrap = (ROOT / "scripts" / "zipapp_main.py").read_bytes()
    compression = zipfile.ZIP_DEFLATED if config.get("compressed", True) else zipfile.ZIP_STORED
    tmp = output.with_suffix(".tmp")
    with zipfile.ZipFile(raw) as source, tmp.open("wb") as out:
        out.write(f"#!{config['python']}\n".encode())
        with zipfile.ZipFile(out, "w", compression) as target:
            for info in source.infolist():
                if info.filename.startswith("_bootstrap/") or info.filename == "__main__.py":
                    continue
                copy = zipfile.ZipInfo(info.filename, FIXED_TIME)
                copy.external_attr = info.external_attr
                copy.compress_type = compression
                target.writestr(copy, source.read(info))
            main = zipfile.ZipInfo("__main__.py", FIXED_TIME)
            main.external_attr = 0o644 << 16
            main.compress_type = compression
            target.writestr(main, bootstrap)
    tmp.chmod(0o755)
    tmp.rename(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "shiv.toml")
    parser.add_argument("--output", type=Path, help="default: [zipapp] output in shiv.toml")
    parser.add_argument("--python-version", help="build for this Python (e.g. 3.12); default: this one")
    parser.add_argument("--platform", help="wheel platform tag (e.g. manylinux2014_x86_64); default: this one")
    parser.add_argument("--build-id", help="default: a hash of the contents")
    args = parser.parse_args()
    config = load_config(args.config)
    output = args.output or ROOT / config["output"]
    built = build(config, output, args.python_version, args.platform, args.build_id)
    digest = hashlib.sha256(built.read_bytes()).hexdigest()[:16]
    with zipfile.ZipFile(built) as z:
        build_id = json.loads(z.read("environment.json"))["build_id"][:12]
    print(f"built {built} ({built.stat().st_size / 1e6:.1f} MB, build {build_id}, sha256 {digest})")


if __name__ == "__main__":
    main()
